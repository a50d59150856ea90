"""The parity helper accepts tied detections in either order and nothing else."""
import numpy as np
import pytest

from tests.parity import compare


def results(scores, boxes, classes):
    n = len(scores)
    masks = np.zeros((32, 32, n), bool)
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, k] = True
    return {"rois": np.array(boxes, np.int32), "class_ids": np.array(classes, np.int32),
            "scores": np.array(scores, np.float32), "masks": masks}


REF = results([0.9, 0.5, 0.5], [(0, 0, 10, 10), (5, 5, 20, 20), (12, 12, 30, 30)],
              [1, 2, 2])


def test_equal_scores_may_swap():
    got = results([0.9, 0.50003, 0.5], [(0, 0, 10, 10), (12, 12, 30, 30),
                                        (5, 5, 20, 20)], [1, 2, 2])
    assert compare(REF, got, {})["detections"] == 3


def test_other_reorderings_and_changes_fail():
    swapped = results([0.5, 0.9, 0.5], [(5, 5, 20, 20), (0, 0, 10, 10),
                                        (12, 12, 30, 30)], [2, 1, 2])
    with pytest.raises(AssertionError, match="not sorted by score"):
        compare(REF, swapped)
    moved = results([0.9, 0.5, 0.5], [(0, 0, 10, 10), (5, 5, 22, 20),
                                      (12, 12, 30, 30)], [1, 2, 2])
    with pytest.raises(AssertionError, match="boxes differ by 2.0 px"):
        compare(REF, moved)

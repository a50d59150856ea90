"""Prediction readers refuse hostile records: garbage RLE counts, wrong mask sizes,
non-finite numbers, unknown images and categories, over-long lines."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.evaluation.predictions import (check_rle_counts, read_predictions,
                                          rle_run_lengths)


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _reference_runs(mask):
    """Run lengths of a mask in column-major order, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    return ([0] + runs) if flat.size and flat[0] else runs


def test_run_lengths_match_pycocotools_encoding_on_random_masks():
    rng = np.random.RandomState(0)
    for _ in range(200):
        h, w = rng.randint(1, 70, size=2)
        mask = rng.rand(h, w) < rng.rand()
        rle = _rle(mask)
        assert rle_run_lengths(rle["counts"]).tolist() == _reference_runs(mask)
        check_rle_counts(rle["counts"], h, w)


@pytest.mark.parametrize("counts, words", [
    ("zzzz" * 1000, "character 'z'"),          # made pycocotools spin for minutes
    ("0" * 10 + "\x7f", "character"),
    ("PPPP", "ends in the middle"),             # continuation bit set on the last char
    ("02", "decode to 2 pixels"),               # too few pixels for 10x10
    ("ooooooooO1", "longer than any image"),    # a value of 8 chunks
])
def test_garbage_counts_raise_one_sentence(counts, words):
    with pytest.raises(ValueError, match=words):
        check_rle_counts(counts, 10, 10)


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


def _good(image_id=1, size=(8, 6), category_id=3):
    mask = np.zeros(size, bool)
    mask[2:5, 1:4] = True
    return {"image_id": image_id, "category_id": category_id, "score": 0.9,
            "segmentation": _rle(mask)}


def test_reader_names_the_line_of_garbage_counts(tmp_path):
    bad = dict(_good(), segmentation={"size": [8, 6], "counts": "zzzz" * 50})
    path = _write(tmp_path / "p.jsonl", [_good(), bad])
    with pytest.raises(ValueError, match=r"p\.jsonl: line 2: .*character 'z'"):
        list(read_predictions(path))


def test_reader_checks_sizes_categories_and_numbers(tmp_path):
    records = [
        _good(),
        _good(size=(16, 12)),                                  # wrong mask size
        _good(image_id=7),                                     # unknown image
        _good(category_id=99),                                 # unknown category
        dict(_good(), score="nan"),                            # non-finite score
        dict(_good(), bbox=[0, 0, float("inf"), 2]),           # non-finite bbox
        "{not json",                                           # not JSON
        dict(_good(), segmentation={"size": [8, 6], "counts": [10, -2, 40]}),
    ]
    path = _write(tmp_path / "p.jsonl", records)
    skipped = []
    kept = list(read_predictions(path, image_sizes={1: (8, 6)}, category_ids={3},
                                 skipped=skipped))
    assert len(kept) == 1
    reasons = "\n".join(skipped)
    assert len(skipped) == 7, reasons
    for words in ("line 2: the mask is 16x12 but image 1 is 8x6", "line 3: image_id 7",
                  "line 4: category_id 99", "line 5: 'score' must be finite",
                  "line 6: 'bbox' must be finite", "line 7: invalid JSON",
                  "line 8: uncompressed RLE"):
        assert words in reasons


def test_over_long_line_is_refused(tmp_path, monkeypatch):
    from mrcnn.evaluation import predictions
    monkeypatch.setattr(predictions, "MAX_LINE_BYTES", 1000)
    path = _write(tmp_path / "p.jsonl", [_good(), json.dumps(_good()) + " " * 2000])
    with pytest.raises(ValueError, match="line 2 is longer than"):
        list(read_predictions(path))

"""detect()'s mask paste equals matterport's utils.unmold_mask pixel for pixel."""
import numpy as np
import pytest

from mrcnn import inference, utils


def _masks(rng, kind, shape=(28, 28)):
    """Probability masks of several kinds: uniform noise, hard 0/1, quarters (exact
    binary fractions), smooth blobs, float64, values within 1e-4 of the threshold (every
    pixel goes through the exact band), all above and all below the threshold."""
    if kind == "noise":
        return rng.random(shape, dtype=np.float32)
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(np.float32)
    if kind == "quarters":
        return (np.round(rng.random(shape) * 4) / 4).astype(np.float32)
    if kind == "smooth":
        z = utils.resize(rng.standard_normal((7, 7)), shape, order=3, mode="edge")
        return (1 / (1 + np.exp(-4 * z))).astype(np.float32)
    if kind == "float64":
        return rng.random(shape)
    if kind == "near":
        return (0.5 + (rng.random(shape) - 0.5) * 2e-4).astype(np.float32)
    if kind == "high":
        return (0.5 + rng.random(shape) * 0.5).astype(np.float32)
    if kind == "low":
        return (rng.random(shape) * 0.499).astype(np.float32)
    raise ValueError(kind)


KINDS = ["noise", "binary", "quarters", "smooth", "float64", "near", "high", "low"]


def _box(rng, height, width):
    """A box inside (height, width): a third touch an image edge, a quarter are 1-2 px
    high or wide, the rest anything from 1 px to the whole image."""
    y1, x1 = int(rng.integers(0, height)), int(rng.integers(0, width))
    y2, x2 = int(rng.integers(y1 + 1, height + 1)), int(rng.integers(x1 + 1, width + 1))
    r = rng.random()
    if r < 0.33:
        edge = int(rng.integers(0, 4))
        y1, x1, y2, x2 = [(0, x1, y2, x2), (y1, 0, y2, x2),
                          (y1, x1, height, x2), (y1, x1, y2, width)][edge]
    elif r < 0.58:
        if rng.random() < 0.5:
            y2 = min(height, y1 + int(rng.integers(1, 3)))
        else:
            x2 = min(width, x1 + int(rng.integers(1, 3)))
    return np.array([y1, x1, y2, x2], np.int32)


def _reference(mask, box, shape):
    return utils.unmold_mask(mask, box, shape)


@pytest.mark.parametrize("kind", KINDS)
def test_paste_equals_unmold_mask_pixel_for_pixel(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    differing = 0
    for _ in range(150):
        height, width = int(rng.integers(1, 260)), int(rng.integers(1, 260))  # non-square
        mask, box = _masks(rng, kind), _box(rng, height, width)
        ours = np.zeros((height, width), bool)
        inference.paste_mask(mask, box, ours)
        differing += np.count_nonzero(ours != _reference(mask, box, (height, width)))
    assert differing == 0


def test_paste_large_boxes_and_other_mask_sizes():
    """Boxes far larger than 28 (upsampling x30), smaller (downsampling), exactly 2x and
    1x, and masks that are not 28x28."""
    rng = np.random.default_rng(7)
    cases = [((28, 28), (0, 0, 840, 700)), ((28, 28), (3, 5, 17, 19)),
             ((28, 28), (10, 10, 66, 38)), ((28, 28), (0, 0, 28, 28)),
             ((28, 28), (0, 0, 14, 14)), ((14, 20), (1, 2, 100, 51)), ((1, 1), (0, 0, 9, 4))]
    for shape, box in cases:
        for kind in ("noise", "smooth", "binary"):
            mask = _masks(rng, kind, shape)
            ours = np.zeros((900, 720), bool)
            inference.paste_mask(mask, np.array(box), ours)
            assert np.array_equal(ours, _reference(mask, np.array(box), (900, 720))), \
                (shape, box, kind)


def test_exact_values_are_scikit_images_resize_bit_for_bit():
    """The exact path (used in the threshold band) is skimage's float arithmetic."""
    rng = np.random.default_rng(3)
    for kind in ("noise", "float64", "smooth"):
        for _ in range(20):
            mask = _masks(rng, kind)
            h, w = int(rng.integers(1, 120)), int(rng.integers(1, 120))
            expected = utils.resize(mask, (h, w))
            lo, hi = mask.min(), mask.max()
            got = np.clip(inference._exact_values(mask, h, w), lo, hi)
            assert got.dtype == expected.dtype
            assert np.array_equal(got, expected)


def test_mask_score_is_mean_probability_inside():
    rng = np.random.default_rng(4)
    mask = _masks(rng, "smooth")
    box = np.array([5, 7, 90, 61])
    plane = np.zeros((100, 80), bool)
    score = inference.paste_mask(mask, box, plane)
    resized = utils.resize(mask, (85, 54))
    inside = resized >= 0.5
    assert np.array_equal(plane[5:90, 7:61], inside)
    assert score == pytest.approx(float(resized[inside].mean()), abs=1e-6)
    assert inference.paste_mask(_masks(rng, "low"), box, plane.copy()) == 0.0
    assert inference.paste_mask(mask, np.array([5, 7, 5, 20]), plane.copy()) == 0.0


def _reference_unmold(detections, mrcnn_mask, original_shape, image_shape, window):
    """matterport's unmold_detections, built on utils.unmold_mask."""
    n = int(np.argmax(detections[:, 4] == 0)) if (detections[:, 4] == 0).any() \
        else detections.shape[0]
    boxes, class_ids = detections[:n, :4], detections[:n, 4].astype(np.int32)
    scores, masks = detections[:n, 5], mrcnn_mask[np.arange(n), :, :, class_ids]
    window = utils.norm_boxes(np.asarray(window), image_shape[:2])
    wy1, wx1, wy2, wx2 = window
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = utils.denorm_boxes(np.divide(boxes - shift, scale), original_shape[:2])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, original_shape[0])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, original_shape[1])
    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    full = [utils.unmold_mask(masks[i], boxes[i], original_shape) for i in keep]
    full = np.stack(full, -1) if full else np.empty(original_shape[:2] + (0,), bool)
    return boxes[keep], class_ids[keep], scores[keep], full


def test_unmold_detections_equals_matterport_reference():
    rng = np.random.default_rng(5)
    original_shape, image_shape = (300, 420, 3), (448, 448, 3)
    scale = 448 / 420
    top = (448 - round(300 * scale)) // 2
    window = (top, 0, top + round(300 * scale), 448)
    d, classes = 20, 5
    y1 = rng.uniform(-0.05, 0.9, d)
    x1 = rng.uniform(-0.05, 0.9, d)
    y2 = np.minimum(y1 + rng.uniform(0.001, 0.6, d), 1.05)
    x2 = np.minimum(x1 + rng.uniform(0.001, 0.6, d), 1.05)
    detections = np.zeros((d + 4, 6), np.float32)  # zero padded at the end
    detections[:d] = np.stack([y1, x1, y2, x2, rng.integers(1, classes, d),
                               rng.uniform(0.5, 1, d)], axis=1)
    mrcnn_mask = np.stack([np.stack([_masks(rng, "smooth") for _ in range(classes)], -1)
                           for _ in range(d + 4)])
    result = inference.unmold_detections(detections, mrcnn_mask, original_shape,
                                         image_shape, window)
    boxes, class_ids, scores, masks = _reference_unmold(detections, mrcnn_mask,
                                                        original_shape, image_shape, window)
    assert result["masks"].shape[-1] > 10
    np.testing.assert_array_equal(result["rois"], boxes)
    np.testing.assert_array_equal(result["class_ids"], class_ids)
    np.testing.assert_array_equal(result["scores"], scores)
    assert result["masks"].dtype == bool
    assert np.count_nonzero(result["masks"] != masks) == 0
    assert result["mask_scores"].shape == (masks.shape[-1],)
    assert (result["mask_scores"][masks.any(axis=(0, 1))] >= 0.5).all()

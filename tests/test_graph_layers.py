"""Graph layers and box ops against small numpy references on random inputs."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.layers import (DetectionLayer, DetectionTargetLayer, ProposalLayer,
                          PyramidROIAlign, roi_pyramid_levels)
from mrcnn.ops import boxes as box_ops

STD = [0.1, 0.1, 0.2, 0.2]


def make_config(**overrides):
    values = dict(
        RPN_BBOX_STD_DEV=np.array(STD), PRE_NMS_LIMIT=120, IMAGES_PER_GPU=2, BATCH_SIZE=2,
        TRAIN_ROIS_PER_IMAGE=30, ROI_POSITIVE_RATIO=0.33, BBOX_STD_DEV=np.array(STD),
        MASK_SHAPE=[8, 8], USE_MINI_MASK=True, MINI_MASK_SHAPE=(16, 16),
        DETECTION_MIN_CONFIDENCE=0.5, DETECTION_MAX_INSTANCES=12,
        DETECTION_NMS_THRESHOLD=0.3, NUM_CLASSES=4, NUM_ATTRIBUTES=0,
        IMAGE_SHAPE=np.array([64, 64, 3]))
    values.update(overrides)
    return types.SimpleNamespace(**values)


def random_boxes(rng, shape, min_size=0.03, max_size=0.4):
    """``shape + [4]`` normalised boxes, some of them sticking out of [0, 1]."""
    centre = rng.uniform(0.0, 1.0, shape + [2])
    size = rng.uniform(min_size, max_size, shape + [2])
    return np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32)


def image_meta(batch, h, w, window, num_classes=4):
    meta = np.zeros([batch, 12 + num_classes], np.float32)
    meta[:, 4:7] = [h, w, 3]
    meta[:, 7:11] = window
    meta[:, 11] = 1.0
    return meta


# ---------------------------------------------------------------- numpy references

def np_iou(boxes1, boxes2):
    """[N1, 4], [N2, 4] -> [N1, N2], a loop over pairs as plainly as possible."""
    out = np.zeros([len(boxes1), len(boxes2)], np.float32)
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = ih * iw
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def np_apply_deltas(boxes, deltas):
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cy, cx = boxes[:, 0] + h / 2 + deltas[:, 0] * h, boxes[:, 1] + w / 2 + deltas[:, 1] * w
    h, w = h * np.exp(deltas[:, 2]), w * np.exp(deltas[:, 3])
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)


def np_greedy_nms(boxes, scores, max_out, threshold):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order and len(keep) < max_out:
        best = order.pop(0)
        keep.append(best)
        ious = np_iou(boxes[best:best + 1], boxes[order])[0] if order else []
        order = [o for o, iou in zip(order, ious) if iou <= threshold]
    return np.array(keep, np.int64)


def np_crop_and_resize(image, box, size):
    """Bilinear crop of ``image [H, W, C]`` at normalised ``box``, TF's sampling grid."""
    height, width = image.shape[:2]
    out = np.zeros(tuple(size) + image.shape[2:], np.float64)
    for i in range(size[0]):
        y = box[0] * (height - 1) + i * (box[2] - box[0]) * (height - 1) / (size[0] - 1)
        for j in range(size[1]):
            x = box[1] * (width - 1) + j * (box[3] - box[1]) * (width - 1) / (size[1] - 1)
            if y < -1e-6 or y > height - 1 + 1e-6 or x < -1e-6 or x > width - 1 + 1e-6:
                continue  # outside the image: extrapolation value 0
            y, x = min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
            dy, dx = y - y0, x - x0
            top = image[y0, x0] * (1 - dx) + image[y0, x1] * dx
            bottom = image[y1, x0] * (1 - dx) + image[y1, x1] * dx
            out[i, j] = top * (1 - dy) + bottom * dy
    return out


def np_levels(boxes, h, w):
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
    level = np.log2(np.sqrt(area) / (224.0 / np.sqrt(h * w)))
    return np.clip(4 + np.round(level).astype(int), 2, 5)


# ---------------------------------------------------------------- box ops

def test_overlaps_matches_numpy_and_handles_padding():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, [7]), random_boxes(rng, [5])
    b[4] = 0.0  # zero padding row -> IoU 0, not NaN
    got = box_ops.overlaps(a, b).numpy()
    np.testing.assert_allclose(got, np_iou(a, b), atol=1e-6)
    batched = box_ops.overlaps(np.stack([a, a[::-1]]), np.stack([b, b])).numpy()  # [2, 7, 5]
    np.testing.assert_allclose(batched[1], np_iou(a[::-1], b), atol=1e-6)


def test_apply_deltas_inverts_box_refinement():
    rng = np.random.default_rng(1)
    boxes, targets = random_boxes(rng, [20]), random_boxes(rng, [20])
    deltas = box_ops.box_refinement(boxes, targets).numpy()
    np.testing.assert_allclose(box_ops.apply_box_deltas(boxes, deltas).numpy(), targets,
                               atol=1e-5)
    random_deltas = rng.normal(0, 0.3, [20, 4]).astype(np.float32)
    np.testing.assert_allclose(box_ops.apply_box_deltas(boxes, random_deltas).numpy(),
                               np_apply_deltas(boxes, random_deltas), atol=1e-5)


def test_clip_norm_denorm_and_trim():
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, [10], max_size=0.9)
    window = np.array([0.1, 0.2, 0.8, 0.9], np.float32)
    clipped = box_ops.clip_boxes(boxes, window).numpy()
    np.testing.assert_allclose(clipped, np.clip(boxes, window[[0, 1, 0, 1]],
                                                window[[2, 3, 2, 3]]))
    pixels = np.array([[0, 0, 64, 48], [10, 5, 20, 30]], np.float32)
    normed = box_ops.norm_boxes(pixels, (64, 48)).numpy()
    np.testing.assert_allclose(normed[0], [0, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(normed[1], [10 / 63, 5 / 47, 19 / 63, 29 / 47], atol=1e-6)
    np.testing.assert_array_equal(box_ops.denorm_boxes(normed, (64, 48)).numpy(), pixels)
    padded = np.concatenate([boxes[:3], np.zeros([2, 4], np.float32)])
    trimmed, mask = box_ops.trim_zeros(padded)
    np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(trimmed.numpy(), boxes[:3])


@pytest.mark.parametrize("crop_size", [(1, 1), (5, 7)])
def test_gather_crop_equals_crop_and_resize(crop_size):
    rng = np.random.default_rng(12)
    images = rng.normal(size=[3, 9, 13, 2]).astype(np.float32)
    boxes = random_boxes(rng, [40], 0.05, 1.2)  # some reach outside the image
    indices = rng.integers(0, 3, 40).astype(np.int32)
    want = tf.image.crop_and_resize(images, boxes, indices, crop_size).numpy()
    got = box_ops.crop_and_resize_gather(images, boxes, indices, crop_size).numpy()
    np.testing.assert_array_equal(got, want)     # the kernel's arithmetic, bit for bit


# ---------------------------------------------------------------- ProposalLayer

def proposal_inputs(seed, batch=2, anchors=160):
    rng = np.random.default_rng(seed)
    fg = rng.uniform(0, 1, [batch, anchors]).astype(np.float32)
    probs = np.stack([1 - fg, fg], -1)  # [B, A, 2]
    deltas = rng.normal(0, 1, [batch, anchors, 4]).astype(np.float32)
    return probs, deltas, random_boxes(rng, [batch, anchors])


def np_proposals(probs, deltas, anchors, limit, count, threshold):
    scores = probs[:, 1]
    top = np.argsort(-scores, kind="stable")[:limit]
    boxes = np.clip(np_apply_deltas(anchors[top], deltas[top] * STD), 0, 1)
    keep = np_greedy_nms(boxes, scores[top], count, threshold)
    out = np.zeros([count, 4], np.float32)
    out[:len(keep)] = boxes[keep]
    return out


@pytest.mark.parametrize("count", [20, 200])  # 200 > survivors: zero padding
def test_proposals_match_numpy_nms(count):
    probs, deltas, anchors = proposal_inputs(3)
    layer = ProposalLayer(count, 0.5, make_config())
    got = layer([probs, deltas, anchors]).numpy()
    assert got.shape == (2, count, 4)
    for b in range(2):
        want = np_proposals(probs[b], deltas[b], anchors[b], 120, count, 0.5)
        np.testing.assert_allclose(got[b], want, atol=1e-5)
    if count == 200:
        assert np.all(got[:, -1] == 0)  # fewer than 200 survive NMS of 120 boxes


def test_proposal_layer_in_functional_model_and_tf_function():
    probs, deltas, anchors = proposal_inputs(4)
    # A dynamic anchor count, as in the inference graph where anchors are an input.
    inputs = [keras.Input((None, 2)), keras.Input((None, 4)), keras.Input((None, 4))]
    layer = ProposalLayer(16, 0.7, make_config(), name="ROI")
    output = layer(inputs)
    assert tuple(output.shape) == (None, 16, 4)
    model = keras.Model(inputs, output)
    compiled = tf.function(model, jit_compile=False)
    np.testing.assert_allclose(compiled([probs, deltas, anchors]).numpy(),
                               model([probs, deltas, anchors]).numpy(), atol=1e-6)
    clone = ProposalLayer.from_config(layer.get_config())
    np.testing.assert_allclose(clone([probs, deltas, anchors]).numpy(),
                               layer([probs, deltas, anchors]).numpy())


# ---------------------------------------------------------------- PyramidROIAlign

def roi_align_inputs(seed, batch=2, rois=24, size=64, channels=3):
    rng = np.random.default_rng(seed)
    boxes = np.clip(random_boxes(rng, [batch, rois], 0.02, 0.9), 0, 1)
    boxes[:, -2:] = 0.0  # padding rows
    maps = [rng.normal(size=[batch, size // s, size // s, channels]).astype(np.float32)
            for s in (4, 8, 16, 32)]
    # The meta claims a 1024 px image so that boxes spread over all four levels (at
    # 64 px every box would map to P2); the level rule only reads the meta.
    meta = image_meta(batch, 1024, 1024, [0, 0, 1024, 1024])
    return boxes, meta, maps


def test_roi_level_assignment_matches_formula():
    rng = np.random.default_rng(5)
    boxes = np.clip(random_boxes(rng, [1, 200], 0.001, 1.0), 0, 1)
    boxes[0, -1] = 0.0
    for h, w in [(64, 64), (1024, 1024), (512, 768)]:
        shape = np.array([[h, w, 3]], np.float32)
        got = roi_pyramid_levels(tf.constant(boxes), tf.constant(shape)).numpy()[0]
        np.testing.assert_array_equal(got, np_levels(boxes[0], h, w))
    got = roi_pyramid_levels(tf.constant(boxes), tf.constant([[1024.0, 1024, 3]])).numpy()
    assert set(np.unique(got)) == {2, 3, 4, 5}  # the sample covers every level


@pytest.mark.parametrize("static_shapes", [False, True])
def test_roi_align_matches_numpy_crop_in_box_order(static_shapes):
    boxes, meta, maps = roi_align_inputs(6)
    layer = PyramidROIAlign((5, 4), static_shapes=static_shapes)
    got = layer([boxes, meta] + maps).numpy()
    assert got.shape == (2, 24, 5, 4, 3)
    levels = np_levels(boxes.reshape(-1, 4), 1024, 1024).reshape(2, 24)
    assert len(np.unique(levels)) >= 3  # the order restoration is really exercised
    for b in range(2):
        for n in range(24):
            want = np_crop_and_resize(maps[levels[b, n] - 2][b], boxes[b, n], (5, 4))
            np.testing.assert_allclose(got[b, n], want, atol=1e-4)


def test_roi_align_functional_model_and_gradient():
    boxes, meta, maps = roi_align_inputs(7)
    inputs = [keras.Input((24, 4)), keras.Input((16,))] + [
        keras.Input(m.shape[1:]) for m in maps]
    layer = PyramidROIAlign((7, 7), name="roi_align_classifier")
    output = layer(inputs)
    assert tuple(output.shape) == (None, 24, 7, 7, 3)
    model = keras.Model(inputs, output)
    data = [boxes, meta] + maps
    compiled = tf.function(model, jit_compile=False)
    np.testing.assert_allclose(compiled(data).numpy(), model(data).numpy(), atol=1e-6)
    p2 = tf.Variable(maps[0])
    for align in (layer, PyramidROIAlign((7, 7), static_shapes=True)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(align([boxes, meta, p2] + maps[1:]))
        assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, p2)))) > 0
    assert PyramidROIAlign.from_config(layer.get_config()).pool_shape == (7, 7)


# ---------------------------------------------------------------- DetectionTargetLayer

def target_inputs(seed, mini_mask=True):
    """Image 0: 3 objects + 1 crowd, proposals near them; image 1: no GT at all."""
    rng = np.random.default_rng(seed)
    gt_boxes = np.zeros([2, 5, 4], np.float32)
    gt_boxes[0, :4] = [[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.95],
                       [0.2, 0.55, 0.45, 0.9], [0.6, 0.05, 0.95, 0.3]]
    gt_class_ids = np.zeros([2, 5], np.int32)
    gt_class_ids[0, :4] = [1, 3, 2, -1]  # the fourth is a crowd
    jitter = rng.normal(0, 0.03, [2, 4, 25, 4]).astype(np.float32)
    near = (gt_boxes[0, :4, None, :] + jitter[0])  # [4, 25, 4] around each GT
    proposals = np.zeros([2, 160, 4], np.float32)
    proposals[:, :100] = near.reshape(100, 4)
    proposals[:, 100:150] = np.clip(random_boxes(rng, [2, 50]), 0, 1)
    mask_shape = (16, 16) if mini_mask else (64, 64)
    gt_masks = rng.uniform(size=(2,) + mask_shape + (5,)) > 0.5
    gt_masks[1] = False
    attributes = rng.integers(0, 2, [2, 5, 3]).astype(np.uint8)
    return proposals, gt_class_ids, gt_boxes, gt_masks, attributes


def check_targets(config, inputs, outputs):
    proposals, gt_class_ids, gt_boxes, gt_masks, attributes = inputs
    rois, class_ids, deltas, masks, roi_attributes = [o.numpy() for o in outputs]
    t = config.TRAIN_ROIS_PER_IMAGE
    assert rois.shape == (2, t, 4) and masks.shape == (2, t, 8, 8)
    objects, crowd = gt_boxes[0, :3], gt_boxes[0, 3:4]
    pos = class_ids[0] > 0
    n_pos = int(pos.sum())
    assert 0 < n_pos <= int(t * config.ROI_POSITIVE_RATIO)
    assert np.all(pos[:n_pos])  # positives first
    n_rows = int(np.any(rois[0] != 0, axis=1).sum())
    assert n_rows == min(t, int(np.float32(1 / 0.33) * np.float32(n_pos)))
    assert np.all(rois[0, n_rows:] == 0) and np.all(class_ids[0, n_pos:] == 0)
    iou = np_iou(rois[0, :n_rows], objects)
    assert np.all(iou[:n_pos].max(1) >= 0.5) and np.all(iou[n_pos:].max(1) < 0.5)
    assert np.all(np_iou(rois[0, n_pos:n_rows], crowd) < 0.001)
    assert len(np.unique(rois[0, :n_rows], axis=0)) == n_rows  # sampled without repeats
    best = iou[:n_pos].argmax(1)
    np.testing.assert_array_equal(class_ids[0, :n_pos], gt_class_ids[0, best])
    decoded = np_apply_deltas(rois[0, :n_pos], deltas[0, :n_pos] * STD)
    np.testing.assert_allclose(decoded, objects[best], atol=1e-5)
    assert np.all(deltas[0, n_pos:] == 0) and np.all(masks[0, n_pos:] == 0)
    np.testing.assert_array_equal(roi_attributes[0, :n_pos], attributes[0, best])
    for i in range(n_pos):
        roi, gt = rois[0, i], objects[best[i]]
        box = roi
        if config.USE_MINI_MASK:
            h, w = gt[2] - gt[0], gt[3] - gt[1]
            box = (roi - gt[[0, 1, 0, 1]]) / np.array([h, w, h, w])
        mask = gt_masks[0, :, :, best[i]].astype(np.float64)[..., None]
        want = np.round(np_crop_and_resize(mask, box, (8, 8))[..., 0])
        assert np.mean(masks[0, i] != want) < 0.02  # only x.5 rounding ties may differ
    # Image 1 has no GT: all of its rows are negatives.
    assert np.all(np.any(rois[1] != 0, axis=1)) and np.all(class_ids[1] == 0)
    assert np.all(masks[1] == 0) and np.all(deltas[1] == 0)


@pytest.mark.parametrize("mini_mask", [True, False])
def test_detection_targets_sampling_and_targets(mini_mask):
    config = make_config(USE_MINI_MASK=mini_mask)
    inputs = target_inputs(8, mini_mask)
    outputs = DetectionTargetLayer(config)(list(inputs))
    check_targets(config, inputs, outputs)


def test_detection_targets_functional_model_and_tf_function():
    config = make_config()
    data = list(target_inputs(9))
    inputs = [keras.Input((160, 4)), keras.Input((5,), dtype="int32"),
              keras.Input((5, 4)), keras.Input((16, 16, 5), dtype="bool"),
              keras.Input((5, 3), dtype="uint8")]
    layer = DetectionTargetLayer(config, name="proposal_targets")
    outputs = layer(inputs)
    assert [tuple(o.shape) for o in outputs] == [
        (None, 30, 4), (None, 30), (None, 30, 4), (None, 30, 8, 8), (None, 30, 3)]
    assert outputs[1].dtype == "int32"
    model = keras.Model(inputs, outputs)
    check_targets(config, data, tf.function(model, jit_compile=False)(data))
    clone = DetectionTargetLayer.from_config(layer.get_config())
    assert len(clone(data[:4])) == 4  # no attributes in, no attribute targets out


# ---------------------------------------------------------------- DetectionLayer

def detection_inputs(seed, batch=2, rois=40, classes=4):
    rng = np.random.default_rng(seed)
    boxes = np.clip(random_boxes(rng, [batch, rois], 0.05, 0.5), 0, 1)
    logits = rng.normal(0, 2, [batch, rois, classes])
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1, [batch, rois, classes, 4]).astype(np.float32)
    meta = image_meta(batch, 64, 64, [8, 4, 56, 60])
    return boxes, probs, deltas, meta


def np_detections(rois, probs, deltas, window, config):
    class_ids = probs.argmax(1)
    scores = probs.max(1)
    refined = np_apply_deltas(rois, deltas[np.arange(len(rois)), class_ids] * STD)
    refined = np.clip(refined, window[[0, 1, 0, 1]], window[[2, 3, 2, 3]])
    keep = np.where((class_ids > 0) & (scores >= config.DETECTION_MIN_CONFIDENCE))[0]
    kept = []
    for c in np.unique(class_ids[keep]):
        ix = keep[class_ids[keep] == c]
        kept += list(ix[np_greedy_nms(refined[ix], scores[ix], 1000,
                                      config.DETECTION_NMS_THRESHOLD)])
    kept = sorted(kept, key=lambda i: -scores[i])[:config.DETECTION_MAX_INSTANCES]
    out = np.zeros([config.DETECTION_MAX_INSTANCES, 6], np.float32)
    for row, i in enumerate(kept):
        out[row] = list(refined[i]) + [class_ids[i], scores[i]]
    return out, kept


@pytest.mark.parametrize("max_instances", [4, 12])
def test_detections_match_numpy_reference(max_instances):
    config = make_config(DETECTION_MAX_INSTANCES=max_instances)
    rois, probs, deltas, meta = detection_inputs(10)
    detections, roi_index = DetectionLayer(config, return_indices=True)(
        [rois, probs, deltas, meta])
    detections, roi_index = detections.numpy(), roi_index.numpy()
    assert detections.shape == (2, max_instances, 6)
    window = np.array([8, 4, 55, 59], np.float32) / np.array([63, 63, 63, 63])
    for b in range(2):
        want, kept = np_detections(rois[b], probs[b], deltas[b], window, config)
        np.testing.assert_allclose(detections[b], want, atol=1e-5)
        np.testing.assert_array_equal(roi_index[b, :len(kept)], kept)
        assert np.all(roi_index[b, len(kept):] == -1)
        n = len(kept)
        assert np.all(np.diff(detections[b, :n, 5]) <= 0)  # sorted by score
        assert np.all(detections[b, :n, :4] >= window[[0, 1, 0, 1]] - 1e-6)
        assert np.all(detections[b, :n, :4] <= window[[2, 3, 2, 3]] + 1e-6)
        assert np.all(detections[b, n:] == 0)
    assert np.any(detections[:, :, 4] > 0)  # the test data does yield detections


def test_detection_layer_functional_model_and_tf_function():
    config = make_config()
    data = list(detection_inputs(11))
    inputs = [keras.Input((40, 4)), keras.Input((40, 4)), keras.Input((40, 4, 4)),
              keras.Input((16,))]
    layer = DetectionLayer(config, name="mrcnn_detection")
    output = layer(inputs)
    assert tuple(output.shape) == (None, 12, 6)
    model = keras.Model(inputs, output)
    got = tf.function(model, jit_compile=False)(data).numpy()
    np.testing.assert_allclose(got, layer(data).numpy(), atol=1e-6)
    clone = DetectionLayer.from_config(layer.get_config())
    np.testing.assert_allclose(clone(data).numpy(), got, atol=1e-6)


def test_static_paths_compile_with_xla():
    """ProposalLayer, static-shape ROI align, targets and detections: jit_compile=True."""
    config = make_config()
    boxes, meta, maps = roi_align_inputs(13)
    align = PyramidROIAlign((5, 4), static_shapes=True)
    cases = [
        (ProposalLayer(20, 0.5, config), list(proposal_inputs(14))),
        (align, [boxes, meta] + maps),
        (DetectionTargetLayer(config), list(target_inputs(15))),
        (DetectionLayer(config), list(detection_inputs(16))),
    ]
    for layer, data in cases:
        compiled = tf.function(layer, jit_compile=True)
        got = tf.nest.flatten(compiled(data))
        if not isinstance(layer, DetectionTargetLayer):  # random sampling differs
            for a, b in zip(got, tf.nest.flatten(layer(data))):
                np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    check_targets(config, target_inputs(15), tf.function(
        DetectionTargetLayer(config), jit_compile=True)(list(target_inputs(15))))


def test_missing_setting_is_named():
    config = make_config()
    del config.PRE_NMS_LIMIT
    with pytest.raises(ValueError, match="PRE_NMS_LIMIT"):
        ProposalLayer(10, 0.7, config)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_frozen_batch_norm_is_one_fused_op_with_keras_results(policy):
    """Frozen statistics run TensorFlow's fused op (what oneDNN folds into the conv);
    its output and its gradients (input, gamma, beta: still trained when only the
    statistics are frozen) equal Keras' own batch norm: to 1e-6 in float32 (the order of
    the multiply-add differs), exactly in bfloat16 (one rounding of the same float32
    result). With TRAIN_BN=None in training the batch statistics are used as before."""
    from mrcnn.layers.batch_norm import BatchNorm
    rng = np.random.RandomState(3)
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        bn = BatchNorm(train_bn=False, epsilon=1e-3)
        x = tf.cast(tf.constant(rng.randn(2, 6, 6, 8).astype("float32") * 3 + 1),
                    bn.compute_dtype)
        bn.build(x.shape)
        bn.moving_mean.assign(rng.randn(8).astype("float32"))
        bn.moving_variance.assign(rng.rand(8).astype("float32") + 0.5)
        bn.gamma.assign(rng.rand(8).astype("float32") + 0.5)
        bn.beta.assign(rng.randn(8).astype("float32"))

        def run(call):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = call(x)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
            grads = tape.gradient(loss, [x, bn.gamma, bn.beta])
            return [np.asarray(tf.cast(t, tf.float32)) for t in [y] + grads]

        ours = run(lambda t: bn(t, training=True))  # train_bn=False wins over training
        keras_ = run(lambda t: keras.layers.BatchNormalization.call(bn, t, training=False))
        for a, b in zip(ours, keras_):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())
        assert ours[0].dtype == np.float32 and bn(x).dtype == bn.compute_dtype
        graph = tf.function(lambda t: bn(t)).get_concrete_function(
            tf.TensorSpec(x.shape, x.dtype)).graph
        assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}

        follow = BatchNorm(train_bn=None)
        follow.build(x.shape)
        y = np.asarray(tf.cast(follow(x, training=True), tf.float32))
        assert abs(y.mean()) < 0.05 and abs(y.std() - 1) < 0.05  # batch statistics
    finally:
        keras.mixed_precision.set_global_policy(old)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_whole_input_conv_is_a_matmul_with_conv_results(policy):
    """The box head's "fc" convolutions (kernel = whole input) run as one matrix product
    with Conv2D's weights; outputs and gradients equal Conv2D's to float rounding:
    1e-5 of the largest value in float32 (summation order), 1e-2 in bfloat16 (the output
    is rounded to 8 bits once, 4e-3 relative). Another input size falls back to the conv."""
    from mrcnn.heads.common import WholeInputConv2D
    rng = np.random.RandomState(4)
    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        for size, kernel in [(7, 7), (1, 1)]:
            ours = WholeInputConv2D(16, kernel, activation="relu")
            conv = keras.layers.Conv2D(16, kernel, padding="valid", activation="relu")
            x = tf.constant(rng.randn(5, size, size, 12).astype("float32"))
            ours.build(x.shape), conv.build(x.shape)
            assert [w.shape for w in ours.weights] == [w.shape for w in conv.weights]
            conv.set_weights(ours.get_weights())

            def run(layer):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = layer(x)
                    loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
                grads = tape.gradient(loss, [x] + layer.trainable_weights)
                return [np.asarray(tf.cast(t, tf.float32)) for t in [y] + grads]
            tol = 1e-5 if policy == "float32" else 1e-2
            a, b = run(ours), run(conv)
            assert a[0].shape == (5, 1, 1, 16) and ours(x).dtype == ours.compute_dtype
            for u, v in zip(a, b):
                np.testing.assert_allclose(u, v, rtol=0, atol=tol * np.abs(v).max())
            graph = tf.function(lambda t: ours(t)).get_concrete_function(
                tf.TensorSpec(x.shape, tf.float32)).graph
            types = {op.type for op in graph.get_operations()}
            assert "MatMul" in types or "BatchMatMulV2" in types
            assert "Conv2D" not in types
        big = tf.constant(rng.randn(2, 9, 9, 12).astype("float32"))
        assert ours(big).shape == (2, 9, 9, 16)  # 1x1 kernel on 9x9: the ordinary conv
    finally:
        keras.mixed_precision.set_global_policy(old)

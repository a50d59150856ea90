"""The exported computation: images in, detections in original-image pixels out.

``serving_outputs(model, config, molded, metas)`` runs the Keras inference model and
does ``inference.unmold_detections``'s work in the graph with the same dtypes
(float32 window shift/scale, float64 denormalisation, round-half-even, clipping, dropping
empty boxes), so the outputs equal ``detect()``'s:

- ``num_detections`` int32 [B]
- ``detection_boxes`` float32 [B, N, 4]: (y1, x1, y2, x2) integer pixels of the original
  image, y2/x2 exclusive (``detect()``'s ``rois``)
- ``detection_classes`` int32 [B, N]: class ids (0 in padding rows)
- ``detection_scores`` float32 [B, N]
- ``detection_masks`` float32 [B, N, h, w]: the mask head's probabilities for the
  detected class inside the box (``postprocess.paste_masks`` makes full-image masks)
- ``detection_attributes`` float32 [B, N, NUM_ATTRIBUTES] when the model has them

N = DETECTION_MAX_INSTANCES; rows past ``num_detections`` are zero.
"""
import numpy as np
import tensorflow as tf

from mrcnn.utils import norm_anchors

# Output names, in order (detection_attributes only with an attribute head).
OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_classes",
                "detection_scores", "detection_masks", "detection_attributes")


def output_names(config):
    return OUTPUT_NAMES if config.NUM_ATTRIBUTES else OUTPUT_NAMES[:-1]


def named_outputs(raw, config):
    """The inference model's outputs as a dict, whether it returns a dict (named
    outputs) or matterport's list (detections, mrcnn_class, mrcnn_bbox, mrcnn_mask,
    rpn_rois, rpn_class, rpn_bbox[, attributes])."""
    if isinstance(raw, dict):
        return raw
    names = ("detections", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "rpn_rois",
             "rpn_class", "rpn_bbox", "attributes")
    return dict(zip(names, raw))


def _unmold_boxes(det_boxes, metas):
    """Normalised boxes in the molded image [B, D, 4] -> int-valued float64 pixel boxes
    in the original image, exactly as unmold_detections computes them."""
    side = metas[:, 4:6]                                                # molded h, w
    window = metas[:, 7:11]
    # utils.norm_boxes(float32 window, shape): float64 arithmetic, then float32.
    w64, s64 = tf.cast(window, tf.float64), tf.cast(side, tf.float64)
    scale_n = tf.concat([s64 - 1, s64 - 1], axis=1)
    shift_n = tf.constant([[0, 0, 1, 1]], tf.float64)
    wn = tf.cast((w64 - shift_n) / scale_n, tf.float32)                 # [B, 4]
    shift = tf.stack([wn[:, 0], wn[:, 1], wn[:, 0], wn[:, 1]], axis=1)[:, None]
    scale = tf.stack([wn[:, 2] - wn[:, 0], wn[:, 3] - wn[:, 1],
                      wn[:, 2] - wn[:, 0], wn[:, 3] - wn[:, 1]], axis=1)[:, None]
    boxes = (det_boxes - shift) / scale                                 # float32
    # utils.denorm_boxes: float32 * int64 -> float64, + shift, around.
    orig = tf.cast(metas[:, 1:3], tf.float64)                           # [B, 2] h, w
    dscale = tf.concat([orig - 1, orig - 1], axis=1)[:, None]
    pixels = tf.round(tf.cast(boxes, tf.float64) * dscale + shift_n[None])
    hi = tf.concat([orig, orig], axis=1)[:, None]                       # clip to h / w
    return tf.clip_by_value(pixels, tf.zeros_like(hi), hi)


def _compact(keep, tensors):
    """Moves the kept rows [B, D] of each [B, D, ...] float32 / int32 tensor to the front
    (order kept) and zeroes the rest; returns (count [B], valid rows [B, D], tensors)."""
    d = tf.shape(keep)[1]
    key = tf.where(keep, 0, d) + tf.range(d)[None]
    order = tf.argsort(key, axis=1, stable=True)
    count = tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)
    row_ok = tf.range(d)[None] < count[:, None]                         # [B, D]
    out = []
    for t in tensors:
        g = tf.gather(t, order, batch_dims=1)
        mask = tf.reshape(row_ok, tf.concat([tf.shape(row_ok), tf.ones([tf.rank(g) - 2],
                                                                       tf.int32)], 0))
        out.append(tf.where(mask, g, tf.zeros_like(g)))
    return count, row_ok, out


def _model_one(model, config, molded, meta, anchors, raw_out=None):
    """The Keras model on one molded image [S, S, 3] with static batch-1 shapes (the
    shapes detect() traces with, so the same kernels run) -> per-image outputs; raw_out
    (a dict) receives the model's named outputs."""
    raw = named_outputs(model([molded[None], meta[None], anchors], training=False), config)
    if raw_out is not None:
        raw_out.update(raw)
    out = (tf.cast(raw["detections"][0], tf.float32), tf.cast(raw["mrcnn_mask"][0], tf.float32))
    if config.NUM_ATTRIBUTES:
        out += (tf.cast(raw["attributes"][0], tf.float32),)
    return out


def detected_class_masks(masks, class_ids):
    """Each detection's mask of its own class: masks [B, D, h, w, C] (matterport's head,
    one map per class) or [B, D, S, S, 1] (PointRend: the detected class's map already)
    and class_ids [B, D] -> [B, D, h, w]."""
    if masks.shape[-1] == 1:
        return masks[..., 0]
    return tf.gather(tf.transpose(masks, [0, 1, 4, 2, 3]), tf.maximum(class_ids, 0),
                     axis=2, batch_dims=2)


def run_model(model, config, molded, metas, raw_out=None):
    """The model on each image of a batch in turn -> detections [B, D, 6], mrcnn_mask
    [B, D, h, w, C] and attributes [B, D, NA] (or None); raw_out (one image only)
    receives the model's named outputs."""
    side = int(config.IMAGE_MAX_DIM)
    anchors = tf.constant(norm_anchors(config, (side, side)).astype(np.float32)[None])
    d, (mh, mw, mc) = int(config.DETECTION_MAX_INSTANCES), config.mask_output_shape()
    spec = (tf.TensorSpec([d, 6], tf.float32), tf.TensorSpec([d, mh, mw, mc], tf.float32))
    if config.NUM_ATTRIBUTES:
        spec += (tf.TensorSpec([d, int(config.NUM_ATTRIBUTES)], tf.float32),)
    if molded.shape[0] == 1:                       # one image: no loop (ONNX, TFLite)
        outs = [o[None] for o in _model_one(model, config, molded[0], metas[0], anchors,
                                            raw_out)]
    else:
        assert raw_out is None, "the model's raw outputs are kept for one image only"
        outs = tf.map_fn(lambda x: _model_one(model, config, x[0], x[1], anchors),
                         (molded, metas), fn_output_signature=spec, parallel_iterations=1)
    return outs[0], outs[1], (outs[2] if config.NUM_ATTRIBUTES else None)


def serving_outputs(model, config, molded, metas, ties=False):
    """Runs the Keras model on molded images [B, S, S, 3] + metas -> the outputs dict.

    ties=True (one image; for export self-checks, never exported) adds what
    ``mrcnn.export.ties`` computes: how near each detection's class was to a tie, and the
    detection each nearly tied ROI would make with its runner-up class."""
    raw = {} if ties else None
    det, masks, attrs = run_model(model, config, molded, metas, raw)     # [B, D, ...]
    class_ids = tf.cast(det[..., 4], tf.int32)                          # [B, D]
    # unmold_detections keeps the rows before the first class id 0 ... (a cumulative
    # sum: ONNX has CumSum, while a cumulative product converts to a loop)
    valid = tf.math.cumsum(tf.cast(class_ids == 0, tf.int32), axis=1) == 0
    boxes = _unmold_boxes(det[..., :4], metas)
    # ... whose pixel boxes have a positive area.
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = valid & (area > 0)
    masks = detected_class_masks(masks, class_ids)                      # [B, D, h, w]
    tensors = [det, masks] + ([attrs] if attrs is not None else [])
    if ties:
        from mrcnn.export.ties import tie_outputs
        extra = tie_outputs(raw, metas, config, _unmold_boxes)
        tensors.append(extra.pop("tie_margin"))                         # per detection
    # Only float32 rows are moved (TFLite has no float64 gather): the kept boxes are
    # unmolded again after the move, with the same arithmetic.
    count, row_ok, tensors = _compact(keep, tensors)
    det = tensors[0]
    boxes = tf.cast(_unmold_boxes(det[..., :4], metas), tf.float32)
    boxes = tf.where(row_ok[..., None], boxes, tf.zeros_like(boxes))
    outputs = [count, boxes, tf.cast(det[..., 4], tf.int32), det[..., 5]] + tensors[1:]
    result = dict(zip(output_names(config), outputs))
    if ties:
        result.update(extra, tie_margin=tensors[-1])
    return result

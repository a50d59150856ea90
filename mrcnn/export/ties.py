"""Where TensorFlow's own detections hang on a tie, for the export self-checks.

A converted model computes every number to about 1e-6 of TensorFlow's. Where the
classifier gives an ROI two classes within that much of each other, the converted model
may pick another of the tied classes (another box, since deltas are class-specific, and maybe
another NMS outcome). ``tie_outputs`` computes, in TensorFlow and with the detection
layer's own arithmetic, what a checker needs to accept exactly those differences:

- ``tie_margin`` [B, D]: per detection, its ROI's top class probability minus the
  runner-up's;
- ``roi_probs`` [B, R, C] and ``roi_boxes`` [B, R, C, 4]: per ROI and class, the
  probability and the box (pixels of the original image, as ``detection_boxes``) of
  the detection the ROI would make with that class.

Only the reference function of a check computes these; exported graphs never do.
"""
import tensorflow as tf

from mrcnn.layers.detections import refine_detections
from mrcnn.meta import parse_image_meta_graph
from mrcnn.ops import boxes as box_ops


def tie_outputs(raw, metas, config, unmold_boxes):
    """raw: the inference model's named outputs for one image (rpn_rois, mrcnn_class,
    mrcnn_bbox); metas [B, META]; unmold_boxes(normalised [B, N, 4], metas) -> float64
    pixel boxes. Returns the dict described in the module docstring."""
    rois = tf.cast(raw["rpn_rois"], tf.float32)                         # [B, R, 4]
    probs = tf.cast(raw["mrcnn_class"], tf.float32)                     # [B, R, C]
    deltas = tf.cast(raw["mrcnn_bbox"], tf.float32)                     # [B, R, C, 4]
    meta = parse_image_meta_graph(metas)
    window = box_ops.norm_boxes(meta["window"], meta["image_shape"][:, :2])  # [B, 4]
    std = [float(v) for v in config.BBOX_STD_DEV]
    # The detection layer's computation again (deterministic): which ROI each row is.
    _, roi_index = refine_detections(
        rois, probs, deltas, window, std, float(config.DETECTION_MIN_CONFIDENCE),
        float(config.DETECTION_NMS_THRESHOLD), int(config.DETECTION_MAX_INSTANCES))
    top2 = tf.math.top_k(probs, k=2).values                              # [B, R, 2]
    det_probs = tf.gather(top2, tf.maximum(roi_index, 0), batch_dims=1)  # [B, D, 2]
    det_margin = tf.where(roi_index >= 0, det_probs[..., 0] - det_probs[..., 1], 1.0)
    # Every class's box, as refine_detections computes the top class's box.
    boxes = box_ops.apply_box_deltas(rois[:, :, tf.newaxis], deltas * tf.constant(std))
    boxes = box_ops.clip_boxes(boxes, window[:, tf.newaxis, tf.newaxis, :])  # [B, R, C, 4]
    shape = tf.shape(boxes)
    pixels = unmold_boxes(tf.reshape(boxes, [shape[0], -1, 4]), metas)
    return {"tie_margin": det_margin, "roi_probs": probs,
            "roi_boxes": tf.reshape(tf.cast(pixels, tf.float32), shape)}

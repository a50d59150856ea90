"""DetectionLayer: classifier outputs -> final detections (inference)."""

import keras
import tensorflow as tf

from mrcnn.layers.proposals import float32_kwargs, setting
from mrcnn.meta import parse_image_meta_graph
from mrcnn.ops import boxes as box_ops

# Boxes are clipped into a window inside [0, 1]; shifting each class by this much puts
# classes in disjoint regions, so one NMS pass acts as a per-class NMS.
_CLASS_OFFSET = 2.0


def refine_detections(rois, probs, deltas, window, bbox_std_dev, min_confidence,
                      nms_threshold, max_instances):
    """Batched matterport ``refine_detections_graph``.

    Args:
        rois: ``[B, N, 4]`` normalised proposals.
        probs: ``[B, N, C]`` class probabilities.
        deltas: ``[B, N, C, 4]`` class-specific deltas (divided by ``bbox_std_dev``).
        window: ``[B, 4]`` normalised image window (the part that is not padding).
        bbox_std_dev: 4 floats.
        min_confidence: detections scoring below it are dropped.
        nms_threshold: per-class NMS IoU threshold.
        max_instances: python int, output length ``D``.

    Returns:
        ``(detections [B, D, 6], roi_index [B, D] int32)``: rows ``(y1, x1, y2, x2,
        class_id, score)`` in decreasing score order, zero rows at the end; ``roi_index``
        is the source ROI of each row, -1 for padding.
    """
    class_ids = tf.argmax(probs, axis=2, output_type=tf.int32)  # [B, N]
    scores = tf.reduce_max(probs, axis=2)  # [B, N]
    class_deltas = tf.gather(deltas, class_ids, axis=2, batch_dims=2)  # [B, N, 4]
    boxes = box_ops.apply_box_deltas(rois, class_deltas * tf.constant(bbox_std_dev))
    boxes = box_ops.clip_boxes(boxes, window[:, tf.newaxis, :])  # [B, N, 4]

    keep = tf.logical_and(class_ids > 0, scores >= min_confidence)  # [B, N]
    # Scores are >= 0, so -1 marks dropped candidates below the NMS score threshold.
    nms_scores = tf.where(keep, scores, -1.0)  # [B, N]
    offset = tf.cast(class_ids, tf.float32)[..., tf.newaxis] * _CLASS_OFFSET
    indices, valid = box_ops.batched_nms_padded(
        boxes + offset, nms_scores, max_instances, nms_threshold,
        score_threshold=-0.5)  # [B, D], [B, D]

    det_boxes = tf.gather(boxes, indices, batch_dims=1)  # [B, D, 4]
    det_classes = tf.cast(tf.gather(class_ids, indices, batch_dims=1), tf.float32)
    det_scores = tf.gather(scores, indices, batch_dims=1)  # [B, D]
    detections = tf.concat(
        [det_boxes, det_classes[..., tf.newaxis], det_scores[..., tf.newaxis]], axis=2)
    detections = tf.where(valid[..., tf.newaxis], detections, 0.0)  # [B, D, 6]
    roi_index = tf.where(valid, indices, -1)  # [B, D]
    return detections, roi_index


@keras.saving.register_keras_serializable("mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Final detections from ROIs and the classifier head (matterport semantics).

    For every ROI: the most likely class, its class-specific deltas (times
    ``BBOX_STD_DEV``) applied and the box clipped to the image window; background and
    scores below ``DETECTION_MIN_CONFIDENCE`` are dropped; per-class NMS with
    ``DETECTION_NMS_THRESHOLD``; the best ``DETECTION_MAX_INSTANCES`` are kept.

    Args:
        config: supplies ``BBOX_STD_DEV``, ``DETECTION_MIN_CONFIDENCE``,
            ``DETECTION_NMS_THRESHOLD`` and ``DETECTION_MAX_INSTANCES`` unless given as
            the matching lower-case keywords.
        return_indices: also return ``roi_index [B, D]`` int32, the ROI each detection
            came from (-1 for padding), e.g. to pick attribute-head outputs.

    Inputs: ``[rois [B, N, 4], mrcnn_class [B, N, C], mrcnn_bbox [B, N, C, 4],
    image_meta [B, META]]``.
    Output: ``[B, DETECTION_MAX_INSTANCES, 6]`` ``(y1, x1, y2, x2, class_id, score)``
    normalised, sorted by score, zero padded (a list with ``roi_index`` too when
    ``return_indices``).

    Example:
        >>> detections = DetectionLayer(config, name="mrcnn_detection")(
        ...     [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
    """

    def __init__(self, config=None, bbox_std_dev=None, detection_min_confidence=None,
                 detection_nms_threshold=None, detection_max_instances=None,
                 return_indices=False, **kwargs):
        super().__init__(**float32_kwargs(kwargs))
        self.bbox_std_dev = [float(v) for v in setting(config, "BBOX_STD_DEV", bbox_std_dev)]
        self.detection_min_confidence = float(setting(
            config, "DETECTION_MIN_CONFIDENCE", detection_min_confidence))
        self.detection_nms_threshold = float(setting(
            config, "DETECTION_NMS_THRESHOLD", detection_nms_threshold))
        self.detection_max_instances = int(setting(
            config, "DETECTION_MAX_INSTANCES", detection_max_instances))
        self.return_indices = bool(return_indices)

    def call(self, inputs):
        rois = tf.cast(inputs[0], tf.float32)  # [B, N, 4]
        probs = tf.cast(inputs[1], tf.float32)  # [B, N, C]
        deltas = tf.cast(inputs[2], tf.float32)  # [B, N, C, 4]
        meta = parse_image_meta_graph(inputs[3])
        window = box_ops.norm_boxes(meta["window"], meta["image_shape"][:, :2])  # [B, 4]
        detections, roi_index = refine_detections(
            rois, probs, deltas, window, self.bbox_std_dev,
            self.detection_min_confidence, self.detection_nms_threshold,
            self.detection_max_instances)
        if self.return_indices:
            return [detections, roi_index]
        return detections

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0][0], self.detection_max_instances, 6)
        if self.return_indices:
            return [shape, shape[:2]]
        return shape

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([tuple(x.shape) for x in inputs])
        if not self.return_indices:
            return keras.KerasTensor(shapes, dtype="float32")
        return [keras.KerasTensor(shapes[0], dtype="float32"),
                keras.KerasTensor(shapes[1], dtype="int32")]

    def get_config(self):
        config = super().get_config()
        config.update({
            "bbox_std_dev": self.bbox_std_dev,
            "detection_min_confidence": self.detection_min_confidence,
            "detection_nms_threshold": self.detection_nms_threshold,
            "detection_max_instances": self.detection_max_instances,
            "return_indices": self.return_indices,
        })
        return config

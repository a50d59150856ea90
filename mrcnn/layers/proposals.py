"""ProposalLayer: RPN outputs -> region proposals (matterport semantics, batched)."""

import keras
import tensorflow as tf

from mrcnn.ops import boxes as box_ops


def setting(config, name, value):
    """Returns ``value`` if given, else ``config.<name>``; explains a missing setting.

    Graph layers take their settings either from a matterport-style ``config`` object or
    as explicit keyword arguments (which is what ``get_config`` stores), so a saved model
    can be rebuilt without the Config class.
    """
    if value is not None:
        return value
    if config is None or not hasattr(config, name):
        raise ValueError(
            f"Graph layer setting {name} is missing: pass a config with a {name} "
            f"attribute or the matching keyword argument ({name.lower()}=...).")
    return getattr(config, name)


def float32_kwargs(kwargs):
    """Graph layers compute in float32 even under a mixed-precision policy."""
    kwargs.setdefault("dtype", "float32")
    return kwargs


@keras.saving.register_keras_serializable("mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Turns RPN scores and deltas into ``proposal_count`` proposals per image.

    Keeps the ``PRE_NMS_LIMIT`` anchors with the highest foreground score, applies their
    deltas (times ``RPN_BBOX_STD_DEV``), clips to the image ``[0, 0, 1, 1]``, runs greedy
    NMS and zero-pads the survivors to ``proposal_count``.

    Args:
        proposal_count: number of proposals kept per image (output length).
        nms_threshold: IoU above which a lower-scoring proposal is suppressed.
        config: matterport-style config supplying ``RPN_BBOX_STD_DEV`` and
            ``PRE_NMS_LIMIT`` unless they are given as keyword arguments.
        rpn_bbox_std_dev: optional override of ``config.RPN_BBOX_STD_DEV``.
        pre_nms_limit: optional override of ``config.PRE_NMS_LIMIT``.

    Inputs: ``[rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4]]`` with anchors
    normalised. Output: ``[B, proposal_count, 4]`` normalised ``(y1, x1, y2, x2)``, sorted
    by score, zero rows at the end.

    Example:
        >>> rois = ProposalLayer(1000, 0.7, config, name="ROI")([probs, bbox, anchors])
    """

    def __init__(self, proposal_count, nms_threshold, config=None,
                 rpn_bbox_std_dev=None, pre_nms_limit=None, **kwargs):
        super().__init__(**float32_kwargs(kwargs))
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.rpn_bbox_std_dev = [float(v) for v in setting(
            config, "RPN_BBOX_STD_DEV", rpn_bbox_std_dev)]
        self.pre_nms_limit = int(setting(config, "PRE_NMS_LIMIT", pre_nms_limit))

    def call(self, inputs):
        probs, deltas, anchors = inputs
        scores = tf.cast(probs, tf.float32)[:, :, 1]  # [B, A] foreground score
        deltas = tf.cast(deltas, tf.float32) * tf.constant(
            self.rpn_bbox_std_dev, shape=[1, 1, 4])  # [B, A, 4]
        anchors = tf.cast(anchors, tf.float32)  # [B, A, 4]
        num_anchors = anchors.shape[1]
        if num_anchors is not None:
            limit = min(self.pre_nms_limit, num_anchors)
        else:
            limit = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        top = tf.math.top_k(scores, k=limit, sorted=True)
        scores = top.values  # [B, K]
        deltas = tf.gather(deltas, top.indices, batch_dims=1)  # [B, K, 4]
        anchors = tf.gather(anchors, top.indices, batch_dims=1)  # [B, K, 4]
        boxes = box_ops.apply_box_deltas(anchors, deltas)  # [B, K, 4]
        boxes = box_ops.clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))
        keep, valid = box_ops.batched_nms_padded(
            boxes, scores, self.proposal_count, self.nms_threshold)  # [B, P], [B, P]
        proposals = tf.gather(boxes, keep, batch_dims=1)  # [B, P, 4]
        return tf.where(valid[:, :, tf.newaxis], proposals, 0.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update({
            "proposal_count": self.proposal_count,
            "nms_threshold": self.nms_threshold,
            "rpn_bbox_std_dev": self.rpn_bbox_std_dev,
            "pre_nms_limit": self.pre_nms_limit,
        })
        return config

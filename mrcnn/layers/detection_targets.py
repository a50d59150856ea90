"""DetectionTargetLayer: samples training ROIs and builds their head targets."""

import keras
import tensorflow as tf

from mrcnn.layers.proposals import float32_kwargs, setting
from mrcnn.ops import boxes as box_ops


def _sample(candidates, keys, k):
    """Random subset of the True entries of ``candidates``, at most ``k`` per row.

    Args:
        candidates: ``[B, N]`` bool.
        keys: ``[B, N]`` uniform random numbers in [0, 1).
        k: python int.

    Returns:
        ``(indices [B, k] int32, count [B] int32)``: the first ``count`` indices of a row
        are distinct candidates in random order (a shuffle then a slice, as matterport).
    """
    k = min(k, candidates.shape[1]) if candidates.shape[1] is not None else k
    top = tf.math.top_k(tf.where(candidates, keys, -1.0), k=k, sorted=True)
    count = tf.reduce_sum(tf.cast(top.values >= 0.0, tf.int32), axis=1)  # [B]
    return top.indices, count


def _pad_columns(x, size):
    """Zero-pads axis 1 of ``x`` up to the python int ``size``."""
    pad = size - x.shape[1]
    if pad <= 0:
        return x
    paddings = [[0, 0], [0, pad]] + [[0, 0]] * (len(x.shape) - 2)
    return tf.pad(x, paddings)


@keras.saving.register_keras_serializable("mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Subsamples proposals and builds class, box and mask targets (training only).

    Matterport semantics per image: zero padding is ignored; GT with a negative class id
    are crowds, which are never targets, and proposals overlapping a crowd (IoU >= 0.001)
    are never negatives. Positives have IoU >= 0.5 with some GT, negatives < 0.5. At most
    ``TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO`` positives are drawn at random, then
    negatives to keep the ratio. Each positive takes the GT it overlaps most. An image
    without (non-crowd) GT gets ``TRAIN_ROIS_PER_IMAGE`` negatives (matterport gives it
    none).

    Args:
        config: supplies ``TRAIN_ROIS_PER_IMAGE``, ``ROI_POSITIVE_RATIO``,
            ``BBOX_STD_DEV``, ``MASK_SHAPE``, ``USE_MINI_MASK`` unless given as keywords.

    Inputs: ``[proposals [B, N, 4], gt_class_ids [B, G], gt_boxes [B, G, 4] normalised,
    gt_masks [B, mh, mw, G]]`` (mini masks when ``USE_MINI_MASK``), optionally a fifth
    ``gt_attributes [B, G, NUM_ATTRIBUTES]``.

    Outputs (T = TRAIN_ROIS_PER_IMAGE, positives first, then negatives, then zeros):
    ``rois [B, T, 4]``, ``target_class_ids [B, T] int32``, ``target_deltas [B, T, 4]``
    (divided by ``BBOX_STD_DEV``), ``target_mask [B, T, MASK_H, MASK_W]`` (0/1), and
    ``target_attributes [B, T, NUM_ATTRIBUTES]`` when the fifth input is given.

    Example:
        >>> rois, cls, deltas, masks = DetectionTargetLayer(config, name="proposal_targets")(
        ...     [proposals, gt_class_ids, gt_boxes, gt_masks])
    """

    def __init__(self, config=None, train_rois_per_image=None, roi_positive_ratio=None,
                 bbox_std_dev=None, mask_shape=None, use_mini_mask=None, **kwargs):
        super().__init__(**float32_kwargs(kwargs))
        self.train_rois_per_image = int(setting(
            config, "TRAIN_ROIS_PER_IMAGE", train_rois_per_image))
        self.roi_positive_ratio = float(setting(
            config, "ROI_POSITIVE_RATIO", roi_positive_ratio))
        self.bbox_std_dev = [float(v) for v in setting(config, "BBOX_STD_DEV", bbox_std_dev)]
        self.mask_shape = tuple(int(v) for v in setting(config, "MASK_SHAPE", mask_shape))
        self.use_mini_mask = bool(setting(config, "USE_MINI_MASK", use_mini_mask))

    def call(self, inputs):
        proposals = tf.cast(inputs[0], tf.float32)  # [B, N, 4]
        if proposals.shape[1] is None:
            raise ValueError(
                "DetectionTargetLayer needs a static number of proposals (got shape "
                f"{proposals.shape}); feed it the fixed-size output of ProposalLayer.")
        gt_class_ids = tf.cast(inputs[1], tf.int32)  # [B, G]
        gt_boxes = tf.cast(inputs[2], tf.float32)  # [B, G, 4]
        gt_masks = tf.cast(inputs[3], tf.float32)  # [B, mh, mw, G]
        attributes = tf.cast(inputs[4], tf.float32) if len(inputs) > 4 else None

        positives, pos_count, negatives, neg_count, gt_index = self._sample_rois(
            proposals, gt_class_ids, gt_boxes)
        rois = self._assemble_rois(proposals, positives, pos_count, negatives, neg_count)

        # Targets for the first P slots (positives are always among them).
        p = positives.shape[1]
        is_pos = tf.range(p)[tf.newaxis, :] < pos_count[:, tf.newaxis]  # [B, P]
        pos_rois = tf.gather(proposals, positives, batch_dims=1)  # [B, P, 4]
        assigned = tf.gather(gt_index, positives, batch_dims=1)  # [B, P] gt index
        roi_gt_boxes = tf.gather(gt_boxes, assigned, batch_dims=1)  # [B, P, 4]
        # Non-positive slots get a unit box so no log(0) or 0/0 appears (masked below).
        unit = tf.constant([0.0, 0.0, 1.0, 1.0])
        roi_gt_boxes = tf.where(is_pos[..., tf.newaxis], roi_gt_boxes, unit)
        safe_rois = tf.where(is_pos[..., tf.newaxis], pos_rois, unit)
        class_ids = tf.where(is_pos, tf.gather(gt_class_ids, assigned, batch_dims=1), 0)
        deltas = box_ops.box_refinement(safe_rois, roi_gt_boxes) / tf.constant(
            self.bbox_std_dev)  # [B, P, 4]
        deltas = tf.where(is_pos[..., tf.newaxis], deltas, 0.0)
        masks = self._mask_targets(gt_masks, safe_rois, roi_gt_boxes, assigned)
        masks = tf.where(is_pos[..., tf.newaxis, tf.newaxis], masks, 0.0)  # [B, P, mh, mw]

        t = self.train_rois_per_image
        outputs = [rois, _pad_columns(class_ids, t), _pad_columns(deltas, t),
                   _pad_columns(masks, t)]
        if attributes is not None:
            roi_attributes = tf.gather(attributes, assigned, batch_dims=1)  # [B, P, A]
            roi_attributes = tf.where(is_pos[..., tf.newaxis], roi_attributes, 0.0)
            outputs.append(_pad_columns(roi_attributes, t))
        return outputs

    def _sample_rois(self, proposals, gt_class_ids, gt_boxes):
        """Chooses positive and negative proposals; see the class docstring."""
        valid_proposals = box_ops.non_zero_rows(proposals)  # [B, N]
        valid_gt = box_ops.non_zero_rows(gt_boxes)  # [B, G]
        crowd = tf.logical_and(valid_gt, gt_class_ids < 0)  # [B, G]
        objects = tf.logical_and(valid_gt, gt_class_ids > 0)  # [B, G]
        iou = box_ops.overlaps(proposals, gt_boxes)  # [B, N, G]
        object_iou = tf.where(objects[:, tf.newaxis, :], iou, -1.0)  # [B, N, G]
        crowd_iou = tf.where(crowd[:, tf.newaxis, :], iou, 0.0)  # [B, N, G]
        roi_iou_max = tf.reduce_max(object_iou, axis=2)  # [B, N]; -1 without GT
        no_crowd = tf.reduce_max(crowd_iou, axis=2) < 0.001  # [B, N]
        gt_index = tf.argmax(object_iou, axis=2, output_type=tf.int32)  # [B, N]
        is_positive = tf.logical_and(valid_proposals, roi_iou_max >= 0.5)
        is_negative = tf.logical_and(valid_proposals, roi_iou_max < 0.5)
        is_negative = tf.logical_and(is_negative, no_crowd)

        t = self.train_rois_per_image
        keys = tf.random.uniform(tf.shape(roi_iou_max))  # [B, N]
        positives, pos_count = _sample(
            is_positive, keys, int(t * self.roi_positive_ratio))  # [B, P], [B]
        ratio = tf.constant(1.0 / self.roi_positive_ratio, tf.float32)
        wanted = tf.cast(ratio * tf.cast(pos_count, tf.float32), tf.int32) - pos_count
        has_objects = tf.reduce_any(objects, axis=1)  # [B]
        wanted = tf.where(has_objects, wanted, t)  # all negatives when there is no GT
        wanted = tf.minimum(wanted, t - pos_count)
        negatives, neg_available = _sample(is_negative, keys, t)  # [B, T'], [B]
        neg_count = tf.minimum(wanted, neg_available)  # [B]
        return positives, pos_count, negatives, neg_count, gt_index

    def _assemble_rois(self, proposals, positives, pos_count, negatives, neg_count):
        """``[B, T, 4]``: positives, then negatives, then zero rows."""
        t = self.train_rois_per_image
        p = positives.shape[1]
        chosen = tf.concat([positives, negatives], axis=1)  # [B, P + T']
        slot = tf.range(t)[tf.newaxis, :]  # [1, T]
        pc = pos_count[:, tf.newaxis]  # [B, 1]
        source = tf.where(slot < pc, slot, p + slot - pc)  # [B, T] column of `chosen`
        source = tf.minimum(source, tf.shape(chosen)[1] - 1)
        indices = tf.gather(chosen, source, batch_dims=1)  # [B, T] proposal index
        rois = tf.gather(proposals, indices, batch_dims=1)  # [B, T, 4]
        filled = slot < pc + neg_count[:, tf.newaxis]  # [B, T]
        return tf.where(filled[..., tf.newaxis], rois, 0.0)

    def _mask_targets(self, gt_masks, rois, roi_gt_boxes, assigned):
        """Crops each ROI's GT mask to ``MASK_SHAPE``; ``[B, P, mh, mw]`` of 0/1."""
        batch = tf.shape(gt_masks)[0]
        num_gt = tf.shape(gt_masks)[3]
        p = tf.shape(rois)[1]
        boxes = rois  # [B, P, 4]
        if self.use_mini_mask:
            # Mini masks span the GT box: express the ROI in the GT box's frame.
            gt_y1, gt_x1 = roi_gt_boxes[..., 0], roi_gt_boxes[..., 1]
            gt_h = roi_gt_boxes[..., 2] - gt_y1  # [B, P]
            gt_w = roi_gt_boxes[..., 3] - gt_x1
            boxes = tf.stack([(rois[..., 0] - gt_y1) / gt_h, (rois[..., 1] - gt_x1) / gt_w,
                              (rois[..., 2] - gt_y1) / gt_h, (rois[..., 3] - gt_x1) / gt_w],
                             axis=-1)  # [B, P, 4]
        images = tf.transpose(gt_masks, [0, 3, 1, 2])  # [B, G, mh, mw]
        images = tf.reshape(images, tf.concat([[batch * num_gt], tf.shape(images)[2:]], 0))
        images = images[..., tf.newaxis]  # [B*G, mh, mw, 1]
        mask_index = assigned + tf.range(batch)[:, tf.newaxis] * num_gt  # [B, P]
        # Same values as tf.image.crop_and_resize, but XLA-compilable.
        crops = box_ops.crop_and_resize_gather(
            images, tf.reshape(boxes, [-1, 4]), tf.reshape(mask_index, [-1]),
            self.mask_shape)  # [B*P, mh', mw', 1]
        crops = tf.round(crops[..., 0])
        return tf.reshape(crops, [batch, p, self.mask_shape[0], self.mask_shape[1]])

    def compute_output_shape(self, input_shape):
        batch, t = input_shape[0][0], self.train_rois_per_image
        shapes = [(batch, t, 4), (batch, t), (batch, t, 4), (batch, t) + self.mask_shape]
        if len(input_shape) > 4:
            shapes.append((batch, t, input_shape[4][-1]))
        return shapes

    def compute_output_spec(self, inputs):
        shapes = self.compute_output_shape([tuple(x.shape) for x in inputs])
        dtypes = ["float32", "int32", "float32", "float32", "float32"]
        return [keras.KerasTensor(s, dtype=d) for s, d in zip(shapes, dtypes)]

    def get_config(self):
        config = super().get_config()
        config.update({
            "train_rois_per_image": self.train_rois_per_image,
            "roi_positive_ratio": self.roi_positive_ratio,
            "bbox_std_dev": self.bbox_std_dev,
            "mask_shape": list(self.mask_shape),
            "use_mini_mask": self.use_mini_mask,
        })
        return config

"""PyramidROIAlign: crops each ROI from the FPN level that suits its size."""

import math

import keras
import tensorflow as tf

from mrcnn.layers.proposals import float32_kwargs
from mrcnn.meta import parse_image_meta_graph
from mrcnn.ops import boxes as box_ops
from mrcnn.ops.portable import is_portable


def roi_pyramid_levels(boxes, image_shape):
    """FPN level (2..5) of each normalised box, as in the FPN paper and matterport.

    ``level = clip(4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area)))), 2, 5)``.

    Args:
        boxes: ``[B, N, 4]`` normalised boxes.
        image_shape: ``[B, 2+]`` float ``(h, w, ...)`` of the (resized) input images.

    Returns:
        ``[B, N]`` int32 levels. Zero-area (padding) boxes get level 2.
    """
    height = boxes[..., 2] - boxes[..., 0]  # [B, N]
    width = boxes[..., 3] - boxes[..., 1]  # [B, N]
    image_area = image_shape[:, 0] * image_shape[:, 1]  # [B]
    scale = 224.0 / tf.sqrt(image_area)[:, tf.newaxis]  # [B, 1]
    # Clamp the area so padding does not turn into log2(0) = -inf (cast is undefined).
    size = tf.sqrt(tf.maximum(height * width, 1e-12))  # [B, N]
    level = tf.math.log(size / scale) / math.log(2.0)
    level = 4 + tf.cast(tf.round(level), tf.int32)
    return tf.clip_by_value(level, 2, 5)  # [B, N]


@keras.saving.register_keras_serializable("mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """ROI Align over a feature pyramid (matterport's ``PyramidROIAlign``).

    Each box is assigned a level P2..P5 by its size (``roi_pyramid_levels``) and cropped
    with bilinear ``tf.image.crop_and_resize``; the pooled crops come back in the input
    box order. Gradients do not flow into the boxes.

    Args:
        pool_shape: ``(pool_height, pool_width)``, e.g. ``(7, 7)`` or ``(14, 14)``.
        static_shapes: if True, sample every box with gathers from the flattened pyramid
            (``ops.boxes.bilinear_crops``): static shapes and no CropAndResize op, so
            XLA/TPU can compile it. Default False: one ``tf.image.crop_and_resize`` per
            level on that level's boxes (the fast path on CPU/GPU). Same values.

    Inputs: ``[boxes [B, N, 4] normalised, image_meta [B, META], P2, P3, P4, P5]``.
    Output: ``[B, N, pool_height, pool_width, C]``.

    Example:
        >>> x = PyramidROIAlign((7, 7), name="roi_align_classifier")(
        ...     [rois, image_meta, p2, p3, p4, p5])
    """

    def __init__(self, pool_shape, static_shapes=False, **kwargs):
        super().__init__(**float32_kwargs(kwargs))
        self.pool_shape = tuple(int(v) for v in pool_shape)
        self.static_shapes = bool(static_shapes)

    def call(self, inputs):
        boxes = tf.stop_gradient(tf.cast(inputs[0], tf.float32))  # [B, N, 4]
        image_shape = parse_image_meta_graph(inputs[1])["image_shape"]  # [B, 3]
        feature_maps = [tf.cast(f, tf.float32) for f in inputs[2:6]]  # [B, h_l, w_l, C]
        levels = roi_pyramid_levels(boxes, image_shape)  # [B, N]
        batch = tf.shape(boxes)[0]
        num_boxes = tf.shape(boxes)[1]
        flat_boxes = tf.reshape(boxes, [-1, 4])  # [B*N, 4]
        flat_levels = tf.reshape(levels, [-1]) - 2  # [B*N] in 0..3
        box_indices = tf.repeat(tf.range(batch), num_boxes)  # [B*N] image of each box
        if self.static_shapes or is_portable():     # the same values, bit for bit
            pooled = self._crop_dense(feature_maps, flat_boxes, box_indices, flat_levels)
        else:
            pooled = self._crop_partitioned(
                feature_maps, flat_boxes, box_indices, flat_levels)
        channels = feature_maps[0].shape[-1] or tf.shape(feature_maps[0])[-1]
        out_shape = [batch, num_boxes, self.pool_shape[0], self.pool_shape[1], channels]
        return tf.reshape(pooled, out_shape)  # [B, N, ph, pw, C]

    def _crop_partitioned(self, feature_maps, boxes, box_indices, levels):
        """One crop per level on that level's boxes; dynamic_stitch restores the order."""
        order = tf.range(tf.shape(boxes)[0])  # [B*N]
        level_order = tf.dynamic_partition(order, levels, 4)  # 4 x [n_l]
        level_boxes = tf.dynamic_partition(boxes, levels, 4)  # 4 x [n_l, 4]
        level_images = tf.dynamic_partition(box_indices, levels, 4)  # 4 x [n_l]
        pooled = []
        for i, feature_map in enumerate(feature_maps):
            pooled.append(tf.image.crop_and_resize(
                feature_map, level_boxes[i], level_images[i], self.pool_shape,
                method="bilinear"))  # [n_l, ph, pw, C]
        return tf.dynamic_stitch(level_order, pooled)  # [B*N, ph, pw, C]

    def _crop_dense(self, feature_maps, boxes, box_indices, levels):
        """All levels flattened into one tensor; each box gathers from its own level.

        Static shapes and no CropAndResize op, so XLA (TPU) can compile it.
        """
        flat_maps, bases, heights, widths = [], [], [], []
        offset = 0
        for feature_map in feature_maps:
            shape = tf.shape(feature_map)  # [B, h_l, w_l, C]
            flat_maps.append(tf.reshape(feature_map, [-1, shape[3]]))  # [B*h_l*w_l, C]
            bases.append(offset + box_indices * shape[1] * shape[2])  # [B*N]
            heights.append(shape[1])
            widths.append(shape[2])
            offset += shape[0] * shape[1] * shape[2]
        flat = tf.concat(flat_maps, axis=0)  # [sum_l B*h_l*w_l, C]
        one_hot = tf.one_hot(levels, 4, dtype=tf.int32)  # [B*N, 4]
        base = tf.reduce_sum(tf.stack(bases, axis=1) * one_hot, axis=1)  # [B*N]
        height = tf.gather(tf.stack(heights), levels)  # [B*N]
        width = tf.gather(tf.stack(widths), levels)  # [B*N]
        return box_ops.bilinear_crops(flat, base, height, width, boxes, self.pool_shape)

    def compute_output_shape(self, input_shape):
        boxes_shape, feature_shape = input_shape[0], input_shape[2]
        return (boxes_shape[0], boxes_shape[1]) + self.pool_shape + (feature_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_shape": list(self.pool_shape),
                       "static_shapes": self.static_shapes})
        return config

"""Small graph layers that glue the Mask R-CNN graph together: constant anchors, box
normalisation, image-meta fields, and row selection / padding of per-ROI tensors.

Registered for Keras serialization under the package "mrcnn" (names unchanged since
they lived in mrcnn/graph.py, so saved models keep loading).
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mrcnn import meta as image_meta
from mrcnn.ops import boxes as box_ops


@keras.saving.register_keras_serializable("mrcnn")
class ConstantAnchors(layers.Layer):
    """Normalised anchors for a fixed image shape, tiled over the batch: [B, A, 4]."""

    def __init__(self, anchors, **kwargs):
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)

    def call(self, image):
        a = tf.constant(self.anchors)[None]                              # [1, A, 4]
        return tf.tile(a, [tf.shape(image)[0], 1, 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.anchors.shape

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors.tolist()}


@keras.saving.register_keras_serializable("mrcnn")
class NormBoxes(layers.Layer):
    """Pixel boxes [B, N, 4] -> normalised, using the image tensor's spatial size."""

    def call(self, boxes, image):
        return box_ops.norm_boxes(boxes, tf.shape(image)[1:3])


@keras.saving.register_keras_serializable("mrcnn")
class ActiveClassIds(layers.Layer):
    """image_meta [B, META] -> active_class_ids [B, NUM_CLASSES]."""

    def call(self, meta):
        return image_meta.parse_image_meta_graph(meta)["active_class_ids"]


@keras.saving.register_keras_serializable("mrcnn")
class ValidDetectionBoxes(layers.Layer):
    """detections [B, D, 6] -> boxes [B, n, 4], n = most valid detections in the batch
    (at least 1); rows are sorted by score with padding last, so nothing is lost."""

    def call(self, detections):
        valid = tf.reduce_sum(tf.cast(detections[..., 4] > 0, tf.int32), axis=1)
        n = tf.maximum(tf.reduce_max(valid), 1)
        return detections[:, :n, :4]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)


@keras.saving.register_keras_serializable("mrcnn")
class PadRows(layers.Layer):
    """[B, n, ...] -> [B, rows, ...] zero padded (n <= rows)."""

    def __init__(self, rows, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows

    def call(self, x):
        pad = [[0, 0], [0, self.rows - tf.shape(x)[1]]] + [[0, 0]] * (len(x.shape) - 2)
        return tf.pad(x, pad)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.rows) + tuple(input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "rows": self.rows}


@keras.saving.register_keras_serializable("mrcnn")
class PositiveRows(layers.Layer):
    """[B, R, ...] -> its first rows that can hold a positive ROI, along axis 1.

    Targets list positive ROIs first (at most `rows` of them). With static=False the
    cut is the batch's largest positive count (at least 1), so the mask head does no
    work for negatives; static=True keeps `rows` for XLA / TPU.
    """

    def __init__(self, rows, static=False, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows
        self.static = static

    def call(self, x, class_ids):
        if self.static:
            return x[:, :self.rows]
        count = tf.reduce_sum(tf.cast(class_ids[:, :self.rows] > 0, tf.int32), axis=1)
        return x[:, :tf.maximum(tf.reduce_max(count), 1)]

    def compute_output_shape(self, x_shape, class_ids_shape):
        return (x_shape[0], self.rows if self.static else None) + tuple(x_shape[2:])

    def compute_output_spec(self, x, class_ids):
        return keras.KerasTensor(self.compute_output_shape(x.shape, class_ids.shape), x.dtype)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "static": self.static}


@keras.saving.register_keras_serializable("mrcnn")
class GatherRois(layers.Layer):
    """Picks per-detection rows of a per-ROI tensor: [B, N, F], [B, D] -> [B, D, F]."""

    def call(self, values, index):
        idx = tf.maximum(index, 0)
        out = tf.gather(values, idx, batch_dims=1)
        return out * tf.cast(index >= 0, out.dtype)[..., None]

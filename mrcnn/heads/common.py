"""Small reshaping layers shared by the ROI heads."""
import keras
from keras import layers, ops


@keras.saving.register_keras_serializable("mrcnn")
class FlattenRois(layers.Layer):
    """[B, R, ...] -> [B*R, ...], so per-ROI layers run as one batch."""

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)  # keep the input's dtype

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])

    def compute_output_spec(self, x):
        return keras.KerasTensor(self.compute_output_shape(x.shape), x.dtype)


@keras.saving.register_keras_serializable("mrcnn")
class UnflattenRois(layers.Layer):
    """[B*R, ...] -> [B, R, ...], with B and R taken from a [B, R, ...] reference tensor.

    R may be dynamic (the inference mask head runs on the valid detections only).
    """

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)  # float32 outputs stay float32

    def call(self, x, like):
        shape = ops.shape(like)
        return ops.reshape(x, (shape[0], shape[1]) + tuple(x.shape[1:]))

    def compute_output_shape(self, x_shape, like_shape):
        return (like_shape[0], like_shape[1]) + tuple(x_shape[1:])

    def compute_output_spec(self, x, like):
        return keras.KerasTensor(self.compute_output_shape(x.shape, like.shape), x.dtype)

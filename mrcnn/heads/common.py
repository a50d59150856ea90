"""Small reshaping layers shared by the ROI heads."""
import keras
from keras import layers, ops


class FlattenRois(layers.Layer):
    """[B, R, ...] -> [B*R, ...], so per-ROI layers run as one batch."""

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])


class _Unflatten(layers.Layer):
    def __init__(self, num_rois, **kwargs):
        super().__init__(**kwargs)
        self.num_rois = num_rois

    def call(self, x):
        return ops.reshape(x, (-1, self.num_rois) + tuple(x.shape[1:]))

    def compute_output_shape(self, input_shape):
        return (None, self.num_rois) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "num_rois": self.num_rois}


class UnflattenRois:
    """Factory of [B*R, ...] -> [B, R, ...] layers with given names."""

    def __init__(self, num_rois):
        self.num_rois = num_rois

    def __call__(self, x, name=None):
        return _Unflatten(self.num_rois, name=name)(x)


keras.saving.register_keras_serializable("mrcnn")(FlattenRois)
keras.saving.register_keras_serializable("mrcnn")(_Unflatten)

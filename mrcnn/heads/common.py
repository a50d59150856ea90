"""Small layers shared by the ROI heads: ROI reshaping and matterport's "fc" convolutions."""
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


@keras.saving.register_keras_serializable("mrcnn")
class WholeInputConv2D(layers.Conv2D):
    """A "valid" Conv2D whose kernel covers its whole input, run as one matrix product.

    matterport's box head has two such "fc" layers (a 7x7 kernel on 7x7 ROI features,
    then a 1x1 kernel on 1x1): each output is a dot product over the whole input, so
    the flattened input times the flattened kernel gives the same numbers as the
    convolution, up to float rounding. The kernel, bias, names and shapes are Conv2D's,
    so weights in matterport's layout load unchanged. On oneDNN (TensorFlow on x86
    CPUs) the product runs 1.2x (7x7) to 2.5x (1x1) faster than the convolution in
    bfloat16 and float32 alike (1000 ROIs, 256 -> 1024 channels). Any other input size
    runs as an ordinary convolution.

    Example:
        x = WholeInputConv2D(1024, 7, name="mrcnn_class_conv1")(rois)  # [N, 7, 7, C]
        # -> [N, 1, 1, 1024]
    """

    def call(self, inputs):
        kh, kw, cin, cout = self.kernel.shape
        whole = (tuple(inputs.shape[1:3]) == (kh, kw) and self.padding == "valid"
                 and self.data_format == "channels_last" and self.groups == 1
                 and tuple(self.dilation_rate) == (1, 1))
        if not whole:
            return super().call(inputs)
        flat = ops.reshape(inputs, (-1, kh * kw * cin))
        out = ops.matmul(flat, ops.reshape(self.kernel, (kh * kw * cin, cout)))
        if self.use_bias:
            out = ops.add(out, self.bias)
        out = ops.reshape(out, (-1, 1, 1, cout))
        return self.activation(out) if self.activation is not None else out

"""Small layers shared by the ROI heads: ROI reshaping and matterport's "fc" convolutions."""
import keras
from keras import layers, ops

from mrcnn.ops.portable import is_portable


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


@keras.saving.register_keras_serializable("mrcnn")
class BlockConv2DTranspose(layers.Conv2DTranspose):
    """Conv2DTranspose (the mask head's 2x up-convolution) that, in graphs traced under
    ``mrcnn.ops.portable`` for ONNX / OpenVINO, runs as one matrix product.

    With kernel size equal to the strides and "valid" padding the output blocks do not
    overlap: each input pixel times the kernel gives its own kh x kw block of outputs,
    which is a [pixels, C] x [C, kh*kw*filters] product rearranged into blocks.
    TensorFlow computes the same numbers either way (it runs this case as a product);
    onnxruntime's ConvTranspose kernel is several times slower than its MatMul.
    Everywhere else (training, detect()) it is Conv2DTranspose itself; weights, names
    and shapes are Conv2DTranspose's.
    """

    def call(self, inputs):
        kh, kw, cout, cin = self.kernel.shape
        blocks = (is_portable() and tuple(self.kernel_size) == tuple(self.strides)
                  and self.padding == "valid" and self.data_format == "channels_last"
                  and tuple(self.dilation_rate) == (1, 1) and self.output_padding is None)
        if not blocks:
            return super().call(inputs)
        shape = ops.shape(inputs)                                 # [N, H, W, cin]
        kernel = ops.reshape(ops.transpose(self.kernel, (3, 0, 1, 2)), (cin, kh * kw * cout))
        out = ops.matmul(ops.reshape(inputs, (-1, cin)), kernel)  # [N*H*W, kh*kw*cout]
        out = ops.reshape(out, (shape[0], shape[1], shape[2], kh, kw, cout))
        out = ops.transpose(out, (0, 1, 3, 2, 4, 5))              # [N, H, kh, W, kw, cout]
        out = ops.reshape(out, (shape[0], shape[1] * kh, shape[2] * kw, cout))
        if self.use_bias:
            out = ops.add(out, self.bias)
        return self.activation(out) if self.activation is not None else out

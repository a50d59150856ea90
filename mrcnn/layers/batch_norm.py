"""Batch normalisation whose training mode is fixed by the config when built.

Keras 3 passes the model's ``training`` flag to every layer during ``fit()``, overriding a
``training=False`` given while the graph was built; this layer keeps matterport's
TRAIN_BN semantics (False: frozen statistics, None: follow training, True: batch stats).

With frozen statistics (inference, TRAIN_BN=False, or a layer frozen by the training
preset) the layer runs TensorFlow's fused batch-norm op, as Keras 2 (and so matterport)
did: one pass over the tensor, which oneDNN folds into the preceding convolution. Keras
3's own path upcasts to float32 and takes four passes; in bfloat16 that doubled the time
of a ResNet block (benchmarks/bench_batchnorm.py).
"""
import keras
import tensorflow as tf
from keras import layers

# TensorFlow's fused kernel clamps a smaller epsilon up to this (cuDNN's minimum).
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(layers.BatchNormalization):
    """BatchNormalization whose training mode is fixed when it is built.

    Args:
        train_bn: `None` follows the `training` flag of the call (normal behaviour),
            `False` always normalises with the moving statistics and never updates
            them (frozen, inference mode), `True` always uses batch statistics.
        **kwargs: passed to `keras.layers.BatchNormalization`.

    Example:
        >>> y = BatchNorm(train_bn=False, name="stem_bn")(x)
    """

    def __init__(self, train_bn=None, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = train_bn

    def call(self, inputs, training=None, mask=None):
        if self.train_bn is not None:
            training = self.train_bn
        if not (training and self.trainable) and self._fusable(inputs, mask):
            return self._frozen(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fusable(self, inputs, mask):
        """NHWC input, both scale and offset, an epsilon the fused kernel keeps."""
        return (mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.scale and self.center and not self.renorm
                and self.epsilon >= _FUSED_MIN_EPSILON
                and inputs.dtype in ("float32", "bfloat16", "float16"))

    def _frozen(self, inputs):
        """Normalises with the moving statistics in one fused op (float32 statistics,
        the input's own dtype), then casts to the layer's compute dtype like Keras."""
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config

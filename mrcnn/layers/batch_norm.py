"""Batch normalisation whose training mode is fixed by the config when built.

Keras 3 passes the model's ``training`` flag to every layer during ``fit()``, overriding a
``training=False`` given while the graph was built; this layer keeps matterport's
TRAIN_BN semantics (False: frozen statistics, None: follow training, True: batch stats).
"""
import keras
from keras import layers


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
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config

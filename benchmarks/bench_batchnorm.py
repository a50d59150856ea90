"""Frozen batch norm, fused op vs Keras 3's own layer: six 1x1 conv + BN + ReLU layers on
a 128x128x64 tensor (the shape of a ResNet stage-2 block at 512 px), median of 20 calls.

    python benchmarks/bench_batchnorm.py            # float32 and mixed_bfloat16

Keras 3's BatchNormalization upcasts a bfloat16 input to float32 and normalises in four
passes; mrcnn's BatchNorm runs TensorFlow's fused op when its statistics are frozen.
"""
import os

from common import timed  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn.layers.batch_norm import BatchNorm  # noqa: E402


class KerasBatchNorm(BatchNorm):
    """Keras 3's own computation with the same frozen statistics."""

    def call(self, inputs, training=None, mask=None):
        return keras.layers.BatchNormalization.call(self, inputs, training=False)


def block(norm):
    x = keras.Input((128, 128, 64))
    y = x
    for i in range(6):
        y = keras.layers.Conv2D(256 if i % 2 == 0 else 64, 1)(y)
        if norm is not None:
            y = norm(train_bn=False)(y)
        y = keras.layers.Activation("relu")(y)
    return keras.Model(x, y)


def median_ms(model, x, reps=20):
    fn = tf.function(lambda t: model(t, training=False))
    return 1000 * timed(lambda: fn(x).numpy(), reps).median


def main():
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    x = tf.constant(np.random.RandomState(0).rand(1, 128, 128, 64).astype("float32"))
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        row = {name: median_ms(block(norm), x) for name, norm in
               (("conv+relu", None), ("keras BN", KerasBatchNorm), ("fused BN", BatchNorm))}
        print(f"{policy:15} " + "  ".join(f"{k} {v:.1f} ms" for k, v in row.items()))


if __name__ == "__main__":
    main()

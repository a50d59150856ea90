"""FusedAdamW takes Keras AdamW's steps (mrcnn/training/optimizers.py)."""
import keras
import numpy as np
import tensorflow as tf

from mrcnn.training.optimizers import FusedAdamW


def _run(optimizer, steps=6, in_graph=False):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype(np.float32), name=f"w{i}")
                 for i, s in enumerate([(3, 3, 4, 5), (5,), (7, 2)])]
    grads = [[tf.constant(rng.normal(size=v.shape).astype(np.float32) * 10 ** (k % 3))
              for v in variables] for k in range(steps)]
    optimizer.build(variables)

    def step(g):
        optimizer.apply_gradients(zip(g, variables))
    if in_graph:
        step = tf.function(step)
    for g in grads:
        step(g)
    return [v.numpy() for v in variables]


def test_fused_adamw_equals_keras_adamw():
    """Same steps with weight decay and per-variable clipping, eagerly and traced. The
    fused kernel rounds in another order (Eigen's vectorised arithmetic, FMA): seen up
    to 3.3e-7 apart after 6 steps of about lr = 0.01 each; 2e-6 is 0.02% of one step."""
    kwargs = dict(learning_rate=0.01, weight_decay=0.05, clipnorm=5.0)
    reference = _run(keras.optimizers.AdamW(**kwargs))
    for in_graph in (False, True):
        fused = _run(FusedAdamW(**kwargs), in_graph=in_graph)
        for a, b in zip(reference, fused):
            np.testing.assert_allclose(b, a, rtol=0, atol=2e-6)

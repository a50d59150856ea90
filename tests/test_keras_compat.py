"""The private Keras / tf.distribute hooks in mrcnn/keras_compat.py still exist.

If one of these fails after upgrading Keras or TensorFlow, the hook was renamed or
removed: update mrcnn/keras_compat.py (and the versions named in its docstring).
"""
import keras
import tensorflow as tf

from mrcnn import keras_compat


def test_model_hooks_exist():
    for name in keras_compat.MODEL_HOOKS:
        assert callable(getattr(keras.Model, name, None)), (
            f"keras {keras.__version__}: keras.Model.{name} is gone; mrcnn/keras_compat.py "
            "overrides or calls it (checked on Keras 3.15.1) - update it.")


def test_model_attributes_exist():
    model = keras.Sequential([keras.layers.Dense(1)])
    for name in keras_compat.MODEL_ATTRIBUTES:
        assert hasattr(model, name), (
            f"keras {keras.__version__}: keras.Model instances no longer have {name}; "
            "mrcnn/keras_compat.model_strategy reads it - update it.")


def test_strategy_hooks_exist():
    from tensorflow.python.distribute import collective_all_reduce_strategy as collective
    for name in keras_compat.STRATEGY_EXTENDED_HOOKS:
        assert callable(getattr(collective.CollectiveAllReduceExtended, name, None)), (
            f"tensorflow {tf.__version__}: MultiWorkerMirroredStrategy.extended.{name} is "
            "gone; mrcnn/keras_compat.in_multi_worker_mode calls it - update it.")
    assert not keras_compat.in_multi_worker_mode(tf.distribute.get_strategy())


def test_override_matches_keras_signature():
    import inspect
    ours = inspect.signature(keras_compat.ReplicaSafeBuild._maybe_symbolic_build)
    theirs = inspect.signature(keras.Model._maybe_symbolic_build)
    assert list(ours.parameters) == list(theirs.parameters), (
        f"keras {keras.__version__}: _maybe_symbolic_build{theirs} changed; "
        f"mrcnn/keras_compat.ReplicaSafeBuild overrides it as {ours} - update it.")

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


def test_validation_iterator_lives_across_epochs():
    """fit's validation data is iterated once over three epochs (plain Keras starts a
    new iterator per epoch); each evaluation reads the next validation batches."""
    import numpy as np
    starts = []

    def batches():  # a new Python generator = a new tf.data iterator
        starts.append(1)
        i = 0
        while True:
            yield np.full((2, 1), i, np.float32), np.zeros((2, 1), np.float32)
            i += 1

    def val_data():
        return tf.data.Dataset.from_generator(batches, output_signature=(
            tf.TensorSpec((2, 1), tf.float32), tf.TensorSpec((2, 1), tf.float32)))

    class Model(keras_compat.KeepValidationIterator, keras.Model):
        pass

    def val_losses(model_class):
        starts.clear()
        keras.utils.set_random_seed(0)
        inputs = keras.Input((1,))
        model = model_class(inputs, keras.layers.Dense(1, kernel_initializer="ones",
                                                       bias_initializer="zeros")(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        x = tf.data.Dataset.from_tensors((np.ones((2, 1), np.float32),
                                          np.zeros((2, 1), np.float32))).repeat()
        history = model.fit(x, epochs=3, steps_per_epoch=2, validation_data=val_data(),
                            validation_steps=2, verbose=0)
        return len(starts), history.history["val_loss"]

    plain_starts, plain = val_losses(keras.Model)
    kept_starts, kept = val_losses(Model)
    assert plain_starts == 3, (
        f"keras {keras.__version__} no longer restarts validation each epoch; "
        "mrcnn/keras_compat.KeepValidationIterator may be unnecessary - check it.")
    assert kept_starts == 1, (
        f"keras {keras.__version__}: fit's {keras_compat.EVAL_ITERATOR_ATTRIBUTE} or "
        "EpochIterator.reset changed; mrcnn/keras_compat.KeepValidationIterator no "
        "longer keeps the validation iterator - update it.")
    # weights never change (lr 0): val batches 0,1 then 2,3 then 4,5 (mse of x = i)
    assert plain == [0.5, 0.5, 0.5]
    assert kept == [0.5, (4 + 9) / 2, (16 + 25) / 2]


def test_optimizer_ema_attributes_exist():
    v = keras.Variable([1.0, 2.0])
    opt = keras.optimizers.SGD(use_ema=True)
    opt.build([v])
    for name in keras_compat.OPTIMIZER_EMA_ATTRIBUTES:
        assert len(getattr(opt, name, [])) == 1, (
            f"keras {keras.__version__}: optimizers no longer keep {name}; mrcnn/training/ema.py "
            "reads the weights' moving averages from it - update it.")

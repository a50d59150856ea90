"""Every private Keras / tf.distribute hook the library relies on, in one place.

Checked on Keras 3.15.1 with TensorFlow 2.21.0. tests/test_keras_compat.py fails with
a clear message if a new version renames or removes one of them:

- ``keras.Model._maybe_symbolic_build(iterator=None, data_batch=None)``: overridden by
  :class:`ReplicaSafeBuild` (builds the model from one replica's part of the first
  distributed batch).
- ``keras.Model._symbolic_build(data_batch=...)``: called by that override.
- ``keras.Model._distribute_strategy``: the strategy the model was created under.
- ``tf.distribute`` ``strategy.extended._in_multi_worker_mode()``: whether a
  MultiWorkerMirroredStrategy spans more than one worker.
- ``keras.optimizers.Optimizer._trainable_variables`` and
  ``._model_variables_moving_average`` (with ``use_ema``): the weights and their
  moving averages, read by mrcnn.training.ema.
- ``keras.Model.fit`` caches its validation iterator as ``model._eval_epoch_iterator``
  (an ``EpochIterator``), whose ``reset()`` drops ``_current_iterator``: used by
  :class:`KeepValidationIterator`.
"""
import tensorflow as tf

# (owner, attribute) pairs the test checks; owner names are what the message prints.
MODEL_HOOKS = ("_maybe_symbolic_build", "_symbolic_build")
MODEL_ATTRIBUTES = ("_distribute_strategy",)
STRATEGY_EXTENDED_HOOKS = ("_in_multi_worker_mode",)
EVAL_ITERATOR_ATTRIBUTE = "_eval_epoch_iterator"    # set by keras.Model.fit
OPTIMIZER_EMA_ATTRIBUTES = ("_trainable_variables", "_model_variables_moving_average")


def model_strategy(model):
    """The tf.distribute strategy a Keras model was created under, or None."""
    return getattr(model, "_distribute_strategy", None)


def in_multi_worker_mode(strategy):
    """True under a MultiWorkerMirroredStrategy spanning more than one worker."""
    in_mode = getattr(strategy.extended, "_in_multi_worker_mode", None)
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and bool(in_mode and in_mode()))


class ReplicaSafeBuild:
    """Mixin for a keras.Model subclass: builds from one replica's part of the first
    batch under a strategy.

    Keras 3 (3.15) averages the first distributed batch across replicas in
    ``_maybe_symbolic_build``, which fails for bool inputs and, under
    MultiWorkerMirroredStrategy, for any dict of inputs; building only needs shapes,
    so the first local replica's values do.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = model_strategy(self)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(
                lambda x: (strategy.experimental_local_results(x)[0]
                           if isinstance(x, tf.distribute.DistributedValues) else x),
                next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)


class KeepValidationIterator:
    """Mixin for a keras.Model subclass: fit's validation iterator lives across epochs.

    Keras 3 (3.15) resets the cached validation iterator before each evaluation, which
    drops the tf.data iterator of the previous epoch and starts a new one. With a
    Python-loaded, prefetching validation pipeline that drop waited for its background
    work: 0.8-20 s at an epoch end of a 256 px ResNet18 run here. With validation_steps
    set (the model's VALIDATION_STEPS), each evaluation now reads the next batches of
    the same iterator. The validation data repeats and is reshuffled, so each epoch
    still measures VALIDATION_STEPS batches in a new random order, as before; a finite
    dataset that runs out starts over as Keras does.
    """

    def __setattr__(self, name, value):
        if name == EVAL_ITERATOR_ATTRIBUTE and getattr(value, "steps_per_epoch", None):
            _keep_current_iterator(value)
        super().__setattr__(name, value)


def _keep_current_iterator(epoch_iterator):
    """Makes epoch_iterator.reset() keep its current tf.data iterator."""
    reset = epoch_iterator.reset

    def reset_keeping_iterator():
        current = epoch_iterator._current_iterator
        reset()
        epoch_iterator._current_iterator = current

    epoch_iterator.reset = reset_keeping_iterator

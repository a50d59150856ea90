"""An exponential moving average of the weights, saved and evaluated as the model.

With ``Config.EMA_DECAY`` > 0 the optimizer keeps an average of every trained weight
(Keras' ``use_ema``: after each step, ``average = d * average + (1 - d) * weight``).
At each epoch end ``AverageIn`` puts the average into the model before the checkpoint
is written and the val images are evaluated, and ``AverageOut`` gives training its own
weights back afterwards; after the last epoch the average stays, so the final
checkpoint, the final evaluation and the model the caller holds are the average
(Keras also writes the average into the model when fit ends). The val loss of an epoch
is computed before its callbacks run, so it is the trained weights' loss.

Example:
    callbacks = [AverageIn(), *per_epoch_callbacks, AverageOut()]
"""
import keras


def averages(optimizer):
    """(weights, averages) pairs the optimizer keeps ([] without use_ema)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer
    if not getattr(inner, "use_ema", False):
        return []
    trained = inner._trainable_variables          # keras_compat: private, checked there
    moving = inner._model_variables_moving_average
    return [(w, a) for w, a in zip(trained, moving) if a is not None]


class AverageIn(keras.callbacks.Callback):
    """First at an epoch end: the weights become their moving average (the trained
    weights are kept for AverageOut)."""

    def __init__(self):
        super().__init__()
        self.saved = None

    def on_epoch_end(self, epoch, logs=None):
        pairs = averages(self.model.optimizer)
        if not pairs:
            return
        self.saved = [w.numpy() for w, _ in pairs]
        for w, a in pairs:
            w.assign(a)


class AverageOut(keras.callbacks.Callback):
    """Last at an epoch end: training continues from its own weights, unless this was
    the last epoch (the average then stays in the model)."""

    def __init__(self, average_in):
        super().__init__()
        self.average_in = average_in

    def on_epoch_end(self, epoch, logs=None):
        saved, self.average_in.saved = self.average_in.saved, None
        last = self.model.stop_training or epoch + 1 >= int(self.params.get("epochs") or 0)
        if saved is None or last:
            return
        for (w, _), value in zip(averages(self.model.optimizer), saved):
            w.assign(value)

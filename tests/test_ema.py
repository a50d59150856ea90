"""EMA_DECAY: checkpoints and evaluation see the moving average, training its own weights,
and the average stays in the model after the last epoch (mrcnn/training/ema.py)."""
import keras
import numpy as np

from mrcnn.training.ema import AverageIn, AverageOut


class Weights(keras.callbacks.Callback):
    """The trainable weights at each epoch's "begin" or "end", as a callback standing at
    this place in the list sees them."""

    def __init__(self, at):
        super().__init__()
        self.at, self.seen = at, []

    def _look(self, at):
        if at == self.at:
            self.seen.append([w.numpy().copy() for w in self.model.trainable_weights])

    def on_epoch_begin(self, epoch, logs=None):
        self._look("begin")

    def on_epoch_end(self, epoch, logs=None):
        self._look("end")


def test_average_is_saved_and_training_continues_from_its_own_weights():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer=optimizer, loss="mse")
    # record stands where the checkpoint and evaluation callbacks stand
    average_in, record, start = AverageIn(), Weights("end"), Weights("begin")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
              callbacks=[average_in, record, AverageOut(average_in), start])
    averages = [a.numpy() for a in optimizer._model_variables_moving_average]
    # what the checkpoint saw at the last epoch is the average, and it stays in the model
    for seen, average, final in zip(record.seen[-1], averages, model.trainable_weights):
        np.testing.assert_array_equal(seen, average)
        np.testing.assert_array_equal(final.numpy(), average)
    # epochs 2 and 3 started from the trained weights, not from the average seen
    for epoch in (1, 2):
        assert not all(np.array_equal(s, r) for s, r in
                       zip(start.seen[epoch], record.seen[epoch - 1]))

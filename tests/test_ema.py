"""EMA_DECAY: checkpoints and evaluation see the moving average, training its own weights,
and the average stays in the model after the last epoch (mrcnn/training/ema.py)."""
import keras
import numpy as np

from mrcnn.training.ema import AverageIn, AverageOut


class Record(keras.callbacks.Callback):
    """Stands where the checkpoint and evaluation callbacks stand."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append([w.numpy().copy() for w in self.model.trainable_weights])


class Start(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.starts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append([w.numpy().copy() for w in self.model.trainable_weights])


def test_average_is_saved_and_training_continues_from_its_own_weights():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.9)
    model.compile(optimizer=optimizer, loss="mse")
    average_in, record, start = AverageIn(), Record(), Start()
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
                       zip(start.starts[epoch], record.seen[epoch - 1]))

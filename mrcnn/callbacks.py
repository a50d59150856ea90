"""Training callbacks: atomic checkpoints, a wall-clock budget, loss curves (CSV + PNG)."""
import csv
import os
import time

import keras

from mrcnn.curves import StepValues, plot_training_curve
from mrcnn.weights_io import save_weights_by_name


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves weights at the end of every epoch to checkpoint_path.format(epoch=N).

    Epochs are 1-based in file names (matterport's mask_rcnn_<name>_0001 is after the
    first epoch). Only the chief worker writes when is_chief is False on the others.
    """

    def __init__(self, checkpoint_path, is_chief=True):
        super().__init__()
        self.checkpoint_path = checkpoint_path
        self.is_chief = is_chief
        self.last_saved = None

    def on_epoch_end(self, epoch, logs=None):
        path = self.checkpoint_path.format(epoch=epoch + 1)
        if self.is_chief:
            save_weights_by_name(self.model, path)
        self.last_saved = path


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly once `minutes` of wall time have passed.

    Checked after every batch, so training stops within one step of the budget; the
    epoch then ends and the checkpoint callback saves the weights.
    """

    def __init__(self, minutes, start_time=None):
        super().__init__()
        self.seconds = float(minutes) * 60
        self.clock = time.time  # the schedule's budget estimate reads the same clock
        self.start = start_time or self.clock()
        self.exhausted = False

    def on_train_batch_end(self, batch, logs=None):
        if self.clock() - self.start >= self.seconds:
            self.exhausted = True
            self.model.stop_training = True


class LossCurve(keras.callbacks.Callback):
    """Appends each step's losses, throughput, epoch and stage to a CSV and redraws a
    PNG each epoch (mrcnn.curves). A CSV already there is continued, so the stages of
    one run (train() called again on the same model) draw one curve.

    Args:
        stage: the trained layers ("heads", "all", ...), written per step; the PNG
            marks where it changes.
        epochs_csv: the epoch CSV (val losses, AP) drawn on a second panel.
    """

    def __init__(self, csv_path, png_path=None, batch_size=1, is_chief=True, stage=None,
                 epochs_csv=None):
        super().__init__()
        self.csv_path = csv_path
        self.png_path = png_path
        self.batch_size = batch_size
        self.is_chief = is_chief
        self.stage = stage
        self.epochs_csv = epochs_csv
        self.step = self._existing_steps()
        self._t = None
        self._epoch = None
        self._per_step = StepValues()

    def _existing_steps(self):
        if not os.path.exists(self.csv_path):
            return 0
        with open(self.csv_path) as f:
            return max(0, sum(1 for _ in f) - 1)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._per_step.reset()

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self.is_chief or not logs:
            return
        dt = time.perf_counter() - (self._t or time.perf_counter())
        self.step += 1
        row = {"step": self.step, "time": round(time.time(), 3),
               "images_per_second": round(self.batch_size / dt, 4) if dt > 0 else 0,
               "learning_rate": current_learning_rate(self.model),
               "epoch": self._epoch, "stage": self.stage}
        row.update(self._per_step.update(batch, logs))  # running means -> this step's
        new = not os.path.exists(self.csv_path)
        fields = list(row) if new else csv_header(self.csv_path)  # resumed: its columns
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def on_epoch_end(self, epoch, logs=None):
        if self.is_chief and self.png_path:
            plot_training_curve(self.csv_path, self.png_path, self.epochs_csv)

    def on_train_end(self, logs=None):
        self.on_epoch_end(-1, logs)


def current_learning_rate(model):
    """The rate the optimizer applies at its current step (a float), or None."""
    optimizer = getattr(model, "optimizer", None)
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def csv_header(csv_path):
    """The column names of an existing CSV file."""
    with open(csv_path, newline="") as f:
        return next(csv.reader(f), [])


def plot_loss_curve(csv_path, png_path, epochs_csv=None):
    """Draws a LossCurve CSV (per-step losses, EMA-smoothed) to a PNG (mrcnn.curves)."""
    return plot_training_curve(csv_path, png_path, epochs_csv)

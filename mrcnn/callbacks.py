"""Training callbacks: atomic checkpoints, a wall-clock budget, loss curves (CSV + PNG)."""
import csv
import os
import time

import keras

from mrcnn.fileio import atomic_path
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
        self.start = start_time or time.time()
        self.exhausted = False

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start >= self.seconds:
            self.exhausted = True
            self.model.stop_training = True


class LossCurve(keras.callbacks.Callback):
    """Appends per-step losses and throughput to a CSV and redraws a PNG each epoch."""

    def __init__(self, csv_path, png_path=None, batch_size=1, is_chief=True):
        super().__init__()
        self.csv_path = csv_path
        self.png_path = png_path
        self.batch_size = batch_size
        self.is_chief = is_chief
        self.step = self._existing_steps()
        self._t = None

    def _existing_steps(self):
        if not os.path.exists(self.csv_path):
            return 0
        with open(self.csv_path) as f:
            return max(0, sum(1 for _ in f) - 1)

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if not self.is_chief or not logs:
            return
        dt = time.perf_counter() - (self._t or time.perf_counter())
        self.step += 1
        row = {"step": self.step, "time": round(time.time(), 3),
               "images_per_second": round(self.batch_size / dt, 4) if dt > 0 else 0,
               "learning_rate": current_learning_rate(self.model)}
        row.update({k: float(v) for k, v in logs.items()})
        new = not os.path.exists(self.csv_path)
        fields = list(row) if new else csv_header(self.csv_path)  # resumed: its columns
        with open(self.csv_path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def on_epoch_end(self, epoch, logs=None):
        if self.is_chief and self.png_path:
            plot_loss_curve(self.csv_path, self.png_path)

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


def plot_loss_curve(csv_path, png_path):
    """Draws every loss column of a LossCurve CSV against the step, to a PNG."""
    # A bare Figure with the Agg canvas: never touches pyplot or a notebook's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    if not os.path.exists(csv_path):
        return None
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    steps = [int(r["step"]) for r in rows]
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key in rows[0]:
        if key.endswith("loss"):
            ax.plot(steps, [float(r[key]) for r in rows], label=key,
                    linewidth=2 if key == "loss" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (running mean over the epoch)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp)
    return png_path

"""Training callbacks, and the list of them MaskRCNN.train runs each epoch.

The per-epoch order (``training_callbacks``) is the order their logs need:

    checkpoint -> TensorBoard (losses) -> evaluation (adds AP to the epoch logs)
    -> retention (best by a logged metric, last K) -> early stopping -> epochs.csv
    -> training curve -> report.html

The learning-rate schedule, the time budget and the user's callbacks are added by
train() around this list. The callbacks themselves: atomic checkpoints, a wall-clock
budget and its progress line, loss curves (CSV + PNG).
"""
import csv
import logging
import os
import time

import keras

from mrcnn.report.html import ReportPage
from mrcnn.training.checkpoints import CheckpointRetention, EarlyStopping
from mrcnn.training.curves import StepValues, plot_training_curve
from mrcnn.weights.by_name import save_weights_by_name

log = logging.getLogger("mrcnn")


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
        self.save_seconds = None  # how long the last save took

    def on_epoch_end(self, epoch, logs=None):
        path = self.checkpoint_path.format(epoch=epoch + 1)
        if self.is_chief:
            t0 = time.perf_counter()
            save_weights_by_name(self.model, path)
            self.save_seconds = time.perf_counter() - t0
        self.last_saved = path

    def seconds_needed(self):
        """Seconds the final save takes: the last one's, or 1 s per 50M parameters."""
        if self.save_seconds is not None:
            return 1.5 * self.save_seconds
        return 1.0 + self.model.count_params() / 50e6 if self.model is not None else 2.0


class TimeBudget(keras.callbacks.Callback):
    """Stops training so that the work after it still ends within `minutes` of start_time.

    Checked after every step: training stops once the time left would not cover what
    comes after the last step (the `after_training` estimates: the final evaluation,
    the checkpoint, the val loss of the last epoch, a margin). The epoch then ends and
    the checkpoint and evaluation callbacks run. The first step (graph tracing) counts:
    the budget is wall time from start_time (the command's start, for the CLI).

    Args:
        minutes: the whole budget.
        start_time: when it started (time.time() seconds; default: now).
        after_training: callables returning the seconds that work needs.
        margin: seconds kept for what no estimate covers (curves, logs).
    """

    def __init__(self, minutes, start_time=None, after_training=(), margin=5.0):
        super().__init__()
        self.total_seconds = float(minutes) * 60
        self.clock = time.time  # the schedule's budget estimate reads the same clock
        self.start = start_time or self.clock()
        self.after_training = list(after_training)
        self.margin = float(margin)
        self.exhausted = False
        self.steps = 0
        self.first_step_seconds = None
        self.step_seconds = None       # running mean of the steps after the first
        self.validation_seconds = None  # the last epoch-end val loss pass
        self._t = self._test_t = None

    @property
    def seconds(self):
        """Seconds of the budget that training may use."""
        return self.total_seconds - self.reserved()

    def reserved(self):
        """Seconds kept for the work after the last step."""
        return self.margin + self._validation_estimate() + sum(
            f() for f in self.after_training)

    def elapsed(self):
        return self.clock() - self.start

    def remaining(self):
        return self.total_seconds - self.elapsed()

    def _validation_estimate(self):
        if self.validation_seconds is not None:
            return 1.2 * self.validation_seconds
        steps = (self.params or {}).get("validation_steps") or 0
        return 0.6 * steps * (self.step_seconds or 0.0)

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        dt = time.perf_counter() - (self._t or time.perf_counter())
        self.steps += 1
        if self.first_step_seconds is None:
            self.first_step_seconds = dt
            log.info("First step (building the training graph) took %.1f s, %s into the "
                     "%s budget; %.0f s are kept for the final checkpoint and "
                     "evaluation.", dt, clock_text(self.elapsed()),
                     clock_text(self.total_seconds), self.reserved())
        else:
            n = self.steps - 1
            self.step_seconds = dt if n == 1 else self.step_seconds + (dt - self.step_seconds) / n
        if self.elapsed() >= self.seconds:
            self.exhausted = True
            self.model.stop_training = True

    def on_test_begin(self, logs=None):
        self._test_t = time.perf_counter()

    def on_test_end(self, logs=None):
        if self._test_t is not None:
            self.validation_seconds = time.perf_counter() - self._test_t


def clock_text(seconds):
    """'m:ss' (or 'h:mm:ss') of a number of seconds."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class BudgetProgress(keras.callbacks.Callback):
    """Progress under a time budget: the budget's elapsed and remaining time, the steps
    done and the loss, instead of Keras' per-epoch bar and its epoch ETA (an epoch may
    outlast the budget). On a terminal one line is redrawn; in a log file a line is
    written every `every_seconds`.
    """

    def __init__(self, budget, stream=None, every_seconds=30.0):
        super().__init__()
        self.budget = budget
        self.stream = stream
        self.every = float(every_seconds)
        self._last = None
        self._epoch = 0

    def _out(self):
        import sys
        return self.stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def line(self, logs=None):
        b = self.budget
        train_end = max(0.0, b.seconds)
        loss = (logs or {}).get("loss")
        text = (f"budget {clock_text(b.elapsed())} of {clock_text(b.total_seconds)} "
                f"({clock_text(b.remaining())} left; training until "
                f"{clock_text(train_end)}, then evaluation and checkpoint) | "
                f"step {b.steps} | epoch {self._epoch}")
        if loss is not None:
            text += f" | loss {float(loss):.4f}"
        if b.step_seconds:
            text += f" | {b.step_seconds:.2f} s/step"
        return text

    def on_train_batch_end(self, batch, logs=None):
        out = self._out()
        now = time.monotonic()
        if out.isatty():
            if self._last is None or now - self._last >= 0.5:
                out.write("\r" + self.line(logs)[:200].ljust(120))
                out.flush()
                self._last = now
        elif self._last is None or now - self._last >= self.every:
            out.write(self.line(logs) + "\n")
            out.flush()
            self._last = now

    def on_train_end(self, logs=None):
        out = self._out()
        if out.isatty():
            out.write("\n")
        out.write(f"Training stopped at {clock_text(self.budget.elapsed())} of the "
                  f"{clock_text(self.budget.total_seconds)} budget after "
                  f"{self.budget.steps} steps.\n")
        out.flush()


class LossCurve(keras.callbacks.Callback):
    """Appends each step's losses, throughput, epoch and stage to a CSV and redraws a
    PNG each epoch (mrcnn.training.curves). A CSV already there is continued, so the stages of
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
    """Draws a LossCurve CSV (per-step losses, EMA-smoothed) to a PNG (mrcnn.training.curves)."""
    return plot_training_curve(csv_path, png_path, epochs_csv)


class StopOnSignal(keras.callbacks.Callback):
    """Ends training cleanly on SIGTERM (scancel, docker stop, a job's time limit).

    The signal only sets a flag; after the current step training stops, the epoch ends
    and the checkpoint callbacks write the weights as at any epoch end. Under a
    multi-worker strategy the workers agree on the flag after every step (a traced SUM
    all-reduce), so all stop after the same step even when the signal reaches them a
    step apart. The previous handler is restored when training ends. `received` tells
    afterwards whether a signal stopped training.
    """

    def __init__(self, strategy=None, signals=None):
        super().__init__()
        import signal
        self.strategy = strategy
        self.signals = tuple(signals or (signal.SIGTERM,))
        self.received = False
        self._pending = False
        self._previous = {}
        self._sum = None

    def _handle(self, signum, frame):
        self._pending = True

    def on_train_begin(self, logs=None):
        import signal
        self._pending = self.received = False
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        except ValueError:  # not the main thread: leave the process's handlers alone
            self._previous = {}

    def _agreed(self):
        from mrcnn.keras_compat import in_multi_worker_mode
        if self.strategy is None or not in_multi_worker_mode(self.strategy):
            return self._pending
        import tensorflow as tf
        if self._sum is None:  # one traced all-reduce, not an eager one per step
            strategy = self.strategy
            self._sum = tf.function(lambda flag: strategy.reduce(
                "SUM", strategy.run(lambda: tf.identity(flag)), axis=None))
        return float(self._sum(tf.constant(1.0 if self._pending else 0.0))) > 0

    def on_train_batch_end(self, batch, logs=None):
        if self._agreed():
            if not self.received:
                log.warning("Stopping on a signal after this step; the checkpoint of "
                            "this epoch is written now.")
            self.received = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        import signal
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


EPOCHS_CSV = "epochs.csv"


def training_callbacks(log_dir, checkpoint_path, batch_size, chief=True, stage=None,
                       keep_last=None, keep_best=None, evaluation=None, patience=None):
    """The per-epoch callbacks of one train() call.

    Args:
        log_dir: the run directory (checkpoints, CSVs, PNG, TensorBoard events).
        checkpoint_path: .../mask_rcnn_<name>_{epoch:04d}.h5.
        stage: the `layers` of this train() call, marked on the training curve.
        keep_last / keep_best: see mrcnn.training.checkpoints.CheckpointRetention.
        evaluation: an EvaluationCallback (mrcnn.training.evaluation_callback) or None;
            its TensorBoard events go to this run's directory.
        patience: stop after this many evaluations of keep_best without improvement
            (mrcnn.training.checkpoints.EarlyStopping; None or 0: never).
    """
    epochs_csv = os.path.join(log_dir, EPOCHS_CSV)
    callbacks = [AtomicCheckpoint(checkpoint_path, is_chief=chief)]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False))
    if evaluation is not None:
        evaluation.log_dir, evaluation.is_chief = log_dir, chief
        callbacks.append(evaluation)
    if keep_last or keep_best:
        callbacks.append(CheckpointRetention(checkpoint_path, keep_last, keep_best,
                                             is_chief=chief))
    if patience:
        if not keep_best:
            raise ValueError("patience needs keep_best, the metric whose improvement it "
                             "waits for (e.g. keep_best=\"segm_AP50\").")
        callbacks.append(EarlyStopping(keep_best, patience, epochs_csv))
    if chief:
        callbacks.append(keras.callbacks.CSVLogger(epochs_csv, append=True))
    callbacks.append(LossCurve(os.path.join(log_dir, "training_curve.csv"),
                               os.path.join(log_dir, "training_curve.png"),
                               batch_size=batch_size, is_chief=chief, stage=stage,
                               epochs_csv=epochs_csv if chief else None))
    callbacks.append(ReportPage(log_dir, is_chief=chief))
    return callbacks

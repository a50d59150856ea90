"""Which checkpoints a run keeps: the last K epochs and the best one by a metric.

A run directory holds epoch checkpoints ``mask_rcnn_<name>_<epoch>.h5`` (written by
callbacks.AtomicCheckpoint) and, with ``keep_best``, ``mask_rcnn_<name>_best.h5`` plus
``best.json``: ``{"metric", "mode", "epoch", "value", "path"}``. The best file has no
epoch number, so it is never taken for the newest epoch (see ``epoch_checkpoints``).

Example:
    CheckpointRetention(model.checkpoint_path, keep_last=3, keep_best="segm_AP50")
    best_checkpoint("logs/fashion20250101T120000")   # -> .../mask_rcnn_fashion_best.h5
"""
import json
import logging
import math
import os
import re
import shutil

import keras

from mrcnn.fileio import atomic_path, write_json

log = logging.getLogger("mrcnn")

BEST_FILE = "best.json"
BEST_TAG = "best"
# mask_rcnn_<name>_<epoch>.h5: epoch checkpoints only (the best file has no number).
_EPOCH_FILE_RE = re.compile(r"^mask_rcnn_[\w-]+?_(\d{4,})\.h5$")


def checkpoint_epoch(filename):
    """The epoch of an epoch checkpoint's file name, or None for any other file."""
    m = _EPOCH_FILE_RE.match(os.path.basename(filename))
    return int(m.group(1)) if m else None


def epoch_checkpoints(run_dir):
    """[(epoch, path)] of a run directory's epoch checkpoints, oldest first."""
    found = []
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else []:
        epoch = checkpoint_epoch(name)
        if epoch is not None:
            found.append((epoch, os.path.join(run_dir, name)))
    return sorted(found)


def best_path(checkpoint_path):
    """The best checkpoint beside a run's epoch pattern (.../mask_rcnn_x_{epoch:04d}.h5)."""
    return checkpoint_path.replace("{epoch:04d}", BEST_TAG)


def read_best(run_dir):
    """A run's best.json as a dict, or None when it has none (or it is unreadable)."""
    path = os.path.join(run_dir, BEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            best = json.load(f)
    except (OSError, ValueError):
        return None
    return best if isinstance(best, dict) else None


def best_checkpoint(run_dir):
    """Path of a run's best checkpoint, or None when the run has none."""
    best = read_best(run_dir) or {}
    path = best.get("path")
    if path and not os.path.isabs(path):
        path = os.path.join(run_dir, path)
    if path and os.path.isfile(path):
        return path
    names = [f for f in os.listdir(run_dir) if f.endswith(f"_{BEST_TAG}.h5")] \
        if os.path.isdir(run_dir) else []
    return os.path.join(run_dir, sorted(names)[0]) if names else None


def metric_mode(metric):
    """"min" for losses, "max" for everything else (AP, scores)."""
    return "min" if "loss" in metric else "max"


def _link_or_copy(src, dst):
    """dst becomes a hard link to src (no extra disk) or, where links fail, a copy."""
    with atomic_path(dst) as tmp:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


class CheckpointRetention(keras.callbacks.Callback):
    """After each epoch's checkpoint: keeps it as the best when `keep_best` improved,
    then deletes epoch checkpoints older than the last `keep_last`.

    Args:
        checkpoint_path: the run's pattern, .../mask_rcnn_<name>_{epoch:04d}.h5.
        keep_last: epoch checkpoints to keep (None or 0: all).
        keep_best: a key of the epoch logs (e.g. "segm_AP50", "val_loss"); epochs
            without it (no evaluation that epoch) leave the best as it is.
        mode: "max", "min" or "auto" (min for losses).
        is_chief: only the chief worker touches files.
    Place it after the checkpoint and evaluation callbacks.
    """

    def __init__(self, checkpoint_path, keep_last=None, keep_best=None, mode="auto",
                 is_chief=True):
        super().__init__()
        if keep_last is not None and int(keep_last) < 0:
            raise ValueError(f"keep_last is {keep_last}; use a count >= 1, or 0/None "
                             "to keep every checkpoint.")
        self.checkpoint_path = checkpoint_path
        self.run_dir = os.path.dirname(checkpoint_path)
        self.keep_last = int(keep_last or 0)
        self.metric = keep_best
        self.mode = metric_mode(keep_best or "") if mode == "auto" else mode
        self.is_chief = is_chief
        self.best = self._previous_best()

    def _previous_best(self):
        """A resumed run's best, when it was kept by the same metric."""
        best = read_best(self.run_dir) if self.metric else None
        if best and best.get("metric") == self.metric and best_checkpoint(self.run_dir):
            return best
        return None

    def _improved(self, value):
        if self.best is None:
            return True
        old = float(self.best["value"])
        return value > old if self.mode == "max" else value < old

    def on_epoch_end(self, epoch, logs=None):
        if not self.is_chief:
            return
        path = self.checkpoint_path.format(epoch=epoch + 1)
        value = (logs or {}).get(self.metric) if self.metric else None
        if value is not None and os.path.isfile(path):
            value = float(value)
            if math.isfinite(value) and self._improved(value):
                self.save_best(path, epoch + 1, value)
        if self.keep_last:
            self.prune(epoch + 1)

    def save_best(self, path, epoch, value):
        """Makes `path` the run's best checkpoint and records it in best.json."""
        target = best_path(self.checkpoint_path)
        _link_or_copy(path, target)
        self.best = {"metric": self.metric, "mode": self.mode, "epoch": int(epoch),
                     "value": value, "path": os.path.basename(target)}
        write_json(os.path.join(self.run_dir, BEST_FILE), self.best)
        log.info("Best %s so far: %.4f at epoch %d (%s).", self.metric, value, epoch,
                 target)

    def prune(self, current_epoch):
        """Deletes epoch checkpoints of this run older than the last keep_last epochs
        up to current_epoch (files of later epochs, from an abandoned branch, stay)."""
        older = [(e, p) for e, p in epoch_checkpoints(self.run_dir) if e <= current_epoch]
        for _, path in older[:-self.keep_last]:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


def logged_values(epochs_csv, metric):
    """[(epoch, value)] of the finite values of `metric` in an epoch CSV (Keras'
    CSVLogger: 0-based "epoch" column; returned 1-based), oldest first."""
    import csv
    try:
        with open(epochs_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    values = []
    for row in rows:
        try:
            value = float(row.get(metric) or "nan")
            epoch = int(float(row.get("epoch") or "nan")) + 1
        except ValueError:
            continue
        if math.isfinite(value):
            values.append((epoch, value))
    return values


class EarlyStopping(keras.callbacks.Callback):
    """Stops training when `metric` has not improved for `patience` evaluations.

    Epochs without the metric (no evaluation that epoch) do not count. The count
    continues over the run's earlier evaluations (its epoch CSV, read at the start of
    each train() call), so a later stage or a resumed run does not start afresh.
    Improvement is strict, as for the best checkpoint (CheckpointRetention keeps it).

    Args:
        metric: an epoch-log key ("segm_AP50", "val_loss").
        patience: evaluations without improvement before stopping (>= 1).
        epochs_csv: the run's epoch CSV (None: count from this call's epochs only).
        mode: "max", "min" or "auto" (min for losses).
    With several workers, only a metric every worker logs (val_loss) stops them
    together; evaluation metrics are logged by the chief alone.
    """

    def __init__(self, metric, patience, epochs_csv=None, mode="auto"):
        super().__init__()
        if int(patience) < 1:
            raise ValueError(f"patience is {patience}; stop after N >= 1 evaluations "
                             "without improvement.")
        self.metric, self.patience = metric, int(patience)
        self.mode = metric_mode(metric) if mode == "auto" else mode
        self.epochs_csv = epochs_csv
        self.best = self.best_epoch = None
        self.wait = 0
        self.stopped = False

    def _update(self, value, epoch=None):
        better = self.best is None or (value > self.best if self.mode == "max"
                                       else value < self.best)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1

    def on_train_begin(self, logs=None):
        self.best = self.best_epoch = None
        self.wait, self.stopped = 0, False
        for epoch, value in (logged_values(self.epochs_csv, self.metric)
                             if self.epochs_csv else []):
            self._update(value, epoch)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self._update(float(value), epoch + 1)
        if self.wait >= self.patience:
            self.stopped = True
            self.model.stop_training = True
            log.info("Early stopping: %s has not improved for %d evaluations (best %.4f at "
                     "epoch %s); training ends after epoch %d.", self.metric, self.wait,
                     self.best, self.best_epoch, epoch + 1)

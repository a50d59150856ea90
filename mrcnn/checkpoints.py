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

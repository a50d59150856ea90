"""The callbacks MaskRCNN.train runs each epoch, in the order their logs need.

    checkpoint -> TensorBoard (losses) -> evaluation (adds AP to the epoch logs)
    -> retention (best by a logged metric, last K) -> early stopping -> epochs.csv
    -> training curve -> report.html

The learning-rate schedule, the time budget and the user's callbacks are added by
train() around this list.
"""
import os

import keras

from mrcnn.callbacks import AtomicCheckpoint, LossCurve
from mrcnn.checkpoints import CheckpointRetention, EarlyStopping
from mrcnn.report.html import ReportPage

EPOCHS_CSV = "epochs.csv"


def training_callbacks(log_dir, checkpoint_path, batch_size, chief=True, stage=None,
                       keep_last=None, keep_best=None, evaluation=None, patience=None):
    """The per-epoch callbacks of one train() call.

    Args:
        log_dir: the run directory (checkpoints, CSVs, PNG, TensorBoard events).
        checkpoint_path: .../mask_rcnn_<name>_{epoch:04d}.h5.
        stage: the `layers` of this train() call, marked on the training curve.
        keep_last / keep_best: see mrcnn.checkpoints.CheckpointRetention.
        evaluation: an EvaluationCallback (mrcnn.evaluation.during_training) or None;
            its TensorBoard events go to this run's directory.
        patience: stop after this many evaluations of keep_best without improvement
            (mrcnn.checkpoints.EarlyStopping; None or 0: never).
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

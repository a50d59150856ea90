"""Evaluation during training, checkpoint retention and the training curve.

One tiny CLI run (16 demo images at 64 px, resnet18, 3 epochs of 2 steps, evaluation
every epoch, --keep-last 2 --keep-best boundary_AP --patience 3) is shared by the CLI
tests; one tiny library model trains two stages (heads, then all) with one EvaluationCallback.
"""
import csv
import json
import os

import numpy as np
import pytest

from mrcnn.training.checkpoints import (CheckpointRetention, best_checkpoint, epoch_checkpoints,
                               read_best)
from mrcnn.training.curves import StepValues, ema, stage_changes
from tests.conftest import TinyConfig
from tests.demo_runs import train_demo
from tests.test_fashion_cli import TINY, assert_bad_input, run


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _event_values(directory):
    """{tag: {step: value}} of the scalars and {tag: steps} of the images in a
    TensorBoard directory."""
    import tensorflow as tf
    scalars, images = {}, {}
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                if plugin == "images":
                    images.setdefault(v.tag, []).append(event.step)
                elif plugin == "scalars" or v.HasField("simple_value"):
                    value = (v.simple_value if v.HasField("simple_value")
                             else float(tf.make_ndarray(v.tensor)))
                    scalars.setdefault(v.tag, {})[event.step] = value
    return scalars, images


# ---------------------------------------------------------------------- the CLI run
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    env = train_demo(tmp_path_factory, "train_eval", images=16, size=64, steps=2, epochs=3,
                     sets=TINY, flags=["--eval-every", "1", "--keep-last", "2",
                                       "--keep-best", "boundary_AP", "--patience", "3"])
    assert [d for d in os.listdir(env["logs"]) if d != "cache"] == [
        os.path.basename(env["run_dir"])]
    return dict(env, out=env["train_out"])


def test_run_keeps_last_two_epochs_and_the_best(cli_run):
    run_dir = cli_run["run_dir"]
    report = ["attribute_precision_recall.csv", "attribute_precision_recall.png",
              "confusion_matrix.csv", "confusion_matrix.png",
              "confusion_matrix_normalized.png", "evaluation_report.json", "labels.png",
              "mask_F1.png", "mask_PR.png", "mask_curves.csv", "report.html",
              "train_batches.png", "val_pred_0001.png", "val_pred_0002.png",
              "val_pred_0003.png"]
    assert sorted(os.listdir(run_dir)) == sorted(report + [
        "best.json", "epochs.csv", "evaluation", "fashion_run.json",
        "mask_rcnn_fashion_0002.h5", "mask_rcnn_fashion_0003.h5",
        "mask_rcnn_fashion_best.h5", "train", "training_curve.csv", "training_curve.png",
        "validation"])
    best = read_best(run_dir)
    assert best["metric"] == "boundary_AP" and best["mode"] == "max"
    assert best["epoch"] in (1, 2, 3)
    values = [float(r["boundary_AP"]) for r in _rows(os.path.join(run_dir, "epochs.csv"))]
    assert best["value"] == pytest.approx(max(values))
    assert best["epoch"] == 1 + values.index(max(values))  # the first of equal values
    with open(os.path.join(run_dir, "fashion_run.json")) as f:
        recorded = json.load(f)["best"]
    assert recorded["epoch"] == best["epoch"] and recorded["value"] == best["value"]
    assert recorded["path"] == os.path.join(run_dir, "mask_rcnn_fashion_best.h5")
    assert "Best checkpoint:" in cli_run["out"]
    mode = os.stat(os.path.join(run_dir, "mask_rcnn_fashion_best.h5")).st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_epoch_csv_and_tensorboard_hold_the_metrics(cli_run):
    run_dir = cli_run["run_dir"]
    rows = _rows(os.path.join(run_dir, "epochs.csv"))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    for key in ("segm_AP", "segm_AP50", "boundary_AP", "boundary_AP50", "boundary_AP75",
                "bbox_AP", "bbox_AP50", "segm_iMat2019", "segm_AP_iou_f1", "val_loss",
                "eval_seconds"):
        values = [float(r[key]) for r in rows]
        assert np.isfinite(values).all(), key
        assert key.startswith(("val", "eval")) or all(0 <= v <= 1 for v in values), key
    scalars, images = _event_values(os.path.join(run_dir, "evaluation"))
    for key in ("segm_AP", "segm_AP50", "boundary_AP", "boundary_AP75", "bbox_AP",
                "bbox_AP50", "segm_iMat2019"):
        assert sorted(scalars[key]) == [1, 2, 3], key
        assert [scalars[key][e] for e in (1, 2, 3)] == pytest.approx(
            [float(r[key]) for r in rows], abs=1e-6)
    assert sorted(images["val_detections/0"]) == [1, 2, 3]
    assert len(images) == 3  # three val images drawn with their predicted masks


def test_curve_csv_holds_each_step_with_its_epoch_and_stage(cli_run):
    rows = _rows(os.path.join(cli_run["run_dir"], "training_curve.csv"))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2, 3, 3]
    assert {r["stage"] for r in rows} == {"all"}
    assert all(float(r["learning_rate"]) > 0 for r in rows)
    # Each epoch's running mean of the per-step values is what Keras logged at its end.
    epochs = _rows(os.path.join(cli_run["run_dir"], "epochs.csv"))
    for e, logged in enumerate(epochs):
        steps = [float(r["loss"]) for r in rows if int(r["epoch"]) == e + 1]
        assert np.mean(steps) == pytest.approx(float(logged["loss"]), rel=1e-4)


def test_weights_best_loads_the_best_epoch(cli_run):
    from mrcnn.model import find_last
    assert find_last(cli_run["logs"], "fashion").endswith("mask_rcnn_fashion_0003.h5")
    out_dir = str(cli_run["base"] / "eval_best")
    code, out, err = run(["evaluate"] + cli_run["data"] + ["--weights", "best",
                                                           "--out", out_dir])
    assert code == 0, err
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    best = os.path.join(cli_run["run_dir"], "mask_rcnn_fashion_best.h5")
    assert metrics["weights"] == best


def test_weights_best_without_a_best_checkpoint_is_one_sentence(tmp_path):
    run_dir = tmp_path / "fashion20250101T120000"
    run_dir.mkdir()
    (run_dir / "mask_rcnn_fashion_0001.h5").write_bytes(b"")
    result = run(["evaluate", "--logs", str(tmp_path), "--weights", "best"])
    assert_bad_input(result, "has no best checkpoint", "--keep-best")


def test_keep_best_needs_something_that_logs_it(cli_run):
    result = run(["train"] + cli_run["data"] + ["--weights", "none", "--eval-every", "0",
                                                "--keep-best", "segm_AP50"])
    assert_bad_input(result, "--keep-best segm_AP50", "--eval-every 0")
    result = run(["train"] + cli_run["data"] + ["--weights", "none",
                                                "--keep-best", "segm_AP51"])
    assert_bad_input(result, "--keep-best segm_AP51", "segm_AP50")


def test_demo_keeps_the_last_and_the_best_checkpoint():
    import argparse

    from fashion.commands import demo
    args = argparse.Namespace(logs="logs", quiet=True, demo_dir="d", demo_images=20,
                              image_size=64, backbone="resnet18", steps_per_epoch=2,
                              images_per_gpu=1, minutes=1.0, out="o", overlays=1)
    train_args = demo._steps(args)[0]
    assert train_args.keep_last == 1 and train_args.keep_best is None  # segm_AP50
    assert train_args.eval_every == 1


# ---------------------------------------------------------------------- the library
class Tiny18(TinyConfig):
    NAME = "tiny18"
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
    IMAGES_PER_GPU = 2  # evaluation: 3 images in batches of 2, the last one padded
    RPN_ANCHOR_SCALES = (4, 8, 16, 32, 64)
    TRAIN_ROIS_PER_IMAGE = 16
    POST_NMS_ROIS_TRAINING = 100
    POST_NMS_ROIS_INFERENCE = 50
    MINI_MASK_SHAPE = (14, 14)


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.fixture(scope="module")
def staged(tmp_path_factory, shapes_data):
    """A library model trained heads (epoch 1) then all (epoch 2), one evaluation."""
    from mrcnn.training.evaluation_callback import EvaluationCallback
    from mrcnn.model import MaskRCNN
    config = Tiny18()
    model = MaskRCNN("training", config, str(tmp_path_factory.mktemp("staged")))
    evaluation = EvaluationCallback(shapes_data[1], config, every=1, limit=3)
    model.train(shapes_data[0], shapes_data[1], 0.001, 1, "heads", verbose=0,
                keep_last=1, keep_best="segm_AP50", evaluation=evaluation)
    first_model = evaluation.inference
    model.train(shapes_data[0], shapes_data[1], 0.001, 2, "all", verbose=0,
                keep_last=1, keep_best="segm_AP50", evaluation=evaluation)
    return model, evaluation, first_model


def test_second_stage_continues_the_curve_and_keeps_one_epoch(staged):
    model, evaluation, first_model = staged
    rows = _rows(os.path.join(model.log_dir, "training_curve.csv"))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [r["stage"] for r in rows] == ["heads", "heads", "all", "all"]
    assert stage_changes(rows) == [(1, "heads"), (3, "all")]
    assert [e for e, _ in epoch_checkpoints(model.log_dir)] == [2]
    assert best_checkpoint(model.log_dir).endswith("mask_rcnn_tiny18_best.h5")
    assert model.find_last().endswith("mask_rcnn_tiny18_0002.h5")
    epochs = _rows(os.path.join(model.log_dir, "epochs.csv"))
    assert [r["epoch"] for r in epochs] == ["0", "1"]
    assert all(np.isfinite(float(r["segm_AP50"])) for r in epochs)
    assert os.path.getsize(os.path.join(model.log_dir, "training_curve.png")) > 10_000


def test_evaluation_reuses_one_model_and_one_trace(staged):
    model, evaluation, first_model = staged
    assert evaluation.inference is first_model  # built once, across both stages
    rss = []
    for epoch in (3, 4, 5, 6):
        metrics = evaluation.evaluate(epoch)
        assert set(metrics) >= {"segm_AP", "segm_AP50", "bbox_AP", "bbox_AP50"}
        rss.append(_rss_mb())
    assert evaluation.inference._infer_fn.experimental_get_tracing_count() == 1
    assert rss[-1] - rss[0] < 40, rss


def test_evaluation_copies_the_training_weights(staged):
    model, evaluation, _ = staged
    evaluation.copy_weights()
    for src, dst in evaluation._pairs[:5] + evaluation._pairs[-5:]:
        for a, b in zip(src.get_weights(), dst.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert len(evaluation._pairs) == len(
        [l for l in evaluation.inference.keras_model.layers if l.weights])


# ---------------------------------------------------------------------- pure parts
def test_step_values_undo_the_running_mean():
    values = [4.0, 2.0, 6.0, 1.0]
    tracker, recovered = StepValues(), []
    for t in range(len(values)):
        recovered.append(tracker.update(t, {"loss": np.mean(values[:t + 1])})["loss"])
    assert recovered == pytest.approx(values)
    tracker.reset()  # a new epoch: the mean restarts
    assert tracker.update(0, {"loss": 3.0})["loss"] == 3.0
    # two steps per execution: Keras reports batches 1 and 3
    tracker.reset()
    tracker.update(1, {"loss": 3.0})
    assert tracker.update(3, {"loss": 2.5})["loss"] == pytest.approx(2.0)


def test_ema_is_debiased_and_skips_missing_values():
    assert ema([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    smoothed = ema([1.0, float("nan"), 3.0], smoothing=0.5)
    assert smoothed[0] == 1.0 and smoothed[1] == 1.0
    assert smoothed[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)


def _fake_run(tmp_path, epochs):
    run_dir = tmp_path / "x20250101T120000"
    run_dir.mkdir(exist_ok=True)
    for e in epochs:
        (run_dir / f"mask_rcnn_x_{e:04d}.h5").write_bytes(bytes([e]))
    return run_dir, str(run_dir / "mask_rcnn_x_{epoch:04d}.h5")


def test_retention_keeps_last_k_and_the_best_by_metric(tmp_path):
    run_dir, pattern = _fake_run(tmp_path, [])
    cb = CheckpointRetention(pattern, keep_last=2, keep_best="val_loss")
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 1.5]):
        _fake_run(tmp_path, [epoch + 1])
        cb.on_epoch_end(epoch, {"val_loss": loss})
    assert [e for e, _ in epoch_checkpoints(run_dir)] == [3, 4]
    assert read_best(run_dir)["epoch"] == 2 and read_best(run_dir)["mode"] == "min"
    assert (run_dir / "mask_rcnn_x_best.h5").read_bytes() == bytes([2])
    # a resumed run keeps comparing with the recorded best
    resumed = CheckpointRetention(pattern, keep_last=2, keep_best="val_loss")
    _fake_run(tmp_path, [5])
    resumed.on_epoch_end(4, {"val_loss": 1.2})
    assert read_best(run_dir)["epoch"] == 2
    resumed.on_epoch_end(4, {"val_loss": float("nan")})
    assert read_best(run_dir)["epoch"] == 2


def test_find_last_never_takes_the_best_file(tmp_path):
    from mrcnn.model import find_last
    run_dir, _ = _fake_run(tmp_path, [1, 2])
    (run_dir / "mask_rcnn_x_best.h5").write_bytes(b"")
    assert find_last(str(tmp_path), "x").endswith("mask_rcnn_x_0002.h5")


def test_budgeted_runs_evaluate_after_the_last_epoch_only(shapes_data):
    """--time-budget without --eval-every: AP only after the last epoch (the final one,
    or the one the budget stops), so the budget trains; a count given still wins."""
    import argparse
    import types

    from fashion.commands.train_eval import eval_cadence
    from mrcnn.training.evaluation_callback import EvaluationCallback
    ns = argparse.Namespace
    assert eval_cadence(ns(eval_every=None, time_budget=None)) == 1
    assert eval_cadence(ns(eval_every=None, time_budget=20.0)) == "last"
    assert eval_cadence(ns(eval_every=3, time_budget=20.0)) == 3
    assert eval_cadence(ns(eval_every=0, time_budget=20.0)) == 0

    def due(every, stop_at=None, epochs=6):
        cb = EvaluationCallback(shapes_data[1], Tiny18(), every=every, limit=3)
        cb.set_params({"epochs": epochs})
        cb.set_model(types.SimpleNamespace(stop_training=False))
        cb.on_train_begin()
        out = []
        for epoch in range(epochs):
            cb.model.stop_training = epoch == stop_at  # the budget ran out in this epoch
            out.append(cb._due(epoch))
            if cb.model.stop_training:
                break
        return [e for e, d in enumerate(out) if d]
    assert due("last") == [5]
    assert due("last", stop_at=2) == [2]
    assert due(2) == [0, 1, 3, 5]          # first, every 2nd, last
    with pytest.raises(ValueError, match="last"):
        EvaluationCallback(shapes_data[1], Tiny18(), every="first")


def test_budgeted_runs_cap_the_val_loss_steps():
    """With --time-budget the val loss takes at most a tenth of an epoch's steps, unless
    VALIDATION_STEPS is --set; without a budget only the val split's size caps it."""
    import argparse
    import types

    from fashion.commands.train import _validation
    from fashion.config import make_config

    def steps(budget, sets=None):
        config = make_config(64, 3, STEPS_PER_EPOCH=100, VALIDATION_STEPS=50,
                             IMAGES_PER_GPU=2)
        data = types.SimpleNamespace(val=object(), val_images=40)
        assert _validation(config, data, argparse.Namespace(time_budget=budget,
                                                            set=sets)) is data.val
        return config.VALIDATION_STEPS
    assert steps(None) == 20                 # 40 val images in batches of 2
    assert steps(20.0) == 10                 # a tenth of 100 steps per epoch
    assert steps(20.0, ["VALIDATION_STEPS=50"]) == 20

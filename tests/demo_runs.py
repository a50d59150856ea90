"""The demo runs the tests share, and `run(argv)`, which runs any fashion.py command
in-process as the tests do.

`train_demo` trains a ResNet18 from scratch on the synthetic demo set through the `train`
command; its parameters (images, image size, epochs, steps, batch, --set values, more
flags, determinism) say which run. Each distinct run is trained once per test process:
the first caller trains it, later callers get the same directories back.

- `tiny_run`: 24 images at 128 px, one epoch of 16 steps; shared by test_tune, test_tta
  and test_run_report.
- `trained_run`: detections that mean something (60 images at 128 px, 200 steps: segm
  AP about 0.2 on its 12 val images), shared by the tests of int8 exports, OpenVINO and
  `benchmark`. Random weights are no use there: their saturated scores tie everywhere (a
  runtime may break the ties its own way) and their AP is 0, so no quantization could
  lose any. Trained with seeds and TensorFlow op determinism, so one machine trains the
  same weights every time.
"""
import contextlib
import io
import os

_CACHE = {}


def settings(*pairs):
    """["--set", "KEY=VALUE", ...] for each "KEY=VALUE" pair."""
    return [word for pair in pairs for word in ("--set", pair)]


# Heads small enough for a 128 px model on two CPU cores.
SMALL_HEADS = ("TOP_DOWN_PYRAMID_SIZE=64", "FPN_CLASSIF_FC_LAYERS_SIZE=128",
               "ATTRIBUTE_FC_SIZE=64")
TINY = settings(*SMALL_HEADS, "TRAIN_ROIS_PER_IMAGE=32", "DETECTION_MAX_INSTANCES=30",
                "WARMUP_STEPS=5")
DEMO = settings("TOP_DOWN_PYRAMID_SIZE=128", "FPN_CLASSIF_FC_LAYERS_SIZE=512",
                "ATTRIBUTE_FC_SIZE=256", "WARMUP_STEPS=100", "VALIDATION_STEPS=1")


def run(argv):
    """fashion.py main(argv) in-process -> (exit code, stdout, stderr). `--quiet` is
    added unless the command asks for `-h`."""
    from fashion.fashion import main
    argv = list(argv)
    if argv and not argv[-1].startswith("-h"):
        argv.append("--quiet")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _deterministic(on):
    """Seeds and TensorFlow op determinism for the block (left as found afterwards)."""
    if not on:
        yield
        return
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    was = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was:
            tf_config.disable_op_determinism()


def train_demo(tmp_path_factory, name, images, size, steps, epochs=1, images_per_gpu=1,
               sets=(), flags=(), deterministic=False):
    """{base, demo, logs, data, run_dir, ckpt, train_out} of a demo run trained from
    scratch (ResNet18): `images` demo images at `size` px, `epochs` epochs of `steps`
    steps of `images_per_gpu` images, the `sets` (--set words) and other `flags` added.

    `data` holds the dataset flags and --logs, `ckpt` the last epoch's checkpoint and
    `train_out` what `train` printed.
    """
    key = (name, images, size, steps, epochs, images_per_gpu, tuple(sets), tuple(flags),
           deterministic)
    if key in _CACHE:
        return _CACHE[key]
    base = tmp_path_factory.mktemp(name)
    demo, logs = str(base / "demo"), str(base / "logs")
    data = ["--dataset", "demo", "--demo-dir", demo, "--demo-images", str(images),
            "--image-size", str(size), "--logs", logs]
    with _deterministic(deterministic):
        code, out, err = run(["train"] + data + [
            "--weights", "none", "--backbone", "resnet18", "--schedule", f"all:{epochs}",
            "--steps-per-epoch", str(steps), "--images-per-gpu", str(images_per_gpu)]
            + list(flags) + list(sets))
    assert code == 0, err
    run_dir = os.path.join(logs, [d for d in sorted(os.listdir(logs)) if d != "cache"][0])
    env = {"base": base, "demo": demo, "logs": logs, "data": data, "run_dir": run_dir,
           "ckpt": os.path.join(run_dir, f"mask_rcnn_fashion_{epochs:04d}.h5"),
           "train_out": out}
    _CACHE[key] = env
    return env


def tiny_run(tmp_path_factory):
    """The 24-image demo run (one epoch of 16 steps, batch 2, 128 px)."""
    return train_demo(tmp_path_factory, "tiny_run", images=24, size=128, steps=16,
                      images_per_gpu=2, sets=TINY)


def trained_run(tmp_path_factory):
    """The briefly trained run (4 epochs of 50 steps, batch 4, deterministic); its
    `data` is the demo set's flags only (--dataset, --demo-dir)."""
    env = train_demo(tmp_path_factory, "trained_run", images=60, size=128, steps=50,
                     epochs=4, images_per_gpu=4, sets=DEMO, flags=["--eval-every", "0"],
                     deterministic=True)
    return dict(env, data=["--dataset", "demo", "--demo-dir", env["demo"]])

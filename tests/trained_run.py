"""A briefly trained demo run whose detections mean something (ResNet18, 128 px, 200
steps on 60 demo images: segm AP about 0.2 on its 12 val images), shared by the tests
of int8 exports, OpenVINO and `benchmark`. Random weights are no use there: their
saturated scores tie everywhere (a runtime may break the ties its own way) and their AP
is 0, so no quantization could lose any.

Trained once per test process with seeds and TensorFlow op determinism, so one machine
trains the same weights every time.
"""
import os

from tests.tiny_run import run

_CACHE = {}
DEMO = ["--set", "TOP_DOWN_PYRAMID_SIZE=128", "--set", "FPN_CLASSIF_FC_LAYERS_SIZE=512",
        "--set", "ATTRIBUTE_FC_SIZE=256", "--set", "WARMUP_STEPS=100",
        "--set", "VALIDATION_STEPS=1"]


def trained_run(tmp_path_factory):
    """{base, demo, logs, data (dataset flags), ckpt, run_dir} of the trained run."""
    if "env" in _CACHE:
        return _CACHE["env"]
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config
    base = tmp_path_factory.mktemp("trained_run")
    demo, logs = str(base / "demo"), str(base / "logs")
    data = ["--dataset", "demo", "--demo-dir", demo, "--demo-images", "60",
            "--image-size", "128"]
    was = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    try:
        code, _, err = run(["train"] + data + [
            "--logs", logs, "--weights", "none", "--backbone", "resnet18",
            "--schedule", "all:4", "--steps-per-epoch", "50", "--images-per-gpu", "4",
            "--eval-every", "0"] + DEMO)
    finally:
        if not was:
            tf_config.disable_op_determinism()
    assert code == 0, err
    run_dir = os.path.join(logs, sorted(os.listdir(logs))[0])
    env = {"base": base, "demo": demo, "logs": logs, "run_dir": run_dir,
           "data": ["--dataset", "demo", "--demo-dir", demo],
           "ckpt": os.path.join(run_dir, "mask_rcnn_fashion_0004.h5")}
    _CACHE["env"] = env
    return env

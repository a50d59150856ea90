"""One briefly trained demo run (resnet18, 128 px) shared by test_tune and test_tta.

Trained once per test process: the first caller trains, later callers reuse it.
"""
import contextlib
import io
import os

_CACHE = {}
TINY = ["--set", "TOP_DOWN_PYRAMID_SIZE=64", "--set", "FPN_CLASSIF_FC_LAYERS_SIZE=128",
        "--set", "ATTRIBUTE_FC_SIZE=64", "--set", "TRAIN_ROIS_PER_IMAGE=32",
        "--set", "DETECTION_MAX_INSTANCES=30", "--set", "WARMUP_STEPS=5"]


def run(argv):
    """fashion.py main(argv) in-process -> (exit code, stdout, stderr)."""
    from fashion.fashion import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv) + ["--quiet"])
    return code, out.getvalue(), err.getvalue()


def tiny_run(tmp_path_factory):
    """{base, demo, logs, data (flags), ckpt, run_dir} of a 24-image demo run."""
    if "env" in _CACHE:
        return _CACHE["env"]
    base = tmp_path_factory.mktemp("tiny_run")
    demo, logs = str(base / "demo"), str(base / "logs")
    data = ["--dataset", "demo", "--demo-dir", demo, "--demo-images", "24",
            "--image-size", "128", "--logs", logs]
    code, _, err = run(["train"] + data + [
        "--weights", "none", "--backbone", "resnet18", "--schedule", "all:1",
        "--steps-per-epoch", "16", "--images-per-gpu", "2"] + TINY)
    assert code == 0, err
    run_dir = os.path.join(logs, sorted(os.listdir(logs))[0])
    env = {"base": base, "demo": demo, "logs": logs, "data": data, "run_dir": run_dir,
           "ckpt": os.path.join(run_dir, "mask_rcnn_fashion_0001.h5")}
    _CACHE["env"] = env
    return env

"""Core speed figures: inference and training-step seconds of ResNet50-FPN Mask R-CNN,
next to the peers' figures measured in the same run, plus peak memory.

    python benchmarks/bench_core.py --sizes 512 1024 --reps 5 \
        --torch-python /path/to/tv-venv/bin/python --tfm-python /path/to/tfm-venv/bin/python

Like with like (../shared/bench/README.md): random weights, 47 classes, 1000 proposals
after NMS, at most 100 detections, score threshold 0.05, 2 threads. The peers' scripts
are run from ../shared/bench when their virtual environments are given; torchvision is
also timed under its CPU bfloat16 autocast (benchmarks/torchvision_autocast.py). Ours
runs in float32 and with MIXED_PRECISION="auto" (bfloat16 on CPUs with avx512_bf16/AMX).

--set KEY=VALUE changes our config for a hand-set comparison, printed as such; e.g.
--set RPN_CONV_DEPTH=256 gives torchvision's RPN width (matterport's is 512, and its
weights need 512). The headline is the run without --set: what a user gets.
"""
import argparse
import os
import resource
import subprocess

from common import ROOT, SHARED_BENCH, cpu_line, timed  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


OVERRIDES = {}  # --set values, applied to every config of the run


def make_config(size, backbone, mode_batch=1, classes=47, precision="float32"):
    from mrcnn.config import Config

    class Bench(Config):
        NAME = "bench"
        NUM_CLASSES = classes
        BACKBONE = backbone
        IMAGES_PER_GPU = mode_batch
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        POST_NMS_ROIS_INFERENCE = 1000
        DETECTION_MAX_INSTANCES = 100
        DETECTION_MIN_CONFIDENCE = 0.05
        TRAIN_ROIS_PER_IMAGE = 512
        MAX_GT_INSTANCES = 10
        MIXED_PRECISION = precision
    for key, value in OVERRIDES.items():
        if not hasattr(Config, key):
            raise SystemExit(f"--set {key}: Config has no such attribute.")
        setattr(Bench, key, value)
    return Bench()  # EfficientNet: the pyramid and head sizes a user gets by default


def time_inference(size, backbone, reps, precision="float32"):
    """Median seconds per image of detect() on a random image; returns (median, params)."""
    from mrcnn.model import MaskRCNN
    from mrcnn.training.precision import resolve_precision
    if precision == "auto":  # what detect gets for a run trained with auto (its run file)
        precision = resolve_precision("auto")
    config = make_config(size, backbone, precision=precision)
    model = MaskRCNN("inference", config, "/tmp/bench_logs")
    image = np.random.RandomState(0).randint(0, 255, (size, size, 3)).astype(np.uint8)
    seconds = timed(lambda: model.detect([image]), reps).median
    return seconds, model.keras_model.count_params()


def time_train_step(size, backbone, reps, precision="float32", jit_compile=False):
    """Median seconds of one training step (batch 1, two instances) at a size."""
    import tensorflow as tf
    from mrcnn.data.pipeline import training_inputs
    from mrcnn.model import MaskRCNN
    from mrcnn.training import make_optimizer
    from mrcnn.utils import Dataset
    config = make_config(size, backbone, precision=precision)
    config.STATIC_SHAPES = config.STATIC_SHAPES or jit_compile  # XLA needs static shapes

    class Two(Dataset):
        def load_image(self, i):
            return np.random.RandomState(i).randint(0, 255, (size, size, 3)).astype(np.uint8)

        def load_mask(self, i):
            m = np.zeros((size, size, 2), bool)
            s = size / 512
            m[int(60 * s):int(220 * s), int(50 * s):int(200 * s), 0] = True
            m[int(100 * s):int(300 * s), int(220 * s):int(400 * s), 1] = True
            return m, np.array([1, 2], np.int32)
    ds = Two()
    for c in range(1, config.NUM_CLASSES):
        ds.add_class("b", c, f"c{c}")
    ds.add_image("b", 0, None)
    ds.prepare()
    model = MaskRCNN("training", config, "/tmp/bench_logs").keras_model  # policy applied
    model.compile(optimizer=make_optimizer(config, 1e-3), jit_compile=jit_compile)
    batch = next(iter(training_inputs(ds, config, 1, repeat=False)))
    del tf
    return timed(lambda: model.train_on_batch(batch), reps).median


def run_peer(python, script, size, threads, reps, local=False, no_train=False):
    """Runs a peer's reference script (local: one of ours beside this file);
    returns {"infer": s, "train_step": s}."""
    if not python or not os.path.exists(python):
        return {}
    path = (os.path.join(ROOT, "benchmarks", script) if local else
            os.path.join(SHARED_BENCH, script))
    args = [python, path, "--size", str(size), "--reps", str(reps)]
    if no_train:
        args.append("--no-train")
    if "torchvision" in script:  # the TF Model Garden script sets 2 threads itself
        args += ["--threads", str(threads)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    figures = {}
    for line in out.stdout.splitlines():
        if "median_s=" in line:
            kind = "infer" if " infer " in f" {line} " else "train_step"
            figures[kind] = float(line.split("median_s=")[1].split()[0])
    if not figures:
        print(f"  peer {script} gave no figures: {out.stderr.strip()[-300:]}")
    return figures


def cpu_summary():
    """The CPU line with its bf16 flags, and what "auto" precision picks on this CPU."""
    from mrcnn.training.precision import CPU_BF16_FLAGS, describe_precision
    return f"{cpu_line(CPU_BF16_FLAGS)}; auto -> {describe_precision('auto')}"


def measure(size, a):
    """One size: ours in float32 and auto, the peers in float32, torchvision in bf16."""
    row = {"size": size}
    row["infer32"], row["params"] = time_inference(size, a.backbone, a.reps, "float32")
    row["infer_auto"], _ = time_inference(size, a.backbone, a.reps, "auto")
    if not a.no_train and size <= 512:
        row["train32"] = time_train_step(size, a.backbone, a.reps, "float32")
        row["train_auto"] = time_train_step(size, a.backbone, a.reps, "auto",
                                            jit_compile=a.jit)
    row["tv"] = run_peer(a.torch_python, "torchvision_maskrcnn.py", size, a.threads, a.reps)
    row["tv16"] = run_peer(a.torch_python, "torchvision_autocast.py", size, a.threads,
                           a.reps, local=True, no_train=a.no_train or size > 512)
    row["tfm"] = run_peer(a.tfm_python, "tfm_maskrcnn.py", size, a.threads, a.reps)
    print(f"size {size}: {row}", flush=True)
    return row


def print_rows(rows):
    nan = float("nan")
    print(f"\n{'':22}{'ours fp32':>10}{'ours auto':>10}{'tv fp32':>9}{'tv bf16':>9}"
          f"{'TFM fp32':>9}{'auto/best fp32 peer':>21}{'auto/tv bf16':>14}")
    for r in rows:
        for kind, ours32, auto in (("infer", "infer32", "infer_auto"),
                                   ("train_step", "train32", "train_auto")):
            if ours32 not in r:
                continue
            peers = [v for v in (r["tv"].get(kind), r["tfm"].get(kind)) if v]
            best = min(peers) if peers else nan
            tv16 = r["tv16"].get(kind, nan)
            print(f"{r['size']:>5} {kind:<16}{r[ours32]:>10.3f}{r[auto]:>10.3f}"
                  f"{r['tv'].get(kind, nan):>9.3f}{tv16:>9.3f}{r['tfm'].get(kind, nan):>9.3f}"
                  f"{r[auto] / best:>21.2f}{r[auto] / tv16:>14.2f}")
    print("targets: auto <= 0.5 x the best peer's float32 time, <= 0.6 x torchvision bf16")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--torch-python", help="python of a venv with torch + torchvision")
    p.add_argument("--tfm-python", help="python of a venv with tf-models-official")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--jit", action="store_true", help="XLA-compile the auto train step (with STATIC_SHAPES, which XLA needs)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="hand-set Config value for our model (e.g. RPN_CONV_DEPTH=256)")
    a = p.parse_args()
    from mrcnn.config_io import parse_overrides
    OVERRIDES.update(parse_overrides(a.set))
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    print(cpu_summary(), flush=True)
    if OVERRIDES:
        print("HAND-SET config for ours (not the defaults): "
              + ", ".join(f"{k}={v}" for k, v in OVERRIDES.items()), flush=True)
    rows = [measure(size, a) for size in a.sizes]
    print_rows(rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MiB")


if __name__ == "__main__":
    main()

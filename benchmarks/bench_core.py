"""Core speed figures: inference and training-step seconds of ResNet50-FPN Mask R-CNN,
next to the peers' figures measured in the same run, plus peak memory.

    python benchmarks/bench_core.py --sizes 512 1024 --reps 5 \
        --torch-python /path/to/tv-venv/bin/python --tfm-python /path/to/tfm-venv/bin/python

Like with like (../shared/bench/README.md): random weights, 47 classes, 1000 proposals
after NMS, at most 100 detections, score threshold 0.05, 2 threads. The peers' scripts
are run from ../shared/bench when their virtual environments are given.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def make_config(size, backbone, mode_batch=1, classes=47, precision=None):
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
    if backbone.startswith("efficientnet"):
        Bench.TOP_DOWN_PYRAMID_SIZE = 64 if backbone.endswith("b0") else 160
    return Bench()


def time_inference(size, backbone, reps, precision=None):
    """Median seconds per image of detect() on a random image; returns (median, params)."""
    from mrcnn.model import MaskRCNN
    config = make_config(size, backbone, precision=precision)
    model = MaskRCNN("inference", config, "/tmp/bench_logs")
    image = np.random.RandomState(0).randint(0, 255, (size, size, 3)).astype(np.uint8)
    model.detect([image])
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        model.detect([image])
        times.append(time.perf_counter() - t)
    return statistics.median(times), model.keras_model.count_params()


def time_train_step(size, backbone, reps):
    """Median seconds of one training step (batch 1, two instances) at a size."""
    import tensorflow as tf
    from mrcnn import graph
    from mrcnn.data.pipeline import training_inputs
    from mrcnn.training import MaskRCNNTrainModel, make_optimizer
    from mrcnn.utils import Dataset
    config = make_config(size, backbone)

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
    inputs, outputs = graph.build_training_graph(config)
    model = MaskRCNNTrainModel(inputs, outputs, config)
    model.compile(optimizer=make_optimizer(config, 1e-3))
    batch = next(iter(training_inputs(ds, config, 1, repeat=False)))
    model.train_on_batch(batch)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        model.train_on_batch(batch)
        times.append(time.perf_counter() - t)
    del tf
    return statistics.median(times)


def run_peer(python, script, size, threads, reps):
    """Runs a peer's reference script; returns {"infer": s, "train_step": s}."""
    if not python or not os.path.exists(python):
        return {}
    path = os.path.join(ROOT, "..", "shared", "bench", script)
    args = [python, path, "--size", str(size), "--reps", str(reps)]
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
    p.add_argument("--bf16", action="store_true",
                   help="also time our inference with mixed_bfloat16 (AVX512-BF16/AMX CPUs)")
    a = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    rows = []
    for size in a.sizes:
        ours, params = time_inference(size, a.backbone, a.reps)
        train = None if a.no_train or size > 512 else time_train_step(size, a.backbone, a.reps)
        tv = run_peer(a.torch_python, "torchvision_maskrcnn.py", size, a.threads, a.reps)
        tfm = run_peer(a.tfm_python, "tfm_maskrcnn.py", size, a.threads, a.reps)
        rows.append((size, ours, train, tv, tfm, params))
        if a.bf16:
            bf16, _ = time_inference(size, a.backbone, a.reps, precision="mixed_bfloat16")
            print(f"size {size}: ours infer with mixed_bfloat16 {bf16:.3f}s", flush=True)
        print(f"size {size}: ours infer {ours:.3f}s"
              + (f", train step {train:.3f}s" if train else "")
              + (f" | torchvision infer {tv.get('infer', float('nan')):.3f}s"
                 f" train {tv.get('train_step', float('nan')):.3f}s" if tv else "")
              + (f" | TF Model Garden infer {tfm.get('infer', float('nan')):.3f}s" if tfm else "")
              + f" | {params / 1e6:.1f}M params", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'size':>5} {'ours infer':>11} {'peer best':>10} {'ratio':>6} "
          f"{'ours train':>11} {'torchvision':>12} {'ratio':>6}")
    for size, ours, train, tv, tfm, _ in rows:
        peers = [v for v in (tv.get("infer"), tfm.get("infer")) if v]
        best = min(peers) if peers else float("nan")
        tvt = tv.get("train_step", float("nan"))
        print(f"{size:>5} {ours:>11.3f} {best:>10.3f} {ours / best:>6.2f} "
              f"{(train or float('nan')):>11.3f} {tvt:>12.3f} "
              f"{(train or float('nan')) / tvt:>6.2f}")
    print(f"peak memory (this process): {peak:.0f} MiB; target: ratio <= 0.5")


if __name__ == "__main__":
    main()

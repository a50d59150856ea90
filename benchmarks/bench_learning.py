"""Learning fast on a CPU: train on the demo set for a fixed wall time from scratch, then
print segm AP50 on its validation split, training images per second, and the model's
step time with and without the real input pipeline.

    python benchmarks/bench_learning.py --minutes 10
    python benchmarks/bench_learning.py --minutes 10 --torch-python /path/tv-venv/bin/python

Targets: segm AP50 >= 0.5 within 15 minutes; training images/s at 256 px at
least 3x torchvision's Mask R-CNN (ResNet50-FPN) measured in the same run.
"""
import argparse
import os
import subprocess
import time

from common import DEMO_DIR, SHARED_BENCH  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def input_vs_model(config, dataset, steps=10):
    """Seconds per step: fed from the real tf.data pipeline vs one cached batch."""
    from mrcnn import graph
    from mrcnn.data.pipeline import training_inputs
    from mrcnn.training import MaskRCNNTrainModel, make_optimizer
    inputs, outputs = graph.build_training_graph(config)
    model = MaskRCNNTrainModel(inputs, outputs, config)
    model.compile(optimizer=make_optimizer(config, 1e-4))
    ds = training_inputs(dataset, config, config.BATCH_SIZE)
    it = iter(ds)
    batch = next(it)
    model.train_on_batch(batch)
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(batch)
    cached = (time.perf_counter() - t) / steps
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(next(it))
    piped = (time.perf_counter() - t) / steps
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    pipeline_only = (time.perf_counter() - t) / steps
    return cached, piped, pipeline_only


def torchvision_images_per_second(python, size):
    """Training images/s of torchvision's Mask R-CNN (batch 1) from the peer script."""
    script = os.path.join(SHARED_BENCH, "torchvision_maskrcnn.py")
    if not python or not os.path.exists(python):
        return None
    out = subprocess.run([python, script, "--size", str(size), "--threads", "2",
                          "--reps", "3"], capture_output=True, text=True, timeout=3600)
    for line in out.stdout.splitlines():
        if "train_step" in line:
            return 1.0 / float(line.split("median_s=")[1].split()[0])
    return None


# Settings before size-aware ROI sampling, bf16 auto and the budgeted cosine rate.
BASELINE_TRAIN = ["--mixed-precision", "float32", "--set", "LR_SCHEDULE=constant",
                  "--set", "TRAIN_ROIS_PER_IMAGE=50", "--set", "RPN_TRAIN_ANCHORS_PER_IMAGE=128"]


def hard_comparison(a):
    """Baseline vs new settings on the hard demo set, trained side by side."""
    from benchmarks.fixed_time import hard_demo, print_table, run_variants
    size = a.image_size if a.image_size != 128 else 256
    data = hard_demo(os.path.join(a.out, f"demo_hard_{size}"), num_images=750, size=size)
    if a.baseline_checkout:  # the old code itself, with its own defaults
        variants = {"baseline": ([], [], os.path.abspath(a.baseline_checkout))}
    else:  # today's code with the old settings
        variants = {"baseline": (BASELINE_TRAIN, ["--set", "MIXED_PRECISION=null"])}
    variants["new"] = ([], [])
    results = run_variants(variants, data, a.out, a.minutes, size, a.backbone)
    print_table(results, f"Hard demo set, {size} px, {a.backbone} from scratch, "
                f"{a.minutes} min each (run side by side)")
    base, new = results["baseline"], results["new"]
    if "segm_ap50" in base and "segm_ap50" in new:
        print(f"segm AP50 {base['segm_ap50']:.3f} -> {new['segm_ap50']:.3f}; steps "
              f"{base['steps']} -> {new['steps']} ({new['steps'] / max(base['steps'], 1):.2f}x)")
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--speed-size", type=int, default=256,
                   help="image size of the images/s comparison")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--demo-images", type=int, default=300)
    p.add_argument("--torch-python")
    p.add_argument("--out", default="/tmp/bench_learning")
    p.add_argument("--speed-only", action="store_true",
                   help="skip the timed demo training (needs data/demo generated)")
    p.add_argument("--hard", action="store_true",
                   help="the hard demo set (600 train + 150 val images at 256 px, crowds "
                   "of small garments): today's settings vs the new ones, same wall time")
    p.add_argument("--baseline-checkout", metavar="DIR",
                   help="with --hard: run the baseline from this checkout of an older "
                   "commit (git worktree add DIR COMMIT) with its own defaults, instead "
                   "of this code with the old settings")
    a = p.parse_args()
    if a.hard:
        return hard_comparison(a)
    from fashion.fashion import main as fashion_main
    if not a.speed_only:
        t = time.time()
        code = fashion_main(["demo", "--minutes", str(a.minutes), "--demo-images",
                             str(a.demo_images), "--image-size", str(a.image_size),
                             "--backbone", a.backbone, "--out", a.out,
                             "--logs", os.path.join(a.out, "logs")])
        print(f"demo run (train {a.minutes} min + evaluate): exit {code}, "
              f"{(time.time() - t) / 60:.1f} min wall")
    # Speed at the comparison size: the same compact model, real pipeline vs cached.
    from fashion.config import make_config
    from fashion.data.fashion_dataset import FashionDataset
    demo_dir = DEMO_DIR
    ds = FashionDataset()
    ds.load_imat2019(demo_dir, subset="train", limit=64)
    ds.prepare()
    config = make_config(a.speed_size, num_classes=ds.num_classes, num_attributes=0,
                         backbone=a.backbone, pretrained=False, IMAGES_PER_GPU=2)
    cached, piped, pipe = input_vs_model(config, ds)
    ours = config.BATCH_SIZE / piped
    print(f"\nat {a.speed_size} px, batch {config.BATCH_SIZE}: step {cached:.3f}s on a cached "
          f"batch, {piped:.3f}s fed by the tf.data pipeline; the pipeline alone yields a "
          f"batch every {pipe:.3f}s -> {ours:.2f} training images/s")
    tv = torchvision_images_per_second(a.torch_python, a.speed_size)
    if tv:
        print(f"torchvision Mask R-CNN R50-FPN at {a.speed_size} px: {tv:.2f} images/s "
              f"-> ratio {ours / tv:.1f}x (target >= 3)")


if __name__ == "__main__":
    main()

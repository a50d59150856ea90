"""Backbones side by side at one size: parameters, inference seconds per image and
training-step seconds of Mask R-CNN with ResNet50-FPN, ResNet101-FPN,
EfficientNet-B0-BiFPN and EfficientNet-B3-BiFPN (random weights, 2 threads).

    python benchmarks/bench_backbones.py --size 512 --reps 3
    python benchmarks/bench_backbones.py --shapes-minutes 10   # + shapes mAP@0.5, same wall time

Targets: B0-BiFPN at least 3x faster at inference than ResNet101-FPN with under
a quarter of its parameters; shapes mAP@0.5 within 0.05 of ResNet50-FPN for the same
training wall time.
"""
import argparse
import os

import common  # noqa: F401  (puts the repo root on sys.path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKBONES = ["resnet50", "resnet101", "efficientnet-b0", "efficientnet-b3"]


def shapes_map(backbone, minutes, logs):
    """Trains the shapes sample with a backbone for a wall time; returns mAP@0.5."""
    from mrcnn.model import MaskRCNN
    from samples.shapes.shapes import ShapesConfig, evaluate_map, make_datasets

    class C(ShapesConfig):
        NAME = f"shapes_{backbone.replace('-', '_')}"
        BACKBONE = backbone
        TOP_DOWN_PYRAMID_SIZE = 64 if backbone.startswith("efficientnet") else 128
    config = C()
    train, val = make_datasets(config)
    model = MaskRCNN("training", config, logs)
    model.train(train, val, config.LEARNING_RATE, 1000, "all", augmentation="flip",
                time_budget=minutes, verbose=0)
    infer = MaskRCNN("inference", config, logs)
    infer.load_weights(model.find_last())
    return evaluate_map(infer, val, config, limit=50)


def main():
    from bench_core import time_inference, time_train_step
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--backbones", nargs="+", default=BACKBONES)
    p.add_argument("--shapes-minutes", type=float, default=0,
                   help="also train shapes for this long per backbone and report mAP@0.5")
    p.add_argument("--logs", default="/tmp/bench_backbones_logs")
    a = p.parse_args()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    rows = {}
    for name in a.backbones:
        infer, params = time_inference(a.size, name, a.reps)
        step = time_train_step(a.size, name, a.reps)
        m = shapes_map(name, a.shapes_minutes, a.logs) if a.shapes_minutes else None
        rows[name] = (params, infer, step, m)
        print(f"{name:16} params {params / 1e6:6.1f}M  infer {infer:6.3f}s  "
              f"train step {step:6.3f}s" + (f"  shapes mAP@0.5 {m:.3f}" if m is not None
                                            else ""), flush=True)
    if "resnet101" in rows and "efficientnet-b0" in rows:
        r, b = rows["resnet101"], rows["efficientnet-b0"]
        print(f"\nB0-BiFPN vs ResNet101-FPN: {r[1] / b[1]:.2f}x faster inference "
              f"(target >= 3), {b[0] / r[0]:.2f} of the parameters (target < 0.25)")
    if a.shapes_minutes and "resnet50" in rows and "efficientnet-b0" in rows:
        print(f"shapes mAP@0.5 B0 - R50 = {rows['efficientnet-b0'][3] - rows['resnet50'][3]:+.3f}"
              " (target >= -0.05)")


if __name__ == "__main__":
    main()

"""Accuracy guard for MIXED_PRECISION="auto": the same wall time of from-scratch training
in float32 and in auto (bfloat16 on this CPU), both evaluated; then ONE trained model run
in both precisions on the val images, its detections compared.

    python benchmarks/bench_precision.py --minutes 8
    python benchmarks/bench_precision.py --agree-only --weights logs/.../mask_rcnn_x.h5

Agreement: every float32 detection (score >= --min-score) must have a bfloat16 one of
the same class whose mask IoU is >= 0.98 (and vice versa), from the same checkpoint.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def mask_iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 1.0


def match(r_a, r_b, min_score):
    """For each detection of r_a above min_score: the best mask IoU among r_b's of the
    same class (0 when none)."""
    ious = []
    for i in np.nonzero(r_a["scores"] >= min_score)[0]:
        same = np.nonzero(r_b["class_ids"] == r_a["class_ids"][i])[0]
        best = max((mask_iou(r_a["masks"][..., i], r_b["masks"][..., j]) for j in same),
                   default=0.0)
        ious.append(best)
    return ious


def load_model(weights, precision):
    from fashion.config import make_config, values_to_overrides
    from fashion.runs import read_run_file
    from mrcnn.model import MaskRCNN
    values = values_to_overrides(read_run_file(weights)["config"])
    values.update(IMAGES_PER_GPU=1, GPU_COUNT=1, MIXED_PRECISION=precision,
                  DETECTION_MIN_CONFIDENCE=0.05)
    config = make_config(values.pop("IMAGE_MAX_DIM"), values.pop("NUM_CLASSES"),
                         values.pop("NUM_ATTRIBUTES"), values.pop("BACKBONE"), **values)
    model = MaskRCNN("inference", config, "/tmp/bench_precision_logs")
    model.load_weights(weights)
    return model


def agreement(weights, data_dir, limit=60, min_score=0.5):
    """Detections of one checkpoint in float32 vs mixed_bfloat16 on val images."""
    from fashion.dataset import FashionDataset
    ds = FashionDataset()
    ds.load_imat2019(data_dir, subset="val")
    ds.prepare()
    fp32, bf16 = load_model(weights, None), load_model(weights, "mixed_bfloat16")
    ious, counts = [], [0, 0]
    for image_id in ds.image_ids[:limit]:
        image = ds.load_image(image_id)
        a, b = fp32.detect([image])[0], bf16.detect([image])[0]
        ious += match(a, b, min_score) + match(b, a, min_score)
        counts[0] += int((a["scores"] >= min_score).sum())
        counts[1] += int((b["scores"] >= min_score).sum())
    ious = np.array(ious)
    print(f"\nOne checkpoint in float32 vs mixed_bfloat16, {min(limit, len(ds.image_ids))} "
          f"val images, detections with score >= {min_score}: {counts[0]} vs {counts[1]}")
    if len(ious):
        print(f"matched (same class, mask IoU >= 0.98): {(ious >= 0.98).mean():.3f}; "
              f"mask IoU mean {ious.mean():.4f}, 5th percentile "
              f"{np.percentile(ious, 5):.4f}, min {ious.min():.4f}")
    return ious, counts


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=8)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--demo-images", type=int, default=300)
    p.add_argument("--hard", action="store_true", help="the hard demo set instead")
    p.add_argument("--out", default="/tmp/bench_precision")
    p.add_argument("--agree-only", action="store_true")
    p.add_argument("--weights", help="checkpoint for --agree-only")
    p.add_argument("--min-score", type=float, default=0.5)
    p.add_argument("--limit", type=int, default=60, help="val images compared")
    a = p.parse_args()
    from benchmarks.fixed_time import hard_demo, print_table, run_variants
    data = hard_demo(os.path.join(a.out, f"demo_{'hard_' if a.hard else ''}{a.image_size}"),
                     num_images=a.demo_images, size=a.image_size, hard=a.hard)
    if a.agree_only:
        return agreement(a.weights, data, a.limit, a.min_score)
    variants = {"float32": (["--mixed-precision", "float32"], ["--set", "MIXED_PRECISION=null"]),
                "auto": (["--mixed-precision", "auto"], [])}
    results = run_variants(variants, data, a.out, a.minutes, a.image_size, a.backbone)
    print_table(results, f"Demo set, {a.image_size} px, {a.backbone} from scratch, "
                f"{a.minutes} min each (run side by side)")
    if results["auto"].get("checkpoint"):
        agreement(results["auto"]["checkpoint"], data, a.limit, a.min_score)


if __name__ == "__main__":
    main()

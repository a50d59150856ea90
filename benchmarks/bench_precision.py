"""Accuracy guard for MIXED_PRECISION="auto": the same wall time of from-scratch training
in float32 and in auto (bfloat16 on this CPU), both evaluated; then ONE trained model run
in both precisions on the val images, its detections compared.

    python benchmarks/bench_precision.py --minutes 8
    python benchmarks/bench_precision.py --agree-only --weights logs/.../mask_rcnn_x.h5

Agreement: every float32 detection (score >= --min-score) must have a bfloat16 one of
the same class whose mask IoU is >= 0.98 (and vice versa), from the same checkpoint.
The share is also printed by garment size (the square root of the mask's area), and
``--control`` adds a yardstick: the same float32 model on each image and on that image
with one grey level of seeded noise (+-1, invisible, below JPEG's own error), i.e. how
far masks move when the input moves about as much as bfloat16's rounding moves it.
"""
import argparse
import os

import common  # noqa: F401  (puts the repo root on sys.path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def mask_iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 1.0


def match(r_a, r_b, min_score):
    """For each detection of r_a above min_score: (the best mask IoU among r_b's of the
    same class (0 when none), the side in pixels of r_a's mask (square root of its area))."""
    pairs = []
    for i in np.nonzero(r_a["scores"] >= min_score)[0]:
        same = np.nonzero(r_b["class_ids"] == r_a["class_ids"][i])[0]
        best = max((mask_iou(r_a["masks"][..., i], r_b["masks"][..., j]) for j in same),
                   default=0.0)
        pairs.append((best, float(np.sqrt(r_a["masks"][..., i].sum()))))
    return pairs


SIDES = (0, 16, 32, 64, np.inf)  # garment side buckets in pixels


def summarize(pairs, counts, title):
    """Prints the share of masks at IoU >= 0.98, overall and by garment side."""
    print(f"\n{title}: detections with score >= the threshold {counts[0]} vs {counts[1]}")
    if not pairs:
        return
    ious, sides = np.array(pairs).T
    print(f"  matched (same class, mask IoU >= 0.98): {(ious >= 0.98).mean():.3f}; mask IoU "
          f"mean {ious.mean():.4f}, 5th percentile {np.percentile(ious, 5):.4f}, "
          f"min {ious.min():.4f}")
    for lo, hi in zip(SIDES[:-1], SIDES[1:]):
        sel = (sides >= lo) & (sides < hi)
        if sel.any():
            print(f"  garment side {lo:>2}-{hi:<3} px: {sel.sum():4d} masks, IoU >= 0.98 "
                  f"{(ious[sel] >= 0.98).mean():.3f}, mean IoU {ious[sel].mean():.4f}")


def load_model(weights, precision):
    from fashion.config import make_config, values_to_overrides
    from fashion.run import read_run_file
    from mrcnn.model import MaskRCNN
    values = values_to_overrides(read_run_file(weights)["config"])
    values.update(IMAGES_PER_GPU=1, GPU_COUNT=1, MIXED_PRECISION=precision,
                  DETECTION_MIN_CONFIDENCE=0.05)
    config = make_config(values.pop("IMAGE_MAX_DIM"), values.pop("NUM_CLASSES"),
                         values.pop("NUM_ATTRIBUTES"), values.pop("BACKBONE"), **values)
    model = MaskRCNN("inference", config, "/tmp/bench_precision_logs")
    model.load_weights(weights)
    return model


def agreement(weights, data_dir, limit=60, min_score=0.5, control=False):
    """Detections of one checkpoint in float32 vs mixed_bfloat16 on val images (and,
    with control, float32 on each image vs on the image with +-1 grey level of noise).
    Returns {comparison: (pairs of (IoU, garment side), detection counts)}."""
    from fashion.data.fashion_dataset import FashionDataset
    ds = FashionDataset()
    ds.load_imat2019(data_dir, subset="val")
    ds.prepare()
    fp32, bf16 = load_model(weights, None), load_model(weights, "mixed_bfloat16")
    rng = np.random.default_rng(0)
    found = {"bf16": ([], [0, 0]), "noise": ([], [0, 0])}

    def compare(key, a, b):
        pairs, counts = found[key]
        pairs += match(a, b, min_score) + match(b, a, min_score)
        counts[0] += int((a["scores"] >= min_score).sum())
        counts[1] += int((b["scores"] >= min_score).sum())
    for image_id in ds.image_ids[:limit]:
        image = ds.load_image(image_id)
        a = fp32.detect([image])[0]
        compare("bf16", a, bf16.detect([image])[0])
        if control:
            noisy = np.clip(image.astype(np.int16) + rng.integers(-1, 2, image.shape),
                            0, 255).astype(np.uint8)
            compare("noise", a, fp32.detect([noisy])[0])
    n = min(limit, len(ds.image_ids))
    summarize(*found["bf16"], f"One checkpoint in float32 vs mixed_bfloat16, {n} val images")
    if control:
        summarize(*found["noise"], f"Control: float32 on the same {n} images vs with +-1 "
                  "grey level of noise")
    return found if control else {"bf16": found["bf16"]}


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
    p.add_argument("--control", action="store_true",
                   help="also compare float32 with float32 on +-1 grey level noisy images")
    a = p.parse_args()
    from benchmarks.fixed_time import hard_demo, print_table, run_variants
    data = hard_demo(os.path.join(a.out, f"demo_{'hard_' if a.hard else ''}{a.image_size}"),
                     num_images=a.demo_images, size=a.image_size, hard=a.hard)
    if a.agree_only:
        return agreement(a.weights, data, a.limit, a.min_score, a.control)
    variants = {"float32": (["--mixed-precision", "float32"], ["--set", "MIXED_PRECISION=null"]),
                "auto": (["--mixed-precision", "auto"], [])}
    results = run_variants(variants, data, a.out, a.minutes, a.image_size, a.backbone)
    print_table(results, f"Demo set, {a.image_size} px, {a.backbone} from scratch, "
                f"{a.minutes} min each (run side by side)")
    if results["auto"].get("checkpoint"):
        agreement(results["auto"]["checkpoint"], data, a.limit, a.min_score, a.control)


if __name__ == "__main__":
    main()

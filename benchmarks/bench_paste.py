"""Mask paste speed: milliseconds per 100 masks, inference.paste_mask (what detect() uses)
vs utils.unmold_mask (matterport's, scikit-image), and the number of differing pixels.

    python benchmarks/bench_paste.py --image 1024 --min-side 8 --max-side 300 --reps 5

Masks are smooth 28x28 probabilities (a sigmoid of blurred noise, like trained heads'),
boxes have sides drawn uniformly in [min-side, max-side] inside an image x image plane.
The median of `reps` runs' CPU time is printed.
"""
import argparse
import time

from common import timed  # the repo root on sys.path too

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn import inference, utils  # noqa: E402


def make_case(rng, n, image, min_side, max_side):
    """n smooth [28, 28] float32 masks and n boxes inside an image x image plane."""
    noise = rng.standard_normal((n, 7, 7))
    # Upsample 7x7 noise to 28x28 with a smooth kernel: blobs with soft edges.
    smooth = np.stack([utils.resize(z, (28, 28), order=3, mode="edge") for z in noise])
    masks = (1 / (1 + np.exp(-4 * smooth))).astype(np.float32)
    hs = rng.integers(min_side, max_side + 1, n)
    ws = rng.integers(min_side, max_side + 1, n)
    y1 = rng.integers(0, image - hs + 1)
    x1 = rng.integers(0, image - ws + 1)
    return masks, np.stack([y1, x1, y1 + hs, x1 + ws], axis=1)


def time_paste(paste, masks, boxes, planes, reps):
    """Median CPU milliseconds (process time: other engineers' load on a shared machine
    makes wall time swing 3x) to paste all masks, scaled to 100 masks."""
    def paste_all():
        for i in range(len(masks)):
            paste(masks[i], boxes[i], planes[i])
    median = timed(paste_all, reps, warmup=0, clock=time.process_time).median
    return median * 1000 * 100 / len(masks)


def cv2_only(mask, box, plane):
    """The paste before it matched matterport: cv2's edge-repeating resize (for scale)."""
    y1, x1, y2, x2 = box
    m = cv2.resize(mask, (int(x2 - x1), int(y2 - y1)), interpolation=cv2.INTER_LINEAR)
    inside = m >= 0.5
    plane[y1:y2, x1:x2] = inside
    return float(m[inside].mean()) if inside.any() else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--masks", type=int, default=100)
    p.add_argument("--image", type=int, default=1024)
    p.add_argument("--min-side", type=int, default=8)
    p.add_argument("--max-side", type=int, default=300)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    masks, boxes = make_case(np.random.default_rng(args.seed), args.masks, args.image,
                             args.min_side, args.max_side)
    ours = np.zeros((args.masks, args.image, args.image), bool)
    theirs = np.zeros_like(ours)

    def reference(mask, box, plane):
        plane[...] = utils.unmold_mask(mask, box, plane.shape)

    ms_ours = time_paste(inference.paste_mask, masks, boxes, ours, args.reps)
    ms_ref = time_paste(reference, masks, boxes, theirs, args.reps)
    ms_cv2 = time_paste(cv2_only, masks, boxes, np.zeros_like(ours), args.reps)
    area = np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    print(f"{args.masks} masks, boxes {args.min_side}-{args.max_side} px "
          f"(mean {area:.0f} px), image {args.image}:")
    print(f"  inference.paste_mask  {ms_ours:8.2f} ms per 100 masks")
    print(f"  utils.unmold_mask     {ms_ref:8.2f} ms per 100 masks "
          f"({ms_ref / ms_ours:.0f}x)")
    print(f"  cv2 resize alone      {ms_cv2:8.2f} ms per 100 masks (not matterport's)")
    print(f"  differing pixels      {np.count_nonzero(ours != theirs)}")


if __name__ == "__main__":
    main()

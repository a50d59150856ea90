"""`score` (a predictions file against annotations) and `check` (a mask
regression check: every expected mask needs a predicted mask with IoU > 0.9)."""
import argparse
import json
import os

import numpy as np

from fashion.cli_args import add_model_args
from fashion.errors import CheckFailed, CLIError
from fashion.run import Run

SCORE_EXAMPLES = """examples:
  python fashion/fashion.py score --annotations results/ground_truth_val.json \\
      --predictions results/predictions_val.jsonl --metric coco --json
  python fashion/fashion.py score --annotations instances_attributes_val2020.json \\
      --predictions pred.json --metric fashionpedia
  # boundary AP: how well the masks follow the objects' edges (Boundary IoU)
  python fashion/fashion.py score --annotations results/ground_truth_val.json \\
      --predictions results/predictions_val.jsonl --iou-type boundary
"""
CHECK_EXAMPLES = """examples:
  # record the current model's masks as the expected ones, then check later runs
  python fashion/fashion.py check --weights last --image tests/data/person.jpg \\
      --expected tests/data/expected_masks --update
  python fashion/fashion.py check --weights last --image tests/data/person.jpg \\
      --expected tests/data/expected_masks
"""


def add_parser(subparsers, parents):
    """Adds both commands of this module: score and check."""
    p = subparsers.add_parser(
        "score", parents=parents, help="score predictions against COCO-format annotations",
        description="COCO AP (coco), Fashionpedia AP with IoU+F1 (fashionpedia) or the "
        "iMaterialist 2019 score (imat) of a JSON Lines / JSON predictions file. "
        "Predictions that cannot be scored (malformed or garbage RLE, a mask not of its "
        "image's size, an image or category the annotations lack) are skipped with one "
        "warning counting them and naming the first line; when none is left, an error.",
        epilog=SCORE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, metavar="GT.json")
    p.add_argument("--predictions", required=True, metavar="PRED.jsonl")
    p.add_argument("--metric", default="coco", choices=["coco", "fashionpedia", "imat"])
    p.add_argument("--iou-type", default="segm", choices=["segm", "boundary"],
                   help="how a predicted mask overlaps a true one: segm (mask IoU, the "
                   "default) or boundary (the minimum of mask IoU and Boundary IoU, which "
                   "looks at a band 2%% of the image diagonal wide along each mask's edge; "
                   "--metric coco only); box AP is printed too")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object {\"segm\": {...}, \"bbox\": {...}} last "
                   "(\"boundary\" in place of \"segm\" with --iou-type boundary)")
    p.set_defaults(func=run_score)

    c = subparsers.add_parser(
        "check", parents=parents, help="regression check of predicted masks",
        description="Detects on one image; every expected mask (DIR/*.npy, bool [H, W]) "
        "must be matched by a predicted mask with IoU > --iou (0.9). Prints OK or FAIL "
        "per mask; exit code 1 when any fails.", epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(c)
    c.add_argument("--image", required=True)
    c.add_argument("--expected", required=True, metavar="DIR_OF_NPY")
    c.add_argument("--iou", type=float, default=0.9)
    c.add_argument("--update", action="store_true",
                   help="write the current predicted masks to DIR as mask_NN.npy instead")
    c.set_defaults(func=run_check)


def run_score(args):
    from fashion.imat_metric import score
    types = (args.iou_type, "bbox")
    if args.iou_type == "boundary" and args.metric != "coco":
        raise CLIError(f"--iou-type boundary is scored with --metric coco only; drop "
                       f"--metric {args.metric} or --iou-type boundary.")
    result = score(args.annotations, args.predictions, metric=args.metric, iou_types=types)
    keys = list(result[types[0]])
    print("metric".ljust(9) + "".join(k.rjust(11) for k in keys))
    for t in types:
        print(t.ljust(9) + "".join(f"{result[t][k]:11.4f}" for k in keys))
    if args.json:
        print(json.dumps({t: result[t] for t in types}))
    return result


def _expected_masks(directory):
    if not os.path.isdir(directory):
        raise CLIError(f"--expected {directory} is not a directory; pass the directory "
                       "of expected .npy masks (or add --update to create it).")
    names = sorted(f for f in os.listdir(directory) if f.endswith(".npy"))
    if not names:
        raise CLIError(f"{directory} holds no .npy masks; create them with --update.")
    out = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            mask = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise CLIError(f"{path} is not a numpy mask file ({e}); replace it.") from None
        if mask.ndim != 2 or not mask.any():
            raise CLIError(f"{path} has shape {mask.shape} and {int(mask.sum())} set "
                           "pixels; an expected mask is a non-empty bool [H, W] array.")
        out.append((name, mask.astype(bool)))
    return out


def run_check(args):
    from mrcnn.data.dataset import read_image
    from mrcnn.fileio import atomic_write_bytes
    image = read_image(args.image)                                  # [H, W, 3]
    model = Run.from_args(args).model()
    masks = model.detect([image])[0]["masks"]                       # [H, W, N]
    if args.update:
        os.makedirs(args.expected, exist_ok=True)
        kept = [i for i in range(masks.shape[-1]) if masks[:, :, i].any()]
        for n, i in enumerate(kept):
            atomic_write_bytes(os.path.join(args.expected, f"mask_{n:02d}.npy"),
                               _npy_bytes(masks[:, :, i]))
        print(f"Wrote {len(kept)} expected masks to {args.expected}")
        return {"written": len(kept)}
    failures = 0
    for name, expected in _expected_masks(args.expected):
        if expected.shape != image.shape[:2]:
            raise CLIError(f"{name} is {expected.shape[0]}x{expected.shape[1]} but "
                           f"{args.image} is {image.shape[0]}x{image.shape[1]}; the "
                           "expected masks must have the image's size.")
        inter = (masks & expected[:, :, None]).sum(axis=(0, 1))     # [N]
        union = (masks | expected[:, :, None]).sum(axis=(0, 1))     # [N]
        ious = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        best = float(ious.max()) if ious.size else 0.0
        ok = best > args.iou
        failures += not ok
        print(f"{'OK' if ok else 'FAIL':4} {name}  best IoU {best:.3f}")
    if failures:
        raise CheckFailed(f"{failures} expected mask(s) had no predicted mask with IoU > "
                          f"{args.iou}.")
    return {"failures": 0}


def _npy_bytes(array):
    import io
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=bool))
    return buf.getvalue()

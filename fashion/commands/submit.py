"""`submit`: predictions (JSON Lines) -> a Kaggle iMaterialist 2019 / 2020 CSV.

Masks of one image are made non-overlapping (higher score wins the pixels) and encoded
as Kaggle RLE (fashion.rle.encode). Images that have no detection get one placeholder
row ("1 1", ClassId 23, as in Kaggle's sample submission) when the list of all images is
known: from detect's sidecar PRED.images.json (used when present) or from --images.
ImageId is the file name with its extension for 2019 and without it for 2020, as in the
competitions' test sets.
"""
import argparse
import csv
import io
import json
import os
from collections import OrderedDict

import numpy as np

from fashion.data_sources import find_images, progress
from fashion.detections import sidecar_path
from fashion.errors import CLIError

EMPTY_PIXELS, EMPTY_CLASS = "1 1", 23
COLUMNS = {"imat2019": ["ImageId", "EncodedPixels", "ClassId"],
           "imat2020": ["ImageId", "EncodedPixels", "ClassId", "AttributesIds"]}
EXAMPLES = """examples:
  python fashion/fashion.py submit --predictions pred.jsonl --format imat2019 --out submission.csv
  python fashion/fashion.py submit --predictions pred.jsonl --format imat2020 \\
      --images /data/imat2020/test --min-score 0.5 --out submission.csv
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "submit", parents=parents, help="Kaggle CSV from predictions",
        description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions", required=True, metavar="PRED.jsonl")
    p.add_argument("--format", required=True, choices=sorted(COLUMNS))
    p.add_argument("--out", required=True, metavar="submission.csv")
    p.add_argument("--images", default=None, metavar="DIR_OR_GLOB",
                   help="all test images (default: the predictions' .images.json sidecar)")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="drop detections below this score first")
    p.set_defaults(func=run)
    return p


def _image_key(pred):
    return str(pred.get("filename") or pred["image_id"])


def _all_images(args):
    """Names of every image to list (None when unknown)."""
    if args.images:
        return [os.path.basename(p) for p in find_images(args.images)]
    side = sidecar_path(args.predictions)
    if os.path.isfile(side):
        try:
            with open(side, encoding="utf-8") as f:
                return [i["filename"] for i in json.load(f)["images"]]
        except (ValueError, KeyError, TypeError) as e:
            raise CLIError(f"{side} is not a detect sidecar ({e}); delete it or pass "
                           "--images.") from None
    return None


def non_overlapping(masks, scores):
    """masks [N, H, W] bool, scores [N] -> masks where each pixel keeps only the
    highest-scoring instance, in decreasing score order, plus that order."""
    order = np.argsort(-np.asarray(scores), kind="stable")        # [N]
    taken = np.zeros(masks.shape[1:], dtype=bool)                   # [H, W]
    out = []
    for i in order:
        m = masks[i] & ~taken                                       # [H, W]
        taken |= m
        out.append(m)
    return out, order


def image_rows(preds, image_id, fmt):
    """CSV rows of one image's predictions."""
    from fashion import rle
    from fashion.rle import coco_to_mask
    masks = np.stack([coco_to_mask(p["segmentation"]) for p in preds])  # [N, H, W]
    kept, order = non_overlapping(masks, [p["score"] for p in preds])
    rows = []
    for m, i in zip(kept, order):
        if not m.any():
            continue
        row = [image_id, rle.encode(m), int(preds[i]["category_id"])]
        if fmt == "imat2020":
            row.append(",".join(str(a) for a in sorted(preds[i].get("attribute_ids") or [])))
        rows.append(row)
    return rows


def run(args):
    from mrcnn.evaluation.predictions import read_predictions
    from mrcnn.fileio import atomic_write_text
    by_image = OrderedDict()
    for pred in read_predictions(args.predictions):
        if "segmentation" not in pred:
            raise CLIError(f"{args.predictions}: a prediction of image {pred['image_id']} "
                           "has no 'segmentation'; submissions need masks.")
        if pred["score"] >= args.min_score:
            by_image.setdefault(_image_key(pred), []).append(pred)
    names = _all_images(args)
    if names is None:
        names = list(by_image)
    elif not set(by_image) <= set(names):
        extra = sorted(set(by_image) - set(names))
        raise CLIError(f"{len(extra)} predicted image(s) such as {extra[0]} are not in the "
                       "image list; pass the --images the predictions were made on.")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS[args.format])
    empty, rows = 0, 0
    for name in progress(names, "submit"):
        image_id = name if args.format == "imat2019" else os.path.splitext(name)[0]
        out = image_rows(by_image[name], image_id, args.format) if name in by_image else []
        if not out:
            empty += 1
            out = [[image_id, EMPTY_PIXELS, EMPTY_CLASS] + (
                [""] if args.format == "imat2020" else [])]
        writer.writerows(out)
        rows += len(out)
    atomic_write_text(args.out, buffer.getvalue())
    print(f"{rows} rows for {len(names)} images ({empty} without detections) -> {args.out}")
    return {"out": args.out, "rows": rows, "images": len(names), "empty": empty}

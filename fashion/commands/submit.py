"""`submit`: predictions (JSON Lines) -> a Kaggle iMaterialist 2019 / 2020 CSV.

Masks of one image are made non-overlapping (higher score wins the pixels) and encoded
as Kaggle RLE (fashion.data.rle.encode). Images that have no detection get one placeholder
row ("1 1", ClassId 23, as in Kaggle's sample submission) when the list of all images is
known: from detect's sidecar PRED.images.json (used when present) or from --images.
ImageId is the file name with its extension for 2019 and without it for 2020, as in the
competitions' test sets.

A prediction that cannot be used (not JSON, garbage RLE, a mask not of its image's size
when the sizes are known from the sidecar or --images, non-finite numbers) stops the
command with one sentence naming the file and line, and nothing is written: a
submission missing masks would score silently lower. An empty predictions file is an
error without an image list (the CSV would have no rows) and a warning with one.
"""
import argparse
import csv
import io
import json
import logging
import os
from collections import OrderedDict

import numpy as np

from fashion.data.sources import find_images, progress
from fashion.inference.outputs import sidecar_path
from fashion.errors import CLIError

log = logging.getLogger("fashion")

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


def _size_keys(name, image_id=None):
    """The ways a prediction may name an image: detect's image_id (the file's stem),
    the file name, or a numeric id."""
    stem = os.path.splitext(name)[0]
    keys = {name, stem} | ({int(stem)} if stem.isdigit() else set())
    return keys | ({image_id} if image_id is not None else set())


def _header_size(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, ValueError):
        return None


def _all_images(args):
    """(names of every image to list, {image key: (height, width)}); (None, None)
    when unknown; the sizes are None when the list does not give them."""
    if args.images:
        paths = find_images(args.images)
        sizes = {}
        for path in paths:
            size = _header_size(path)
            for key in _size_keys(os.path.basename(path)) if size else ():
                sizes[key] = size
        return [os.path.basename(p) for p in paths], sizes
    side = sidecar_path(args.predictions)
    if not os.path.isfile(side):
        return None, None
    try:
        with open(side, encoding="utf-8") as f:
            images = json.load(f)["images"]
        names = [i["filename"] for i in images]
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(f"{side} is not a detect sidecar ({e}); delete it or pass "
                       "--images.") from None
    if not all(isinstance(i, dict) and "height" in i and "width" in i for i in images):
        return names, None
    return names, {k: (int(i["height"]), int(i["width"])) for i in images
                   for k in _size_keys(i["filename"], i.get("image_id"))}


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
    from fashion.data import rle
    from fashion.data.rle import coco_to_mask
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


def _by_image(args, sizes):
    """Predictions at or above --min-score grouped by image (file order kept); a bad
    record stops with the file and line; the masks of one image must agree in size."""
    from mrcnn.evaluation.predictions import read_predictions
    by_image, count = OrderedDict(), 0
    for pred in read_predictions(args.predictions, image_sizes=sizes):
        count += 1
        if "segmentation" not in pred:
            raise CLIError(f"{args.predictions}: a prediction of image {pred['image_id']} "
                           "has no 'segmentation'; submissions need masks.")
        if pred["score"] < args.min_score:
            continue
        group = by_image.setdefault(_image_key(pred), [])
        if group and group[0]["segmentation"]["size"] != pred["segmentation"]["size"]:
            raise CLIError(f"{args.predictions}: prediction {count} of image "
                           f"{_image_key(pred)} has a {pred['segmentation']['size']} mask "
                           f"but an earlier one has {group[0]['segmentation']['size']}; "
                           "write every mask at its image's original size.")
        group.append(pred)
    return by_image, count


def run(args):
    from mrcnn.fileio import atomic_write_text
    names, sizes = _all_images(args)
    by_image, count = _by_image(args, sizes)
    if not count and names is None:
        raise CLIError(f"{args.predictions} holds no predictions and the list of images is "
                       f"unknown (no {os.path.basename(sidecar_path(args.predictions))}, no "
                       "--images), so the CSV would have no rows; pass --images or the "
                       "predictions of a detect run.")
    if not count:
        log.warning("%s holds no predictions: every image gets the placeholder row.",
                    args.predictions)
    elif not by_image:
        log.warning("All %d predictions in %s are below --min-score %g: every image gets "
                    "the placeholder row.", count, args.predictions, args.min_score)
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

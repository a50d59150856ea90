"""`detect`: run a trained model on image files -> JSON Lines predictions (+ overlays).

Besides PRED.jsonl, detect writes PRED.images.json: every image it was given (id, file
name, size) and the ones it could not read, so `submit` can write a row for images
without detections.
"""
import argparse
import logging
import os

from fashion.cli_args import add_model_args
from fashion.data.sources import find_images, progress
from fashion.inference.outputs import draw_overlay, sidecar_path, to_records
from fashion.inference.detector import add_postprocess_args
from fashion.errors import CLIError
from fashion.run import add_precision_arg, detector_from_args

log = logging.getLogger("fashion")

EXAMPLES = """examples:
  python fashion/fashion.py detect --weights last --images data/demo/train \\
      --out results/pred.jsonl --overlays results/overlays
  python fashion/fashion.py detect --weights logs/fashion20250101T1200/mask_rcnn_fashion_0040.h5 \\
      --images "photos/*.jpg" --out pred.jsonl --tta
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "detect", parents=parents, help="detect clothes in images -> JSON Lines",
        description="One JSON line per detection: image_id, filename, category_id, bbox "
        "[x, y, w, h], score, segmentation (compressed COCO RLE), mask_mean_score, "
        "mask_area_fraction, attribute_probabilities, attribute_ids, id. A sidecar "
        "PRED.images.json lists every input image.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_precision_arg(p)
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB")
    p.add_argument("--out", required=True, metavar="PRED.jsonl")
    p.add_argument("--overlays", default=None, metavar="DIR",
                   help="also draw each image's detections to DIR/<name>.png")
    add_postprocess_args(p)
    p.set_defaults(func=run)
    return p


def run(args):
    from mrcnn.data.dataset import read_image
    from mrcnn.evaluation.predictions import PredictionWriter
    from mrcnn.fileio import write_json
    paths = find_images(args.images)
    if os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} is a directory; give a file name such as "
                       f"{os.path.join(args.out, 'pred.jsonl')}.")
    detector, run = detector_from_args(args)
    meta, weights = run.meta, run.checkpoint
    print(run.describe(detector.model.config))
    images, failed, count = [], [], 0
    with PredictionWriter(args.out) as writer:
        for path in progress(paths, "detect"):
            name = os.path.basename(path)
            try:
                image = read_image(path)                           # [H, W, 3] uint8
            except (FileNotFoundError, ValueError) as e:
                failed.append({"filename": name, "error": str(e)})
                continue
            image_id = os.path.splitext(name)[0]
            result = detector(image)
            writer.write_all(to_records(result, image_id, name, meta, count + 1))
            count += len(result["class_ids"])
            images.append({"image_id": image_id, "filename": name,
                           "height": int(image.shape[0]), "width": int(image.shape[1]),
                           "detections": int(len(result["class_ids"]))})
            if args.overlays:
                os.makedirs(args.overlays, exist_ok=True)
                draw_overlay(image, result, meta,
                             os.path.join(args.overlays, image_id + ".png"))
        if not images:
            raise CLIError(f"None of the {len(paths)} images under {args.images} could be "
                           f"read (first: {failed[0]['error']}); check the files.")
    write_json(sidecar_path(args.out), {"weights": os.path.abspath(weights),
                                        "format": meta.get("format"), "images": images,
                                        "failed": failed})
    if failed:
        log.warning("Skipped %d unreadable image(s); first: %s", len(failed),
                    failed[0]["error"])
    print(f"{count} detections in {len(images)} images -> {args.out}"
          + (f"; overlays in {args.overlays}" if args.overlays else ""))
    return {"predictions": args.out, "detections": count, "images": len(images),
            "failed": len(failed)}

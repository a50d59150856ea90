"""`detect`: run a trained model on image files -> JSON Lines predictions (+ overlays).

Besides PRED.jsonl, detect writes PRED.images.json: every image it was given (id, file
name, size) and the ones it could not read, so `submit` can write a row for images
without detections.
"""
import argparse
import logging
import os

import numpy as np

from fashion.commands.common import (CLIError, category_of, find_images, inference_model,
                                     progress, write_json)

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
    p.add_argument("--images", required=True, metavar="DIR_OR_GLOB")
    p.add_argument("--out", required=True, metavar="PRED.jsonl")
    p.add_argument("--overlays", default=None, metavar="DIR",
                   help="also draw each image's detections to DIR/<name>.png")
    p.add_argument("--tta", action="store_true",
                   help="add horizontal-flip test-time augmentation (merged by mask NMS)")
    p.set_defaults(func=run)
    return p


def add_model_args(p, data_flags=True):
    """Flags choosing the inference model; data_flags=False when the parser already
    has --format and --image-size (evaluate)."""
    from fashion.commands.common import FORMATS
    p.add_argument("--weights", default="last", metavar="PATH|last",
                   help="a checkpoint, or the newest one under --logs (default)")
    if data_flags:
        p.add_argument("--format", default=None, choices=FORMATS, help="label set when "
                       "the weights have no fashion_run.json beside them")
        p.add_argument("--image-size", type=int, default=None,
                       help="override the run's image size")
    p.add_argument("--backbone", default=None, help="override the run's backbone")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="DETECTION_MIN_CONFIDENCE (detect/check: the run's value; "
                   "evaluate: 0.05, as usual for AP)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any Config attribute for the inference model")


# ---------------------------------------------------------------------- TTA
def _flip_result(result, width):
    """A detect() result on a flipped image -> the same detections on the original."""
    out = dict(result)
    rois = np.array(result["rois"], copy=True)                     # [N, (y1, x1, y2, x2)]
    rois[:, 1], rois[:, 3] = width - result["rois"][:, 3], width - result["rois"][:, 1]
    out["rois"] = rois
    out["masks"] = result["masks"][:, ::-1, :]                      # [H, W, N]
    return out


def _mask_iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 0.0


def merge_detections(results, iou_threshold=0.5, max_instances=100):
    """Per-class mask NMS over several detect() results of one image."""
    keys = [k for k in ("class_ids", "scores", "mask_scores", "attribute_probabilities")
            if all(k in r for r in results)]
    cat = {k: np.concatenate([r[k] for r in results]) for k in keys}
    rois = np.concatenate([r["rois"] for r in results])            # [M, 4]
    masks = np.concatenate([r["masks"] for r in results], axis=-1)  # [H, W, M]
    order = np.argsort(-cat["scores"], kind="stable")
    keep = []
    for i in order:
        if len(keep) >= max_instances:
            break
        if all(cat["class_ids"][j] != cat["class_ids"][i]
               or _mask_iou(masks[..., i], masks[..., j]) <= iou_threshold for j in keep):
            keep.append(i)
    keep = np.array(keep, dtype=np.int64)
    out = {k: v[keep] for k, v in cat.items()}
    out["rois"], out["masks"] = rois[keep], masks[..., keep]
    return out


def detect_one(model, image, tta=False):
    """detect() on one image [H, W, 3], optionally with flip TTA."""
    result = model.detect([image])[0]
    if not tta:
        return result
    flipped = _flip_result(model.detect([image[:, ::-1].copy()])[0], image.shape[1])
    return merge_detections([result, flipped], model.config.DETECTION_NMS_THRESHOLD + 0.2,
                            model.config.DETECTION_MAX_INSTANCES)


def to_records(result, image_id, filename, meta, first_id):
    from mrcnn.evaluation.predictions import detection_to_records
    return detection_to_records(image_id, filename, result, category_of(meta),
                                meta.get("attribute_index_to_id") or None,
                                first_id=first_id)


def draw_overlay(image, result, meta, path):
    from mrcnn.visualize import draw_instances_on_image
    draw_instances_on_image(image, result["rois"], result["masks"], result["class_ids"],
                            meta["class_names"], result["scores"], save_path=path)


# ---------------------------------------------------------------------- command
def sidecar_path(pred_path):
    return os.path.splitext(os.fspath(pred_path))[0] + ".images.json"


def run(args):
    from mrcnn.data.dataset import read_image
    from mrcnn.evaluation.predictions import PredictionWriter
    paths = find_images(args.images)
    if os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} is a directory; give a file name such as "
                       f"{os.path.join(args.out, 'pred.jsonl')}.")
    model, meta, weights = inference_model(args)
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
            result = detect_one(model, image, args.tta)
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

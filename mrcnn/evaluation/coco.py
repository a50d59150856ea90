"""COCO-style mask, boundary and box AP with pycocotools.

`evaluate_coco(gt, predictions)` returns the six standard COCO AP numbers per IoU
type, per-class AP tables and COCOeval's precision arrays (for PR curves). Masks
stay compressed RLE throughout. The "boundary" type is boundary AP: COCO's matching
on min(mask IoU, Boundary IoU) (mrcnn.evaluation.boundary).
"""

import contextlib
import io
import json
import os
import warnings

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.evaluation.boundary import BoundaryCOCOeval

METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("bbox", "segm", "boundary")
MASK_TYPES = ("segm", "boundary")


@contextlib.contextmanager
def _maybe_quiet(quiet):
    """Swallow pycocotools' prints when quiet."""
    if quiet:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    else:
        yield


def load_ground_truth(gt):
    """Return a COCO-format dict from a dict or a JSON file path.

    Raises FileNotFoundError / ValueError naming the file and missing key.
    """
    name = "the ground truth dict"
    if not isinstance(gt, dict):
        path = os.fspath(gt)
        name = path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"annotations file {path} does not exist; check the path")
        try:
            with open(path, "r", encoding="utf-8") as f:
                gt = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(gt, dict):
            raise ValueError(f"{path} must hold a COCO-format JSON object, got a {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"{name} has no '{key}' key; a COCO-format file needs "
                             "'images', 'annotations' and 'categories'")
    return gt


def build_gt_coco(gt, quiet=True):
    """COCO object from a COCO-format dict or path, without writing files.

    Annotations are shallow-copied, then completed: `iscrowd` defaults to 0 and a
    missing `area` or `bbox` is computed from the segmentation.
    """
    dataset = load_ground_truth(gt)
    dataset = dict(dataset)
    dataset["annotations"] = [dict(a) for a in dataset["annotations"]]
    coco = COCO()
    coco.dataset = dataset
    with _maybe_quiet(quiet):
        coco.createIndex()
    for i, ann in enumerate(dataset["annotations"]):
        for key in ("image_id", "category_id"):
            if key not in ann:
                raise ValueError(f"ground truth annotation {i} (id {ann.get('id')}) has no '{key}'")
        if ann["image_id"] not in coco.imgs:
            raise ValueError(f"ground truth annotation {i} refers to image {ann['image_id']}, "
                             "which is not listed in 'images'")
        ann.setdefault("iscrowd", 0)
        if "area" not in ann or "bbox" not in ann:
            if "segmentation" not in ann:
                raise ValueError(f"ground truth annotation {i} has neither 'bbox' nor "
                                 "'segmentation'")
            rle = coco.annToRLE(ann)
            ann.setdefault("area", float(mask_utils.area(rle)))
            ann.setdefault("bbox", [float(v) for v in mask_utils.toBbox(rle)])
    return coco


def select_predictions(coco_gt, predictions, image_ids=None):
    """Keep predictions whose image is in the ground truth.

    Returns a list of shallow copies. Predictions of unknown images are dropped
    with one counted warning; if no prediction matches any image, ValueError.
    """
    known = set(coco_gt.imgs) if image_ids is None else set(image_ids) & set(coco_gt.imgs)
    kept, dropped, seen = [], 0, set()
    for pred in predictions:
        seen.add(pred["image_id"])
        if pred["image_id"] in known:
            kept.append(dict(pred))
        else:
            dropped += 1
    if dropped and not kept:
        sample = sorted(map(str, seen))[:3]
        raise ValueError(
            f"none of the {dropped} predictions refers to an image of the ground truth "
            f"(prediction image ids such as {', '.join(sample)}); check that the "
            "predictions and the annotations file come from the same split and id scheme")
    if dropped:
        warnings.warn(f"skipped {dropped} predictions whose image_id is not in the ground "
                      "truth (or not in the selected image_ids)", stacklevel=3)
    return kept


def _per_class(precision, coco_gt, cat_ids):
    """AP and AP50 per category from precision [T, R, K, A, M] (area all, maxDets 100)."""
    rows = []
    for k, cat_id in enumerate(cat_ids):
        p_all = precision[:, :, k, 0, -1]  # [T, R]
        p_50 = precision[0, :, k, 0, -1]  # [R]
        valid = p_all[p_all > -1]
        rows.append({
            "category_id": cat_id,
            "name": coco_gt.cats[cat_id].get("name", str(cat_id)),
            "num_gt": len(coco_gt.getAnnIds(catIds=[cat_id], iscrowd=False)),
            "AP": float(valid.mean()) if valid.size else -1.0,
            "AP50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else -1.0,
        })
    return rows


def _run_cocoeval(coco_gt, coco_dt, iou_type, image_ids, quiet, band_cache=None):
    if iou_type == "boundary":
        evaluator = BoundaryCOCOeval(coco_gt, coco_dt, band_cache=band_cache)
    else:
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
    if image_ids is not None:
        evaluator.params.imgIds = sorted(set(image_ids) & set(coco_gt.imgs))
    with _maybe_quiet(quiet):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_coco(gt, predictions, iou_types=("bbox", "segm", "boundary"), per_class=True,
                  image_ids=None, quiet=True, band_cache=None):
    """COCO AP of predictions against ground truth, with pycocotools.

    Args:
        gt: COCO-format dict or path to its JSON file (images, annotations with
            polygon or RLE segmentations, categories).
        predictions: iterable of prediction dicts (see predictions.py).
        iou_types: any of "bbox", "segm", "boundary" (boundary AP: matching on
            min(mask IoU, Boundary IoU) with the paper's 2% band).
        per_class: also return per-category AP / AP50 tables.
        image_ids: evaluate only these images (default: every ground-truth image;
            images without predictions count as misses).
        quiet: silence pycocotools' prints.
        band_cache: a dict that keeps the ground truth's boundary bands between
            calls with the same ground truth (evaluation during training).

    Returns:
        {"segm": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "bbox": {...},
         "boundary": {...} (each type asked for),
         "per_class": {iou_type: [{"category_id", "name", "num_gt", "AP", "AP50"}]},
         "precision": {iou_type: array [T=10, R=101, K, A=4, M=3]},
         "category_ids": [K], "category_names": [K]}
        Values follow pycocotools: -1.0 means no ground truth in that area range.
        No predictions at all gives 0.0 APs.

    Raises:
        ValueError: predictions and ground truth have no image in common.
    """
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou type {iou_type!r} is not supported; use 'bbox', 'segm' "
                             "or 'boundary'")
    coco_gt = build_gt_coco(gt, quiet=quiet)
    preds = select_predictions(coco_gt, predictions, image_ids)
    masks = [t for t in iou_types if t in MASK_TYPES]
    if masks and any("segmentation" not in p for p in preds):
        raise ValueError(f"'{masks[0]}' evaluation needs a 'segmentation' in every "
                         "prediction; pass iou_types=('bbox',) for box-only predictions")
    cat_ids = sorted(coco_gt.getCatIds())
    out = {"per_class": {}, "precision": {}, "category_ids": cat_ids,
           "category_names": [coco_gt.cats[c].get("name", str(c)) for c in cat_ids]}
    for iou_type in iou_types:
        if preds:
            with _maybe_quiet(quiet):
                coco_dt = coco_gt.loadRes([dict(p) for p in preds])  # loadRes edits its input
        else:  # an empty result set: every ground truth is a miss
            coco_dt = COCO()
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "annotations": [],
                               "categories": coco_gt.dataset["categories"]}
            with _maybe_quiet(quiet):
                coco_dt.createIndex()
        evaluator = _run_cocoeval(coco_gt, coco_dt, iou_type, image_ids, quiet, band_cache)
        out[iou_type] = {k: float(v) for k, v in zip(METRIC_KEYS, evaluator.stats[:6])}
        precision = evaluator.eval["precision"]  # [T, R, K, A, M]
        out["precision"][iou_type] = precision
        if per_class:
            out["per_class"][iou_type] = _per_class(precision, coco_gt, evaluator.params.catIds)
    return out


def summary(result):
    """Only the JSON-able headline numbers: {iou_type: {metric: value}}."""
    return {k: dict(v) for k, v in result.items() if k in IOU_TYPES}

"""The iMaterialist (Fashion) 2019 Kaggle metric.

Definition implemented here (the Kaggle page: the mean over images of the mean
over IoU thresholds of TP / (TP + FP + FN), matches requiring the same class):

* Units are (image, class) pairs: every class that has a ground-truth mask or a
  prediction (with score >= min_score) in that image. Pairs with neither are
  skipped; a pair with only predictions scores 0, one with only ground truth 0.
* For each IoU threshold t in 0.50, 0.55, ..., 0.95: predictions of the pair are
  taken by decreasing score (ties keep file order); each goes to the still
  unmatched ground truth of the same class with the largest IoU, if that IoU is
  strictly above t (Kaggle: "an IoU above the threshold"); ties go to the first
  ground truth. TP = matched predictions, FP = unmatched predictions,
  FN = unmatched ground truths, and the pair's precision at t is
  TP / (TP + FP + FN).
* A pair's score is the mean of its 10 precisions; `score` is the mean over all
  pairs. `score_image_mean` (the mean over images of the mean over their pairs)
  and per-class means are returned as well.

Crowd ground truths are treated like any other ground truth (the Kaggle data has
none). IoU is computed on COCO RLE masks ("segm") or boxes ("bbox").

`score(annotations_path, predictions_path, metric)` is mrcnn.evaluation.score with
this metric added as "imat" ({"segm": {"iMat2019": ...}, "bbox": {...}}).
"""

from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn import evaluation
from mrcnn.evaluation.coco import build_gt_coco, select_predictions

IMAT_IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # [10] 0.50 .. 0.95


def greedy_counts(ious, threshold):
    """(TP, FP, FN) of one pair at one IoU threshold.

    ious: [P, G] IoU of predictions (sorted by decreasing score) and ground truths.
    """
    num_pred, num_gt = ious.shape
    free = np.ones(num_gt, dtype=bool)  # [G] ground truths not yet matched
    tp = 0
    for p in range(num_pred):
        if not free.any():
            break
        candidates = np.where(free, ious[p], -1.0)  # [G]
        g = int(np.argmax(candidates))
        if candidates[g] > threshold:
            free[g] = False
            tp += 1
    return tp, num_pred - tp, num_gt - tp


def pair_score(ious, thresholds=IMAT_IOU_THRESHOLDS):
    """Mean over thresholds of TP / (TP + FP + FN) for one (image, class) pair.

    ious: [P, G] with predictions sorted by decreasing score. Returns 0.0 when
    one side is empty and the other not; raises on two empty sides (no pair).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if ious.size == 0 and sum(ious.shape) == 0:
        raise ValueError("an (image, class) pair needs a ground truth or a prediction")
    precisions = []
    for t in thresholds:
        tp, fp, fn = greedy_counts(ious, t)
        precisions.append(tp / (tp + fp + fn))
    return float(np.mean(precisions))


def _iou_matrix(preds, gts, iou_type):
    """[P, G] IoU of RLE masks or [x, y, w, h] boxes (no crowd handling)."""
    if not preds or not gts:
        return np.zeros((len(preds), len(gts)))
    key = "segmentation" if iou_type == "segm" else "bbox"
    ious = mask_utils.iou([p[key] for p in preds], [g[key] for g in gts], [0] * len(gts))
    return np.asarray(ious, dtype=np.float64).reshape(len(preds), len(gts))


def evaluate_imat(gt, predictions, iou_type="segm", image_ids=None, min_score=0.0, quiet=True):
    """iMaterialist 2019 score of predictions against COCO-format ground truth.

    Args:
        gt: COCO-format dict or JSON path (polygon or RLE segmentations).
        predictions: iterable of prediction dicts (RLE 'segmentation', 'bbox',
            'score', 'category_id', 'image_id').
        iou_type: "segm" (the Kaggle metric) or "bbox".
        image_ids: evaluate only these images (default: all ground-truth images).
        min_score: predictions below this score are dropped first.

    Returns:
        {"score", "score_image_mean", "num_pairs", "num_images",
         "per_class": {category_id: mean pair score}}
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou type {iou_type!r} is not supported; use 'segm' or 'bbox'")
    coco_gt = build_gt_coco(gt, quiet=quiet)
    preds = [p for p in select_predictions(coco_gt, predictions, image_ids)
             if p["score"] >= min_score]
    images = set(coco_gt.imgs) if image_ids is None else set(image_ids) & set(coco_gt.imgs)
    gts, dts = defaultdict(list), defaultdict(list)
    for ann in coco_gt.dataset["annotations"]:
        if ann["image_id"] in images:
            g = dict(ann)
            if iou_type == "segm":
                g["segmentation"] = coco_gt.annToRLE(ann)
            gts[ann["image_id"], ann["category_id"]].append(g)
    for pred in preds:
        if iou_type == "bbox" and "bbox" not in pred:
            pred = dict(pred, bbox=[float(v) for v in mask_utils.toBbox(pred["segmentation"])])
        dts[pred["image_id"], pred["category_id"]].append(pred)
    per_image, per_class = defaultdict(list), defaultdict(list)
    for key in sorted(set(gts) | set(dts), key=str):
        ranked = sorted(dts.get(key, []), key=lambda d: -d["score"])  # stable
        value = pair_score(_iou_matrix(ranked, gts.get(key, []), iou_type))
        per_image[key[0]].append(value)
        per_class[key[1]].append(value)
    scores = [v for values in per_image.values() for v in values]
    return {
        "score": float(np.mean(scores)) if scores else 0.0,
        "score_image_mean": float(np.mean([np.mean(v) for v in per_image.values()]))
        if per_image else 0.0,
        "num_pairs": len(scores),
        "num_images": len(per_image),
        "per_class": {c: float(np.mean(v)) for c, v in sorted(per_class.items())},
    }


def _imat_scores(annotations_path, predictions, iou_type, image_ids, quiet):
    return {"iMat2019": evaluate_imat(annotations_path, predictions, iou_type=iou_type,
                                      image_ids=image_ids, quiet=quiet)["score"]}


EXTRA_METRICS = {"imat": _imat_scores}
METRICS = evaluation.METRICS + tuple(EXTRA_METRICS)


def score(annotations_path, predictions_path, metric="coco", **kwargs):
    """mrcnn.evaluation.score with the iMaterialist 2019 metric as "imat" (see there)."""
    return evaluation.score(annotations_path, predictions_path, metric,
                            extra_metrics=EXTRA_METRICS, **kwargs)

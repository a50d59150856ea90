"""Fashionpedia AP with IoU and attribute-F1 thresholds.

The definition follows the reference evaluator, the `fashionpedia` PyPI package
1.1 (`fp_eval.FPEval`); this is an independent numpy implementation whose three
headline numbers equal its `results["AP"]`, `resultDet["AP"]` and
`resultF1["AP"]` (tests/test_evaluation.py checks this).

Definition (area "all", at most 100 detections per image and category):

* IoU thresholds t_iou in 0.50:0.05:0.95, F1 thresholds t_f1 in 0.50:0.05:0.95,
  each list extended with -1 ("no constraint").
* F1 of a (detection, ground truth) pair: macro F1 of the two multi-hot attribute
  vectors over the full attribute list of the annotations file (the mean of the F1
  of label 1 and of label 0 over the labels present in either vector, as
  sklearn's `f1_score(gt, dt, average="macro")` on binary vectors).
* Matching, per image and category, detections by decreasing score (stable): a
  detection goes to an unmatched ground truth with IoU >= t_iou and, for
  categories with attributes, F1 >= t_f1; among candidates a later one replaces
  the current choice when its IoU and (for attribute categories) its F1 are both
  >= the current choice's. Crowd ground truths are "ignore" regions (COCO rules;
  for attribute categories a crowd region can be matched only once, like the
  reference). Categories without attributes use COCO matching on IoU only.
* Precision at 101 recall points per category and threshold pair, COCO style.
* AP_iou_f1: mean over categories of attributes of precision at
  (t_iou, t_f1) in 10 x 10 pairs, pooled with categories without attributes at
  (t_iou, no F1): every defined value counts once, so a category with attributes
  weighs 10x. AP_iou: every category at (t_iou, no F1). AP_f1: categories with
  attributes at (no IoU, t_f1), the others at (no IoU, no F1).
* Categories without ground truth are left out.

One deliberate difference: the reference tests "has attributes" on the category
id while matching but on the category's position in the sorted category list
while averaging; here it is always the id. Both agree when the category ids are
0..K-1, as in every Fashionpedia release.
"""

from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.evaluation.coco import build_gt_coco, evaluate_coco, select_predictions

# Fashionpedia categories whose instances carry attributes (fp_eval FPParams).
CATS_WITH_ATTRIBUTES = (10, 7, 0, 6, 5, 4, 9, 31, 33, 3, 12, 11, 1, 2, 8, 32, 29, 28)
# Same expressions as pycocotools' Params, so the thresholds are bit-identical.
_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
IOU_THRESHOLDS = np.append(_THRESHOLDS, -1.0)  # [11], last = no IoU constraint
F1_THRESHOLDS = np.append(_THRESHOLDS, -1.0)  # [11], last = no F1 constraint
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = 100


def macro_f1_matrix(dt_hot, gt_hot):
    """Binary macro F1 between every detection and ground-truth attribute vector.

    Args:
        dt_hot: [D, A] 0/1 multi-hot predicted attributes.
        gt_hot: [G, A] 0/1 multi-hot true attributes.
    Returns:
        [D, G] float64: mean over the labels (1 and 0) present in either vector of
        that label's F1 = 2 TP / (2 TP + FP + FN).
    """
    dt = np.asarray(dt_hot, dtype=np.float64)  # [D, A]
    gt = np.asarray(gt_hot, dtype=np.float64)  # [G, A]
    num_attrs = dt.shape[1]
    tp = dt @ gt.T  # [D, G] both 1
    fp = dt.sum(axis=1)[:, None] - tp  # [D, G] predicted only
    fn = gt.sum(axis=1)[None, :] - tp  # [D, G] true only
    tn = num_attrs - tp - fp - fn  # [D, G] both 0
    errors = fp + fn
    has_pos = (tp + errors) > 0
    has_neg = (tn + errors) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_pos = np.where(has_pos, 2 * tp / (2 * tp + errors), 0.0)
        f1_neg = np.where(has_neg, 2 * tn / (2 * tn + errors), 0.0)
        count = has_pos.astype(np.float64) + has_neg
        return np.where(count > 0, (f1_pos + f1_neg) / np.maximum(count, 1), 0.0)


def _greedy_match(ious, f1s, gt_ignore, gt_crowd, t_iou, t_f1, crowd_reusable):
    """Match detections (sorted by score) to ground truths (ignored ones last).

    ious, f1s: [D, G] (f1s None: IoU only). Returns matched [D] bool and
    ignored [D] bool (matched to an ignore region).
    """
    num_dt, num_gt = ious.shape
    matched = np.zeros(num_dt, dtype=bool)
    ignored = np.zeros(num_dt, dtype=bool)
    taken = np.zeros(num_gt, dtype=bool)
    for d in range(num_dt):
        best_iou, best_f1, m = min(t_iou, 1 - 1e-10), min(t_f1, 1 - 1e-10), -1
        for g in range(num_gt):
            if taken[g] and not (crowd_reusable and gt_crowd[g]):
                continue
            if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                break
            if ious[d, g] < best_iou or (f1s is not None and f1s[d, g] < best_f1):
                continue
            best_iou, m = ious[d, g], g
            if f1s is not None:
                best_f1 = f1s[d, g]
        if m > -1:
            matched[d], ignored[d], taken[m] = True, bool(gt_ignore[m]), True
    return matched, ignored


class _Attributes:
    """Attribute id -> position in the multi-hot vector."""

    def __init__(self, attribute_ids):
        self.index = {int(a): i for i, a in enumerate(attribute_ids)}

    def multihot(self, id_lists, what):
        hot = np.zeros((len(id_lists), len(self.index)), dtype=np.uint8)  # [N, A]
        for row, ids in enumerate(id_lists):
            for a in ids:
                if a not in self.index:
                    raise ValueError(
                        f"{what} has attribute id {a}, which is not in the annotations "
                        "file's 'attributes' list; use the attribute ids of that file")
                hot[row, self.index[a]] = 1
        return hot


def _evaluate_pair(gts, dts, iou_type, use_f1, attributes):
    """Matching results of one (image, category) for every threshold pair.

    Returns scores [D], matched [T, F, D], ignored [T, F, D] with F = 11 when
    `use_f1` else 1 (the "no F1" slot), and the number of non-ignored ground truths.
    """
    crowd = np.array([int(g["iscrowd"]) for g in gts], dtype=np.int64)  # [G]
    order = np.argsort(crowd, kind="mergesort")  # ignore regions last
    gts = [gts[i] for i in order]
    crowd = crowd[order]
    dts = [dts[i] for i in np.argsort([-d["score"] for d in dts], kind="mergesort")][:MAX_DETS]
    num_f = len(F1_THRESHOLDS) if use_f1 else 1
    matched = np.zeros((len(IOU_THRESHOLDS), num_f, len(dts)), dtype=bool)  # [T, F, D]
    ignored = np.zeros_like(matched)
    if gts and dts:
        key = "segmentation" if iou_type == "segm" else "bbox"
        ious = np.asarray(mask_utils.iou([d[key] for d in dts], [g[key] for g in gts],
                                         list(crowd)), dtype=np.float64).reshape(len(dts), len(gts))
        f1s = None
        if use_f1:
            f1s = macro_f1_matrix(
                attributes.multihot([d.get("attribute_ids", []) for d in dts], "a prediction"),
                attributes.multihot([g.get("attribute_ids", []) for g in gts], "a ground truth"))
        f1_thresholds = F1_THRESHOLDS if use_f1 else F1_THRESHOLDS[-1:]
        for ti, t_iou in enumerate(IOU_THRESHOLDS):
            for fi, t_f1 in enumerate(f1_thresholds):
                matched[ti, fi], ignored[ti, fi] = _greedy_match(
                    ious, f1s, crowd, crowd, t_iou, t_f1, crowd_reusable=not use_f1)
    return {"scores": np.array([d["score"] for d in dts], dtype=np.float64),
            "matched": matched, "ignored": ignored, "num_gt": int((crowd == 0).sum())}


def interpolated_precision(tps, fps, num_gt):
    """COCO precision at 101 recall points.

    tps, fps: [X, D] bool, detections sorted by decreasing score. Returns [X, R].
    """
    tp_sum = np.cumsum(tps, axis=1, dtype=np.float64)  # [X, D]
    fp_sum = np.cumsum(fps, axis=1, dtype=np.float64)  # [X, D]
    recall = tp_sum / num_gt
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # [X, D] envelope
    out = np.zeros((tps.shape[0], len(RECALL_THRESHOLDS)))  # [X, R]
    for x in range(tps.shape[0]):
        inds = np.searchsorted(recall[x], RECALL_THRESHOLDS, side="left")  # [R]
        valid = inds < tps.shape[1]
        out[x, valid] = precision[x, inds[valid]]
    return out


def _accumulate(pairs):
    """Precision [T, F, R] of one category from its per-image results (-1: no GT)."""
    num_f = pairs[0]["matched"].shape[1]
    num_gt = sum(p["num_gt"] for p in pairs)
    out = -np.ones((len(IOU_THRESHOLDS), num_f, len(RECALL_THRESHOLDS)))  # [T, F, R]
    if num_gt == 0:
        return out
    scores = np.concatenate([p["scores"] for p in pairs])  # [D]
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([p["matched"] for p in pairs], axis=2)[:, :, order]  # [T, F, D]
    ignored = np.concatenate([p["ignored"] for p in pairs], axis=2)[:, :, order]  # [T, F, D]
    rows = matched.shape[0] * matched.shape[1]
    tps = (matched & ~ignored).reshape(rows, len(order))  # [T*F, D]
    fps = (~matched & ~ignored).reshape(rows, len(order))
    return interpolated_precision(tps, fps, num_gt).reshape(out.shape)


def _mean_defined(parts):
    values = np.concatenate([np.ravel(p) for p in parts]) if parts else np.zeros(0)
    values = values[values > -1]
    return float(values.mean()) if values.size else -1.0


def _summaries(precision, cat_ids, with_attributes):
    """AP_iou_f1, AP_iou, AP_f1 from {cat_id: precision [T, F, R]}."""
    both, iou_only, f1_only = [], [], []
    for c in cat_ids:
        p = precision[c]  # [T, F, R]
        iou_only.append(p[:-1, -1])  # [10, R]
        if c in with_attributes:
            both.append(p[:-1, :-1])  # [10, 10, R]
            f1_only.append(p[-1, :-1])  # [10, R]
        else:
            both.append(p[:-1, -1])
            f1_only.append(p[-1, -1])  # [R]
    return {"AP_iou_f1": _mean_defined(both), "AP_iou": _mean_defined(iou_only),
            "AP_f1": _mean_defined(f1_only)}


def _group(coco_gt, preds, iou_type, image_ids, cat_ids):
    """{(image_id, cat_id): ([gt anns with RLE/bbox], [dets])} in file order."""
    gts, dts = defaultdict(list), defaultdict(list)
    images, cats = set(image_ids), set(cat_ids)
    for ann in coco_gt.dataset["annotations"]:
        if ann["image_id"] in images and ann["category_id"] in cats:
            g = dict(ann)
            if iou_type == "segm":
                g["segmentation"] = coco_gt.annToRLE(ann)
            gts[ann["image_id"], ann["category_id"]].append(g)
    for pred in preds:
        if pred["category_id"] in cats:
            d = pred
            if "bbox" not in d:
                d = dict(pred, bbox=[float(v) for v in mask_utils.toBbox(pred["segmentation"])])
            dts[pred["image_id"], pred["category_id"]].append(d)
    return gts, dts


def _evaluate_type(coco_gt, preds, iou_type, image_ids, attributes, with_attributes):
    cat_ids = sorted(coco_gt.getCatIds())
    gts, dts = _group(coco_gt, preds, iou_type, image_ids, cat_ids)
    precision = {}
    for c in cat_ids:
        use_f1 = c in with_attributes
        pairs = [_evaluate_pair(gts[i, c], dts[i, c], iou_type, use_f1, attributes)
                 for i in image_ids if gts.get((i, c)) or dts.get((i, c))]
        if not pairs:
            precision[c] = -np.ones((len(IOU_THRESHOLDS), len(F1_THRESHOLDS) if use_f1 else 1,
                                     len(RECALL_THRESHOLDS)))
            continue
        precision[c] = _accumulate(pairs)  # [T, F, R]
    result = _summaries(precision, cat_ids, with_attributes)
    per_class = []
    for c in cat_ids:
        row = {"category_id": c, "name": coco_gt.cats[c].get("name", str(c))}
        row.update(_summaries({c: precision[c]}, [c], with_attributes))
        per_class.append(row)
    return result, per_class


def evaluate_fashionpedia(gt, predictions, iou_types=("segm", "bbox"), image_ids=None,
                          cats_with_attributes=CATS_WITH_ATTRIBUTES, attribute_ids=None,
                          coco_metrics=True, quiet=True):
    """Fashionpedia AP (IoU + attribute F1) of predictions, see the module docstring.

    Args:
        gt: Fashionpedia (COCO-format) dict or JSON path with an 'attributes' list
            and 'attribute_ids' per annotation.
        predictions: iterable of prediction dicts with 'attribute_ids'.
        iou_types: any of "segm", "bbox".
        image_ids: evaluate only these images (default: all ground-truth images).
        cats_with_attributes: category ids scored with the F1 constraint.
        attribute_ids: the attribute id list defining the multi-hot vectors
            (default: the ids of gt['attributes'], in file order).
        coco_metrics: also add pycocotools' AP, AP50, AP75, APs, APm, APl.

    Returns:
        {"segm": {"AP_iou_f1", "AP_iou", "AP_f1", ["AP", "AP50", ...]}, "bbox": {...},
         "per_class": {iou_type: [{"category_id", "name", "AP_iou_f1", "AP_iou", "AP_f1"}]}}
    """
    coco_gt = build_gt_coco(gt, quiet=quiet)
    if attribute_ids is None:
        if "attributes" not in coco_gt.dataset:
            raise ValueError(
                "the annotations have no 'attributes' list; Fashionpedia's F1 is defined "
                "over the full attribute list, so pass attribute_ids=[...] or use the "
                "Fashionpedia annotations file")
        attribute_ids = [a["id"] for a in coco_gt.dataset["attributes"]]
    attributes = _Attributes(attribute_ids)
    preds = select_predictions(coco_gt, predictions, image_ids)
    images = sorted(coco_gt.imgs) if image_ids is None else sorted(set(image_ids) & set(coco_gt.imgs))
    out = {"per_class": {}}
    for iou_type in iou_types:
        if iou_type not in ("segm", "bbox"):
            raise ValueError(f"iou type {iou_type!r} is not supported; use 'segm' or 'bbox'")
        out[iou_type], out["per_class"][iou_type] = _evaluate_type(
            coco_gt, preds, iou_type, images, attributes, set(cats_with_attributes))
    if coco_metrics:
        coco = evaluate_coco(coco_gt.dataset, preds, iou_types=iou_types, per_class=False,
                             image_ids=image_ids, quiet=quiet)
        for iou_type in iou_types:
            out[iou_type].update(coco[iou_type])
    return out

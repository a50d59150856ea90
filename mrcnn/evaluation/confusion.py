"""Confusion matrix of instance masks over classes plus background, counted as
Ultralytics counts its detection confusion matrix.

Per image: predictions scoring at least ``conf_threshold`` are matched one to one to
ground-truth instances of any class by mask IoU (the highest IoU pair first, pairs below
``iou_threshold`` never). A matched pair counts at [predicted class, true class]; a
ground-truth instance left unmatched counts at [background, true class] ("missed"); a
prediction left unmatched counts at [predicted class, background] ("false positive").

Layout: ``matrix[predicted, true]`` of shape [K + 1, K + 1]; indices 0..K-1 are the
categories in ``gt["categories"]`` order and index K is background, as in Ultralytics'
confusion_matrix.png (true classes along the x axis, predictions along the y axis).

Example:
    counts = confusion_matrix([0, 1], [0, 0, 1], [0.9, 0.8, 0.7], ious, num_classes=2)
    table = confusion_from_coco(gt, predictions)   # COCO dicts, RLE masks
"""
import numpy as np

IOU_THRESHOLD = 0.5     # mask IoU at which a prediction and an instance match
CONF_THRESHOLD = 0.25   # Ultralytics' default confidence for its confusion matrix


def greedy_pairs(ious, iou_threshold=IOU_THRESHOLD):
    """One-to-one (gt, prediction) index pairs of ious [G, P], the highest IoU first;
    pairs below iou_threshold are never made. Ties go to the lower indices."""
    ious = np.asarray(ious, dtype=np.float64)                              # [G, P]
    if ious.ndim != 2 or not ious.size:
        return []
    g_idx, p_idx = np.nonzero(ious >= iou_threshold)
    order = np.lexsort((p_idx, g_idx, -ious[g_idx, p_idx]))  # IoU desc, then gt, pred
    used_g, used_p, pairs = set(), set(), []
    for g, p in zip(g_idx[order], p_idx[order]):
        if g not in used_g and p not in used_p:
            used_g.add(int(g))
            used_p.add(int(p))
            pairs.append((int(g), int(p)))
    return pairs


def confusion_matrix(gt_classes, pred_classes, pred_scores, ious, num_classes,
                     iou_threshold=IOU_THRESHOLD, conf_threshold=CONF_THRESHOLD):
    """Counts of one image, int64 [K + 1, K + 1] = [predicted, true]; K = background.

    Args:
        gt_classes: [G] category indices 0..K-1 of the ground-truth instances.
        pred_classes: [P] category indices 0..K-1 of the predictions.
        pred_scores: [P] confidences; predictions below conf_threshold are left out.
        ious: [G, P] mask IoU of every instance with every prediction.
        num_classes: K, the categories without background.
    """
    k = int(num_classes)
    gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)        # [G]
    pred_classes = np.asarray(pred_classes, dtype=np.int64).reshape(-1)    # [P]
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)    # [P]
    ious = np.asarray(ious, dtype=np.float64).reshape(len(gt_classes), len(pred_classes))
    if np.any((gt_classes < 0) | (gt_classes >= k)) or \
            np.any((pred_classes < 0) | (pred_classes >= k)):
        raise ValueError(f"class indices must lie in 0..{k - 1} (num_classes={k}); "
                         "background is not a class of an instance or a prediction")
    kept = np.nonzero(pred_scores >= conf_threshold)[0]                    # [P']
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    pairs = greedy_pairs(ious[:, kept], iou_threshold)
    matched_g = {g for g, _ in pairs}
    matched_p = {p for _, p in pairs}
    for g, p in pairs:
        matrix[pred_classes[kept[p]], gt_classes[g]] += 1
    for g in range(len(gt_classes)):
        if g not in matched_g:
            matrix[k, gt_classes[g]] += 1                  # missed: predicted background
    for p in range(len(kept)):
        if p not in matched_p:
            matrix[pred_classes[kept[p]], k] += 1          # false positive on background
    return matrix


def normalize_columns(matrix):
    """Each column (true class) divided by its total: where that class's instances
    went (the background column: what the false positives were called). Empty
    columns stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=0, keepdims=True)                             # [1, K+1]
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


# ---------------------------------------------------------------------- COCO dicts
def images_of(gt, predictions):
    """Per image of gt, the data every count needs:
    [{"image_id", "gt": [annotation], "pred": [record], "gt_classes" [G], "pred_classes"
    [P], "scores" [P], "ious" [G, P]}]. Categories are indices into gt["categories"];
    crowd instances and predictions of categories gt does not have are left out."""
    from pycocotools import mask as mask_utils
    index = {int(c["id"]): i for i, c in enumerate(gt["categories"])}
    by_image = {int(im["id"]): ([], []) for im in gt["images"]}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd") and int(ann["category_id"]) in index:
            by_image.setdefault(int(ann["image_id"]), ([], []))[0].append(ann)
    for rec in predictions:
        if int(rec["category_id"]) in index and int(rec["image_id"]) in by_image:
            by_image[int(rec["image_id"])][1].append(rec)
    out = []
    for image_id, (anns, preds) in by_image.items():
        if anns and preds:
            ious = np.asarray(mask_utils.iou([p["segmentation"] for p in preds],
                                             [a["segmentation"] for a in anns],
                                             [0] * len(anns))).T                  # [G, P]
        else:
            ious = np.zeros((len(anns), len(preds)))
        out.append({"image_id": image_id, "gt": anns, "pred": preds,
                    "gt_classes": np.array([index[int(a["category_id"])] for a in anns],
                                           np.int64),
                    "pred_classes": np.array([index[int(p["category_id"])] for p in preds],
                                             np.int64),
                    "scores": np.array([float(p["score"]) for p in preds], np.float64),
                    "ious": ious.reshape(len(anns), len(preds))})
    return out


def confusion_from_coco(gt, predictions, iou_threshold=IOU_THRESHOLD,
                        conf_threshold=CONF_THRESHOLD, images=None):
    """The summed confusion matrix [K + 1, K + 1] of COCO ground truth (RLE masks) and
    prediction records (``segmentation`` RLE, ``score``, ``category_id``); ``images``
    is images_of(gt, predictions) when the caller has it already."""
    k = len(gt["categories"])
    total = np.zeros((k + 1, k + 1), dtype=np.int64)
    for im in images if images is not None else images_of(gt, predictions):
        total += confusion_matrix(im["gt_classes"], im["pred_classes"], im["scores"],
                                  im["ious"], k, iou_threshold, conf_threshold)
    return total

"""Mask precision, recall and F1 against the confidence threshold, the precision-recall
curve at mask IoU 0.5, and per-attribute precision / recall of matched instances.

Input: ``images`` from mrcnn.evaluation.confusion.images_of(gt, predictions) (per image:
category indices, scores and the [G, P] mask IoU). Predictions are matched to instances
of their own class as COCO matches them at one IoU: in descending score order, each
takes the unmatched instance with the highest IoU of at least 0.5.

Example:
    images = images_of(gt, predictions)
    curves = confidence_curves(images, len(gt["categories"]))
    curves["best_confidence"], curves["best_f1"]     # a good minimum confidence
"""
import numpy as np

from mrcnn.evaluation.confusion import IOU_THRESHOLD

CONFIDENCES = np.linspace(0.0, 1.0, 101)    # thresholds the curves are drawn at
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # pycocotools' recall points


def match_same_class(gt_classes, pred_classes, scores, ious, iou_threshold=IOU_THRESHOLD):
    """[P] index of the instance each prediction matched (-1: none). Predictions go in
    descending score order (ties: lower index first); each takes the unmatched
    instance of its class with the highest IoU >= iou_threshold."""
    gt_classes, pred_classes = np.asarray(gt_classes), np.asarray(pred_classes)
    ious = np.asarray(ious, dtype=np.float64).reshape(len(gt_classes), len(pred_classes))
    taken = np.zeros(len(gt_classes), dtype=bool)                          # [G]
    match = np.full(len(pred_classes), -1, dtype=np.int64)                 # [P]
    for p in np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort"):
        ok = (gt_classes == pred_classes[p]) & ~taken & (ious[:, p] >= iou_threshold)
        if ok.any():
            g = int(np.argmax(np.where(ok, ious[:, p], -1.0)))
            taken[g] = True
            match[p] = g
    return match


def add_matches(images, iou_threshold=IOU_THRESHOLD):
    """Adds "match" [P] (match_same_class) to every image dict; returns images."""
    for im in images:
        im["match"] = match_same_class(im["gt_classes"], im["pred_classes"],
                                       im["scores"], im["ious"], iou_threshold)
    return images


def _pooled(images, num_classes):
    """(scores [N], classes [N], true positive [N], instances per class [K])."""
    scores = np.concatenate([im["scores"] for im in images] + [np.zeros(0)])
    classes = np.concatenate([im["pred_classes"] for im in images] +
                             [np.zeros(0, np.int64)]).astype(np.int64)
    tp = np.concatenate([im["match"] >= 0 for im in images] + [np.zeros(0, bool)])
    n_gt = np.zeros(num_classes, dtype=np.int64)
    for im in images:
        n_gt += np.bincount(im["gt_classes"], minlength=num_classes)[:num_classes]
    return scores, classes, tp, n_gt


def _class_curves(scores, tp, n_gt, confidences):
    """One class: (precision [C], recall [C], PR precision at RECALL_POINTS [101])."""
    order = np.argsort(-scores, kind="mergesort")
    scores, tp = scores[order], tp[order]
    cum_tp = np.cumsum(tp)                                                 # [N]
    # predictions with score >= c: the first n of the descending order
    n = np.searchsorted(-scores, -confidences, side="right")               # [C]
    hits = np.where(n > 0, cum_tp[np.maximum(n - 1, 0)] if len(tp) else 0, 0)
    no_pred = 1.0 if len(tp) else 0.0   # nothing above c: precision 1 (0 if never predicted)
    precision = np.where(n > 0, hits / np.maximum(n, 1), no_pred)
    recall = hits / n_gt if n_gt else np.zeros(len(confidences))
    pr = np.zeros(len(RECALL_POINTS))
    if len(tp) and n_gt:
        prec = cum_tp / np.arange(1, len(tp) + 1)
        rec = cum_tp / n_gt
        envelope = np.maximum.accumulate(prec[::-1])[::-1]                 # COCO's
        idx = np.searchsorted(rec, RECALL_POINTS, side="left")
        pr = np.where(idx < len(rec), envelope[np.minimum(idx, len(rec) - 1)], 0.0)
    return precision, recall, pr


def confidence_curves(images, num_classes, confidences=CONFIDENCES):
    """Mask precision, recall and F1 per class against the confidence threshold.

    images need "match" (add_matches). Returns {"confidence" [C], "precision",
    "recall", "f1" [K, C], "instances" [K], "mean_precision", "mean_recall",
    "mean_f1" [C] (mean over classes with instances), "best_f1", "best_confidence"
    (where mean_f1 peaks; the lowest such threshold), "pr_precision" [K, 101] at
    "pr_recall" [101], "ap50" [K] (nan without instances) and "map50"}.
    """
    k = int(num_classes)
    confidences = np.asarray(confidences, dtype=np.float64)
    scores, classes, tp, n_gt = _pooled(images, k)
    precision = np.zeros((k, len(confidences)))
    recall = np.zeros((k, len(confidences)))
    pr = np.zeros((k, len(RECALL_POINTS)))
    for c in range(k):
        sel = classes == c
        precision[c], recall[c], pr[c] = _class_curves(scores[sel], tp[sel], int(n_gt[c]),
                                                       confidences)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    has = n_gt > 0
    mean = (lambda a: a[has].mean(axis=0)) if has.any() else \
        (lambda a: np.zeros(len(confidences)))
    mean_f1 = mean(f1)
    best = int(np.argmax(mean_f1))
    ap50 = np.where(has, pr.mean(axis=1), np.nan)
    return {"confidence": confidences, "precision": precision, "recall": recall, "f1": f1,
            "instances": n_gt, "mean_precision": mean(precision),
            "mean_recall": mean(recall), "mean_f1": mean_f1,
            "best_f1": float(mean_f1[best]), "best_confidence": float(confidences[best]),
            "pr_recall": RECALL_POINTS, "pr_precision": pr, "ap50": ap50,
            "map50": float(np.nanmean(ap50)) if has.any() else 0.0}


def attribute_precision_recall(images, attributes):
    """Per-attribute precision and recall over the instances a prediction matched.

    images need "match" (add_matches); their "gt" annotations and "pred" records carry
    "attribute_ids". attributes: [{"id", "name"}] (gt["attributes"]). Returns one row
    per attribute: {"attribute_id", "name", "instances" (ground-truth instances with
    it), "matched" (of those, matched by a prediction), "predicted" (matched
    predictions giving it), "true_positives", "precision", "recall"} (nan where
    undefined), most frequent first.
    """
    ids = [int(a["id"]) for a in attributes]
    pos = {a: i for i, a in enumerate(ids)}
    counts = np.zeros((4, len(ids)), dtype=np.int64)   # instances, matched, predicted, tp
    for im in images:
        for ann in im["gt"]:
            for a in set(ann.get("attribute_ids") or ()):
                if a in pos:
                    counts[0, pos[a]] += 1
        for p, g in enumerate(im["match"]):
            if g < 0:
                continue
            truth = {a for a in im["gt"][g].get("attribute_ids") or () if a in pos}
            said = {a for a in im["pred"][p].get("attribute_ids") or () if a in pos}
            for a in truth:
                counts[1, pos[a]] += 1
            for a in said:
                counts[2, pos[a]] += 1
            for a in truth & said:
                counts[3, pos[a]] += 1
    rows = []
    for i, a in enumerate(attributes):
        instances, matched, predicted, hits = (int(v) for v in counts[:, i])
        rows.append({"attribute_id": int(a["id"]), "name": a.get("name", str(a["id"])),
                     "instances": instances, "matched": matched, "predicted": predicted,
                     "true_positives": hits,
                     "precision": hits / predicted if predicted else float("nan"),
                     "recall": hits / matched if matched else float("nan")})
    return sorted(rows, key=lambda r: -r["instances"])

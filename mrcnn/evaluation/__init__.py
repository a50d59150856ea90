"""Evaluation: prediction files, COCO AP, Fashionpedia AP.

`score(annotations_path, predictions_path, metric)` scores a predictions file; an
application adds its own metrics (the fashion app: the Kaggle iMaterialist 2019 score,
fashion/imat_metric.py) through `extra_metrics`. The modules hold the details:

* predictions.py: read/write prediction files, convert `detect()` results
* coco.py: pycocotools AP (segm, boundary and bbox), per-class tables, precision arrays
* boundary.py: boundary bands, Boundary IoU and COCOeval on min(mask IoU, Boundary IoU)
* fashionpedia.py: Fashionpedia AP with IoU and attribute-F1 thresholds
* plots.py: precision-recall PNGs and per-class CSV tables
"""
import logging

from mrcnn.evaluation.coco import evaluate_coco, load_ground_truth, summary
from mrcnn.evaluation.fashionpedia import evaluate_fashionpedia
from mrcnn.evaluation.predictions import (PredictionWriter, detection_to_records,
                                          read_predictions)

METRICS = ("coco", "fashionpedia")

log = logging.getLogger("mrcnn")


def _image_sizes(gt):
    """{image_id: (height, width)} of the ground truth, or None when a size is missing."""
    try:
        return {img["id"]: (int(img["height"]), int(img["width"])) for img in gt["images"]}
    except (KeyError, TypeError, ValueError):
        return None


def read_scorable_predictions(predictions_path, gt, attribute_index_to_id=None):
    """The predictions of a file that can be scored against the ground truth dict `gt`.

    Records that cannot be scored (malformed, a mask not of its image's size, an image
    or category the ground truth lacks) are skipped with one warning counting them and
    naming the first line; ValueError when none is left.
    """
    skipped = []
    preds = list(read_predictions(
        predictions_path, attribute_index_to_id, image_sizes=_image_sizes(gt),
        category_ids={c.get("id") for c in gt["categories"]}, skipped=skipped))
    total = len(preds) + len(skipped)
    if skipped and not preds:
        raise ValueError(f"none of the {total} predictions in {predictions_path} can be "
                         f"scored against the annotations; first: {skipped[0]}")
    if skipped:
        log.warning("skipped %d of %d predictions in %s; first: %s", len(skipped), total,
                    predictions_path, skipped[0])
    return preds


def score(annotations_path, predictions_path, metric="coco", iou_types=("segm", "bbox"),
          image_ids=None, attribute_index_to_id=None, quiet=True, extra_metrics=None):
    """Score a predictions file against an annotations file.

    Args:
        annotations_path: COCO / Fashionpedia-format ground-truth JSON.
        predictions_path: JSON Lines or JSON-list predictions (see predictions.py);
            records that cannot be scored are skipped with one counted warning
            (read_scorable_predictions), ValueError when none is left.
        metric: "coco" (AP, AP50, AP75, APs, APm, APl), "fashionpedia" (those plus
            AP_iou_f1, AP_iou, AP_f1) or a name of `extra_metrics`.
        iou_types: any of "segm", "bbox"; "boundary" (boundary AP) with metric "coco".
        image_ids: score only these images (default: every annotated image).
        attribute_index_to_id: maps `attribute_probabilities` positions to ids.
        extra_metrics: {name: fn(gt, predictions, iou_type, image_ids, quiet) ->
            {metric: value}} of metrics this module does not define (gt: the
            annotations as a COCO-format dict).

    Returns:
        {"segm": {metric: value}, "bbox": {metric: value}} (JSON-able floats).
    """
    extra = dict(extra_metrics or {})
    if metric not in METRICS and metric not in extra:
        raise ValueError(f"unknown metric {metric!r}; choose one of "
                         f"{', '.join(METRICS + tuple(extra))}")
    gt = load_ground_truth(annotations_path)  # parsed once; every metric takes the dict
    predictions = read_scorable_predictions(predictions_path, gt, attribute_index_to_id)
    if metric == "coco":
        return summary(evaluate_coco(gt, predictions, iou_types=iou_types,
                                     per_class=False, image_ids=image_ids, quiet=quiet))
    if metric == "fashionpedia":
        result = evaluate_fashionpedia(gt, predictions, iou_types=iou_types,
                                       image_ids=image_ids, quiet=quiet)
        return {t: result[t] for t in iou_types}
    return {t: extra[metric](gt, predictions, t, image_ids, quiet)
            for t in iou_types}


__all__ = ["score", "read_scorable_predictions", "evaluate_coco", "evaluate_fashionpedia",
           "read_predictions", "PredictionWriter", "detection_to_records", "summary", "METRICS"]

"""Evaluation: prediction files, COCO AP, the iMaterialist 2019 metric, Fashionpedia AP.

`score(annotations_path, predictions_path, metric)` is what the CLI's `score`
command calls; the modules hold the details:

* predictions.py: read/write prediction files, convert `detect()` results
* coco.py: pycocotools AP (segm and bbox), per-class tables, precision arrays
* imat.py: the Kaggle iMaterialist (Fashion) 2019 metric
* fashionpedia.py: Fashionpedia AP with IoU and attribute-F1 thresholds
* plots.py: precision-recall PNGs and per-class CSV tables
"""

from mrcnn.evaluation.coco import evaluate_coco, summary
from mrcnn.evaluation.fashionpedia import evaluate_fashionpedia
from mrcnn.evaluation.imat import evaluate_imat
from mrcnn.evaluation.predictions import (PredictionWriter, detection_to_records,
                                          read_predictions)

METRICS = ("coco", "fashionpedia", "imat")


def score(annotations_path, predictions_path, metric="coco", iou_types=("segm", "bbox"),
          image_ids=None, attribute_index_to_id=None, quiet=True):
    """Score a predictions file against an annotations file.

    Args:
        annotations_path: COCO / Fashionpedia-format ground-truth JSON.
        predictions_path: JSON Lines or JSON-list predictions (see predictions.py).
        metric: "coco" (AP, AP50, AP75, APs, APm, APl), "fashionpedia" (those plus
            AP_iou_f1, AP_iou, AP_f1) or "imat" (the iMaterialist 2019 score).
        iou_types: any of "segm", "bbox".
        image_ids: score only these images (default: every annotated image).
        attribute_index_to_id: maps `attribute_probabilities` positions to ids.

    Returns:
        {"segm": {metric: value}, "bbox": {metric: value}} (JSON-able floats).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    predictions = list(read_predictions(predictions_path, attribute_index_to_id))
    if metric == "coco":
        return summary(evaluate_coco(annotations_path, predictions, iou_types=iou_types,
                                     per_class=False, image_ids=image_ids, quiet=quiet))
    if metric == "fashionpedia":
        result = evaluate_fashionpedia(annotations_path, predictions, iou_types=iou_types,
                                       image_ids=image_ids, quiet=quiet)
        return {t: result[t] for t in iou_types}
    return {t: {"iMat2019": evaluate_imat(annotations_path, predictions, iou_type=t,
                                          image_ids=image_ids, quiet=quiet)["score"]}
            for t in iou_types}


__all__ = ["score", "evaluate_coco", "evaluate_fashionpedia", "evaluate_imat",
           "read_predictions", "PredictionWriter", "detection_to_records", "summary", "METRICS"]

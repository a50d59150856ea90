"""After an evaluation: the confusion matrices, mask P/R/F1 curves, attribute table and
labels next to predictions, written into a run (or evaluate's output) directory.

Files (all in out_dir):
    confusion_matrix.png, confusion_matrix_normalized.png, confusion_matrix.csv
    mask_PR.png, mask_F1.png, mask_curves.csv (mean precision/recall/F1 per threshold)
    val_pred_<epoch>.png (a few fixed val images: labels | predictions)
    attribute_precision_recall.csv / .png (when the ground truth has attributes and the
        predictions attribute probabilities)
    evaluation_report.json (epoch, best-F1 confidence, counts, the files above, and
        segm / boundary AP, AP50, AP75 when the caller scored them)

Example:
    summary = write_evaluation_report("logs/run", gt, predictions, samples,
                                      class_names=dataset.class_names, epoch=3)
    summary["best_confidence"]   # where mean mask F1 peaks
"""
import csv
import io
import logging
import os

import numpy as np

from mrcnn.evaluation.confusion import (CONF_THRESHOLD, IOU_THRESHOLD, confusion_from_coco,
                                        images_of, normalize_columns)
from mrcnn.evaluation.thresholds import (add_matches, attribute_precision_recall,
                                         confidence_curves)
from mrcnn.fileio import atomic_write_text, write_json
from mrcnn.report import plots

log = logging.getLogger("mrcnn")

SUMMARY_FILE = "evaluation_report.json"
SAMPLE_IMAGES = 4   # val images drawn with labels and predictions


def val_pred_name(epoch):
    """val_pred_<epoch>.png (epoch zero-padded like the checkpoints), or val_pred.png."""
    return "val_pred.png" if epoch is None else f"val_pred_{int(epoch):04d}.png"


def _write_csv(path, rows, columns):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{v:.4f}" if isinstance(v, float) else v for v in row])
    atomic_write_text(path, buffer.getvalue())
    return path


def write_evaluation_report(out_dir, gt, predictions, samples=(), class_names=None,
                            epoch=None, iou_threshold=IOU_THRESHOLD,
                            conf_threshold=CONF_THRESHOLD, coco_metrics=None):
    """Writes the evaluation pictures and tables; returns the summary dict.

    Args:
        gt: COCO ground truth (RLE masks; "attributes" and per-annotation
            "attribute_ids" when the data has attributes).
        predictions: prediction records (mrcnn.evaluation.predictions).
        samples: [{"image", "gt_masks", "gt_class_ids", "result", "name"}] drawn to
            val_pred_<epoch>.png (none: not drawn); class_names index their class ids.
        epoch: the evaluated epoch (None: an evaluation outside training).
        coco_metrics: {"segm": {"AP", "AP50", "AP75", ...}, "boundary": {...}} from
            mrcnn.evaluation.coco, kept in the summary as segm_AP, boundary_AP, ...
    """
    os.makedirs(out_dir, exist_ok=True)
    names = [str(c.get("name", c["id"])) for c in gt["categories"]]
    images = add_matches(images_of(gt, predictions), iou_threshold)
    files = []

    def out(name):
        files.append(name)
        return os.path.join(out_dir, name)

    matrix = confusion_from_coco(gt, predictions, iou_threshold, conf_threshold, images)
    labels = names + ["background"]
    _write_csv(out("confusion_matrix.csv"),
               [[labels[i]] + [int(v) for v in matrix[i]] for i in range(len(labels))],
               ["predicted \\ true"] + labels)
    plots.plot_confusion_matrix(matrix, names, out("confusion_matrix.png"),
                                iou_threshold=iou_threshold, conf_threshold=conf_threshold)
    plots.plot_confusion_matrix(normalize_columns(matrix), names,
                                out("confusion_matrix_normalized.png"), normalized=True,
                                iou_threshold=iou_threshold, conf_threshold=conf_threshold)
    curves = confidence_curves(images, len(names))
    plots.plot_mask_pr(curves, names, out("mask_PR.png"))
    plots.plot_mask_f1(curves, names, out("mask_F1.png"))
    _write_csv(out("mask_curves.csv"),
               zip(curves["confidence"].tolist(), curves["mean_precision"].tolist(),
                   curves["mean_recall"].tolist(), curves["mean_f1"].tolist()),
               ["confidence", "precision", "recall", "f1"])
    if gt.get("attributes") and any(p.get("attribute_probabilities") is not None
                                    for p in predictions):
        rows = attribute_precision_recall(images, gt["attributes"])
        columns = ["attribute_id", "name", "instances", "matched", "predicted",
                   "true_positives", "precision", "recall"]
        _write_csv(out("attribute_precision_recall.csv"),
                   [[r[c] for c in columns] for r in rows], columns)
        plots.plot_attributes(rows, out("attribute_precision_recall.png"))
    if samples:
        what = "" if epoch is None else f" after epoch {epoch}"
        plots.plot_side_by_side(samples, class_names or ["background"] + names,
                                out(val_pred_name(epoch)),
                                title=f"Val images{what}: labels | predictions",
                                min_score=conf_threshold)
    k = len(names)
    summary = {
        "epoch": epoch, "images": len(gt["images"]), "instances": int(matrix[:, :k].sum()),
        "predictions": len(predictions), "iou_threshold": iou_threshold,
        "conf_threshold": conf_threshold,
        "matched": int(matrix[:k, :k].sum()), "correct": int(np.trace(matrix[:k, :k])),
        "missed": int(matrix[k, :k].sum()), "false_positives": int(matrix[:k, k].sum()),
        "best_f1": round(curves["best_f1"], 4),
        "best_confidence": round(curves["best_confidence"], 4),
        "mask_AP50": round(curves["map50"], 4), "files": files}
    for t in ("segm", "boundary"):
        for key, value in ((coco_metrics or {}).get(t) or {}).items():
            if key in ("AP", "AP50", "AP75"):
                summary[f"{t}_{key}"] = round(float(value), 4)
    write_json(os.path.join(out_dir, SUMMARY_FILE), summary)
    return summary


def describe(summary):
    """One line on the best mask F1 and its confidence."""
    return (f"Mask F1 is best ({summary['best_f1']:.3f}) at confidence "
            f"{summary['best_confidence']:.2f} (a good minimum confidence for detection); "
            f"{summary['missed']} of "
            f"{summary['instances']} instances missed and {summary['false_positives']} "
            f"false positives at confidence {summary['conf_threshold']:g}.")


def report_seconds(gt, dataset, image_ids, report_images=SAMPLE_IMAGES):
    """Seconds write_evaluation_report takes on this ground truth, measured: every
    instance predicted back (score 0.9, its attributes), the first report_images images
    drawn, into a temporary directory. A time budget keeps room for it."""
    import tempfile
    import time

    from mrcnn.utils import extract_bboxes
    with_attributes = bool(gt.get("attributes"))
    predictions = [{"image_id": a["image_id"], "category_id": a["category_id"],
                    "score": 0.9, "segmentation": a["segmentation"],
                    "attribute_ids": list(a.get("attribute_ids") or []),
                    "attribute_probabilities": [] if with_attributes else None}
                   for a in gt["annotations"]]
    samples = []
    for image_id in list(image_ids)[:report_images]:
        masks, class_ids = dataset.load_mask(image_id)                 # [H, W, N], [N]
        result = {"rois": extract_bboxes(masks), "masks": masks, "class_ids": class_ids,
                  "scores": np.full(len(class_ids), 0.9)}
        samples.append({"image": dataset.load_image(image_id), "gt_masks": masks,
                        "gt_class_ids": class_ids, "result": result, "name": "estimate"})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_evaluation_report(tmp, gt, predictions, samples, dataset.class_names, epoch=0)
        return time.perf_counter() - t0

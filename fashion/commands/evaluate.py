"""`evaluate`: detection over a dataset's val split, COCO / iMaterialist / Fashionpedia
metrics, a per-class table and precision-recall PNGs.

Every image's masks (predicted and ground truth) are encoded to COCO RLE as soon as the
image is done, so memory stays flat as the image count grows.
"""
import argparse
import json
import logging
import os
import sys

from fashion.cli_args import EXPORT_FORMATS, add_data_args, add_model_args
from fashion.data.sources import dataset_from_args, progress
from fashion.inference.outputs import to_records
from fashion.inference.detector import add_postprocess_args
from fashion.errors import CLIError
from fashion.run import add_precision_arg, detector_from_args
from mrcnn.evaluation.groundtruth import dataset_ground_truth
from fashion.commands.reports import evaluation_report, samples_of

log = logging.getLogger("fashion")

TYPES = ("segm", "boundary", "bbox")    # boundary: COCO AP on min(mask IoU, Boundary IoU)

EXAMPLES = """examples:
  python fashion/fashion.py evaluate --dataset demo --weights last
  python fashion/fashion.py evaluate --dataset /data/imat2019 --format imat2019 \\
      --weights logs/fashion20250101T1200/mask_rcnn_fashion_0120.h5 --limit 500 --out results/
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "evaluate", parents=parents, help="AP on the val split (COCO, iMat 2019, "
        "Fashionpedia)", epilog=EXAMPLES,
        description="Detect on the val split and print COCO segm/bbox AP, AP50, AP75, "
        "boundary AP (Boundary IoU: how well masks follow the objects' edges), the "
        "iMaterialist 2019 score, Fashionpedia's AP with IoU+F1 (when the model predicts "
        "attributes) and a per-class table; writes predictions, ground truth, metrics.json, "
        "per-class CSVs, precision-recall PNGs and the run report (confusion matrices, mask "
        "P/R/F1 against confidence, val_pred_<epoch>.png, attribute precision/recall, "
        "report.html) to --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, required=False)
    add_model_args(p, data_flags=False)
    add_precision_arg(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: the weights' run directory, else "
                   "results/)")
    add_postprocess_args(p)
    p.add_argument("--imat-min-score", type=float, default=None,
                   help="predictions below this score are left out of the iMaterialist "
                   "score (which punishes false positives; default 0.5, or the tuned "
                   "score threshold when post-processing applies)")
    p.set_defaults(func=run, min_confidence=0.05)
    return p


def _detect_split(detector, dataset, meta, pred_path, samples=None):
    """Writes predictions of every val image to pred_path; returns them (RLE only).
    samples: a list that gets the report's first few images with their detections."""
    from mrcnn.evaluation.predictions import PredictionWriter
    from mrcnn.report.evaluation import SAMPLE_IMAGES
    predictions = []
    with PredictionWriter(pred_path) as writer:
        for image_id in progress(dataset.image_ids, "evaluate"):
            image = dataset.load_image(image_id)                    # [H, W, 3]
            result = detector(image)
            name = os.path.basename(dataset.image_reference(image_id))
            records = to_records(result, int(image_id), name, meta, len(predictions) + 1)
            if samples is not None:
                samples_of(dataset, image_id, image, result, SAMPLE_IMAGES, samples)
            del result                                              # full masks freed
            writer.write_all(records)
            predictions += records
    return predictions


def _metrics(gt, predictions, with_attributes, imat_min_score):
    from fashion.imat_metric import evaluate_imat
    from mrcnn.evaluation import evaluate_coco, evaluate_fashionpedia
    coco = evaluate_coco(gt, predictions, iou_types=("segm", "boundary", "bbox"),
                         per_class=True)
    metrics = {t: dict(coco[t]) for t in TYPES}
    for t in ("segm", "bbox"):
        metrics[t]["iMat2019"] = evaluate_imat(gt, predictions, iou_type=t,
                                               min_score=imat_min_score)["score"]
    if with_attributes:
        fp = evaluate_fashionpedia(gt, predictions, iou_types=("segm", "bbox"),
                                   coco_metrics=False)
        for t in ("segm", "bbox"):
            metrics[t].update(fp[t])
    return metrics, coco


def _print_report(metrics, coco, out_dir):
    from mrcnn.evaluation.plots import plot_pr_curves, write_per_class_table
    keys = [k for k in ("AP", "AP50", "AP75", "iMat2019", "AP_iou_f1", "AP_iou", "AP_f1")
            if k in metrics["segm"]]
    print("\n" + "metric".ljust(9) + "".join(k.rjust(11) for k in keys))
    for t in TYPES:
        print(t.ljust(9) + "".join(f"{metrics[t][k]:11.4f}" if k in metrics[t]
                                   else "-".rjust(11) for k in keys))
    print("\nPer class (segm):")
    for t in TYPES:
        write_per_class_table([r for r in coco["per_class"][t] if r["num_gt"] > 0],
                              os.path.join(out_dir, f"per_class_{t}.csv"),
                              columns=["name", "category_id", "num_gt", "AP", "AP50"],
                              stream=sys.stdout if t == "segm" else None)
    pngs = []
    for t in TYPES:
        path = os.path.join(out_dir, f"precision_recall_{t}.png")
        plot_pr_curves(coco["precision"][t], coco["category_names"], path)
        pngs.append(path)
    return pngs


def run(args):
    from mrcnn.fileio import write_json
    detector, run = detector_from_args(args)
    meta, weights, model = run.meta, run.checkpoint, detector.model
    print(run.describe(model.config))
    if detector.params or detector.views:
        print(f"post-processing: {detector.describe()}")
    imat_min_score = args.imat_min_score
    if imat_min_score is None:
        imat_min_score = detector.params["score_threshold"] if detector.params else 0.5
    dataset, path, fmt = dataset_from_args(
        args, "val", **run.data_flags(vars(args), model.config))
    if fmt != meta.get("format") and meta.get("format"):
        raise CLIError(f"The weights were trained on {meta['format']} labels but --format "
                       f"is {fmt}; evaluate on a dataset with the same labels.")
    if fmt in EXPORT_FORMATS and list(dataset.class_names) != list(meta["class_names"]):
        raise CLIError(f"The weights were trained on the classes {meta['class_names'][1:]} "
                       f"but {path} has {list(dataset.class_names)[1:]}; evaluate on data "
                       "with the same class names (for via, the same --via-class-attribute).")
    if not len(dataset.image_ids):
        raise CLIError(f"The val split of {path} has no images; check --dataset, --limit "
                       "and --val-fraction.")
    out_dir = args.out or (os.path.dirname(os.path.abspath(weights))
                           if os.path.basename(os.path.dirname(os.path.abspath(weights)))
                           .startswith("fashion") else "results")
    os.makedirs(out_dir, exist_ok=True)
    gt = dataset_ground_truth(dataset, category_ids=dataset.category_ids)
    write_json(os.path.join(out_dir, "ground_truth_val.json"), gt)
    pred_path = os.path.join(out_dir, "predictions_val.jsonl")
    samples = []
    predictions = _detect_split(detector, dataset, meta, pred_path, samples)
    with_attributes = bool(meta.get("attribute_index_to_id")) and "attributes" in gt
    metrics, coco = _metrics(gt, predictions, with_attributes, imat_min_score)
    pngs = _print_report(metrics, coco, out_dir)
    summary = {"weights": os.path.abspath(weights), "images": len(dataset.image_ids),
               "detections": len(predictions), "postprocess": detector.params,
               "tta": args.tta, **metrics}
    write_json(os.path.join(out_dir, "metrics.json"), summary)
    evaluation_report(out_dir, gt, predictions, samples, dataset.class_names, weights,
                      metrics)
    print(f"\n{len(predictions)} detections on {len(dataset.image_ids)} val images; "
          f"results in {out_dir} (metrics.json, {', '.join(os.path.basename(p) for p in pngs)})")
    print(json.dumps({t: metrics[t] for t in TYPES}))
    return {"out": out_dir, "metrics": metrics, "predictions": pred_path,
            "ground_truth": os.path.join(out_dir, "ground_truth_val.json")}

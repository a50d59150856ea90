"""The run report from the commands: train's data pictures (labels.png,
train_batches.png; `train --report-only` writes only those), evaluate's evaluation
pictures and report.html (the drawing is in mrcnn.report).
"""
import logging
import os

from fashion.data.sources import progress

log = logging.getLogger("fashion")

DATA_REPORT_DIR = "data_report"   # under --logs, for train --report-only


def add_report_args(p):
    p.add_argument("--report-only", action="store_true",
                   help="write the data report (labels.png: instances per class, sizes, "
                   "instances per image, attributes; train_batches.png: the first two "
                   "augmented batches as the model receives them) and report.html to "
                   f"<logs>/{DATA_REPORT_DIR}/, then stop without training")


def _class_ids_of(dataset):
    """fn(image_id) -> class ids from the annotations (no mask decoding), or None."""
    if not hasattr(dataset, "class_id_of_category"):
        return None

    def class_ids(image_id):
        anns = dataset.image_info[image_id].get("annotations") or []
        return [dataset.class_id_of_category(a["category_id"]) for a in anns]
    return class_ids


def write_data_report(out_dir, config, train_data, train_source, augmentation,
                      class_names, again=True):
    """labels.png (from a Python dataset; TFRecord input has none) and
    train_batches.png (train_source through the training pipeline) into out_dir.
    again=False keeps the pictures a resumed run drew when it started."""
    from mrcnn.report.batches import first_batches, plot_batches
    from mrcnn.report.html import write_report_html
    from mrcnn.report.label_plots import label_statistics, plot_labels
    os.makedirs(out_dir, exist_ok=True)
    if not again and os.path.isfile(os.path.join(out_dir, "train_batches.png")):
        log.info("Data report: kept the pictures of %s (drawn when the run started).",
                 out_dir)
        return []
    written = []
    if hasattr(train_data, "load_mask"):
        stats = label_statistics(train_data, _class_ids_of(train_data),
                                 progress=lambda items, what: progress(items, what))
        few = plot_labels(stats, os.path.join(out_dir, "labels.png"))
        written.append("labels.png")
        if few:
            log.info("%d class(es) have fewer than 10 training instances (named in "
                     "labels.png).", len(few))
    else:
        log.info("labels.png needs a Python dataset (--dataset); TFRecord input has none.")
    batches = first_batches(train_source, config, augmentation)
    plot_batches(batches, config, class_names, os.path.join(out_dir, "train_batches.png"))
    written.append("train_batches.png")
    write_report_html(out_dir)
    log.info("Data report: %s in %s.", ", ".join(written), out_dir)
    return [os.path.join(out_dir, name) for name in written]


def report_only(args, config, data, augmentation):
    """train --report-only: the data report in <logs>/data_report/, no training."""
    out_dir = os.path.join(args.logs, DATA_REPORT_DIR)
    paths = write_data_report(out_dir, config, data.train, data.train, augmentation,
                              data.meta["class_names"])
    for path in paths + [os.path.join(out_dir, "report.html")]:
        print(path)
    return {"report_dir": out_dir, "files": paths, "log_dir": None, "checkpoint": None}


# ---------------------------------------------------------------------- evaluate
def samples_of(dataset, image_id, image, result, limit, samples):
    """Adds (image, labels, detections) of an evaluated image to samples while fewer
    than `limit` are kept."""
    if len(samples) < limit:
        masks, class_ids = dataset.load_mask(image_id)
        samples.append({"image": image, "gt_masks": masks, "gt_class_ids": class_ids,
                        "result": result,
                        "name": os.path.basename(dataset.image_reference(image_id))})


def evaluation_report(out_dir, gt, predictions, samples, class_names, weights,
                      metrics=None):
    """evaluate's report pictures and report.html in out_dir; prints the best-F1 line."""
    from mrcnn.training.checkpoints import checkpoint_epoch, read_best
    from mrcnn.report.evaluation import write_evaluation_report
    from mrcnn.report.html import write_report_html
    epoch = checkpoint_epoch(weights)
    if epoch is None and weights.endswith("_best.h5"):
        epoch = (read_best(os.path.dirname(os.path.abspath(weights))) or {}).get("epoch")
    summary = write_evaluation_report(out_dir, gt, predictions, samples, class_names,
                                      epoch=epoch, coco_metrics=metrics)
    print(f"Mask F1 is best ({summary['best_f1']:.3f}) at confidence "
          f"{summary['best_confidence']:.2f}: a good --min-confidence for detect. At "
          f"confidence {summary['conf_threshold']:g}, {summary['missed']} of "
          f"{summary['instances']} instances were missed, {summary['false_positives']} "
          "false positives.")
    path = write_report_html(out_dir)
    print(f"Report: {path}")
    return summary

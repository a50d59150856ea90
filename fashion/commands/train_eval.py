"""What train evaluates while it trains and which checkpoints it keeps: the flags
(--eval-every, --eval-limit, --keep-last, --keep-best, --patience) and the
EvaluationCallback with
the app's ground truth, category ids and metrics (iMaterialist 2019; Fashionpedia's
AP_iou_f1 when the model predicts attributes).
"""
import logging

from fashion.errors import CLIError

log = logging.getLogger("fashion")

EVAL_LIMIT = 200
KEEP_LAST = 3
DEFAULT_BEST = "segm_AP50"


def add_train_eval_args(p):
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate on the val split after every N epochs (and the first "
                   "and last): segm/bbox AP and AP50, boundary AP/AP50/AP75, iMaterialist 2019, Fashionpedia "
                   "AP_iou_f1 with attributes, written to epochs.csv, TensorBoard and the "
                   "training curve (default 1; with --time-budget only after the last "
                   "epoch, so the budget goes to training; 0 turns it off)")
    p.add_argument("--eval-limit", type=int, default=EVAL_LIMIT, metavar="IMAGES",
                   help="evaluate on at most this many val images, the same evenly "
                   f"spaced ones every time (default {EVAL_LIMIT}; 0: all)")
    p.add_argument("--keep-last", type=int, default=KEEP_LAST, metavar="K",
                   help=f"keep the last K epoch checkpoints (default {KEEP_LAST}; 0: all)")
    p.add_argument("--keep-best", default=None, metavar="METRIC",
                   help="also keep the best epoch by this epoch-log value as "
                   "mask_rcnn_fashion_best.h5 (--weights best): segm_AP50 (the default "
                   "when evaluating), segm_AP, boundary_AP, boundary_AP75, bbox_AP50, "
                   "segm_iMat2019, val_loss, ... "
                   "or none")
    p.add_argument("--patience", type=int, default=0, metavar="N",
                   help="stop training when the --keep-best metric has not improved for "
                   "N evaluations (the best checkpoint is kept; default 0: never)")


def patience(args, keep_best):
    """--patience as train()'s patience (None: off); it needs a --keep-best metric."""
    if args.patience < 0:
        raise CLIError(f"--patience is {args.patience}; pass N >= 1 evaluations, or 0 "
                       "to never stop early.")
    if not args.patience:
        return None
    if keep_best is None:
        raise CLIError("--patience needs a metric to watch: evaluate while training "
                       "(drop --eval-every 0) or pass --keep-best val_loss.")
    if getattr(args, "strategy", None) == "multiworker" and not keep_best.endswith("loss"):
        raise CLIError(f"--patience with several workers needs --keep-best val_loss: "
                       f"only the chief evaluates {keep_best}, so the workers could not "
                       "stop together.")
    return args.patience


def metric_names(with_attributes):
    keys = ["segm_AP", "segm_AP50", "boundary_AP", "boundary_AP50", "boundary_AP75",
            "bbox_AP", "bbox_AP50", "segm_iMat2019"]    # as EvaluationCallback logs them
    return keys + (["segm_AP_iou_f1"] if with_attributes else [])


def retention(args, evaluating, has_val, with_attributes):
    """(keep_last, keep_best) from the flags; a metric nothing logs is a CLIError, and
    so is a --patience without a metric to watch."""
    keep_last, keep_best = _retention(args, evaluating, has_val, with_attributes)
    patience(args, keep_best)
    return keep_last, keep_best


def _retention(args, evaluating, has_val, with_attributes):
    if args.keep_last < 0:
        raise CLIError(f"--keep-last is {args.keep_last}; pass a count >= 1, or 0 to keep "
                       "every checkpoint.")
    metric = args.keep_best or (DEFAULT_BEST if evaluating else None)
    if metric in (None, "none"):
        return args.keep_last or None, None
    if metric.endswith("loss"):
        if metric.startswith("val_") and not has_val:
            raise CLIError(f"--keep-best {metric} needs a val split; pass loss, or a "
                           "dataset with val images.")
        return args.keep_last or None, metric
    names = metric_names(with_attributes)
    if metric not in names:
        raise CLIError(f"--keep-best {metric} is not logged; use one of "
                       f"{', '.join(names)}, val_loss or none.")
    if not evaluating:
        raise CLIError(f"--keep-best {metric} needs evaluation during training; drop "
                       "--eval-every 0, or keep the best by val_loss.")
    return args.keep_last or None, metric


def fashion_metrics(with_attributes, imat_min_score=0.5):
    """fn(gt, predictions) -> the iMaterialist 2019 score (and AP_iou_f1) of segm."""
    def metrics(gt, predictions):
        from fashion.imat_metric import evaluate_imat
        out = {"segm_iMat2019": evaluate_imat(gt, predictions, iou_type="segm",
                                              min_score=imat_min_score)["score"]}
        if with_attributes:
            from mrcnn.evaluation import evaluate_fashionpedia
            fp = evaluate_fashionpedia(gt, predictions, iou_types=("segm",),
                                       coco_metrics=False)
            out["segm_AP_iou_f1"] = fp["segm"]["AP_iou_f1"]
        return out
    return metrics


def eval_cadence(args):
    """--eval-every as EvaluationCallback's `every`: the count given, else 1, or "last"
    with --time-budget (evaluating a 20-minute run after each epoch took a fifth of it);
    0 means off."""
    if args.eval_every is not None:
        return args.eval_every
    return "last" if getattr(args, "time_budget", None) is not None else 1


def evaluation_callback(args, config, val_dataset, meta):
    """The EvaluationCallback of a train run, or None (off, or no Python val split)."""
    if (args.eval_every or 0) < 0 or args.eval_limit < 0:
        raise CLIError("--eval-every and --eval-limit take counts >= 0 (0: off / all).")
    every = eval_cadence(args)
    if every == 0:
        return None
    if not hasattr(val_dataset, "load_mask") or not len(val_dataset.image_ids):
        log.info("No val images to evaluate on while training (TFRecords are not "
                 "evaluated; pass --dataset for a val split).")
        return None
    if every == "last":
        log.info("Evaluating after the last epoch only (--time-budget); pass --eval-every "
                 "N to evaluate every N epochs as well.")
    from fashion.inference.outputs import to_records
    from mrcnn.evaluation.groundtruth import dataset_ground_truth
    from mrcnn.training.evaluation_callback import EvaluationCallback
    with_attributes = bool(meta.get("attribute_index_to_id"))
    return EvaluationCallback(
        val_dataset, config, every=every, limit=args.eval_limit or None,
        ground_truth=lambda d, ids: dataset_ground_truth(d, ids, d.category_ids),
        to_records=lambda result, image_id, name, first: to_records(
            result, image_id, name, meta, first),
        metrics_fn=fashion_metrics(with_attributes))

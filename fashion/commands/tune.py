"""`tune`: post-processing tuned on the val split of a trained run.

One raw pass over the split (fashion.inference.tuning.collect), then a coordinate-wise search of
the score threshold, the per-class NMS IoU (box NMS, emulated in numpy as
fashion/inference/postprocess.py describes), the mask threshold, the minimum mask area and the
same-class overlap rule, for the chosen metric. The defaults (what evaluate reports
today) are part of the search, so the result never scores below them on this split.
The choice is stored as "postprocess" in the run's fashion_run.json, which detect and
evaluate then apply unless flags override it (--postprocess none ignores it).

--tta tunes for test-time augmentation: the raw pass keeps every view, each candidate
is scored as `evaluate --tta` with the same views would score it, and the views are
stored with the choice; detect and evaluate say so when run with other views.
"""
import argparse
import json
import os
import time

from fashion.cli_args import add_data_args, add_model_args
from fashion.errors import CLIError

EXAMPLES = """examples:
  python fashion/fashion.py tune --dataset demo --weights last
  python fashion/fashion.py tune --dataset demo --weights last --tta flip
  python fashion/fashion.py tune --dataset /data/imat2019 --format imat2019 \\
      --weights logs/fashion20250101T1200/mask_rcnn_fashion_0040.h5 --limit 500 --metric segm_AP
"""


def add_parser(subparsers, parents):
    from fashion.inference.tuning import METRICS
    p = subparsers.add_parser(
        "tune", parents=parents, help="tune score/NMS/mask thresholds, minimum area and "
        "overlaps on the val split", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, required=False)
    add_model_args(p, data_flags=False)
    p.add_argument("--metric", choices=METRICS, default="imat2019",
                   help="what to maximise (default imat2019, the Kaggle score; "
                   "boundary_AP rewards masks that follow the edges). segm AP and "
                   "boundary AP are reported before and after whatever the metric")
    p.add_argument("--rounds", type=int, default=3,
                   help="at most this many sweeps over the settings (default 3)")
    p.add_argument("--no-save", action="store_true",
                   help="report only; leave the run file as it is")
    from fashion.inference.detector import TTA_HELP, add_tta_arg
    add_tta_arg(p, "tune for " + TTA_HELP + "; use the same --tta with detect/evaluate")
    p.set_defaults(func=run)
    return p


def _raw_pass_model(run):
    """The inference model of a Run with the raw-pass settings, the run's instance cap
    and NMS threshold."""
    from fashion.inference import postprocess as pp
    config = run.saved_config
    cap = int(config.get("DETECTION_MAX_INSTANCES") or 100)
    nms = float(config.get("DETECTION_NMS_THRESHOLD") or 0.3)
    model = run.model(DETECTION_MIN_CONFIDENCE=pp.PASS_MIN_SCORE,
                      DETECTION_NMS_THRESHOLD=max(pp.PASS_NMS_IOU, nms),
                      DETECTION_MAX_INSTANCES=2 * cap)
    return model, cap, nms


def run(args):
    from fashion.inference import tuning
    from fashion.data.sources import dataset_from_args, progress
    from mrcnn.evaluation.groundtruth import dataset_ground_truth
    from fashion.inference.detector import parse_views
    views = parse_views(args.tta)
    t0 = time.time()
    from fashion.run import Run
    run = Run.from_args(args)
    meta, weights = run.meta, run.checkpoint
    model, cap, nms = _raw_pass_model(run)
    dataset, path, _ = dataset_from_args(
        args, "val", **run.data_flags(vars(args), model.config))
    if not len(dataset.image_ids):
        raise CLIError(f"The val split of {path} has no images; check --dataset, --limit "
                       "and --val-fraction.")
    if args.metric == "ap_iou_f1" and not meta.get("attribute_index_to_id"):
        raise CLIError("--metric ap_iou_f1 needs a model with an attribute head; use "
                       "imat2019 or segm_AP.")
    gt = dataset_ground_truth(dataset, category_ids=dataset.category_ids)
    images = tuning.collect(model, dataset, progress, views)
    t_pass = time.time() - t0
    candidates = tuning.Candidates(images, meta, cap)
    defaults = tuning.default_params(model.config, args.metric, nms)
    space = tuning.search_space(defaults, images)
    best, before, after, count = tuning.coordinate_search(
        lambda params: tuning.metric_value(args.metric, gt, candidates.records(params)),
        defaults, space, rounds=args.rounds)
    aps = {when: tuning.mask_aps(gt, candidates.records(params))
           for when, params in (("before", defaults), ("after", best))}
    choice = {**best, "max_instances": cap, "metric": args.metric,
              "before": round(before, 6), "after": round(after, 6),
              "images": len(images), "dataset": os.path.abspath(path) if os.path.exists(
                  path) else path, "limit": args.limit,
              "weights": os.path.basename(weights), "settings_scored": count,
              "tta": args.tta if views else None,
              **{key: {when: round(aps[when][key], 6) for when in aps}
                 for key in aps["before"]}}
    print(f"\n{args.metric} on {len(images)} val images"
          f"{' with TTA ' + args.tta if views else ''}: before {before:.4f} -> after "
          f"{after:.4f} ({count} settings scored; raw pass {t_pass:.0f} s, search "
          f"{time.time() - t0 - t_pass:.0f} s)")
    print("chosen: " + ", ".join(f"{k}={best[k]}" for k in best))
    print("  ".join(f"{key} {aps['before'][key]:.4f} -> {aps['after'][key]:.4f}"
                    for key in aps["before"]))
    if not args.no_save:
        run_file = _store(weights, choice)
        print(f"stored as \"postprocess\" in {run_file}; detect and evaluate apply it "
              "(--postprocess none to ignore)")
    print(json.dumps(choice))
    return {"postprocess": choice, "before": before, "after": after, "params": best}


def _store(weights, choice):
    from fashion.run import RUN_FILE, read_run_file
    from mrcnn.fileio import write_json
    run = read_run_file(weights)
    if run is None:
        raise CLIError(f"{weights} has no {RUN_FILE} beside it to store the choice in; "
                       "pass --no-save, or tune a checkpoint of a fashion.py train run.")
    run["postprocess"] = choice
    return write_json(os.path.join(os.path.dirname(os.path.abspath(weights)), RUN_FILE), run)

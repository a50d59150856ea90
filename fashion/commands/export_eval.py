"""Accuracy and speed of exported models on a dataset's val split: what `export --int8`
guards with and what `benchmark` reports.

Every format is run as ``run(image uint8 [H, W, 3]) -> detect()-like result`` (the
exports' outputs through ``mrcnn.export.results.to_results``, so masks are pasted
as detect() pastes them); segm AP is COCO's, on the same images for every format.
"""
import argparse
import time

import numpy as np

from fashion.errors import CLIError


def add_val_data_args(p, dataset_flag="--dataset", dataset_help=None, bare=None):
    """The dataset flags of a val split (no --format / --image-size: the run's); with
    `bare`, the dataset flag alone means that value."""
    p.add_argument(dataset_flag, default=None, metavar="PATH|demo",
                   nargs="?" if bare else None, const=bare,
                   help=dataset_help or "dataset directory (or Fashionpedia JSON), or "
                   "'demo'; default: the dataset the run was trained on")
    p.add_argument("--image-dir", default=None, help="Fashionpedia images (default: "
                   "next to the annotations)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N images of the val split")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="iMaterialist: share of train.csv held out as the val split")
    p.add_argument("--demo-dir", default=None, help="where the demo set is generated")
    p.add_argument("--demo-images", type=int, default=None, help="images in the demo set")


def val_split(dataset, meta, args, image_size, flag="--dataset", label_set=None):
    """(dataset, image ids) of a val split; dataset None means the run's own dataset;
    the label format is label_set, else the run's."""
    from fashion.data.sources import dataset_from_args
    fmt = label_set or meta.get("format")
    if dataset is None:
        dataset = meta.get("dataset")
        if not dataset:
            raise CLIError(f"{flag} is needed: these weights do not record their dataset; "
                           f"pass {flag} PATH (or demo).")
    if dataset == "demo":
        fmt = "imat2019"
    if not fmt:
        raise CLIError(f"The label format of {dataset} is unknown; pass its label set "
                       "(--label-set for export, --format for benchmark).")
    data = argparse.Namespace(
        dataset=dataset, format=fmt, limit=args.limit, image_size=image_size,
        val_fraction=args.val_fraction, image_dir=args.image_dir, demo_dir=args.demo_dir,
        demo_images=args.demo_images)
    if dataset == meta.get("dataset"):  # the run's own data: its --split, ... again
        vars(data).update(meta.get("load_options") or {})
    ds, path, fmt = dataset_from_args(data, "val")
    if meta.get("format") and fmt != meta["format"]:
        raise CLIError(f"The weights were trained on {meta['format']} labels but {path} "
                       f"has {fmt} labels; use a dataset with the same labels.")
    if not len(ds.image_ids):
        raise CLIError(f"The val split of {path} has no images; check {flag}, --limit "
                       "and --val-fraction.")
    return ds, list(ds.image_ids)


def export_detector(run):
    """An export's run(image) -> outputs dict, as image -> detect()-like result."""
    from mrcnn.export.results import to_results

    def detect(image):
        return to_results(run(image), [image.shape])[0]
    return detect


def evaluate(detect, dataset, image_ids, meta, desc="evaluate", warmup=1):
    """Runs detect(image) -> result on every image (after `warmup` untimed calls on the
    first) and scores the predictions. Returns {"segm_AP", "boundary_AP", "bbox_AP",
    "seconds": [per image], "detections"}."""
    from fashion.data.sources import progress
    from fashion.inference.outputs import to_records
    from mrcnn.evaluation.groundtruth import dataset_ground_truth
    from mrcnn.evaluation import evaluate_coco
    images = [dataset.load_image(i) for i in image_ids]
    for _ in range(warmup):
        detect(images[0])
    predictions, seconds = [], []
    for image_id, image in progress(list(zip(image_ids, images)), desc):
        start = time.perf_counter()
        result = detect(image)
        seconds.append(time.perf_counter() - start)
        predictions += to_records(result, int(image_id), f"{image_id}.png", meta,
                                  len(predictions) + 1)
    gt = dataset_ground_truth(dataset, image_ids, dataset.category_ids)
    metrics = evaluate_coco(gt, predictions, iou_types=("segm", "boundary", "bbox"),
                            per_class=False)
    return {"segm_AP": float(metrics["segm"]["AP"]),
            "boundary_AP": float(metrics["boundary"]["AP"]),
            "bbox_AP": float(metrics["bbox"]["AP"]),
            "seconds": seconds, "detections": len(predictions)}


def latency(seconds):
    """(median, p90) of per-image seconds."""
    values = np.asarray(seconds, np.float64)
    return float(np.median(values)), float(np.percentile(values, 90))


def parity(reference, results):
    """How detect()-like results agree with detect()'s (lists, one per image): each
    reference detection matched to the same class's closest box; a one-line summary."""
    total = matched = 0
    score = box = 0.0
    iou = 1.0
    for ref, got in zip(reference, results):
        free = np.ones(len(got["class_ids"]), bool)
        total += len(ref["class_ids"])
        for i in range(len(ref["class_ids"])):
            diff = np.abs(got["rois"].astype(np.float64) - ref["rois"][i]).max(axis=1) \
                if len(got["class_ids"]) else np.zeros(0)
            ok = free & (got["class_ids"] == ref["class_ids"][i]) & (diff <= 0.5)
            if not ok.any():
                continue
            j = int(np.argmin(np.where(ok, diff, np.inf)))
            free[j] = False
            matched += 1
            score = max(score, abs(float(got["scores"][j]) - float(ref["scores"][i])))
            box = max(box, float(diff[j]))
            a, b = ref["masks"][..., i], got["masks"][..., j]
            union = np.logical_or(a, b).sum()
            iou = min(iou, float(np.logical_and(a, b).sum() / union) if union else 1.0)
        total += int(free.sum())                 # extra detections count as unmatched
    if matched == total and score == 0.0 and iou == 1.0:
        return f"exact ({total} detections)"
    return (f"{matched}/{total} matched, scores within {score:.1g}, boxes within "
            f"{box:.1f} px, mask IoU >= {iou:.3f}")

"""Post-processing tuned on a split: one raw pass, then a coordinate-wise search.

`collect` runs the model once per image with the lenient raw-pass settings of
fashion.inference.postprocess (DETECTION_MIN_CONFIDENCE 0.05, DETECTION_NMS_THRESHOLD 0.7, twice
the instance cap) and keeps every image's raw detections in memory. `Candidates` turns
a parameter set into prediction records exactly as `evaluate` would write them under
those settings (fashion.inference.postprocess.view_detections / filter_detections), caching each
detection's pasted mask and RLE per mask threshold, so a candidate costs its metric,
not inference. `coordinate_search` starts from the defaults (what evaluate reports
today) and sweeps one setting at a time over its grid, keeping a value only when it
scores strictly higher, until a round changes nothing: the result never scores below
the defaults on the split it was tuned on.

With test-time augmentation (`tune --tta`), `collect` keeps every view's raw detections
and a candidate runs what `detect/evaluate --tta` run under those settings: each view's
steps 1-4 (score threshold, NMS, mask threshold), fashion.inference.tta's mask voting, then the
score threshold, minimum area, overlap rule and cap on the voted detections; votes are
cached per (score, NMS, mask threshold).
"""
import numpy as np

from fashion.inference import postprocess as pp

METRICS = ("imat2019", "segm_AP", "boundary_AP", "ap_iou_f1")
SCORES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NMS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MASK = (0.3, 0.4, 0.5, 0.6, 0.7)
AREA_FRACTIONS = (2e-4, 5e-4, 1e-3, 2e-3, 5e-3)  # of the median image area


def default_params(config, metric, nms_iou):
    """The settings evaluate reports `metric` with today: score 0.5 for the iMaterialist
    score (evaluate's --imat-min-score), 0.05 for AP; the run's NMS threshold."""
    params = pp.default_params(config, 0.5 if metric == "imat2019" else pp.PASS_MIN_SCORE)
    params["nms_iou"] = float(nms_iou)
    return params


def search_space(defaults, images):
    """Every setting's grid (each holding its default)."""
    area = float(np.median([np.prod(im["shape"]) for im in images])) if images else 0
    areas = {0, defaults["min_area"]} | {int(round(area * f)) for f in AREA_FRACTIONS}
    return {
        "score_threshold": sorted(set(SCORES) | {defaults["score_threshold"]}),
        "nms_iou": sorted({v for v in NMS if v <= pp.PASS_NMS_IOU} | {defaults["nms_iou"]}),
        "mask_threshold": sorted(set(MASK) | {defaults["mask_threshold"]}),
        "min_area": sorted(areas),
        "overlap": list(pp.OVERLAPS),
    }


def collect(model, dataset, progress=None, views=None):
    """[{image_id, filename, shape, raw}] of every image of dataset (one raw pass each);
    with TTA views (fashion.inference.tta.parse_tta), "views" (raw detections of every view in
    the image's frame) instead of "raw"."""
    import os
    from fashion.inference import tta
    models = tta.ScaledModels(model) if views else None
    ids = list(dataset.image_ids)
    out = []
    for image_id in (progress(ids, "tune") if progress else ids):
        image = dataset.load_image(image_id)                        # [H, W, 3]
        item = {"image_id": int(image_id), "shape": tuple(image.shape[:2]),
                "filename": os.path.basename(dataset.image_reference(image_id))}
        if views:
            item["views"] = tta.raw_views(models, image, *views)
        else:
            item["raw"] = pp.raw_detect(model, image)
        out.append(item)
    return out


class Candidates:
    """Prediction records of the collected images under a parameter set."""

    def __init__(self, images, meta, max_instances):
        from fashion.data.sources import category_of
        self.images = images
        self.categories = category_of(meta)
        self.attribute_ids = meta.get("attribute_index_to_id") or None
        self.max_instances = max_instances
        self._pasted = {}   # (image, threshold, detection) -> (crop, mean prob)
        self._rles = {}     # the same keys -> RLE of the pasted mask
        self._votes = {}    # TTA: (image, score, nms, mask threshold) -> voted detections

    def _paster(self, n):
        def paste(raw, i, threshold):
            key = (n, threshold, int(i))
            if key not in self._pasted:
                self._pasted[key] = pp.paste_crop(raw, i, threshold)
            return self._pasted[key]
        return paste

    def _rle(self, key, index, box, crop, shape):
        """RLE of a detection's mask, cached per key for that very crop (another crop
        under the same key, e.g. a merged one, is encoded anew and replaces it)."""
        from mrcnn.evaluation.predictions import encode_mask
        key = key + (int(index),)
        if key in self._rles and self._rles[key][0] is crop:
            return self._rles[key][1]
        plane = np.zeros(shape, dtype=bool)
        plane[box[0]:box[2], box[1]:box[3]] = crop
        rle = encode_mask(plane)
        self._rles[key] = (crop, rle)
        return rle

    def _detections(self, n, params):
        """Image n's detections under params before steps 5-6, and the cache key of
        their masks (detection k's mask is keyed (key, dets["index"][k]))."""
        im = self.images[n]
        if "views" not in im:
            raw = im["raw"]
            dets = pp.view_detections(dict(raw, index=np.arange(len(raw["scores"]))),
                                      params, self.max_instances, self._paster(n))
            return dets, (n, params["mask_threshold"])
        key = (n, params["score_threshold"], params["nms_iou"], params["mask_threshold"])
        if key not in self._votes:
            from fashion.inference import tta
            per_view = dict(params, min_area=0, overlap="keep")
            view_dets = [pp.view_detections(
                dict(raw, index=np.arange(len(raw["scores"]))), per_view,
                self.max_instances, self._paster((n, v)))
                for v, raw in enumerate(im["views"])]
            voted = tta.vote(view_dets, im["shape"])
            voted["index"] = np.arange(len(voted["scores"]))
            self._votes[key] = voted
        return self._votes[key], ("tta",) + key

    def records(self, params):
        """Prediction dicts (image_id, category_id, bbox, score, segmentation,
        attribute_ids) of every image under params."""
        out = []
        for n, im in enumerate(self.images):
            dets, key = self._detections(n, params)
            dets = pp.filter_detections(dets, params, self.max_instances)
            for k, (box, crop) in enumerate(dets["masks"]):
                y1, x1, y2, x2 = (float(v) for v in dets["rois"][k])
                record = {"image_id": im["image_id"], "score": float(dets["scores"][k]),
                          "category_id": int(self.categories[int(dets["class_ids"][k])]),
                          "bbox": [x1, y1, x2 - x1, y2 - y1],
                          "segmentation": self._rle(key, dets["index"][k], box, crop,
                                                    im["shape"])}
                if "attribute_probabilities" in dets:
                    hot = np.flatnonzero(dets["attribute_probabilities"][k] >= 0.5)
                    record["attribute_ids"] = [int(self.attribute_ids[a]) if self.attribute_ids
                                               else int(a) for a in hot]
                out.append(record)
        return out


def metric_value(metric, gt, predictions):
    """The metric of predictions against COCO-format ground truth gt."""
    if metric == "imat2019":
        from fashion.imat_metric import evaluate_imat
        return evaluate_imat(gt, predictions, iou_type="segm")["score"]
    if not predictions:
        return 0.0
    if metric in ("segm_AP", "boundary_AP"):
        from mrcnn.evaluation import evaluate_coco
        kind = metric.split("_")[0]
        return evaluate_coco(gt, predictions, iou_types=(kind,), per_class=False)[kind]["AP"]
    from mrcnn.evaluation import evaluate_fashionpedia
    return evaluate_fashionpedia(gt, predictions, iou_types=("segm",),
                                 coco_metrics=False)["segm"]["AP_iou_f1"]


def mask_aps(gt, predictions):
    """{"segm_AP", "boundary_AP", "boundary_AP50", "boundary_AP75"} of predictions
    (what tune reports next to its metric, before and after)."""
    if not predictions:
        return {k: 0.0 for k in ("segm_AP", "boundary_AP", "boundary_AP50", "boundary_AP75")}
    from mrcnn.evaluation import evaluate_coco
    coco = evaluate_coco(gt, predictions, iou_types=("segm", "boundary"), per_class=False)
    return {"segm_AP": coco["segm"]["AP"], **{f"boundary_{k}": coco["boundary"][k]
                                              for k in ("AP", "AP50", "AP75")}}


def coordinate_search(evaluate, defaults, space, rounds=3, log=print):
    """Hill-climbs one setting at a time from defaults. evaluate(params) -> float.
    Returns (best params, before, after, number of settings scored)."""
    seen = {}

    def value(params):
        key = tuple(params[k] for k in pp.PARAM_KEYS)
        if key not in seen:
            seen[key] = float(evaluate(params))
        return seen[key]

    best, before = dict(defaults), value(defaults)
    after = before
    log(f"defaults {_short(best)}: {before:.4f}")
    for r in range(1, rounds + 1):
        changed = False
        for key, grid in space.items():
            for v in grid:
                candidate = dict(best, **{key: v})
                score = value(candidate)
                if score > after + 1e-12:
                    best, after, changed = candidate, score, True
            log(f"round {r}: {key:<15} -> {best[key]!s:<8} score {after:.4f} "
                f"({len(seen)} settings scored)")
        if not changed:
            break
    return best, before, after, len(seen)


def _short(params):
    return ", ".join(f"{k}={params[k]}" for k in pp.PARAM_KEYS)

"""Detections post-processed in numpy with settings a run can store (`fashion.py tune`).

A *raw* pass runs the inference graph once per image (and view) with permissive
settings — a low DETECTION_MIN_CONFIDENCE, a lenient DETECTION_NMS_THRESHOLD
(PASS_NMS_IOU) and room for more instances — and keeps, per detection, its box
(normalised to the molded image and in original pixels), class, score, attribute
probabilities and its soft mask (the mask head's box-relative probabilities of the
detected class). `finish` then applies, in this order:

1. score >= score_threshold (DetectionLayer's DETECTION_MIN_CONFIDENCE);
2. per-class greedy NMS on the normalised *boxes*, a box dropped when its IoU with a
   kept box of its class is above nms_iou (DetectionLayer's DETECTION_NMS_THRESHOLD,
   emulated on the lenient pass's output: exact when nms_iou equals the pass's value,
   otherwise the layer's result up to boxes the pass had already suppressed);
3. the best max_instances, boxes of zero pixel area dropped (as detect() does);
4. masks pasted with mrcnn.inference.paste_mask at mask_threshold (0.5 = detect());
5. masks with fewer than min_area pixels dropped;
6. overlap: "keep" (default), or for two masks of one class where at least half of the
   smaller lies inside the larger (COVER), "suppress" drops the lower-scoring one and
   "merge" adds its pixels to the higher-scoring one (boxes joined).

With the run's own settings (no tuning, one view) `finish` gives detect()'s detections.
"""
import numpy as np

from mrcnn.inference import (MASK_THRESHOLD, boxes_to_original, class_masks, mold_inputs,
                             paste_mask)

OVERLAPS = ("keep", "suppress", "merge")
COVER = 0.5          # share of the smaller mask inside the other that makes an overlap
PASS_NMS_IOU = 0.7   # the raw pass's DetectionLayer NMS threshold while tuning
PASS_MIN_SCORE = 0.05
PARAM_KEYS = ("score_threshold", "nms_iou", "mask_threshold", "min_area", "overlap")


def default_params(config, score_threshold=None):
    """The settings detect() applies today (score_threshold: the run's value unless
    given, e.g. 0.05 as evaluate uses for AP)."""
    return {"score_threshold": float(config.DETECTION_MIN_CONFIDENCE
                                     if score_threshold is None else score_threshold),
            "nms_iou": float(config.DETECTION_NMS_THRESHOLD),
            "mask_threshold": MASK_THRESHOLD, "min_area": 0, "overlap": "keep"}


def predict(model, molded, meta):
    """The inference graph's outputs for one molded image [h, w, 3] and its meta."""
    anchors = model.get_anchors(molded.shape)[np.newaxis]
    return model._predict(molded[np.newaxis], meta[np.newaxis], anchors)


def raw_detect(model, image):
    """One pass at the model's own input size: the raw detections of `image`."""
    molded, metas, windows = mold_inputs([image], model.config)
    outs = predict(model, molded[0], metas[0])
    return unmold_raw(outs, image.shape, molded[0].shape, windows[0])


def unmold_raw(outs, original_shape, molded_shape, window):
    """Graph outputs of one image -> raw detections: nboxes [N, 4] normalised (molded
    frame), rois [N, 4] int32 pixels of the original image (as detect()), class_ids,
    scores, soft [N, h, w] float32 and attribute_probabilities [N, A] when present."""
    detections, mrcnn_mask = outs["detections"][0], outs["mrcnn_mask"][0]
    zero = np.where(detections[:, 4] == 0)[0]
    n = zero[0] if zero.shape[0] else detections.shape[0]
    nboxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    rois = boxes_to_original(nboxes, window, molded_shape, original_shape)
    raw = {"nboxes": nboxes, "rois": rois, "class_ids": class_ids,
           "scores": detections[:n, 5], "shape": tuple(original_shape[:2]),
           "soft": class_masks(mrcnn_mask, class_ids).astype(np.float32)}
    if outs.get("attributes") is not None:
        raw["attribute_probabilities"] = outs["attributes"][0][:n].astype(np.float32)
    return raw


def box_iou(box, boxes):
    """IoU of one box [4] with boxes [M, 4] (y1, x1, y2, x2)."""
    y1 = np.maximum(box[0], boxes[:, 0])
    x1 = np.maximum(box[1], boxes[:, 1])
    y2 = np.minimum(box[2], boxes[:, 2])
    x2 = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def keep_indices(raw, score_threshold, nms_iou, max_instances):
    """Steps 1-3 of the module docstring: indices into raw, best first."""
    scores = raw["scores"]
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= score_threshold]
    kept = []
    for i in order:
        same = [j for j in kept if raw["class_ids"][j] == raw["class_ids"][i]]
        if same and np.any(box_iou(raw["nboxes"][i], raw["nboxes"][same]) > nms_iou):
            continue
        kept.append(i)
        if len(kept) == max_instances:
            break
    rois = raw["rois"]
    return [i for i in kept if (rois[i, 2] - rois[i, 0]) * (rois[i, 3] - rois[i, 1]) > 0]


def paste_crop(raw, i, threshold):
    """(bool [h, w] mask of detection i inside its box, pasted at threshold exactly as
    paste_mask pastes it into a full plane; its mean probability)."""
    y1, x1, y2, x2 = (int(v) for v in raw["rois"][i])
    crop = np.zeros((max(y2 - y1, 0), max(x2 - x1, 0)), dtype=bool)
    score = paste_mask(raw["soft"][i], (0, 0, y2 - y1, x2 - x1), crop, threshold)
    return crop, score


def _overlap_slices(a, b):
    """Slices of the crops of boxes a and b covering their intersection, or None."""
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    if y2 <= y1 or x2 <= x1:
        return None
    return ((slice(y1 - a[0], y2 - a[0]), slice(x1 - a[1], x2 - a[1])),
            (slice(y1 - b[0], y2 - b[0]), slice(x1 - b[1], x2 - b[1])))


class CropOps:
    """Mask operations on (box (y1, x1, y2, x2) ints, bool crop of that box)."""

    @staticmethod
    def area(m):
        return int(np.count_nonzero(m[1]))

    @staticmethod
    def inter(a, b):
        s = _overlap_slices(a[0], b[0])
        return 0 if s is None else int(np.count_nonzero(a[1][s[0]] & b[1][s[1]]))

    @staticmethod
    def union(a, b):
        box = (min(a[0][0], b[0][0]), min(a[0][1], b[0][1]),
               max(a[0][2], b[0][2]), max(a[0][3], b[0][3]))
        crop = np.zeros((box[2] - box[0], box[3] - box[1]), dtype=bool)
        for m in (a, b):
            crop[m[0][0] - box[0]:m[0][2] - box[0], m[0][1] - box[1]:m[0][3] - box[1]] |= m[1]
        return box, crop


def resolve_overlaps(masks, class_ids, mode, ops=CropOps):
    """Masks in decreasing score order -> (kept positions, their masks, merged: kept
    position -> positions merged into it), by step 6 of the module docstring."""
    kept, out, areas, merged = [], [], [], {}
    for i, mask in enumerate(masks):
        area, hit = ops.area(mask), None
        if mode != "keep":
            for k, j in enumerate(kept):
                smaller = min(area, areas[k])
                if (class_ids[j] == class_ids[i] and smaller
                        and ops.inter(mask, out[k]) >= COVER * smaller):
                    hit = k
                    break
        if hit is None:
            kept.append(i), out.append(mask), areas.append(area)
        elif mode == "merge":
            out[hit] = ops.union(out[hit], mask)
            areas[hit] = ops.area(out[hit])
            merged.setdefault(kept[hit], []).append(i)
    return kept, out, merged


def joined_boxes(rois, kept, merged):
    """rois of the kept detections, each joined with the boxes merged into it."""
    out = np.array(rois[kept], copy=True).reshape(-1, 4)
    for k, j in enumerate(kept):
        for i in merged.get(j, []):
            out[k, :2] = np.minimum(out[k, :2], rois[i, :2])
            out[k, 2:] = np.maximum(out[k, 2:], rois[i, 2:])
    return out


def take(dets, idx):
    """The detections at positions idx (a list) of a detections dict."""
    out = {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx])
           for k, v in dets.items() if k != "shape"}
    out["shape"] = dets["shape"]
    return out


def view_detections(raw, params, max_instances, paster=paste_crop):
    """Steps 1-4 of the module docstring -> detections dict: rois, class_ids, scores,
    mask_scores, masks (list of (box, crop)), attribute_probabilities, shape."""
    idx = keep_indices(raw, params["score_threshold"], params["nms_iou"], max_instances)
    pasted = [paster(raw, i, params["mask_threshold"]) for i in idx]
    dets = {k: raw[k][idx] for k in ("rois", "class_ids", "scores", "attribute_probabilities",
                                     "index") if k in raw}
    dets["rois"] = dets["rois"].reshape(-1, 4)
    dets["mask_scores"] = np.array([p[1] for p in pasted], dtype=np.float32)
    dets["masks"] = [(tuple(int(v) for v in raw["rois"][i]), p[0])
                     for i, p in zip(idx, pasted)]
    dets["shape"] = raw["shape"]
    return dets


def filter_detections(dets, params, max_instances):
    """Score threshold, min_area, overlap (steps 5-6) and the instance cap on detections
    sorted by decreasing score."""
    keep = [i for i, m in enumerate(dets["masks"])
            if dets["scores"][i] >= params["score_threshold"]
            and (params["min_area"] <= 0 or np.count_nonzero(m[1]) >= params["min_area"])]
    dets = take(dets, keep)
    kept, masks, merged = resolve_overlaps(dets["masks"], dets["class_ids"], params["overlap"])
    rois = joined_boxes(dets["rois"], kept, merged)
    dets = take(dets, kept[:max_instances])
    dets["rois"], dets["masks"] = rois[:max_instances], masks[:max_instances]
    return dets


def densify(dets):
    """Detections dict -> detect()'s result (masks [H, W, N] bool)."""
    planes = np.zeros((len(dets["masks"]),) + tuple(dets["shape"]), dtype=bool)
    for plane, (box, crop) in zip(planes, dets["masks"]):
        plane[box[0]:box[2], box[1]:box[3]] = crop
    result = {k: v for k, v in dets.items() if k not in ("masks", "shape")}
    result["masks"] = np.moveaxis(planes, 0, -1)
    return result


def finish(raw, params, max_instances):
    """Raw detections of one image -> detect()'s result dict under params."""
    dets = view_detections(raw, params, max_instances)
    return densify(filter_detections(dets, params, max_instances))

"""Multi-scale and flip test-time augmentation, merged by mask voting.

Views: `--tta 0.8,1.0,1.2,flip` runs every scale, each with and without a horizontal
flip (6 views); bare `--tta` means `1.0,flip` (2 views).

Scale: the image *content* is resized to `scale` x the model's input size. In "square"
mode the model's input is a fixed IMAGE_MAX_DIM square, so a view at scale s molds the
image exactly as detect() does with IMAGE_MIN_DIM/IMAGE_MAX_DIM multiplied by s, then
pads it (bottom/right) to the next multiple of 64: s < 1 shrinks the content inside the
usual square (same model), s > 1 needs a larger square, served by a copy of the model
built for that side with the same weights (built once per side, weights copied in
memory). Anchors, ROI counts and thresholds stay the run's. In the other resize modes
the graph takes any size and the base model serves every view.

Merge (mask voting): detections of every view, mapped back to the original image, are
taken by decreasing score; one joins the first cluster of its class whose leading mask
has a mask IoU above VOTE_IOU with it and no member from its view yet, else it starts a
cluster. A cluster's mask is the pixels covered by at least half of its members'
score weight, its box the score-weighted mean box, its attribute probabilities and mask
score the weighted means, and its score the sum of member scores divided by the number
of views (an object missed by some views is down-weighted). Then the score threshold,
minimum area, overlap rule and instance cap of `fashion.inference.postprocess` apply.
"""
import math

import numpy as np

from fashion.inference import postprocess as pp
from mrcnn import utils

VOTE_IOU = 0.5


def parse_tta(spec):
    """'0.8,1.0,1.2,flip' -> ([0.8, 1.0, 1.2], True); None/'' -> None (no TTA)."""
    if spec in (None, "", False):
        return None
    if spec is True:
        spec = "flip"
    scales, flip = [], False
    for item in str(spec).split(","):
        item = item.strip().lower()
        if item == "flip":
            flip = True
            continue
        try:
            scale = float(item)
        except ValueError:
            raise ValueError(f"--tta item {item!r} is neither a scale nor 'flip'; use e.g. "
                             "--tta 0.8,1.0,1.2,flip.") from None
        if not 0.25 <= scale <= 4:
            raise ValueError(f"--tta scale {scale} is outside 0.25..4; use scales near 1.")
        scales.append(scale)
    scales = sorted(set(scales or [1.0]))
    if scales == [1.0] and not flip:
        return None
    return scales, flip


def mold_scaled(image, config, scale):
    """(molded image [S, S, 3] float32, image meta, window) of `image` at `scale`."""
    mode = config.IMAGE_RESIZE_MODE
    min_dim = int(round(config.IMAGE_MIN_DIM * scale)) if config.IMAGE_MIN_DIM else None
    max_dim = int(round(config.IMAGE_MAX_DIM * scale)) if config.IMAGE_MAX_DIM else None
    molded, window, s, _, _ = utils.resize_image(
        image, min_dim=min_dim, min_scale=config.IMAGE_MIN_SCALE, max_dim=max_dim, mode=mode)
    if mode == "square":
        side = 64 * math.ceil(max_dim / 64)
        molded = np.pad(molded, ((0, side - molded.shape[0]), (0, side - molded.shape[1]),
                                 (0, 0)))
    molded = utils.mold_image(molded, config)
    meta = utils.compose_image_meta(0, image.shape, molded.shape, window, s,
                                    np.zeros([config.NUM_CLASSES], dtype=np.int32))
    return molded, meta, np.asarray(window)


class ScaledModels:
    """The inference model for each input side: the base model, or copies with its
    weights built for other sides of a "square" model."""

    def __init__(self, model):
        self.base = model
        self.models = {int(model.config.IMAGE_SHAPE[0]): model}

    def for_side(self, side):
        if self.base.config.IMAGE_RESIZE_MODE != "square" or side in self.models:
            return self.models.get(side, self.base)
        from mrcnn.model import MaskRCNN
        config = self.base.config
        values = {k: getattr(config, k) for k in dir(config)
                  if k.isupper() and k not in ("IMAGE_SHAPE", "BATCH_SIZE", "IMAGE_META_SIZE")}
        values.update(IMAGE_MAX_DIM=side, IMAGE_MIN_DIM=side)
        scaled = MaskRCNN("inference", type("ScaledConfig", (type(config),), values)(),
                          self.base.model_dir)
        scaled.keras_model.set_weights(self.base.keras_model.get_weights())
        self.models[side] = scaled
        return scaled


def _unflip(raw, width):
    """Raw detections of a flipped image -> the same detections on the original."""
    out = dict(raw)
    rois = np.array(raw["rois"], copy=True)
    rois[:, 1], rois[:, 3] = width - raw["rois"][:, 3], width - raw["rois"][:, 1]
    nboxes = np.array(raw["nboxes"], copy=True)   # NMS only needs a consistent frame
    nboxes[:, 1], nboxes[:, 3] = -raw["nboxes"][:, 3], -raw["nboxes"][:, 1]
    out["rois"], out["nboxes"] = rois, nboxes
    out["soft"] = raw["soft"][:, :, ::-1]
    return out


def raw_views(models, image, scales, flip):
    """Raw detections of every view of image, in the original image's frame."""
    views = []
    for scale in scales:
        for flipped in ((False, True) if flip else (False,)):
            view = image[:, ::-1] if flipped else image
            molded, meta, window = mold_scaled(np.ascontiguousarray(view),
                                               models.base.config, scale)
            model = models.for_side(molded.shape[0])
            outs = pp.predict(model, molded, meta)
            raw = pp.unmold_raw(outs, image.shape, molded.shape, window)
            views.append(_unflip(raw, image.shape[1]) if flipped else raw)
    return views


def _mask_iou(a, b):
    inter = pp.CropOps.inter(a, b)
    union = pp.CropOps.area(a) + pp.CropOps.area(b) - inter
    return inter / union if union else 0.0


def _clusters(view_dets):
    """Greedy clusters of (view, index) pairs, by the rule of the module docstring."""
    items = sorted(((float(d["scores"][k]), v, k) for v, d in enumerate(view_dets)
                    for k in range(len(d["scores"]))), key=lambda t: -t[0])
    clusters = []
    for _, v, k in items:
        d = view_dets[v]
        mask, cls = d["masks"][k], d["class_ids"][k]
        for c in clusters:
            if c["class"] == cls and v not in c["views"] \
                    and _mask_iou(mask, c["lead"]) > VOTE_IOU:
                c["members"].append((v, k)), c["views"].add(v)
                break
        else:
            clusters.append({"class": cls, "lead": mask, "members": [(v, k)], "views": {v}})
    return clusters


def _voted_mask(masks, weights):
    """(box, crop) covered by at least half of the members' weight."""
    box = (min(m[0][0] for m in masks), min(m[0][1] for m in masks),
           max(m[0][2] for m in masks), max(m[0][3] for m in masks))
    acc = np.zeros((box[2] - box[0], box[3] - box[1]), dtype=np.float64)
    for (b, crop), w in zip(masks, weights):
        acc[b[0] - box[0]:b[2] - box[0], b[1] - box[1]:b[3] - box[1]] += w * crop
    return box, acc >= 0.5 * float(np.sum(weights)) - 1e-9


def vote(view_dets, shape):
    """Detections of several views (fashion.inference.postprocess detections dicts) -> one
    detections dict, sorted by decreasing score."""
    rows = []
    for c in _clusters(view_dets):
        dets = [(view_dets[v], k) for v, k in c["members"]]
        w = np.array([d["scores"][k] for d, k in dets], dtype=np.float64)
        row = {"class_ids": c["class"], "scores": w.sum() / len(view_dets),
               "rois": np.round(np.average([d["rois"][k] for d, k in dets], axis=0,
                                           weights=w)).astype(np.int32),
               "mask_scores": np.average([d["mask_scores"][k] for d, k in dets], weights=w),
               "masks": _voted_mask([d["masks"][k] for d, k in dets], w)}
        if "attribute_probabilities" in view_dets[0]:
            row["attribute_probabilities"] = np.average(
                [d["attribute_probabilities"][k] for d, k in dets], axis=0, weights=w)
        rows.append(row)
    rows.sort(key=lambda r: -r["scores"])
    out = {"class_ids": np.array([r["class_ids"] for r in rows], dtype=np.int32),
           "scores": np.array([r["scores"] for r in rows], dtype=np.float32),
           "rois": np.array([r["rois"] for r in rows], dtype=np.int32).reshape(-1, 4),
           "mask_scores": np.array([r["mask_scores"] for r in rows], dtype=np.float32)}
    if "attribute_probabilities" in view_dets[0]:
        width = view_dets[0]["attribute_probabilities"].shape[-1]
        out["attribute_probabilities"] = np.array(
            [r["attribute_probabilities"] for r in rows], dtype=np.float32).reshape(-1, width)
    out["masks"], out["shape"] = [r["masks"] for r in rows], tuple(shape[:2])
    return out

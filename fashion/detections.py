"""One image's detections as the commands write them: flip test-time augmentation
merged by per-class mask NMS (detect_one; the commands use fashion.detector), prediction
records (JSON Lines rows), overlay PNGs (at least 512 px, labels with attribute names)
and the name of detect's sidecar file listing every input image.
"""
import os

import numpy as np

from fashion.data_sources import category_of


def _flip_result(result, width):
    """A detect() result on a flipped image -> the same detections on the original."""
    out = dict(result)
    rois = np.array(result["rois"], copy=True)                     # [N, (y1, x1, y2, x2)]
    rois[:, 1], rois[:, 3] = width - result["rois"][:, 3], width - result["rois"][:, 1]
    out["rois"] = rois
    out["masks"] = result["masks"][:, ::-1, :]                      # [H, W, N]
    return out


def _mask_iou(a, b):
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return inter / union if union else 0.0


def merge_detections(results, iou_threshold=0.5, max_instances=100):
    """Per-class mask NMS over several detect() results of one image."""
    keys = [k for k in ("class_ids", "scores", "mask_scores", "attribute_probabilities")
            if all(k in r for r in results)]
    cat = {k: np.concatenate([r[k] for r in results]) for k in keys}
    rois = np.concatenate([r["rois"] for r in results])            # [M, 4]
    masks = np.concatenate([r["masks"] for r in results], axis=-1)  # [H, W, M]
    order = np.argsort(-cat["scores"], kind="stable")
    keep = []
    for i in order:
        if len(keep) >= max_instances:
            break
        if all(cat["class_ids"][j] != cat["class_ids"][i]
               or _mask_iou(masks[..., i], masks[..., j]) <= iou_threshold for j in keep):
            keep.append(i)
    keep = np.array(keep, dtype=np.int64)
    out = {k: v[keep] for k, v in cat.items()}
    out["rois"], out["masks"] = rois[keep], masks[..., keep]
    return out


def detect_one(model, image, tta=False):
    """detect() on one image [H, W, 3], optionally with flip TTA."""
    result = model.detect([image])[0]
    if not tta:
        return result
    flipped = _flip_result(model.detect([image[:, ::-1].copy()])[0], image.shape[1])
    return merge_detections([result, flipped], model.config.DETECTION_NMS_THRESHOLD + 0.2,
                            model.config.DETECTION_MAX_INSTANCES)


def to_records(result, image_id, filename, meta, first_id):
    from mrcnn.evaluation.predictions import detection_to_records
    return detection_to_records(image_id, filename, result, category_of(meta),
                                meta.get("attribute_index_to_id") or None,
                                first_id=first_id)


OVERLAY_MIN_SIDE = 512  # overlays of smaller images are upscaled to stay legible


def captions(result, meta, top=2, threshold=0.5):
    """One label per detection: class name, score and its top attribute names."""
    names = meta.get("attribute_names") or []
    probs = result.get("attribute_probabilities")
    out = []
    for i, class_id in enumerate(result["class_ids"]):
        text = f"{meta['class_names'][int(class_id)]} {float(result['scores'][i]):.2f}"
        if probs is not None and len(names) == np.shape(probs)[-1]:
            best = [a for a in np.argsort(-probs[i])[:top] if probs[i][a] >= threshold]
            if best:
                text += " | " + ", ".join(names[a] for a in best)
        out.append(text)
    return out


def draw_overlay(image, result, meta, path, min_side=OVERLAY_MIN_SIDE):
    """Detections drawn on image (long side at least min_side px) -> PNG at path."""
    from mrcnn.visualize import draw_instances_on_image
    return draw_instances_on_image(image, result["rois"], result["masks"],
                                   result["class_ids"], meta["class_names"], result["scores"],
                                   save_path=path, min_side=min_side,
                                   captions=captions(result, meta))


def sidecar_path(pred_path):
    """PRED.jsonl -> PRED.images.json, detect's list of every image it was given."""
    return os.path.splitext(os.fspath(pred_path))[0] + ".images.json"

"""One image's detections as the commands write them (running the model, post-processing
and test-time augmentation live in fashion.inference.detector and fashion.inference.tta): prediction records
(JSON Lines rows), overlay PNGs (at least 512 px, labels with attribute names) and the
name of detect's sidecar file listing every input image.
"""
import os

import numpy as np

from fashion.data.sources import category_of


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

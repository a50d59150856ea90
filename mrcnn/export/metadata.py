"""What travels with an export: labels.json (class and attribute names, the config,
the input size, the signatures and outputs)."""
import json

import numpy as np

from mrcnn.export.serving import output_names

OUTPUT_DOCS = {
    "num_detections": "int32 [B]: valid rows of the other outputs",
    "detection_boxes": "float32 [B, N, 4]: (y1, x1, y2, x2) integer pixels of the original "
                       "image, y2/x2 exclusive",
    "detection_classes": "int32 [B, N]: class ids (index into class_names)",
    "detection_scores": "float32 [B, N]: class scores",
    "detection_masks": "float32 [B, N, h, w]: mask probabilities of the detected class "
                       "inside the box; threshold 0.5 after pasting",
    "detection_attributes": "float32 [B, N, A]: attribute probabilities",
}


class ExportError(Exception):
    """An export that cannot be made exactly (one sentence naming the cause)."""


def _json_safe(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def labels_metadata(config, class_names=None, attribute_names=None, fmt="saved_model",
                    extra=None):
    """The labels.json content of an export; `extra` (JSON-able dict, e.g. category ids)
    is stored under "extra"."""
    n_cls, n_attr = int(config.NUM_CLASSES), int(config.NUM_ATTRIBUTES or 0)
    class_names = list(class_names) if class_names is not None else \
        ["BG"] + [f"class_{i}" for i in range(1, n_cls)]
    if len(class_names) != n_cls:
        raise ExportError(f"{len(class_names)} class names were given for a model with "
                          f"NUM_CLASSES={n_cls}; pass one name per class, background first.")
    attribute_names = list(attribute_names) if attribute_names is not None else \
        [f"attribute_{i}" for i in range(n_attr)]
    if len(attribute_names) != n_attr:
        raise ExportError(f"{len(attribute_names)} attribute names were given for a model "
                          f"with NUM_ATTRIBUTES={n_attr}; pass one name per attribute.")
    meta = {
        "format": fmt,
        "class_names": [str(c) for c in class_names],
        "attribute_names": [str(a) for a in attribute_names],
        "input_size": int(config.IMAGE_MAX_DIM),
        "resize": "matterport resize_image 'square' (IMAGE_MIN_DIM, IMAGE_MAX_DIM, "
                  "IMAGE_MIN_SCALE), bilinear, zero padding",
        "max_detections": int(config.DETECTION_MAX_INSTANCES),
        "mask_shape": [int(s) for s in (config.mask_output_shape()[:2]
                                        if hasattr(config, "mask_output_shape")
                                        else config.MASK_SHAPE)],
        "outputs": {k: OUTPUT_DOCS[k] for k in output_names(config)},
        "config": _json_safe(config.to_dict()),
        "extra": _json_safe(dict(extra or {})),
    }
    json.dumps(meta)
    return meta

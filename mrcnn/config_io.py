"""A Config as plain values: saved beside a run, read back, overridden, sized.

* ``config_values(config)``: every value, JSON-able, so a run can rebuild its model.
* ``values_to_overrides(values)``: the inverse (JSON lists back to tuples / arrays).
* ``parse_overrides(["KEY=VALUE", ...])``: command-line overrides, values read as JSON.
* ``size_settings(side)``: anchor scales, ROI counts, mask sizes and instance limits
  for a square image side; matterport's values at 1024 px.

Example:
    write_json("run/config.json", {"config": config_values(config)})
    values = values_to_overrides(json.load(open("run/config.json"))["config"])
    config = type("RunConfig", (Config,), {**values, **size_settings(256)})()
"""
import json

import numpy as np

from mrcnn.config import Config

# Derived from other values by Config.__init__; never saved or overridden.
COMPUTED = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "GPU_COUNT")


def config_values(config):
    """Every Config value of a run (JSON-able) so inference can rebuild its model."""
    def plain(v):
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, np.generic):
            return v.item()
        return v
    return {k: plain(v) for k, v in config.to_dict().items()
            if k not in COMPUTED and not callable(v)}


def values_to_overrides(values):
    """Inverse of config_values: JSON lists back to the types Config's defaults have."""
    out = {}
    for key, value in values.items():
        default = getattr(Config, key, None)
        if isinstance(default, np.ndarray) and value is not None:
            value = np.array(value)
        elif isinstance(default, tuple) and value is not None:
            value = tuple(value)
        out[key] = value
    for key in COMPUTED:
        out.pop(key, None)
    return out


def parse_overrides(items, flag="--set"):
    """KEY=VALUE strings -> {KEY: value}; values parsed as JSON when they parse (lists
    become tuples), keys upper-cased. ValueError naming the item when '=' is missing."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} {item!r} needs the form KEY=VALUE, e.g. "
                             f"{flag} TOP_DOWN_PYRAMID_SIZE=128.")
        key, value = item.split("=", 1)
        try:
            value = json.loads(value)
        except ValueError:
            pass
        out[key.strip().upper()] = tuple(value) if isinstance(value, list) else value
    return out


def size_settings(image_size, what="image size"):
    """Config values chosen from the (square) image side; matterport's at >= 1024 px.
    `what` names the side in the error (e.g. "--image-size")."""
    side = int(image_size)
    if side % 64:
        raise ValueError(f"{what} {side} must be a multiple of 64 so the pyramid "
                         f"levels line up; use {max(64, round(side / 64) * 64)}.")
    s = min(side, 1024) / 1024.0                                   # 1.0 at matterport size
    base = max(8, int(32 * s))                                      # smallest anchor side
    out = {
        "IMAGE_MIN_DIM": 800 if side >= 1024 else side,
        "IMAGE_MAX_DIM": side,
        "RPN_ANCHOR_SCALES": tuple(base * 2 ** i for i in range(5)),  # P2..P6
        # crowded small images hold as many instances as large ones: ROIs and RPN
        # anchors shrink with the square root of the side (33% positives cover ~30
        # instances at 256 px), not with the side
        "TRAIN_ROIS_PER_IMAGE": max(64, int(round(200 * s ** 0.5))),
        "POST_NMS_ROIS_TRAINING": max(256, int(round(2000 * s))),
        "POST_NMS_ROIS_INFERENCE": max(128, int(round(1000 * s))),
        "PRE_NMS_LIMIT": max(1024, int(round(6000 * s))),
        "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
        "MAX_GT_INSTANCES": 100 if side >= 512 else 50,
        "DETECTION_MAX_INSTANCES": 100 if side >= 512 else 50,
        "MINI_MASK_SHAPE": (56, 56) if side >= 512 else (28, 28),
    }
    if side <= 192:  # objects of a few dozen pixels: a 14x14 mask head is enough
        out.update(MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14])
    return out

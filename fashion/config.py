"""Configurations of the fashion application.

``FashionConfig`` is matterport's Config with the fashion defaults (two images per GPU,
a ResNet-50 FPN, 1024 px images). ``make_config`` builds the config the CLI trains and
detects with, from the image size, the dataset's class and attribute counts, the
backbone and whether pretrained weights are loaded:

* Image-size settings (anchor scales, ROI counts, mask and mini-mask sizes, instance
  limits) scale with the image side, and equal matterport's at 1024 px.
* Without pretrained weights (``pretrained=False``, the CLI's ``--weights none``) the
  from-scratch settings apply: batch norm trained (TRAIN_BN=None), AdamW with a linear
  warm-up and weight decay. With pretrained weights matterport's choices stay (frozen
  batch norm, SGD with momentum at 0.001, no warm-up).

Example:
    config = make_config(256, num_classes=47, num_attributes=92, backbone="resnet50",
                         pretrained=False, STEPS_PER_EPOCH=100)
    config.display()
"""
import json

import numpy as np

from mrcnn.config import Config


class FashionConfig(Config):
    """Fine-tuning defaults for clothes (iMaterialist / Fashionpedia / DeepFashion2)."""
    NAME = "fashion"
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 46
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50
    DETECTION_MIN_CONFIDENCE = 0.5


# Settings used only when the model starts from random weights (issue 9).
FROM_SCRATCH = {
    "TRAIN_BN": None,            # batch norm statistics and scales are learnt
    "OPTIMIZER": "adamw",
    "LEARNING_RATE": 1e-3,       # AdamW; matterport's SGD uses 1e-3 with momentum 0.9
    "WEIGHT_DECAY": 0.05,        # AdamW's decoupled decay (SGD's L2 stays 1e-4)
    "WARMUP_STEPS": 200,
    "GRADIENT_CLIP_NORM": 5.0,
    "BN_MOMENTUM": 0.9,          # moving statistics catch up within a few hundred steps
    "ADD_GT_TO_PROPOSALS": True,  # heads see positives before the RPN has learnt
}


def size_settings(image_size):
    """Config values chosen from the (square) image side; matterport's at >= 1024 px."""
    side = int(image_size)
    if side % 64:
        raise ValueError(f"--image-size {side} must be a multiple of 64 so the pyramid "
                         f"levels line up; use {max(64, round(side / 64) * 64)}.")
    s = min(side, 1024) / 1024.0                                   # 1.0 at matterport size
    base = max(8, int(32 * s))                                      # smallest anchor side
    out = {
        "IMAGE_MIN_DIM": 800 if side >= 1024 else side,
        "IMAGE_MAX_DIM": side,
        "RPN_ANCHOR_SCALES": tuple(base * 2 ** i for i in range(5)),  # P2..P6
        "TRAIN_ROIS_PER_IMAGE": max(32, int(round(200 * s))),
        "POST_NMS_ROIS_TRAINING": max(256, int(round(2000 * s))),
        "POST_NMS_ROIS_INFERENCE": max(128, int(round(1000 * s))),
        "PRE_NMS_LIMIT": max(1024, int(round(6000 * s))),
        "RPN_TRAIN_ANCHORS_PER_IMAGE": max(64, int(round(256 * s ** 0.5))),
        "MAX_GT_INSTANCES": 100 if side >= 512 else 50,
        "DETECTION_MAX_INSTANCES": 100 if side >= 512 else 50,
        "MINI_MASK_SHAPE": (56, 56) if side >= 512 else (28, 28),
    }
    if side <= 192:  # objects of a few dozen pixels: a 14x14 mask head is enough
        out.update(MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14])
    return out


def make_config(image_size, num_classes, num_attributes=0, backbone="resnet50",
                pretrained=True, **overrides):
    """A validated FashionConfig instance for the given data and starting weights.

    Args:
        image_size: square input side in pixels (multiple of 64).
        num_classes: classes including the background.
        num_attributes: attribute head width (0 = no attribute head).
        backbone: a name of mrcnn.backbones.BACKBONES.
        pretrained: False when no pretrained weights are loaded: then batch norm is
            trained and AdamW with warm-up is used (see FROM_SCRATCH).
        **overrides: any Config attribute, applied last (e.g. STEPS_PER_EPOCH=10).
    """
    values = {"BACKBONE": backbone, "NUM_CLASSES": int(num_classes),
              "NUM_ATTRIBUTES": int(num_attributes)}
    values.update(size_settings(image_size))
    if not pretrained:
        values.update(FROM_SCRATCH)
    unknown = [k for k in overrides if not (k.isupper() and hasattr(Config, k))]
    if unknown:
        raise ValueError(f"Unknown config attribute(s) {unknown}; use matterport Config "
                         "names such as STEPS_PER_EPOCH or LEARNING_RATE.")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cls = type("FashionRunConfig", (FashionConfig,), values)
    return cls()


# ---------------------------------------------------------------------- saving with runs
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


def dumps(config):
    return json.dumps(config_values(config), indent=2, sort_keys=True)

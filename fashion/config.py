"""Configurations of the fashion application (the app's level of mrcnn/config.py: the
library's Config holds every knob with matterport's defaults; this module picks the
fashion defaults and builds the config the CLI trains and detects with).

``FashionConfig`` is matterport's Config with the fashion defaults (two images per GPU,
a ResNet-50 FPN, 1024 px images). ``make_config`` builds the config the CLI trains and
detects with, from the image size, the dataset's class and attribute counts, the
backbone and whether pretrained weights are loaded:

* Image-size settings (anchor scales, ROI counts, mask and mini-mask sizes, instance
  limits) scale with the image side, and equal matterport's at 1024 px
  (``mrcnn.config_io.size_settings``; ``config_values`` / ``values_to_overrides``,
  which save a run's config and read it back, live there too).
* The pyramid and head sizes follow ``LAYOUT`` (mrcnn/layout.py): matterport's
  where its weights are loaded (``--weights coco``), a table row sized to the backbone
  and image otherwise (``weights_layout`` picks it from the starting weights, and reads
  a checkpoint's own sizes from the file).
* Without pretrained weights (``pretrained=False``, the CLI's ``--weights none``) the
  from-scratch settings apply: batch norm trained (TRAIN_BN=None), AdamW with a linear
  warm-up and weight decay. With pretrained weights matterport's choices stay (frozen
  batch norm, SGD with momentum at 0.001, no warm-up).

Example:
    config = make_config(256, num_classes=47, num_attributes=92, backbone="resnet50",
                         pretrained=False, STEPS_PER_EPOCH=100)
    config.display()
"""
from mrcnn.config import Config
from mrcnn.config_io import size_settings
# Re-exported for existing callers; their home is mrcnn.config_io.
from mrcnn.config_io import COMPUTED, config_values, values_to_overrides  # noqa: F401


class FashionConfig(Config):
    """Fine-tuning defaults for clothes (iMaterialist / Fashionpedia / DeepFashion2)."""
    NAME = "fashion"
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 46
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50
    DETECTION_MIN_CONFIDENCE = 0.5


# Settings used only when the model starts from random weights.
FROM_SCRATCH = {
    "TRAIN_BN": None,            # batch norm statistics and scales are learnt
    "OPTIMIZER": "adamw",
    "WEIGHT_DECAY": 0.05,        # AdamW's decoupled decay (SGD's L2 stays 1e-4)
    "WARMUP_STEPS": 200,
    "GRADIENT_CLIP_NORM": 5.0,
    "BN_MOMENTUM": 0.9,          # moving statistics catch up within a few hundred steps
    "ADD_GT_TO_PROPOSALS": True,  # heads see positives before the RPN has learnt
}


# From scratch at small sizes: 4 images per step, the rate scaled with the batch. At 256
# px (ResNet18, hard demo set, same images seen) 4 x 750 steps at 2e-3 reached segm AP50
# 0.643 where 2 x 1500 at 1e-3 reached 0.622, and a step of 4 images ran 1.05x (float32)
# to 1.12x (bf16) faster per image (docs/benchmarks.md).
SCRATCH_SMALL_SIDE = 512
SCRATCH_IMAGES_PER_GPU = 4
SCRATCH_RATE_PER_IMAGE = 5e-4     # AdamW: 1e-3 for 2 images, 2e-3 for 4
SCRATCH_MAX_RATE = 2e-3


def scratch_batch(image_size, overrides):
    """IMAGES_PER_GPU (4 up to 512 px, as given above) and LEARNING_RATE (5e-4 per
    image, at most 2e-3) of a from-scratch run, for the ones not in overrides."""
    out = {}
    images = overrides.get("IMAGES_PER_GPU")
    if images is None:
        images = SCRATCH_IMAGES_PER_GPU if int(image_size) <= SCRATCH_SMALL_SIDE \
            else FashionConfig.IMAGES_PER_GPU
        out["IMAGES_PER_GPU"] = images
    if overrides.get("LEARNING_RATE") is None:
        out["LEARNING_RATE"] = min(SCRATCH_MAX_RATE, SCRATCH_RATE_PER_IMAGE * int(images))
    return out


# Attributes whose None is a choice (float32), not a flag left unset.
EXPLICIT_NONE = ("MIXED_PRECISION",)


def weights_layout(weights, path=None):
    """Config values that make a model fit its starting weights: LAYOUT "scaled" for
    none/imagenet, "matterport" for coco, and for a weight file (a checkpoint, a
    matterport file) the pyramid and head sizes it holds."""
    from mrcnn.layout import MATTERPORT, sizes_in_weights
    from mrcnn.weights.by_name import read_weight_shapes
    if weights in ("none", "imagenet"):
        return {"LAYOUT": "scaled"}
    if weights == "coco":
        return {"LAYOUT": "matterport"}
    if not path:
        return {}
    sizes = sizes_in_weights(read_weight_shapes(path))
    if not sizes:  # a Keras 3 file, or no head layers: nothing to follow
        return {}
    matterport = all(sizes.get(k) == v for k, v in MATTERPORT.items())
    return dict(sizes, LAYOUT="matterport" if matterport else "scaled")


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
    values.update(size_settings(image_size, what="--image-size"))
    if not pretrained:
        values.update(FROM_SCRATCH)
        values.update(scratch_batch(image_size, overrides))
    unknown = [k for k in overrides if not (k.isupper() and hasattr(Config, k))]
    if unknown:
        raise ValueError(f"Unknown config attribute(s) {unknown}; use matterport Config "
                         "names such as STEPS_PER_EPOCH or LEARNING_RATE.")
    values.update({k: v for k, v in overrides.items()
                   if v is not None or k in EXPLICIT_NONE})
    # the image size's ROI count may still be scaled by the layout's table row
    values["_SIZE_SETTINGS"] = tuple(k for k in size_settings(image_size)
                                     if k not in overrides)
    cls = type("FashionRunConfig", (FashionConfig,), values)
    return cls()

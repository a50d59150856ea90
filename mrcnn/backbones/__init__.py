"""Backbone registry: name -> function(input_image, config) -> {"C2".."C5"}.

Functions are resolved lazily so that reading a Config does not import TensorFlow.
"""
import importlib

BACKBONES = {
    "resnet50": "mrcnn.backbones.resnet:resnet50",
    "resnet101": "mrcnn.backbones.resnet:resnet101",
    "resnet18": "mrcnn.backbones.resnet:resnet18",
    **{f"efficientnet-b{i}": f"mrcnn.backbones.efficientnet:efficientnet_b{i}"
       for i in range(8)},
}


def get_backbone(name_or_fn):
    """Returns the backbone function for a Config.BACKBONE value."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in BACKBONES:
        raise ValueError(f"BACKBONE {name_or_fn!r} is unknown; valid names are "
                         f"{', '.join(sorted(BACKBONES))}.")
    module, fn = BACKBONES[name_or_fn].split(":")
    return getattr(importlib.import_module(module), fn)

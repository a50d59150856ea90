"""Neck registry: name -> function(features, config) -> {"P2".."P6"}."""
import importlib

NECKS = {
    "fpn": "mrcnn.necks.fpn:fpn_neck",
    "bifpn": "mrcnn.necks.bifpn:bifpn_neck",
}


def get_neck(name):
    """Returns the neck function registered under name."""
    if name not in NECKS:
        raise ValueError(f"NECK {name!r} is unknown; valid names are "
                         f"{', '.join(sorted(NECKS))}.")
    module, fn = NECKS[name].split(":")
    return getattr(importlib.import_module(module), fn)

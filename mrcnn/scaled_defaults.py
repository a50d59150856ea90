"""Head and pyramid sizes that follow the backbone: EfficientDet's D0-D7 table.

matterport's sizes (a 256-channel pyramid, a 512-channel RPN convolution, 1024-wide
classifier "fc" layers, 256-channel mask convolutions) suit ResNet-101. With an
EfficientNet-Bn backbone the model follows EfficientDet-Dn instead: the pyramid is the
BiFPN width (64, 88, 112, 160, 224, 288, 384, 384 for B0..B7) and every head width
scales with it (width / 256 x matterport's size), so ``BACKBONE = "efficientnet-b0"``
alone gives the small, fast model.

Only attributes the user did not set are derived: a value given in a Config subclass
(or on the instance before ``__init__``) always wins. ResNet models keep matterport's
sizes, so its weight names and shapes are unchanged.

Example:
    class B0(Config):
        NUM_CLASSES = 47
        BACKBONE = "efficientnet-b0"
    B0().TOP_DOWN_PYRAMID_SIZE     # 64 (FPN_CLASSIF_FC_LAYERS_SIZE 256, RPN_CONV_DEPTH 64)
"""
import re

# EfficientDet D0..D7 BiFPN widths, indexed by the EfficientNet backbone B0..B7.
EFFICIENTDET_WIDTHS = {"b0": 64, "b1": 88, "b2": 112, "b3": 160, "b4": 224, "b5": 288,
                       "b6": 384, "b7": 384}

# matterport's sizes (at a 256-channel pyramid) of the attributes that scale with width.
SCALED = {"TOP_DOWN_PYRAMID_SIZE": 256, "RPN_CONV_DEPTH": 512,
          "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "MASK_HEAD_DEPTH": 256}


def efficientnet_variant(backbone):
    """"efficientnet-b3" -> "b3"; None for any other backbone (or a callable)."""
    if not isinstance(backbone, str):
        return None
    m = re.fullmatch(r"efficientnet-?(b[0-7])", backbone.strip(), re.I)
    return m.group(1).lower() if m else None


def scaled_sizes(backbone):
    """{attribute: size} the backbone implies; {} for ResNet (matterport's sizes stay)."""
    variant = efficientnet_variant(backbone)
    if variant is None:
        return {}
    width = EFFICIENTDET_WIDTHS[variant]
    return {name: int(round(base * width / 256)) for name, base in SCALED.items()}


def set_by_user(config, name, base_class):
    """True when `name` was given on the instance or in a class below base_class."""
    if name in vars(config):
        return True
    for cls in type(config).__mro__:
        if cls is base_class:
            return False
        if name in vars(cls):
            return True
    return False


def apply_scaled_defaults(config, base_class):
    """Sets the backbone's sizes on config for every attribute the user left alone.

    Returns the {attribute: size} it set.
    """
    applied = {name: size for name, size in scaled_sizes(config.BACKBONE).items()
               if not set_by_user(config, name, base_class)}
    for name, size in applied.items():
        setattr(config, name, size)
    return applied

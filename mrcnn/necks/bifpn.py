"""BiFPN neck (EfficientDet) producing Mask R-CNN's pyramid {"P2".."P6"}.

EfficientDet runs its BiFPN over P3-P7. Mask R-CNN needs stride 4 (P2) for small ROIs
and the mask head, and only goes up to stride 64 (P6, RPN only), so this BiFPN runs
over the five levels P2-P6 instead (same five-node structure, one octave lower):

    inputs   P2..P5 = 1x1 conv + BN of C2..C5 (to the BiFPN width),
             P6     = max-pool(1x1 conv + BN of C5), as EfficientDet makes P6 from C5
    layer    top-down:  td6 = in6; td_l = node(in_l, up(td_{l+1}))          l = 5..2
             bottom-up: out2 = td2; out_l = node(in_l, td_l, down(out_{l-1}))  l = 3..5
                        out6 = node(in6, down(out5))
    node     WeightedFusion -> 3x3 depthwise-separable conv -> BN -> swish
    up/down  nearest-neighbour x2 / 3x3 max-pool stride 2
    outputs  1x1 conv to `config.TOP_DOWN_PYRAMID_SIZE` when the BiFPN width differs.

Width and repeat count come from EfficientDet's compound-scaling table
(`bifpn_params`), overridable by `config.BIFPN_CHANNELS` / `config.BIFPN_LAYERS`.
Every layer name starts with `bifpn_` so the "heads" training preset selects it.
"""

import re

import keras
from keras import layers, ops

from mrcnn.layers.batch_norm import BatchNorm

# EfficientDet compound scaling: name -> (BiFPN channels, BiFPN layers)
BIFPN_TABLE = {
    "d0": (64, 3), "d1": (88, 4), "d2": (112, 5), "d3": (160, 6),
    "d4": (224, 7), "d5": (288, 7), "d6": (384, 8), "d7": (384, 8), "d7x": (384, 8),
}
# EfficientNet backbone -> the EfficientDet model that uses it (B7 is D7x's).
BACKBONE_TO_DET = {"b0": "d0", "b1": "d1", "b2": "d2", "b3": "d3", "b4": "d4",
                   "b5": "d5", "b6": "d6", "b7": "d7x"}
LEVELS = (2, 3, 4, 5, 6)
_FROM_CONFIG = "config"


@keras.saving.register_keras_serializable(package="mrcnn")
class WeightedFusion(layers.Layer):
    """EfficientDet's fast normalised fusion of same-shaped feature maps.

    `out = sum(relu(w_i) * x_i) / (sum(relu(w_i)) + epsilon)` with one learned scalar
    `w_i` per input (initialised to 1), so every weight stays in [0, 1) without a
    softmax; an input whose weight goes negative contributes nothing.

    Args:
        epsilon: keeps the division finite when every weight is <= 0.
        **kwargs: passed to `keras.layers.Layer`.

    Example:
        >>> fused = WeightedFusion(name="bifpn_l0_p4_td_fuse")([p4_in, p5_up])
    """

    def __init__(self, epsilon=1e-4, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError(
                f"{self.name}: WeightedFusion needs a list of at least two tensors, "
                f"got input shape {input_shape}.")
        self.fusion_weights = self.add_weight(
            name="fusion_weights", shape=(len(input_shape),), initializer="ones",
            trainable=True)

    def call(self, inputs):
        weights = ops.relu(self.fusion_weights)  # [n_inputs] >= 0
        total = ops.sum(weights) + self.epsilon
        fused = inputs[0] * weights[0]
        for i in range(1, len(inputs)):
            fused = fused + inputs[i] * weights[i]  # [batch, h, w, c]
        return fused / total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


def bifpn_params(variant):
    """(channels, layers) of EfficientDet's BiFPN for "d0".."d7x" or "b0".."b7".

    "efficientnet-b3" and "B3" are accepted too; a backbone name maps to the
    EfficientDet model built on it (b0 -> d0, ..., b6 -> d6, b7 -> d7x).
    """
    key = str(variant).lower().replace("efficientnet-", "")
    key = BACKBONE_TO_DET.get(key, key)
    if key not in BIFPN_TABLE:
        raise ValueError(
            f"Unknown BiFPN variant {variant!r}; use one of {sorted(BIFPN_TABLE)} or an "
            f"EfficientNet name 'b0'..'b7', or set Config.BIFPN_CHANNELS/BIFPN_LAYERS.")
    return BIFPN_TABLE[key]


def _variant_from_config(config):
    backbone = getattr(config, "BACKBONE", None)
    match = re.search(r"efficientnet-?(b[0-7])$", backbone, re.I) if isinstance(
        backbone, str) else None
    if match is None:
        raise ValueError(
            f"Config.BACKBONE={backbone!r} is not an EfficientNet name, so the BiFPN "
            f"size cannot come from EfficientDet's table; set Config.BIFPN_CHANNELS and "
            f"Config.BIFPN_LAYERS (e.g. 160 and 6).")
    return match.group(1).lower()


def resolve_size(config, variant=None):
    """(channels, layers): config overrides first, else the table for the variant."""
    channels = getattr(config, "BIFPN_CHANNELS", None)
    repeats = getattr(config, "BIFPN_LAYERS", None)
    if channels is None or repeats is None:
        table_channels, table_layers = bifpn_params(
            variant if variant is not None else _variant_from_config(config))
        channels = table_channels if channels is None else channels
        repeats = table_layers if repeats is None else repeats
    if int(channels) < 1 or int(repeats) < 1:
        raise ValueError(
            f"Config.BIFPN_CHANNELS={channels} and BIFPN_LAYERS={repeats} must both be "
            f">= 1 (or None to use EfficientDet's table).")
    return int(channels), int(repeats)


def _conv_bn(x, channels, name, train_bn):
    """1x1 conv + BN resampling to `channels` (identity when they already match)."""
    if x.shape[-1] == channels:
        return x
    x = layers.Conv2D(channels, 1, padding="same", name=name + "_conv")(x)
    return BatchNorm(train_bn=train_bn, momentum=0.99, epsilon=1e-3, name=name + "_bn")(x)


def _node(inputs, channels, name, train_bn):
    """Fusion node: weighted fusion -> separable 3x3 conv -> BN -> swish."""
    x = WeightedFusion(name=name + "_fuse")(inputs)  # [batch, h, w, channels]
    x = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False,
                               name=name + "_conv")(x)
    x = BatchNorm(train_bn=train_bn, momentum=0.99, epsilon=1e-3, name=name + "_bn")(x)
    return layers.Activation("swish", name=name + "_act")(x)


def bifpn_layer(feats, channels, index, train_bn):
    """One BiFPN layer over {level: [batch, h_l, w_l, channels]}, levels 2..6."""
    prefix = f"bifpn_l{index}_p"
    top, bottom = LEVELS[-1], LEVELS[0]
    td = {top: feats[top]}
    for lvl in reversed(LEVELS[:-1]):  # 5, 4, 3, 2: top-down
        up = layers.UpSampling2D(2, interpolation="nearest",
                                 name=f"{prefix}{lvl}_td_up")(td[lvl + 1])
        td[lvl] = _node([feats[lvl], up], channels, f"{prefix}{lvl}_td", train_bn)
    out = {bottom: td[bottom]}
    for lvl in LEVELS[1:]:  # 3, 4, 5, 6: bottom-up
        down = layers.MaxPooling2D(3, strides=2, padding="same",
                                   name=f"{prefix}{lvl}_out_down")(out[lvl - 1])
        inputs = [feats[lvl], down] if lvl == top else [feats[lvl], td[lvl], down]
        out[lvl] = _node(inputs, channels, f"{prefix}{lvl}_out", train_bn)
    return out


def _check_features(features):
    missing = [k for k in ("C2", "C3", "C4", "C5") if k not in features]
    if missing:
        raise ValueError(
            f"bifpn_neck got backbone features {sorted(features)}; it needs C2..C5 "
            f"(missing {missing}); the backbone must return strides 4, 8, 16, 32.")
    h5, w5 = features["C5"].shape[1:3]
    for side in (h5, w5):
        if side is not None and side % 2:
            raise ValueError(
                f"C5 is {h5}x{w5}; BiFPN needs even C5 sides to build P6, so the image "
                f"sides must be multiples of 64 (fix IMAGE_MIN_DIM/IMAGE_MAX_DIM).")


def bifpn_neck(features, config, variant=None, train_bn=_FROM_CONFIG):
    """EfficientDet BiFPN over P2-P6 for Mask R-CNN.

    Args:
        features: {"C2".."C5": Keras tensors at strides 4, 8, 16, 32}.
        config: object with `TOP_DOWN_PYRAMID_SIZE`, `TRAIN_BN`, `BACKBONE` and
            optionally `BIFPN_CHANNELS`, `BIFPN_LAYERS` (None = EfficientDet's table).
        variant: table row ("d0".."d7x" or "b0".."b7"); default from `config.BACKBONE`.
        train_bn: None / False / True as `config.TRAIN_BN`; defaults to the config's.

    Returns:
        {"P2": [b, h/4, w/4, TOP_DOWN_PYRAMID_SIZE], ..., "P6": [b, h/64, w/64, ...]}.

    Example:
        >>> pyramid = bifpn_neck(efficientnet_backbone(image, config, "b0"), config)
    """
    _check_features(features)
    channels, repeats = resolve_size(config, variant)
    if train_bn == _FROM_CONFIG:
        train_bn = getattr(config, "TRAIN_BN", None)
    feats = {lvl: _conv_bn(features[f"C{lvl}"], channels, f"bifpn_c{lvl}_proj", train_bn)
             for lvl in (2, 3, 4, 5)}
    p6 = _conv_bn(features["C5"], channels, "bifpn_p6_in", train_bn)
    feats[6] = layers.MaxPooling2D(3, strides=2, padding="same",
                                   name="bifpn_p6_in_pool")(p6)  # [b, h/64, w/64, ch]
    for index in range(repeats):
        feats = bifpn_layer(feats, channels, index, train_bn)
    out_channels = int(config.TOP_DOWN_PYRAMID_SIZE)
    pyramid = {}
    for lvl in LEVELS:
        x = feats[lvl]
        if channels != out_channels:  # heads are shared across levels: one depth
            x = layers.Conv2D(out_channels, 1, padding="same",
                              name=f"bifpn_p{lvl}_out_proj")(x)
        pyramid[f"P{lvl}"] = x
    return pyramid

"""EfficientNet-B0..B7 backbones for Mask R-CNN.

The blocks are built here (not by calling `keras.applications.EfficientNetBx`) so that
three things hold that the Keras application cannot give:

1. Batch normalisation follows `config.TRAIN_BN` in Keras 3. Keras 3 functional models
   forward the `training` flag of `fit()` to every layer, overriding a `training=False`
   given when the graph was built; so the mode is fixed inside the layer (`BatchNorm`).
2. The model input is matterport's molded image (`image - config.MEAN_PIXEL`, float).
   A fixed `ImageNetNormalize` layer turns it into what the ImageNet weights expect,
   `(rgb / 255 - imagenet_mean) / imagenet_std`, instead of the application's
   Rescaling + Normalization layers (whose auto-generated names change between builds).
3. Every weighted layer has the same name as in the Keras application (`stem_conv`,
   `block2a_expand_conv`, ...), so `load_imagenet_weights` copies the official notop
   weights by name. The classification top (`top_conv`, `top_bn`) is not built: C5 is
   the last block's output, as in EfficientDet.

Features: C2..C5 are the last block outputs at strides 4, 8, 16, 32 (stages 2, 3, 5, 7
of the paper's table). Input sides must be multiples of 32.
"""

import math
import os

import keras
import numpy as np
from keras import layers, ops

from mrcnn.layers.batch_norm import BatchNorm

# name: (width coefficient, depth coefficient, default resolution, drop-connect rate)
EFFICIENTNET_PARAMS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.2),
    "b3": (1.2, 1.4, 300, 0.2),
    "b4": (1.4, 1.8, 380, 0.2),
    "b5": (1.6, 2.2, 456, 0.2),
    "b6": (1.8, 2.6, 528, 0.2),
    "b7": (2.0, 3.1, 600, 0.2),
}

# The paper's base stages: (kernel, repeats, filters_in, filters_out, expand, stride).
# Squeeze-excite ratio is 0.25 everywhere. Stage outputs at strides 2,4,8,16,16,32,32.
BASE_STAGES = [
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
]
# Which stage (1-based) ends each pyramid level.
FEATURE_STAGES = {"C2": 2, "C3": 3, "C4": 5, "C5": 7}

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
RESERVED_PREFIXES = ("fpn_", "rpn_", "mrcnn_", "bifpn_")

# A config, not an initializer object: Keras builds a fresh initializer (with its own
# seed) for every layer from it. One shared VarianceScaling instance carries one seed,
# fixed when this module is imported, so every conv of the same shape started from the
# same kernel (block2b_expand_conv == block3a_expand_conv), and the import drew that seed
# from Python's RNG after a test's set_random_seed, shifting every later layer's seed.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}

_FROM_CONFIG = "config"


@keras.saving.register_keras_serializable(package="mrcnn")
class ImageNetNormalize(layers.Layer):
    """Turns a molded image (`rgb - mean_pixel`) into `(rgb / 255 - mean) / std`.

    Args:
        mean_pixel: the RGB mean subtracted when the image was molded
            (`config.MEAN_PIXEL`, 0-255 scale).
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, mean_pixel, **kwargs):
        super().__init__(**kwargs)
        self.mean_pixel = [float(v) for v in mean_pixel]

    def call(self, inputs):
        # inputs: [batch, h, w, 3] molded; output: [batch, h, w, 3] ImageNet-normalised
        mean = np.array(IMAGENET_MEAN_RGB, "float32")
        std = np.array(IMAGENET_STD_RGB, "float32")
        scale = 1.0 / (255.0 * std)
        shift = (np.array(self.mean_pixel, "float32") / 255.0 - mean) / std
        return ops.cast(inputs, "float32") * scale + shift

    def get_config(self):
        config = super().get_config()
        config["mean_pixel"] = self.mean_pixel
        return config


def variant_name(variant):
    """Normalises "B3", "b3", "efficientnet-b3" to "b3"; ValueError if unknown."""
    key = str(variant).lower().replace("efficientnet-", "").replace("efficientnet", "")
    if key not in EFFICIENTNET_PARAMS:
        raise ValueError(
            f"Unknown EfficientNet variant {variant!r}; use one of "
            f"{sorted(EFFICIENTNET_PARAMS)} (or 'efficientnet-b0'..'efficientnet-b7').")
    return key


def round_filters(filters, width, divisor=8):
    """Channel count scaled by `width`, rounded to a multiple of `divisor`."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth):
    """Block count scaled by `depth`, rounded up."""
    return int(math.ceil(depth * repeats))


def _stride2_padding(x, kernel):
    """Zero padding for a stride-2 'valid' conv that matches TF 'same' on even sizes."""
    half = kernel // 2
    pads = []
    for size in x.shape[1:3]:  # even or unknown size: one less before than after
        before = half if (size is not None and size % 2 == 1) else half - 1
        pads.append((before, half))
    return tuple(pads)


def mbconv_block(x, name, filters_in, filters_out, kernel, stride, expand,
                 drop_rate, train_bn, se_ratio=0.25):
    """Mobile inverted bottleneck with squeeze-excite; layer names as in Keras apps."""
    filters = filters_in * expand
    inputs = x  # [batch, h, w, filters_in]
    if expand != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                          kernel_initializer=CONV_INIT, name=name + "expand_conv")(x)
        x = BatchNorm(train_bn=train_bn, name=name + "expand_bn")(x)
        x = layers.Activation("swish", name=name + "expand_activation")(x)
    padding = "same"
    if stride == 2:
        x = layers.ZeroPadding2D(_stride2_padding(x, kernel), name=name + "dwconv_pad")(x)
        padding = "valid"
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding=padding, use_bias=False,
                               depthwise_initializer=CONV_INIT, name=name + "dwconv")(x)
    x = BatchNorm(train_bn=train_bn, name=name + "bn")(x)
    x = layers.Activation("swish", name=name + "activation")(x)  # [b, h/s, w/s, filters]

    se = layers.GlobalAveragePooling2D(name=name + "se_squeeze")(x)  # [batch, filters]
    se = layers.Reshape((1, 1, filters), name=name + "se_reshape")(se)
    se = layers.Conv2D(max(1, int(filters_in * se_ratio)), 1, padding="same",
                       activation="swish", kernel_initializer=CONV_INIT,
                       name=name + "se_reduce")(se)
    se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                       kernel_initializer=CONV_INIT, name=name + "se_expand")(se)
    x = layers.multiply([x, se], name=name + "se_excite")

    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                      kernel_initializer=CONV_INIT, name=name + "project_conv")(x)
    x = BatchNorm(train_bn=train_bn, name=name + "project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        if drop_rate > 0:  # drop-connect: drop the whole residual branch per sample
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1),
                               name=name + "drop")(x)
        x = layers.add([x, inputs], name=name + "add")
    return x  # [batch, h/stride, w/stride, filters_out]


def _check_input_size(input_image):
    for size in input_image.shape[1:3]:
        if size is not None and size % 32 != 0:
            raise ValueError(
                f"EfficientNet backbone input is {tuple(input_image.shape[1:3])} pixels; "
                f"sides must be multiples of 32 (set IMAGE_MIN_DIM/IMAGE_MAX_DIM to "
                f"multiples of 64 in the Config).")


def efficientnet_backbone(input_image, config, variant="b0", train_bn=_FROM_CONFIG):
    """EfficientNet feature extractor.

    Args:
        input_image: Keras tensor [batch, h, w, 3], molded (`rgb - config.MEAN_PIXEL`).
        config: object with `MEAN_PIXEL`, `TRAIN_BN` and optionally
            `EFFICIENTNET_DROP_CONNECT_RATE` (default: the paper's 0.2).
        variant: "b0".."b7" (or "efficientnet-b0"..).
        train_bn: None / False / True as `config.TRAIN_BN`; defaults to the config's.

    Returns:
        {"C2": [b, h/4, w/4, c2], "C3": [b, h/8, ...], "C4": [b, h/16, ...],
         "C5": [b, h/32, w/32, c5]} Keras tensors.

    Example:
        >>> feats = efficientnet_backbone(keras.Input((128, 128, 3)), config, "b0")
    """
    key = variant_name(variant)
    width, depth, _, default_drop = EFFICIENTNET_PARAMS[key]
    if train_bn == _FROM_CONFIG:
        train_bn = getattr(config, "TRAIN_BN", None)
    drop_connect = getattr(config, "EFFICIENTNET_DROP_CONNECT_RATE", default_drop)
    _check_input_size(input_image)

    x = ImageNetNormalize(config.MEAN_PIXEL, name="stem_imagenet_norm")(input_image)
    x = layers.ZeroPadding2D(_stride2_padding(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(round_filters(32, width), 3, strides=2, padding="valid",
                      use_bias=False, kernel_initializer=CONV_INIT, name="stem_conv")(x)
    x = BatchNorm(train_bn=train_bn, name="stem_bn")(x)
    x = layers.Activation("swish", name="stem_activation")(x)  # [b, h/2, w/2, 32*w]

    total = float(sum(round_repeats(s[1], depth) for s in BASE_STAGES))
    stage_outputs, block_index = {}, 0
    for stage, (kernel, repeats, f_in, f_out, expand, stride) in enumerate(BASE_STAGES, 1):
        f_in, f_out = round_filters(f_in, width), round_filters(f_out, width)
        for j in range(round_repeats(repeats, depth)):
            x = mbconv_block(
                x, f"block{stage}{chr(97 + j)}_",
                filters_in=f_in if j == 0 else f_out, filters_out=f_out, kernel=kernel,
                stride=stride if j == 0 else 1, expand=expand,
                drop_rate=drop_connect * block_index / total, train_bn=train_bn)
            block_index += 1
        stage_outputs[stage] = x
    return {name: stage_outputs[stage] for name, stage in FEATURE_STAGES.items()}


def _variant_backbone(key):
    """backbone(input_image, config) for one variant (the registry's signature)."""
    def backbone(input_image, config):
        return efficientnet_backbone(input_image, config, variant=key)
    backbone.__name__ = backbone.__qualname__ = f"efficientnet_{key}"
    backbone.__doc__ = (f"EfficientNet-{key.upper()} features {{'C2'..'C5'}}; "
                        f"see efficientnet_backbone.")
    return backbone


# Registered in mrcnn/backbones/__init__.py as "efficientnet-b0".."efficientnet-b7".
efficientnet_b0 = _variant_backbone("b0")
efficientnet_b1 = _variant_backbone("b1")
efficientnet_b2 = _variant_backbone("b2")
efficientnet_b3 = _variant_backbone("b3")
efficientnet_b4 = _variant_backbone("b4")
efficientnet_b5 = _variant_backbone("b5")
efficientnet_b6 = _variant_backbone("b6")
efficientnet_b7 = _variant_backbone("b7")


def keras_application(variant, input_shape=(None, None, 3)):
    """The matching `keras.applications.EfficientNetBx` (notop, random weights)."""
    key = variant_name(variant)
    builder = getattr(keras.applications, "EfficientNet" + key.upper())
    return builder(include_top=False, weights=None, input_shape=input_shape)


def _collect_layers(model_or_layers):
    """{name: layer} over a model (recursing into nested models) or a list of layers."""
    if isinstance(model_or_layers, keras.Model):
        pending = list(model_or_layers.layers)
    else:
        pending = list(model_or_layers)
    found = {}
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
        else:
            found[layer.name] = layer
    return found


def _check_preprocessing(source, path):
    """The file's Normalization stats must be identity (ours) or ImageNet's."""
    for layer in source.layers:
        if isinstance(layer, layers.Normalization) and layer.weights:
            mean = np.asarray(layer.mean).reshape(-1)
            if np.allclose(mean, 0.0) or np.allclose(mean, IMAGENET_MEAN_RGB, atol=1e-3):
                return
            raise ValueError(
                f"{path}: its input normalisation mean {mean.tolist()} is not ImageNet's "
                f"{list(IMAGENET_MEAN_RGB)}; ImageNetNormalize would feed these weights "
                f"the wrong input scale. Use the keras-applications notop file.")


def load_imagenet_weights(model_or_layers, variant, path):
    """Copies EfficientNet weights from a keras-applications file into our layers.

    The file is loaded into a freshly built `keras.applications.EfficientNetBx`
    (`Model.load_weights`, exactly how Keras loads its own `efficientnetbx_notop.h5`;
    Keras 3 `.weights.h5` files from `save_weights` work too), then every weighted layer
    is copied by name. `top_conv`/`top_bn` and the application's own preprocessing are
    skipped (our graph does not have them).

    Args:
        model_or_layers: a Keras model containing the backbone, or a list of layers.
        variant: "b0".."b7"; must match the file and the built backbone.
        path: the weight file (e.g. from `mrcnn.weights.download.get_weights(...)`).

    Returns:
        The number of layers whose weights were set.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"EfficientNet weight file {path} does not exist; fetch it with "
            f"mrcnn.weights.download.get_weights('efficientnet-{variant_name(variant)}-imagenet').")
    source = keras_application(variant)
    try:
        source.load_weights(path)
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"{path} does not fit EfficientNet-{variant_name(variant).upper()} notop "
            f"({err}); pass the variant the file was made for.") from err
    _check_preprocessing(source, path)
    targets = _collect_layers(model_or_layers)
    pairs, missing = [], []
    for layer in source.layers:
        if (not layer.weights or isinstance(layer, layers.Normalization)
                or layer.name.startswith("top_")):
            continue
        if layer.name in targets:
            pairs.append((layer, targets[layer.name]))
        else:
            missing.append(layer.name)
    if missing:
        raise ValueError(
            f"The model has no layers {missing[:3]}... ({len(missing)} of EfficientNet-"
            f"{variant_name(variant).upper()}'s); build it with efficientnet_backbone("
            f"variant={variant_name(variant)!r}) before loading {path}.")
    for layer, target in pairs:  # check every shape before changing any weight
        _check_shapes(layer, target, path)
    for layer, target in pairs:
        target.set_weights(layer.get_weights())
    return len(pairs)


def _check_shapes(source, target, path):
    want = [tuple(w.shape) for w in source.weights]
    have = [tuple(w.shape) for w in target.weights]
    if want != have:
        raise ValueError(
            f"{path}: layer {source.name} has weight shapes {want} but the model's has "
            f"{have}; the backbone variant does not match the file.")

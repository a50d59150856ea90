"""ResNet backbones with matterport's layer names (so its weight files load by name).

Stages follow the Caffe-style ResNet that matterport used: the stride of a stage's
first block sits on its first 1x1 convolution, and every convolution has a bias.
ResNet18 (basic blocks, same naming scheme) is a compact option for CPU training.
"""
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm


def _bn(x, name, train_bn):
    return BatchNorm(train_bn=train_bn, epsilon=1e-3, name=name)(x)


def bottleneck_block(x, kernel_size, filters, stage, block, train_bn, strides=None):
    """A bottleneck block; with strides it is a projection ("conv") block."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    s = strides or (1, 1)
    y = layers.Conv2D(f1, 1, strides=s, name=conv + "2a")(x)
    y = layers.Activation("relu")(_bn(y, bn + "2a", train_bn))
    y = layers.Conv2D(f2, kernel_size, padding="same", name=conv + "2b")(y)
    y = layers.Activation("relu")(_bn(y, bn + "2b", train_bn))
    y = layers.Conv2D(f3, 1, name=conv + "2c")(y)
    y = _bn(y, bn + "2c", train_bn)
    if strides is not None:
        x = layers.Conv2D(f3, 1, strides=s, name=conv + "1")(x)
        x = _bn(x, bn + "1", train_bn)
    y = layers.Add()([y, x])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def basic_block(x, filters, stage, block, train_bn, strides=None):
    """A two-convolution residual block (ResNet18/34)."""
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    s = strides or (1, 1)
    y = layers.Conv2D(filters, 3, strides=s, padding="same", name=conv + "2a")(x)
    y = layers.Activation("relu")(_bn(y, bn + "2a", train_bn))
    y = layers.Conv2D(filters, 3, padding="same", name=conv + "2b")(y)
    y = _bn(y, bn + "2b", train_bn)
    if strides is not None or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=s, name=conv + "1")(x)
        x = _bn(x, bn + "1", train_bn)
    y = layers.Add()([y, x])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(y)


def _stem(input_image, train_bn, width=64):
    # [B, H, W, 3] -> [B, H/4, W/4, width]
    x = layers.ZeroPadding2D((3, 3))(input_image)
    x = layers.Conv2D(width, 7, strides=2, name="conv1")(x)
    x = layers.Activation("relu")(_bn(x, "bn_conv1", train_bn))
    return layers.MaxPooling2D(3, strides=2, padding="same")(x)


def resnet_graph(input_image, architecture, stage5=True, train_bn=True):
    """matterport's resnet_graph: returns [C1, C2, C3, C4, C5]."""
    blocks = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}[architecture]
    x = c1 = _stem(input_image, train_bn)
    outputs = [c1]
    for stage, n in zip((2, 3, 4, 5), blocks):
        base = 64 * 2 ** (stage - 2)
        filters = [base, base, base * 4]
        strides = (1, 1) if stage == 2 else (2, 2)
        x = bottleneck_block(x, 3, filters, stage, "a", train_bn, strides=strides)
        for i in range(n - 1):
            x = bottleneck_block(x, 3, filters, stage, chr(98 + i), train_bn)
        outputs.append(x if stage < 5 or stage5 else None)
    return outputs


def _train_bn(config):
    return getattr(config, "TRAIN_BN", False)


def resnet50(input_image, config):
    """ResNet50 features {"C2".."C5"} at strides 4..32 (channels 256..2048)."""
    _, c2, c3, c4, c5 = resnet_graph(input_image, "resnet50", train_bn=_train_bn(config))
    return {"C2": c2, "C3": c3, "C4": c4, "C5": c5}


def resnet101(input_image, config):
    """ResNet101 features {"C2".."C5"} at strides 4..32 (channels 256..2048)."""
    _, c2, c3, c4, c5 = resnet_graph(input_image, "resnet101", train_bn=_train_bn(config))
    return {"C2": c2, "C3": c3, "C4": c4, "C5": c5}


def resnet18(input_image, config):
    """ResNet18 features {"C2".."C5"} (channels 64..512): a compact CPU backbone."""
    train_bn = _train_bn(config)
    x = _stem(input_image, train_bn)
    feats = {}
    for stage in (2, 3, 4, 5):
        filters = 64 * 2 ** (stage - 2)
        strides = None if stage == 2 else (2, 2)
        x = basic_block(x, filters, stage, "a", train_bn, strides=strides)
        x = basic_block(x, filters, stage, "b", train_bn)
        feats[f"C{stage}"] = x
    return feats

"""Mask head (matterport's build_fpn_mask_graph)."""
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm
from mrcnn.heads.common import BlockConv2DTranspose, FlattenRois, UnflattenRois


def mask_head(pooled, num_classes, train_bn=True, depth=256, convs=4):
    """ROI features [B, R, p, p, C] -> per-class mask probabilities [B, R, 2p, 2p, classes].

    `convs` 3x3 convolutions of `depth` channels (matterport: 4 x 256), then a 2x
    transposed convolution and a 1x1 per-class sigmoid."""
    x = FlattenRois()(pooled)                                   # [B*R, p, p, C]
    for i in range(1, int(convs) + 1):
        x = layers.Conv2D(depth, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = BatchNorm(train_bn=train_bn, epsilon=1e-3, name=f"mrcnn_mask_bn{i}")(x)
        x = layers.Activation("relu")(x)
    x = BlockConv2DTranspose(depth, 2, strides=2, activation="relu",
                             name="mrcnn_mask_deconv")(x)       # [B*R, 2p, 2p, depth]
    x = layers.Conv2D(num_classes, 1, activation="sigmoid", dtype="float32",
                      name="mrcnn_mask")(x)                    # [B*R, 2p, 2p, classes]
    return UnflattenRois(name="mrcnn_mask_rois")(x, pooled)

"""Classifier and box-regression head (matterport's fpn_classifier_graph)."""
from keras import layers

from mrcnn.layers.batch_norm import BatchNorm
from mrcnn.heads.common import FlattenRois, UnflattenRois, WholeInputConv2D


def _bn(x, name, train_bn):
    return BatchNorm(train_bn=train_bn, epsilon=1e-3, name=name)(x)


def box_head(pooled, num_classes, train_bn=True, fc_layers_size=1024):
    """ROI features -> class logits, probabilities, box deltas and shared features.

    pooled: [B, R, pool, pool, C] from PyramidROIAlign.
    Returns mrcnn_class_logits [B, R, classes], mrcnn_class [B, R, classes],
    mrcnn_bbox [B, R, classes, 4] and the shared feature [B, R, fc_layers_size].
    The two "fc" layers are convolutions as in matterport, so its weights load; they
    run as matrix products (WholeInputConv2D).
    """
    pool = pooled.shape[2]
    x = FlattenRois()(pooled)                                   # [B*R, pool, pool, C]
    x = WholeInputConv2D(fc_layers_size, pool, name="mrcnn_class_conv1")(x)
    x = layers.Activation("relu")(_bn(x, "mrcnn_class_bn1", train_bn))
    x = WholeInputConv2D(fc_layers_size, 1, name="mrcnn_class_conv2")(x)
    x = layers.Activation("relu")(_bn(x, "mrcnn_class_bn2", train_bn))
    shared = layers.Reshape((fc_layers_size,), name="pool_squeeze")(x)  # [B*R, fc]
    # Logits and deltas in float32 under mixed precision: scores rank detections.
    logits = layers.Dense(num_classes, dtype="float32", name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", dtype="float32", name="mrcnn_class_probs")(logits)
    bbox = layers.Dense(num_classes * 4, dtype="float32", name="mrcnn_bbox_fc")(shared)
    bbox = layers.Reshape((num_classes, 4), dtype="float32")(bbox)  # [B*R, classes, 4]
    return (UnflattenRois(name="mrcnn_class_logits_rois")(logits, pooled),
            UnflattenRois(name="mrcnn_class")(probs, pooled),
            UnflattenRois(name="mrcnn_bbox")(bbox, pooled),
            UnflattenRois(name="mrcnn_shared_features")(shared, pooled))

"""Fine-grained attribute head: multi-label probabilities per ROI.

It reads the box head's shared ROI feature, so it costs two small dense layers. Layer
names start with ``mrcnn_attr`` so the "heads" stage trains it.
"""
from keras import layers


def attribute_head(shared_features, num_attributes, fc_size=512):
    """[B, R, F] shared ROI features -> (logits, probabilities) [B, R, num_attributes]."""
    x = layers.Dense(fc_size, activation="relu", name="mrcnn_attr_fc")(shared_features)
    logits = layers.Dense(num_attributes, dtype="float32", name="mrcnn_attr_logits")(x)
    probs = layers.Activation("sigmoid", dtype="float32", name="mrcnn_attr_probs")(logits)
    return logits, probs

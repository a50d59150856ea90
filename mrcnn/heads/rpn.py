"""Region Proposal Network head, shared across pyramid levels (matterport names)."""
from keras import layers



class RPNHead:
    """Builds the shared RPN layers once and applies them to every level.

    Per level, returns rpn_class_logits [B, anchors, 2], rpn_probs [B, anchors, 2] and
    rpn_bbox [B, anchors, 4] (deltas). Anchors are ordered cell by cell, then by ratio,
    as utils.generate_anchors.
    """

    def __init__(self, anchors_per_location, anchor_stride=1, depth=512):
        self.k = anchors_per_location
        self.shared = layers.Conv2D(depth, 3, padding="same", activation="relu",
                                    strides=anchor_stride, name="rpn_conv_shared")
        # Scores and deltas in float32: proposals are ranked by them (ties under bf16).
        self.cls = layers.Conv2D(2 * self.k, 1, dtype="float32", name="rpn_class_raw")
        self.bbox = layers.Conv2D(4 * self.k, 1, dtype="float32", name="rpn_bbox_pred")

    def __call__(self, feature_map):
        shared = self.shared(feature_map)                      # [B, h, w, depth]
        logits = layers.Reshape((-1, 2), dtype="float32")(self.cls(shared))  # [B, h*w*k, 2]
        probs = layers.Activation("softmax", dtype="float32")(logits)
        bbox = layers.Reshape((-1, 4), dtype="float32")(self.bbox(shared))   # [B, h*w*k, 4]
        return logits, probs, bbox

    def over_levels(self, feature_maps):
        """Applies the head to each level and concatenates along the anchor axis."""
        outs = [self(p) for p in feature_maps]
        names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
        return [layers.Concatenate(axis=1, dtype="float32", name=n)([o[i] for o in outs])
                for i, n in enumerate(names)]

"""Feature Pyramid Network neck with matterport's layer names."""
from keras import layers


def fpn_neck(features, config):
    """{"C2".."C5"} -> {"P2".."P6"}, each with TOP_DOWN_PYRAMID_SIZE channels."""
    d = config.TOP_DOWN_PYRAMID_SIZE
    c2, c3, c4, c5 = (features[k] for k in ("C2", "C3", "C4", "C5"))
    p5 = layers.Conv2D(d, 1, name="fpn_c5p5")(c5)                       # [B, H/32, W/32, d]
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        layers.Conv2D(d, 1, name="fpn_c4p4")(c4)])                      # [B, H/16, W/16, d]
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        layers.Conv2D(d, 1, name="fpn_c3p3")(c3)])                      # [B, H/8, W/8, d]
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        layers.Conv2D(d, 1, name="fpn_c2p2")(c2)])                      # [B, H/4, W/4, d]
    out = {}
    for name, p in (("P2", p2), ("P3", p3), ("P4", p4), ("P5", p5)):
        out[name] = layers.Conv2D(d, 3, padding="same", name=f"fpn_{name.lower()}")(p)
    # P6 only feeds the RPN's largest anchors (stride 64).
    out["P6"] = layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(out["P5"])
    return out

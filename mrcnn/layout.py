"""Pyramid and head sizes that follow the job: one table, like EfficientDet's D0-D7.

matterport's sizes (a 256-channel pyramid, a 512-channel RPN convolution, 1024-wide
classifier "fc" layers, a mask head of four 256-channel convolutions) suit ResNet-101
at 1024 px, and its weight files need them. A model that does not load matterport's
weights (trained from scratch, from ImageNet backbone weights, ResNet18, EfficientNet)
is sized by ``Config.LAYOUT = "scaled"``: the backbone picks a row (``BACKBONE_ROW``;
EfficientNet-Bn takes row n, as EfficientDet-Dn), whose columns give

    TOP_DOWN_PYRAMID_SIZE      the row's width (EfficientDet's BiFPN widths 64..384)
    RPN_CONV_DEPTH             the width (EfficientDet's box/class nets are as wide)
    FPN_CLASSIF_FC_LAYERS_SIZE 4 x the width (matterport's 1024 : 256)
    MASK_HEAD_DEPTH            the width
    MASK_HEAD_CONVS            the row's count of mask convolutions
    ATTRIBUTE_FC_SIZE          2 x the width (matterport-era 512 : 256)
    POINTREND_FC_SIZE          the width (PointRend's 256 at matterport's 256)
    MASK_HEAD                  "pointrend" (matterport's layout keeps "matterport"):
                               masks refined to MASK_OUTPUT_SIZE along the edges,
                               with mini-masks as fine as its training targets
    TRAIN_ROIS_PER_IMAGE       the row's share of the image size's ROI count
                               (mrcnn.config_io.size_settings: more ROIs for
                               larger images, as matterport's 200 at 1024 px)

Only attributes the user did not set are derived: a value given in a Config subclass
(or on the instance before ``__init__``) always wins. ``LAYOUT = None`` means
"matterport" for ResNet50/101 (and callable backbones) and "scaled" for the others, so
``BACKBONE = "efficientnet-b0"`` or ``"resnet18"`` alone gives the small, fast model,
and a ResNet-101 config loads ``mask_rcnn_coco.h5`` as in matterport.

``sizes_in_weights(path)`` reads the sizes a weight file was trained with, so a
checkpoint is rebuilt with its own sizes whatever today's defaults are.

Example:
    class B0(Config):
        NUM_CLASSES = 47
        BACKBONE = "efficientnet-b0"
    B0().TOP_DOWN_PYRAMID_SIZE     # 64 (RPN_CONV_DEPTH 64, FPN_CLASSIF_FC_LAYERS_SIZE 256)
"""
import re

# EfficientDet D0..D7 BiFPN widths: row r of the table is this wide.
WIDTHS = (64, 88, 112, 160, 224, 288, 384, 384)
# Mask convolutions per row (matterport's head has 4).
MASK_CONVS = (2, 2, 3, 3, 4, 4, 4, 4)
# Share of the image size's TRAIN_ROIS_PER_IMAGE (mrcnn.config_io.size_settings).
ROI_SHARE = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

# The row of each named backbone.
BACKBONE_ROW = {"resnet18": 0, "resnet50": 2, "resnet101": 3,
                **{f"efficientnet-b{i}": i for i in range(8)}}

# matterport's sizes: what LAYOUT "matterport" keeps, and what its files hold.
MATTERPORT = {"TOP_DOWN_PYRAMID_SIZE": 256, "RPN_CONV_DEPTH": 512,
              "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "MASK_HEAD_DEPTH": 256,
              "MASK_HEAD_CONVS": 4}
# The attributes a layout decides (ROI counts come from the image size, then the row).
SIZED = tuple(MATTERPORT) + ("ATTRIBUTE_FC_SIZE", "TRAIN_ROIS_PER_IMAGE",
                             "POINTREND_FC_SIZE", "MASK_HEAD")
# The scaled layout's mask head: on the 512 px edge benchmark (docs/benchmarks.md)
# PointRend's boundary AP was several times the 28x28 head's at equal training time.
SCALED_MASK_HEAD = "pointrend"


def efficientnet_variant(backbone):
    """"efficientnet-b3" -> "b3"; None for any other backbone (or a callable)."""
    if not isinstance(backbone, str):
        return None
    m = re.fullmatch(r"efficientnet-?(b[0-7])", backbone.strip(), re.I)
    return m.group(1).lower() if m else None


def _row_key(backbone):
    variant = efficientnet_variant(backbone)
    if variant:
        return f"efficientnet-{variant}"
    return backbone.strip().lower() if isinstance(backbone, str) else None


def layout_of(config):
    """"matterport" or "scaled": LAYOUT, or the backbone's default when it is None."""
    layout = getattr(config, "LAYOUT", None)
    if layout in ("matterport", "scaled"):
        return layout
    key = _row_key(config.BACKBONE)
    return "scaled" if key in BACKBONE_ROW and key not in ("resnet50", "resnet101") \
        else "matterport"


def table_row(backbone):
    """The table row of a named backbone."""
    key = _row_key(backbone)
    if key not in BACKBONE_ROW:
        raise ValueError(f"no table row for backbone {backbone!r}; set the sizes in the "
                         "config or use LAYOUT = 'matterport'.")
    return BACKBONE_ROW[key]


def scaled_sizes(backbone, train_rois=200):
    """{attribute: size} of the backbone's row; train_rois: the image size's
    TRAIN_ROIS_PER_IMAGE (mrcnn.config_io.size_settings), scaled by the row's share."""
    row = table_row(backbone)
    w = WIDTHS[row]
    return {"TOP_DOWN_PYRAMID_SIZE": w, "RPN_CONV_DEPTH": w,
            "FPN_CLASSIF_FC_LAYERS_SIZE": 4 * w, "MASK_HEAD_DEPTH": w,
            "MASK_HEAD_CONVS": MASK_CONVS[row], "ATTRIBUTE_FC_SIZE": 2 * w,
            "POINTREND_FC_SIZE": w, "MASK_HEAD": SCALED_MASK_HEAD,
            "TRAIN_ROIS_PER_IMAGE": max(32, int(round(train_rois * ROI_SHARE[row])))}


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
    """With a "scaled" layout, sets the table's sizes on config for every attribute the
    user left alone; returns the {attribute: size} it set ({} for "matterport")."""
    if layout_of(config) != "scaled" or _row_key(config.BACKBONE) not in BACKBONE_ROW:
        return {}
    sizes = scaled_sizes(config.BACKBONE, config.TRAIN_ROIS_PER_IMAGE)
    applied = {name: size for name, size in sizes.items()
               if not set_by_user(config, name, base_class)
               or (name == "TRAIN_ROIS_PER_IMAGE" and _from_image_size(config, name))}
    for name, size in applied.items():
        setattr(config, name, size)
    return applied


def fit_mini_masks(config, base_class):
    """PointRend learns from ground truth cropped at config.mask_target_shape() (up to
    4x MASK_SHAPE): mini-masks coarser than that would blur its targets, so a
    MINI_MASK_SHAPE the user did not set (or that came from the image size) is raised
    to it. Returns the shape set, or None."""
    if getattr(config, "MASK_HEAD", "matterport") != "pointrend" or not config.USE_MINI_MASK:
        return None
    name = "MINI_MASK_SHAPE"
    if set_by_user(config, name, base_class) and not _from_image_size(config, name):
        return None
    target = config.mask_target_shape()
    if all(int(m) >= t for m, t in zip(config.MINI_MASK_SHAPE, target)):
        return None
    config.MINI_MASK_SHAPE = tuple(target)
    return config.MINI_MASK_SHAPE


def _from_image_size(config, name):
    """True when `name` was set by the image size, not by the user
    (mrcnn.config_io.size_settings marks its values)."""
    return name in getattr(config, "_SIZE_SETTINGS", ())


def sizes_in_weights(shapes):
    """The sizes a model was built with, from its weight shapes {layer: [shapes]}
    (mrcnn.weights.by_name.read_weight_shapes): {attribute: size} of those found."""
    out = {}
    rpn = shapes.get("rpn_conv_shared")
    if rpn:                                           # kernel [3, 3, pyramid, depth]
        out["TOP_DOWN_PYRAMID_SIZE"], out["RPN_CONV_DEPTH"] = int(rpn[0][2]), int(rpn[0][3])
    fc = shapes.get("mrcnn_class_conv1")
    if fc:                                            # kernel [pool, pool, pyramid, fc]
        out["FPN_CLASSIF_FC_LAYERS_SIZE"] = int(fc[0][3])
    convs = [n for n in shapes if re.fullmatch(r"mrcnn_mask_conv\d+", n)]
    if convs:
        out["MASK_HEAD_CONVS"] = len(convs)
        out["MASK_HEAD_DEPTH"] = int(shapes["mrcnn_mask_conv1"][0][3])
    point = shapes.get("mrcnn_point_head")
    if point:                                         # fc1 kernel [P2 + classes, fc]
        out["MASK_HEAD"], out["POINTREND_FC_SIZE"] = "pointrend", int(point[0][1])
        out["POINTREND_FC_LAYERS"] = (len(point) - 2) // 2
    elif convs:                                       # a mask head without a point head
        out["MASK_HEAD"] = "matterport"
    attr = shapes.get("mrcnn_attr_fc")
    if attr:                                          # kernel [fc, attribute fc]
        out["ATTRIBUTE_FC_SIZE"] = int(attr[0][1])
    return out


def describe_sizes(values):
    """'pyramid 64, RPN 64, box head 256, mask head 2 x 64' of a config or a dict."""
    get = values.get if isinstance(values, dict) else lambda k: getattr(values, k, None)
    return (f"pyramid {get('TOP_DOWN_PYRAMID_SIZE')}, RPN {get('RPN_CONV_DEPTH')}, box "
            f"head {get('FPN_CLASSIF_FC_LAYERS_SIZE')}, mask head "
            f"{get('MASK_HEAD_CONVS')} x {get('MASK_HEAD_DEPTH')}")

"""Models that load no matterport weights are sized by one table (mrcnn/layout.py)
unless the user set the sizes; matterport's layout stays where its weights load."""
import pytest

from mrcnn.config import Config
from mrcnn.layout import MATTERPORT, scaled_sizes

SIZES = ("TOP_DOWN_PYRAMID_SIZE", "RPN_CONV_DEPTH", "FPN_CLASSIF_FC_LAYERS_SIZE",
         "MASK_HEAD_DEPTH", "MASK_HEAD_CONVS")


class B0(Config):
    NUM_CLASSES = 47
    BACKBONE = "efficientnet-b0"


def sizes(config):
    return tuple(getattr(config, k) for k in SIZES)


def test_efficientnet_b0_gets_the_d0_row():
    c = B0()
    assert c.TOP_DOWN_PYRAMID_SIZE == 64          # D0's BiFPN width
    assert c.RPN_CONV_DEPTH == 64                 # EfficientDet's heads are as wide
    assert c.FPN_CLASSIF_FC_LAYERS_SIZE == 256    # 4 x the width, matterport's ratio
    assert c.MASK_HEAD_DEPTH == 64 and c.MASK_HEAD_CONVS == 2


def test_table_follows_the_variant():
    class B3(B0):
        BACKBONE = "efficientnet-b3"

    class B7(B0):
        BACKBONE = "efficientnet-b7"
    assert B3().TOP_DOWN_PYRAMID_SIZE == 160 and B7().TOP_DOWN_PYRAMID_SIZE == 384
    assert B3().MASK_HEAD_CONVS < B7().MASK_HEAD_CONVS <= 4


def test_values_set_by_the_user_win_even_when_equal_to_matterports():
    class Mine(B0):
        TOP_DOWN_PYRAMID_SIZE = 256
        FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    c = Mine()
    assert c.TOP_DOWN_PYRAMID_SIZE == 256 and c.FPN_CLASSIF_FC_LAYERS_SIZE == 1024
    assert c.RPN_CONV_DEPTH == 64                 # not set: still from the table


def test_resnet50_and_101_keep_matterports_layout_by_default():
    class R(Config):
        NUM_CLASSES = 2
    assert sizes(R()) == tuple(MATTERPORT[k] for k in SIZES)
    assert R().ATTRIBUTE_FC_SIZE == 512 and R().TRAIN_ROIS_PER_IMAGE == 200


def test_resnet18_has_no_matterport_weights_so_it_is_scaled():
    class R18(Config):
        NUM_CLASSES = 2
        BACKBONE = "resnet18"
    expected = scaled_sizes("resnet18")
    assert sizes(R18()) == tuple(expected[k] for k in SIZES)
    assert R18().RPN_CONV_DEPTH < 512


def test_from_scratch_config_gets_the_tables_sizes():
    """What `train --weights none|imagenet` builds: any backbone, the table's row."""
    from fashion.config import make_config, weights_layout
    for backbone in ("resnet18", "resnet50", "resnet101", "efficientnet-b0"):
        for weights in ("none", "imagenet"):
            c = make_config(256, 47, 10, backbone, pretrained=weights != "none",
                            **weights_layout(weights))
            row = scaled_sizes(backbone, train_rois=c.TRAIN_ROIS_PER_IMAGE)
            assert sizes(c) == tuple(row[k] for k in SIZES), (backbone, weights)
            assert c.ATTRIBUTE_FC_SIZE == row["ATTRIBUTE_FC_SIZE"]
    # matterport's weights: matterport's layout
    c = make_config(1024, 47, 0, "resnet101", **weights_layout("coco"))
    assert sizes(c) == tuple(MATTERPORT[k] for k in SIZES)
    # an explicit value still wins
    c = make_config(256, 47, 0, "resnet18", pretrained=False, RPN_CONV_DEPTH=96,
                    **weights_layout("none"))
    assert c.RPN_CONV_DEPTH == 96 and c.TOP_DOWN_PYRAMID_SIZE == 64


class Small(Config):
    NAME = "small"
    NUM_CLASSES = 3
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_INFERENCE = 50
    PRE_NMS_LIMIT = 200
    DETECTION_MAX_INSTANCES = 10
    MIXED_PRECISION = "float32"


@pytest.fixture(scope="module")
def matterport_layout_file(tmp_path_factory):
    """A weight file with matterport's pyramid and head sizes (a ResNet18 body keeps it
    small; the sizes are what the loader checks)."""
    from mrcnn.model import MaskRCNN
    from mrcnn.weights.by_name import save_weights_by_name

    class Matterport(Small):
        LAYOUT = "matterport"
    model = MaskRCNN("inference", Matterport(), str(tmp_path_factory.mktemp("l")))
    path = str(tmp_path_factory.mktemp("w") / "matterport_layout.h5")
    return save_weights_by_name(model.keras_model, path)


def test_matterport_file_into_a_scaled_model_is_one_sentence(matterport_layout_file):
    from mrcnn.model import MaskRCNN
    from mrcnn.weights.by_name import SizesMismatch
    model = MaskRCNN("inference", Small(), "/tmp/unused_logs")
    with pytest.raises(SizesMismatch) as e:
        model.load_weights(matterport_layout_file, by_name=True)
    message = str(e.value)
    assert "matterport's layout" in message and "LAYOUT = \"matterport\"" in message
    assert "fashion.py" not in message   # the library names its Config key, not the app
    assert message.count(". ") == 0 and message.endswith(".")   # one sentence


def test_a_weight_file_tells_its_sizes(matterport_layout_file):
    """--weights PATH builds the model the file was trained with, whatever the
    defaults are (old runs too, whose run file predates a size)."""
    from fashion.config import make_config, weights_layout
    from mrcnn.model import MaskRCNN
    values = weights_layout(None, matterport_layout_file)
    assert values["LAYOUT"] == "matterport"
    assert {k: values[k] for k in SIZES} == {k: MATTERPORT[k] for k in SIZES}
    c = make_config(64, 3, 0, "resnet18", pretrained=False, **values)
    model = MaskRCNN("inference", c, "/tmp/unused_logs")
    report = model.load_weights(matterport_layout_file, by_name=True)
    assert "rpn_conv_shared" in report["loaded"] and not report["skipped"]


def test_scaled_layout_builds_pointrend_and_matterports_keeps_its_head():
    """The sized-to-the-job layout's mask head is PointRend (docs/mask_heads.md), with
    mini-masks raised to its training targets; matterport's layout, a head set by hand,
    mini-masks set by hand and a checkpoint's own head all win."""
    from fashion.config import make_config, weights_layout
    from mrcnn.layout import sizes_in_weights
    scratch = make_config(256, 47, 0, "resnet18", pretrained=False, **weights_layout("none"))
    assert scratch.MASK_HEAD == "pointrend" and scratch.MINI_MASK_SHAPE == (112, 112)
    assert scratch.mask_output_shape() == (112, 112, 1)
    small = make_config(128, 47, 0, "resnet18", pretrained=False, **weights_layout("none"))
    assert small.MASK_SHAPE == [14, 14] and small.MINI_MASK_SHAPE == (56, 56)
    coco = make_config(1024, 47, 0, "resnet101", **weights_layout("coco"))
    assert coco.MASK_HEAD == "matterport" and coco.MINI_MASK_SHAPE == (56, 56)
    asked = make_config(256, 47, 0, "resnet18", pretrained=False, MASK_HEAD="matterport",
                        **weights_layout("none"))
    assert asked.MASK_HEAD == "matterport" and asked.MINI_MASK_SHAPE == (28, 28)
    kept = make_config(256, 47, 0, "resnet18", pretrained=False, MINI_MASK_SHAPE=(64, 64))
    assert kept.MASK_HEAD == "pointrend" and kept.MINI_MASK_SHAPE == (64, 64)

    class Library(Config):                      # the library alone, no fashion defaults
        NUM_CLASSES = 2
        BACKBONE = "efficientnet-b0"
    assert Library().MASK_HEAD == "pointrend" and Library().MINI_MASK_SHAPE == (112, 112)
    # a checkpoint's head: the mask convolutions without a point head are the 28x28 head
    convs = {"mrcnn_mask_conv1": [(3, 3, 64, 64)], "mrcnn_mask_conv2": [(3, 3, 64, 64)]}
    assert sizes_in_weights(convs)["MASK_HEAD"] == "matterport"
    point = dict(convs, mrcnn_point_head=[(112, 64), (64,), (64, 64), (64,), (64, 47), (47,)])
    assert sizes_in_weights(point)["MASK_HEAD"] == "pointrend"

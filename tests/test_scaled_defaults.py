"""EfficientNet models take EfficientDet's sizes unless the user set them."""
from mrcnn.config import Config


class B0(Config):
    NUM_CLASSES = 47
    BACKBONE = "efficientnet-b0"


def test_efficientnet_b0_gets_the_d0_pyramid_and_scaled_heads():
    c = B0()
    assert c.TOP_DOWN_PYRAMID_SIZE == 64          # D0's BiFPN width
    assert c.FPN_CLASSIF_FC_LAYERS_SIZE == 256    # 1024 x 64 / 256
    assert c.RPN_CONV_DEPTH == 128 and c.MASK_HEAD_DEPTH == 64


def test_table_follows_the_variant():
    class B3(B0):
        BACKBONE = "efficientnet-b3"

    class B7(B0):
        BACKBONE = "efficientnet-b7"
    assert B3().TOP_DOWN_PYRAMID_SIZE == 160 and B7().TOP_DOWN_PYRAMID_SIZE == 384


def test_values_set_by_the_user_win_even_when_equal_to_matterports():
    class Mine(B0):
        TOP_DOWN_PYRAMID_SIZE = 256
        FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    c = Mine()
    assert c.TOP_DOWN_PYRAMID_SIZE == 256 and c.FPN_CLASSIF_FC_LAYERS_SIZE == 1024
    assert c.RPN_CONV_DEPTH == 128                # not set: still scaled


def test_resnet_keeps_matterports_sizes():
    class R(Config):
        NUM_CLASSES = 2
    c = R()
    assert (c.TOP_DOWN_PYRAMID_SIZE, c.RPN_CONV_DEPTH, c.FPN_CLASSIF_FC_LAYERS_SIZE,
            c.MASK_HEAD_DEPTH) == (256, 512, 1024, 256)


def test_make_config_leaves_the_choice_to_the_backbone():
    from fashion.config import make_config
    c = make_config(256, 47, 0, "efficientnet-b0", pretrained=False)
    assert c.TOP_DOWN_PYRAMID_SIZE == 64
    c = make_config(256, 47, 0, "efficientnet-b0", TOP_DOWN_PYRAMID_SIZE=128)
    assert c.TOP_DOWN_PYRAMID_SIZE == 128

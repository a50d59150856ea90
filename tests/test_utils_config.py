"""utils (matterport helpers) against hand-computed cases, and Config validation."""
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.config import Config, ConfigError


def test_extract_bboxes_hand_case():
    m = np.zeros((10, 12, 2), bool)
    m[2:5, 3:7, 0] = True
    m[9, 11, 1] = True
    np.testing.assert_array_equal(utils.extract_bboxes(m), [[2, 3, 5, 7], [9, 11, 10, 12]])


def test_compute_iou_and_overlaps_hand_case():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30]])
    np.testing.assert_allclose(utils.compute_overlaps(a, b), [[1.0, 25 / 175, 0.0]])
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    np.testing.assert_allclose(utils.compute_iou(a[0], b, area(a)[0], area(b)),
                               [1.0, 25 / 175, 0.0])


def test_compute_overlaps_masks_hand_case():
    m1 = np.zeros((4, 4, 1), bool)
    m1[:2, :2] = True
    m2 = np.zeros((4, 4, 2), bool)
    m2[:2, :, 0] = True
    m2[2:, 2:, 1] = True
    np.testing.assert_allclose(utils.compute_overlaps_masks(m1, m2), [[0.5, 0.0]])


def test_non_max_suppression_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.3), [0, 2])


def test_box_refinement_round_trip():
    rng = np.random.RandomState(0)
    b = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([b, b + rng.uniform(5, 40, (20, 2))], 1).astype(np.float32)
    g = rng.uniform(0, 50, (20, 2))
    gt = np.concatenate([g, g + rng.uniform(5, 40, (20, 2))], 1).astype(np.float32)
    deltas = utils.box_refinement(boxes, gt)
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, atol=1e-3)


def test_norm_denorm_boxes():
    boxes = np.array([[0, 0, 128, 128], [10, 20, 30, 40]])
    norm = utils.norm_boxes(boxes, (128, 128))
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_array_equal(utils.denorm_boxes(norm, (128, 128)), boxes)


@pytest.mark.parametrize("mode", ["square", "pad64", "none", "crop"])
def test_resize_image_and_mask_modes(mode):
    image = np.random.RandomState(0).randint(0, 255, (100, 150, 3)).astype(np.uint8)
    mask = np.zeros((100, 150, 1), bool)
    mask[20:60, 30:90] = True
    out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=64, max_dim=128, mode=mode)
    m = utils.resize_mask(mask, scale, padding, crop)
    assert m.shape[:2] == out.shape[:2]
    if mode == "square":
        assert out.shape == (128, 128, 3) and window == (21, 0, 106, 128)
    elif mode == "pad64":
        assert out.shape[0] % 64 == 0 and out.shape[1] % 64 == 0
    elif mode == "none":
        assert out.shape == image.shape and scale == 1
    else:
        assert out.shape == (64, 64, 3)


def test_minimize_expand_mask_round_trip():
    mask = np.zeros((64, 64, 1), bool)
    mask[10:40, 20:50] = True
    box = utils.extract_bboxes(mask)
    mini = utils.minimize_mask(box, mask, (28, 28))
    assert mini.all()
    np.testing.assert_array_equal(utils.expand_mask(box, mini, (64, 64)), mask)


def test_generate_anchors_order_and_count():
    a = utils.generate_anchors(32, [0.5, 1, 2], (2, 3), 16, 1)
    assert a.shape == (2 * 3 * 3, 4)
    # first cell, ratio 1: a 32x32 box centred on (0, 0)
    np.testing.assert_allclose(a[1], [-16, -16, 16, 16])
    # second anchor cell moves right by the stride
    np.testing.assert_allclose(a[4], [-16, 0, 16, 32])


def test_compute_ap_perfect_and_half():
    masks = np.zeros((20, 20, 2), bool)
    masks[:10, :10, 0] = True
    masks[10:, 10:, 1] = True
    boxes = utils.extract_bboxes(masks)
    ids = np.array([1, 2])
    ap, *_ = utils.compute_ap(boxes, ids, masks, boxes, ids, np.array([.9, .8]), masks)
    assert ap == pytest.approx(1.0)
    ap, *_ = utils.compute_ap(boxes, ids, masks, boxes[:1], ids[:1], np.array([.9]),
                              masks[..., :1])
    assert ap == pytest.approx(0.5)
    recall, _ = utils.compute_recall(boxes[:1], boxes, 0.5)
    assert recall == 0.5


def test_image_meta_round_trip():
    meta = utils.compose_image_meta(7, (100, 150, 3), (128, 128, 3), (22, 0, 107, 128),
                                    0.85, np.ones(4))
    parsed = utils.parse_image_meta(meta[None])
    assert parsed["image_id"][0] == 7
    np.testing.assert_array_equal(parsed["window"][0], [22, 0, 107, 128])
    assert len(meta) == 12 + 4


def test_dataset_api():
    ds = utils.Dataset()
    ds.add_class("src", 5, "shirt, blouse")
    ds.add_class("src", 7, "pants")
    ds.add_image("src", image_id="a", path="/nowhere/a.jpg")
    ds.prepare()
    assert ds.class_names == ["BG", "shirt", "pants"] and ds.num_classes == 3
    assert ds.map_source_class_id("src.7") == 2
    assert ds.get_source_class_id(2, "src") == 7
    assert list(ds.image_ids) == [0] and ds.source_class_ids["src"] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        ds.load_image(0)


def test_corrupt_image_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        utils.read_image(str(bad))


@pytest.mark.parametrize("attrs,match", [
    ({"IMAGE_MAX_DIM": 100, "IMAGE_MIN_DIM": 100}, "divisible by 64"),
    ({"NUM_CLASSES": 1}, "NUM_CLASSES"),
    ({"BACKBONE": "resnet999"}, "resnet101"),
    ({"NECK": "nope"}, "bifpn"),
    ({"IMAGE_RESIZE_MODE": "stretch"}, "square"),
    ({"MASK_SHAPE": [56, 56]}, "MASK_POOL_SIZE"),
    ({"RPN_ANCHOR_SCALES": (32, 64)}, "one anchor scale per pyramid level"),
    ({"JIT_COMPILE": True}, "STATIC_SHAPES = True"),
    ({"MIXED_PRECISION": "half"}, "MIXED_PRECISION"),
    ({"LAYOUT": "tiny"}, "LAYOUT is 'tiny'; use 'matterport'"),
])
def test_config_rejects_impossible_values(attrs, match):
    cls = type("Bad", (Config,), {"NUM_CLASSES": 3, **attrs})
    with pytest.raises(ConfigError, match=match):
        cls()


def test_config_computed_attributes_and_display(capsys):
    class C(Config):
        NAME = "c"
        NUM_CLASSES = 5
        GPU_COUNT = 2
        IMAGES_PER_GPU = 3
    c = C()
    assert c.BATCH_SIZE == 6 and list(c.IMAGE_SHAPE) == [1024, 1024, 3]
    assert c.IMAGE_META_SIZE == 17 and c.to_dict()["NUM_CLASSES"] == 5
    c.display()
    assert "IMAGE_META_SIZE" in capsys.readouterr().out

"""In-graph augmentation (mrcnn/data/augment.py): shapes kept, masks follow the pixels."""
import numpy as np
import tensorflow as tf

from mrcnn.data.augment import copy_paste, pairwise, random_flip, scale_jitter


def record(box, colour, size=64, class_id=1, n_attr=2):
    """A record with one rectangular instance of one colour on black."""
    image = np.zeros((size, size, 3), np.uint8)
    masks = np.zeros((size, size, 1), bool)
    y1, x1, y2, x2 = box
    image[y1:y2, x1:x2] = colour
    masks[y1:y2, x1:x2, 0] = True
    return {"image": tf.constant(image), "masks": tf.constant(masks),
            "class_ids": tf.constant([class_id], tf.int32),
            "attributes": tf.constant(np.eye(n_attr, dtype=np.uint8)[:1]),
            "image_meta": tf.zeros([10])}


def test_scale_jitter_zooms_masks_with_the_pixels():
    r = record((16, 16, 48, 48), (200, 10, 10))
    for s in (2.0, 0.5):          # the 32x32 square becomes 64x64 (then cropped) or 16x16
        for seed in range(4):
            out = scale_jitter(r, (s, s), seed=seed)
            image, masks = out["image"].numpy(), out["masks"].numpy()[..., 0]
            assert image.shape == (64, 64, 3) and masks.shape == (64, 64)
            ys, xs = np.nonzero(masks)
            h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            assert masks.sum() == h * w                       # still a rectangle
            if s == 0.5:
                assert h == w == 16
            else:
                assert 1 <= h <= 64 and 1 <= w <= 64
            # the mask covers the red pixels: inside it the image is red
            # (edge pixels blend with black under the bilinear resize: 150 of 200)
            assert (image[masks][:, 0] >= 100).mean() > 0.95


def test_flip_mirrors_image_and_masks():
    r = record((10, 0, 20, 8), (50, 60, 70))
    flipped = [random_flip(r, seed=s) for s in range(8)]
    sides = {int(np.argwhere(f["masks"].numpy()[..., 0])[:, 1].min()) for f in flipped}
    assert sides == {0, 56}                                  # both outcomes occur
    for f in flipped:
        m, im = f["masks"].numpy()[..., 0], f["image"].numpy()
        assert (im[m] == (50, 60, 70)).all()


def test_copy_paste_covers_the_target_and_appends_the_source():
    target = record((10, 10, 40, 40), (255, 0, 0), class_id=1)
    source = record((30, 30, 50, 50), (0, 255, 0), class_id=2)
    out = copy_paste(target, source, probability=1.0)
    masks, image = out["masks"].numpy(), out["image"].numpy()
    assert list(out["class_ids"].numpy()) == [1, 2]
    assert out["attributes"].shape == (2, 2)
    assert masks[..., 0].sum() == 30 * 30 - 10 * 10          # the overlap went to the source
    assert not (masks[..., 0] & masks[..., 1]).any()
    assert (image[masks[..., 1]] == (0, 255, 0)).all()
    assert (image[masks[..., 0]] == (255, 0, 0)).all()
    same = copy_paste(target, source, probability=0.0)
    assert list(same["class_ids"].numpy()) == [1]


def test_pairwise_pastes_each_record_of_a_pair_onto_the_other():
    a = record((0, 0, 10, 10), (255, 0, 0), class_id=1)
    b = record((40, 40, 60, 60), (0, 0, 255), class_id=3)
    b["masks"] = tf.concat([b["masks"], tf.zeros_like(b["masks"])], axis=2)  # 2 slots
    b["class_ids"] = tf.constant([3, 0], tf.int32)
    b["attributes"] = tf.zeros([2, 2], tf.uint8)
    ds = tf.data.Dataset.from_tensors(a).concatenate(tf.data.Dataset.from_tensors(b))
    out = list(pairwise(ds, lambda t, s: copy_paste(t, s, 1.0)))
    assert len(out) == 2
    for o in out:
        present = o["masks"].numpy().any(axis=(0, 1))
        assert sorted(o["class_ids"].numpy()[present]) == [1, 3]


def test_pipeline_with_augmentation_keeps_static_shapes(tiny_config, shapes_data):
    from mrcnn.data.pipeline import training_inputs

    class Augmented(type(tiny_config)):
        AUGMENT_FLIP = True
        AUGMENT_SCALE = (0.5, 1.5)
        AUGMENT_COPY_PASTE = 0.5
    config = Augmented()
    ds = training_inputs(shapes_data[0], config, 2, seed=0, augment=True)
    for batch in ds.take(3):
        assert batch["input_image"].shape == (2, 128, 128, 3)
        assert batch["input_gt_masks"].shape == (2, 28, 28, config.MAX_GT_INSTANCES)
        assert (batch["input_gt_class_ids"].numpy()[:, 0] > 0).all()

"""The core model: build, train (loss falls), detect, save/reload, matterport weights."""
import json
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.config import Config
from mrcnn.data.pipeline import training_inputs
from mrcnn.model import MaskRCNN
from mrcnn.training import MaskRCNNTrainModel, make_optimizer, set_trainable, LAYER_REGEX
from mrcnn.weights.by_name import WeightsLayoutError

HERE = os.path.dirname(os.path.abspath(__file__))


def _write_matterport_h5(path, model, skip=(), perturb=0.0):
    """Writes weights in Keras-2 save_weights layout, rpn layers nested as matterport."""
    rpn = [l for l in model.layers if l.name.startswith("rpn_") and l.weights]
    with h5py.File(path, "w") as f:
        names = [l.name for l in model.layers if l.weights and l not in rpn
                 and l.name not in skip] + ["rpn_model"]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            if not layer.weights or layer in rpn or layer.name in skip:
                continue
            g = f.create_group(layer.name)
            wn = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in wn]
            for n, w in zip(wn, layer.weights):
                g.create_dataset(n, data=w.numpy() + perturb)
        g = f.create_group("rpn_model")
        wn, arrays = [], []
        for layer in rpn:
            for w in layer.weights:
                wn.append(f"{layer.name}/{w.name}:0")
                arrays.append(w.numpy() + perturb)
        g.attrs["weight_names"] = [n.encode() for n in wn]
        for n, a in zip(wn, arrays):
            g.create_dataset(n, data=a)


def test_matterport_weight_table_names_and_shapes():
    """Every weight of matterport's COCO ResNet101 model exists here with its shape."""
    class C(Config):
        NAME = "coco_table"
        NUM_CLASSES = 4
        BACKBONE = "resnet101"
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
    model = MaskRCNN("inference", C(), "/tmp/unused_logs").keras_model
    ours = {f"{l.name}/{w.name}:0": str(tuple(w.shape)) for l in model.layers
            for w in l.weights}
    table = json.load(open(os.path.join(HERE, "data", "mask_rcnn_coco_weights_table.json")))
    missing = [n for n, _ in table if n not in ours]
    wrong = [(n, s, ours[n]) for n, s in table if n in ours and ours[n] != s]
    assert not missing and not wrong, (missing[:5], wrong[:5])
    assert len(table) == 586


def test_pipeline_batches_have_static_shapes(tiny_config, shapes_data):
    ds = training_inputs(shapes_data[0], tiny_config, 2, repeat=False)
    batch = next(iter(ds))
    assert batch["input_image"].shape == (2, 128, 128, 3)
    assert batch["input_gt_masks"].shape == (2, 28, 28, tiny_config.MAX_GT_INSTANCES)
    assert batch["input_rpn_bbox"].shape == (2, tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    match = batch["input_rpn_match"].numpy()
    assert (match == 1).sum() > 0 and (match == -1).sum() > 0
    # every image has its instances, padded with class 0
    ids = batch["input_gt_class_ids"].numpy()
    assert (ids[:, 0] > 0).all()


def test_training_loss_falls_on_a_fixed_batch(tiny_config, shapes_data, deterministic):
    """Repeated steps on one batch must fit it: total loss falls clearly.

    Seeds and op determinism (the `deterministic` fixture) make the losses identical on
    every run of one machine; the learning rate and the assertion leave room for other
    machines. At lr 0.01 the tiny model's loss swung 2-13 (5.77, 4.85, 11.0, ... 13.3);
    at 0.003 it falls 5.77 -> 1.47 (deterministic), and in unseeded, nondeterministic
    runs the last four steps still reached 1.27 and 1.22 though single steps spiked to
    7.4 (random ROI sampling). So: the best of the last four steps is below half the
    first loss (measured ratio 0.21-0.26, i.e. a 2x margin).
    """
    from mrcnn import graph
    inputs, outputs = graph.build_training_graph(tiny_config)
    model = MaskRCNNTrainModel(inputs, outputs, tiny_config)
    set_trainable(model, LAYER_REGEX["all"])
    model.compile(optimizer=make_optimizer(tiny_config, 0.003))
    batch = next(iter(training_inputs(shapes_data[0], tiny_config, 2, shuffle=False,
                                      repeat=False, seed=0)))
    losses = [float(model.train_on_batch(batch, return_dict=True)["loss"])
              for _ in range(12)]
    assert np.isfinite(losses).all()
    assert min(losses[-4:]) < 0.5 * losses[0], losses


def test_train_writes_checkpoint_logs_and_resumes(trained_tiny, tiny_config, shapes_data):
    model, ckpt = trained_tiny
    assert os.path.basename(ckpt) == "mask_rcnn_tiny_0001.h5"
    log_dir = os.path.dirname(ckpt)
    assert os.path.exists(os.path.join(log_dir, "training_curve.csv"))
    assert os.path.exists(os.path.join(log_dir, "training_curve.png"))
    assert not [f for f in os.listdir(log_dir) if f.startswith(".tmp_")]
    # resuming restores the epoch and continues in the same run directory
    resumed = MaskRCNN("training", tiny_config, os.path.dirname(log_dir))
    resumed.load_weights(ckpt)
    assert resumed.epoch == 1 and resumed.log_dir == log_dir
    resumed.train(shapes_data[0], None, 0.001, 2, "heads", verbose=0)
    assert os.path.exists(os.path.join(log_dir, "mask_rcnn_tiny_0002.h5"))
    assert resumed.find_last().endswith("mask_rcnn_tiny_0002.h5")


def test_detect_returns_matterport_dicts(inference_tiny, shapes_data):
    images = [shapes_data[1].load_image(i) for i in range(3)]
    images[2] = images[2][:100, :90]          # another size works too
    results = inference_tiny.detect(images)
    assert len(results) == 3
    for image, r in zip(images, results):
        n = len(r["class_ids"])
        assert r["rois"].shape == (n, 4) and r["scores"].shape == (n,)
        assert r["masks"].shape == image.shape[:2] + (n,) and r["masks"].dtype == bool
        if n:
            assert r["rois"][:, 2].max() <= image.shape[0]
            assert r["rois"][:, 3].max() <= image.shape[1]
            assert set(r["class_ids"]) <= {1, 2, 3}


def test_save_reload_identical_detections(inference_tiny, tiny_config, tmp_path,
                                          shapes_data, deterministic):
    """Saved and reloaded weights are bit-identical, and so are the graph's detections
    to float noise (mask logits: see below). The pasted masks are compared with a
    tolerance: this barely trained model's mask probabilities sit near the 0.5
    threshold, and two model instances once differed in 261 of 229,376 mask pixels
    (0.11%) from 1e-7 differences."""
    from mrcnn.weights.by_name import save_weights_by_name
    path = str(tmp_path / "w.h5")
    save_weights_by_name(inference_tiny.keras_model, path)
    other = MaskRCNN("inference", tiny_config, str(tmp_path))
    other.load_weights(path)
    _assert_same_weights(inference_tiny.keras_model, other.keras_model)
    image = shapes_data[1].load_image(0)
    molded, metas, _ = inference_tiny.mold_inputs([image])
    anchors = inference_tiny._batch_anchors(molded)
    out_a = inference_tiny._predict(molded, metas, anchors)
    out_b = other._predict(molded, metas, anchors)
    np.testing.assert_allclose(out_a["detections"], out_b["detections"], rtol=0, atol=1e-4)
    # Mask logits per detection slot: in one of six fresh-clone CI runs one slot of 100
    # differed (1,118 of its 3,136 values by up to 0.106) while every box agreed to
    # 1e-4: a discrete choice downstream of the box (most likely the pyramid level that
    # ROI align picks from the box area, which rounds) flipped on float noise between
    # the two model instances. So at most 2 of the slots may differ; the rest must agree.
    slot_differs = (np.abs(out_a["mrcnn_mask"] - out_b["mrcnn_mask"]) > 1e-4).reshape(
        out_a["mrcnn_mask"].shape[:2] + (-1,)).any(axis=-1)
    assert slot_differs.sum() <= 2, np.flatnonzero(slot_differs)
    a = inference_tiny.detect([image])[0]
    b = other.detect([image])[0]
    np.testing.assert_array_equal(a["class_ids"], b["class_ids"])
    assert np.abs(a["rois"].astype(int) - b["rois"].astype(int)).max(initial=0) <= 1
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4)
    assert (a["masks"] != b["masks"]).mean() < 0.01
    # Keras 3 native files load by topology
    native = str(tmp_path / "n.weights.h5")
    inference_tiny.keras_model.save_weights(native)
    third = MaskRCNN("inference", tiny_config, str(tmp_path))
    third.load_weights(native)
    _assert_same_weights(inference_tiny.keras_model, third.keras_model)


def _assert_same_weights(model_a, model_b):
    """Every weight of two models of one topology equal bit for bit (same order)."""
    assert len(model_a.weights) == len(model_b.weights)
    for w_a, w_b in zip(model_a.weights, model_b.weights):
        assert w_a.path.split("/")[-1] == w_b.path.split("/")[-1]
        np.testing.assert_array_equal(np.asarray(w_a), np.asarray(w_b), err_msg=w_a.path)


def test_load_matterport_layout_by_name_with_exclude(inference_tiny, tiny_config, tmp_path):
    path = str(tmp_path / "mask_rcnn_matterport.h5")
    _write_matterport_h5(path, inference_tiny.keras_model, perturb=0.5)
    model = MaskRCNN("inference", tiny_config, str(tmp_path))
    excl = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    before = model.keras_model.get_layer("mrcnn_mask").get_weights()[0].copy()
    report = model.load_weights(path, by_name=True, exclude=excl)
    assert "rpn_conv_shared" in report["loaded"] and "conv1" in report["loaded"]
    for name in ("rpn_class_raw", "fpn_c5p5", "res2a_branch2a"):
        np.testing.assert_allclose(
            model.keras_model.get_layer(name).get_weights()[0],
            inference_tiny.keras_model.get_layer(name).get_weights()[0] + 0.5, rtol=1e-6)
    np.testing.assert_array_equal(model.keras_model.get_layer("mrcnn_mask").get_weights()[0],
                                  before)


def test_class_count_mismatch_names_layers_to_exclude(inference_tiny, tmp_path):
    class Other(Config):
        NAME = "other"
        NUM_CLASSES = 6
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
        TOP_DOWN_PYRAMID_SIZE = 64
        FPN_CLASSIF_FC_LAYERS_SIZE = 128
        POST_NMS_ROIS_INFERENCE = 100
    path = str(tmp_path / "mp.h5")
    _write_matterport_h5(path, inference_tiny.keras_model)
    model = MaskRCNN("inference", Other(), str(tmp_path))
    with pytest.raises(WeightsLayoutError, match="exclude=.*mrcnn_class_logits"):
        model.load_weights(path, by_name=True)
    report = model.load_weights(path, by_name=True,
                                exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"])
    assert report["loaded"]


def test_wrong_layout_file_is_one_clear_error(inference_tiny, tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"definitely not hdf5")
    with pytest.raises(WeightsLayoutError, match="junk.h5"):
        inference_tiny.load_weights(str(path), by_name=True)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        inference_tiny.load_weights(str(tmp_path / "missing.h5"))


def test_images_without_instances_are_skipped_and_counted(tiny_config, shapes_data):
    from mrcnn.data.pipeline import SkipCounter

    class Holey(type(shapes_data[0])):
        def load_mask(self, image_id):
            masks, ids = super().load_mask(image_id)
            return (masks[..., :0], ids[:0]) if image_id % 2 else (masks, ids)

    ds = Holey()
    ds.load_shapes(6, 128, 128, seed=3)
    ds.prepare()
    skips = SkipCounter()
    batches = list(training_inputs(ds, tiny_config, 1, repeat=False, skips=skips))
    assert len(batches) == 3 and skips.count == 3
    assert "no instances" in skips.reasons[0]


def test_augmentation_moves_masks_with_image(tiny_config, shapes_data):
    from mrcnn.data.imgaug_compat import import_imgaug
    from mrcnn.data.pipeline import augment_record
    from mrcnn.data.records import build_record
    iaa = import_imgaug()
    rec = build_record(shapes_data[0], tiny_config, 0)
    out = augment_record(rec, iaa.Sequential([iaa.Fliplr(1.0), iaa.Multiply(1.0)]))
    np.testing.assert_array_equal(out["masks"], rec["masks"][:, ::-1])
    np.testing.assert_array_equal(out["image"], rec["image"][:, ::-1])

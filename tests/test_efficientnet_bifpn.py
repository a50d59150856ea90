"""EfficientNet backbone + BiFPN neck: shapes, names, weights, BN modes, training."""

import types

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.backbones.efficientnet import (
    FEATURE_STAGES, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, RESERVED_PREFIXES, BatchNorm,
    ImageNetNormalize, efficientnet_b0, efficientnet_b7, efficientnet_backbone,
    keras_application, load_imagenet_weights)
from mrcnn.necks.bifpn import WeightedFusion, bifpn_neck, bifpn_params, resolve_size

SIZE = 128
MEAN_PIXEL = [123.7, 116.8, 103.9]
LEVELS = ("C2", "C3", "C4", "C5")


def make_config(**overrides):
    values = dict(BACKBONE="efficientnet-b0", BACKBONE_STRIDES=[4, 8, 16, 32, 64],
                  TOP_DOWN_PYRAMID_SIZE=32, TRAIN_BN=None, IMAGE_SHAPE=[SIZE, SIZE, 3],
                  MEAN_PIXEL=MEAN_PIXEL, BIFPN_CHANNELS=16, BIFPN_LAYERS=2)
    values.update(overrides)
    return types.SimpleNamespace(**values)


def build(config, neck=True, variant="b0"):
    image = keras.Input((SIZE, SIZE, 3), name="input_image")
    feats = efficientnet_backbone(image, config, variant)
    outputs = bifpn_neck(feats, config) if neck else feats
    return keras.Model(image, outputs)


def molded_batch(n=2, seed=0):
    rgb = np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3))
    return (rgb - np.array(MEAN_PIXEL)).astype("float32"), rgb  # [n, h, w, 3] each


@pytest.fixture(scope="module")
def backbone_b0():
    return build(make_config(TRAIN_BN=False), neck=False)


@pytest.fixture(scope="module")
def source_app():
    """A Keras EfficientNetB0 notop with non-trivial weights and BN statistics."""
    app = keras_application("b0", (SIZE, SIZE, 3))
    rng = np.random.default_rng(1)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return app


def test_backbone_returns_four_strides(backbone_b0):
    shapes = {k: tuple(backbone_b0.output[k].shape) for k in LEVELS}
    assert shapes == {"C2": (None, 32, 32, 24), "C3": (None, 16, 16, 40),
                      "C4": (None, 8, 8, 112), "C5": (None, 4, 4, 320)}
    out = backbone_b0(molded_batch(1)[0])
    assert out["C5"].shape == (1, SIZE // 32, SIZE // 32, 320)


def test_backbone_layer_names_avoid_reserved_prefixes(backbone_b0):
    names = [l.name for l in backbone_b0.layers if not isinstance(l, keras.layers.InputLayer)]
    assert len(names) > 200
    assert [n for n in names if n.startswith(RESERVED_PREFIXES)] == []


def test_input_size_must_be_multiple_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        efficientnet_b0(keras.Input((100, 128, 3)), make_config())  # registry signature
    assert efficientnet_b7.__name__ == "efficientnet_b7"
    with pytest.raises(ValueError, match="Unknown EfficientNet variant"):
        efficientnet_backbone(keras.Input((128, 128, 3)), make_config(), "b9")


def test_imagenet_normalize_recovers_rgb_statistics():
    molded, rgb = molded_batch(1)
    layer = ImageNetNormalize(MEAN_PIXEL)
    expected = (rgb / 255.0 - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB)
    np.testing.assert_allclose(layer(molded).numpy(), expected, atol=1e-4)
    clone = ImageNetNormalize.from_config(layer.get_config())
    assert clone.mean_pixel == pytest.approx(MEAN_PIXEL)


def _write_legacy_h5(model, path):
    """Writes weights the way Keras 2 wrote the official *_notop.h5 files."""
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("file_format", ["legacy_h5", "keras3_weights_h5"])
def test_load_imagenet_weights_reproduces_source_model(
        tmp_path, source_app, backbone_b0, file_format):
    if file_format == "legacy_h5":
        path = str(tmp_path / "efficientnetb0_notop.h5")
        _write_legacy_h5(source_app, path)
        with h5py.File(path, "r") as f:  # same layout as the keras-applications file
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
            assert "stem_conv" in names
    else:
        path = str(tmp_path / "efficientnetb0_notop.weights.h5")
        source_app.save_weights(path)
    copied = load_imagenet_weights(backbone_b0, "b0", path)
    weighted = [l for l in source_app.layers if l.weights and not isinstance(
        l, keras.layers.Normalization) and not l.name.startswith("top_")]
    assert copied == len(weighted)

    # The application's graph sees rgb / 255 (its Normalization is identity when
    # built without weights), so feed it 255 * the ImageNet-normalised image.
    ends = {k: [l.name for l in source_app.layers
                if l.name.startswith(f"block{s}")][-1] for k, s in FEATURE_STAGES.items()}
    reference = keras.Model(source_app.input,
                            {k: source_app.get_layer(ends[k]).output for k in LEVELS})
    molded, rgb = molded_batch(2)
    app_input = 255.0 * (rgb / 255.0 - np.array(IMAGENET_MEAN_RGB)) / np.array(
        IMAGENET_STD_RGB)
    want = reference(app_input.astype("float32"), training=False)
    got = backbone_b0(molded, training=False)
    for k in LEVELS:
        scale = np.abs(want[k].numpy()).max()
        np.testing.assert_allclose(got[k].numpy() / scale, want[k].numpy() / scale,
                                   atol=1e-5, err_msg=k)


def test_load_imagenet_weights_errors(tmp_path, source_app):
    with pytest.raises(FileNotFoundError, match="get_weights"):
        load_imagenet_weights([], "b0", str(tmp_path / "missing.h5"))
    path = str(tmp_path / "b0.weights.h5")
    source_app.save_weights(path)
    inp = keras.Input((8, 8, 3))
    unrelated = keras.Model(inp, keras.layers.Conv2D(4, 1, name="stem_conv")(inp))
    with pytest.raises(ValueError, match="build it with efficientnet_backbone"):
        load_imagenet_weights(unrelated, "b0", path)
    with pytest.raises(ValueError, match="pass the variant the file was made for"):
        load_imagenet_weights(unrelated, "b1", path)  # a B0 file is not a B1 file


def test_bifpn_outputs_pyramid_with_one_depth():
    config = make_config()
    model = build(config)
    expected = {f"P{l}": (None, SIZE // 2 ** l, SIZE // 2 ** l, 32) for l in range(2, 7)}
    assert {k: tuple(v.shape) for k, v in model.output.items()} == expected
    backbone_names = {l.name for l in build(config, neck=False).layers}
    neck_names = [l.name for l in model.layers if l.name not in backbone_names]
    assert len(neck_names) > 50
    assert all(n.startswith("bifpn_") for n in neck_names), neck_names
    assert any(n.endswith("_out_proj") for n in neck_names)  # 16 -> 32 channels


def test_bifpn_without_projection_when_width_matches():
    config = make_config(BIFPN_CHANNELS=None, BIFPN_LAYERS=None,
                         TOP_DOWN_PYRAMID_SIZE=64)  # D0: 64 channels, 3 layers
    model = build(config)
    names = [l.name for l in model.layers]
    assert not any(n.endswith("_out_proj") for n in names)
    assert any(n.startswith("bifpn_l2_") for n in names)
    assert not any(n.startswith("bifpn_l3_") for n in names)
    assert model.output["P2"].shape[-1] == 64


def test_bifpn_params_table_and_overrides():
    assert [bifpn_params(f"d{i}") for i in range(8)] == [
        (64, 3), (88, 4), (112, 5), (160, 6), (224, 7), (288, 7), (384, 8), (384, 8)]
    assert bifpn_params("efficientnet-b3") == (160, 6)
    assert bifpn_params("B6") == (384, 8)
    assert resolve_size(make_config(BIFPN_CHANNELS=None, BIFPN_LAYERS=None,
                                    BACKBONE="efficientnet-b2")) == (112, 5)
    assert resolve_size(make_config(BIFPN_CHANNELS=96, BIFPN_LAYERS=None,
                                    BACKBONE="efficientnet-b4")) == (96, 7)
    with pytest.raises(ValueError, match="BIFPN_CHANNELS"):
        resolve_size(make_config(BIFPN_CHANNELS=None, BACKBONE="resnet50"))
    with pytest.raises(ValueError, match="Unknown BiFPN variant"):
        bifpn_params("d9")


def test_weighted_fusion_is_trainable_and_ignores_negative_weights():
    a = np.full((1, 4, 4, 2), 3.0, "float32")
    b = np.full((1, 4, 4, 2), 100.0, "float32")
    fusion = WeightedFusion(name="bifpn_test_fuse")
    np.testing.assert_allclose(fusion([a, b]).numpy(), 51.5 * 2 / (2 + 1e-4), rtol=1e-6)
    assert [v.name for v in fusion.trainable_weights] == ["fusion_weights"]
    fusion.fusion_weights.assign([1.0, -0.7])
    np.testing.assert_allclose(fusion([a, b]).numpy(), 3.0 / (1 + 1e-4), rtol=1e-6)
    fusion.fusion_weights.assign([0.5, 1.5])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fusion([a, b]))
    grad = tape.gradient(loss, fusion.fusion_weights)
    assert np.all(np.abs(grad.numpy()) > 0)
    assert WeightedFusion.from_config(fusion.get_config()).epsilon == fusion.epsilon


def test_backbone_and_neck_train_and_round_trip(tmp_path, deterministic):
    config = make_config(TRAIN_BN=None)
    model = build(config)
    fusions = [l for l in model.layers if isinstance(l, WeightedFusion)]
    trainable_ids = {id(v) for v in model.trainable_weights}
    assert fusions and all(id(l.fusion_weights) in trainable_ids for l in fusions)

    image = keras.Input((SIZE, SIZE, 3))
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in model(image).values()]
    trainer = keras.Model(image, keras.layers.Concatenate()(pooled))  # [b, 5 * 32]
    # Eager steps: tracing a graph of ~500 layers costs more than six steps here.
    trainer.compile(keras.optimizers.Adam(1e-2), "mse", run_eagerly=True)
    x, _ = molded_batch(2)
    y = np.tile(np.random.default_rng(2).normal(size=(1, 5 * 32)), (2, 1)).astype(
        "float32")  # [2, 160] one target vector for both images
    bn = model.get_layer("block3a_expand_bn")
    mean_before = bn.moving_mean.numpy().copy()
    losses = trainer.fit(x, y, epochs=6, batch_size=2, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert not np.allclose(bn.moving_mean.numpy(), mean_before)  # TRAIN_BN None: learns

    path = str(tmp_path / "bifpn.weights.h5")
    model.save_weights(path)
    fresh = build(config)
    fresh.load_weights(path)
    want, got = model(x, training=False), fresh(x, training=False)
    for k in want:
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy())


def test_train_bn_false_runs_batchnorm_in_inference_mode_during_fit():
    model = build(make_config(TRAIN_BN=False, BIFPN_LAYERS=1,
                               EFFICIENTNET_DROP_CONNECT_RATE=0.0))  # no dropout
    bns = [l for l in model.layers if isinstance(l, BatchNorm)]
    assert bns and all(l.train_bn is False for l in bns)
    assert any(l.name.startswith("bifpn_") for l in bns)  # the neck follows TRAIN_BN
    x, _ = molded_batch(2)
    train_mode, infer_mode = model(x, training=True), model(x, training=False)
    for k in infer_mode:
        np.testing.assert_allclose(train_mode[k].numpy(), infer_mode[k].numpy(),
                                   atol=1e-5)
    image = keras.Input((SIZE, SIZE, 3))
    trainer = keras.Model(image, keras.layers.GlobalAveragePooling2D()(model(image)["P3"]))
    trainer.compile("sgd", "mse", run_eagerly=True)
    before = [l.moving_mean.numpy().copy() for l in bns]
    trainer.fit(x, np.ones((2, 32), "float32"), epochs=1, verbose=0)
    for layer, old in zip(bns, before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), old, err_msg=layer.name)
    clone = BatchNorm.from_config(bns[0].get_config())
    assert clone.train_bn is False

"""A tiny inference model with seeded random weights that gives real detections.

Random weights with untouched batch-norm statistics blow activations up (every score
1.0, 1-pixel boxes). ``calibrated_model`` sets each batch-norm layer's moving mean and
variance to the statistics of its input on a few images (repeated passes until every
layer is calibrated), so features stay O(1): varied scores, boxes of all sizes, masks
with structure. Shared by the export tests and benchmarks/bench_export.py.
"""
import keras
import numpy as np
import tensorflow as tf

from mrcnn.config import Config


class ExportConfig(Config):
    """ResNet18 at 128 px, 3 classes, 5 attributes, few ROIs, float32."""
    NAME = "exporttiny"
    NUM_CLASSES = 1 + 3
    NUM_ATTRIBUTES = 5
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128
    IMAGES_PER_GPU = 1
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    ATTRIBUTE_FC_SIZE = 32
    POST_NMS_ROIS_INFERENCE = 50
    PRE_NMS_LIMIT = 500
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.3
    MIXED_PRECISION = "float32"      # "auto" picks bfloat16 on CPUs with avx512_bf16
    # The 28x28 head, whose per-class masks these tests take apart; PointRend, the
    # scaled layout's default, is exported by test_pointrend.py and, trained, by the
    # demo runs of test_export_runtimes.py.
    MASK_HEAD = "matterport"


def smooth_images(seed, sizes):
    """uint8 photos-like images (random walks: smooth, full range) of the given sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        base = np.cumsum(rng.integers(-5, 6, (h, w, 3)), axis=0)
        base = base + np.cumsum(rng.integers(-5, 6, (1, w, 3)), axis=1)
        out.append(np.clip(base + 128, 0, 255).astype(np.uint8))
    return out


def calibrate_batch_norm(model, images, passes=30):
    """Sets the moving statistics of every BatchNormalization layer of model (a
    MaskRCNN in inference mode) to its input's statistics on images."""
    km = model.keras_model
    bns = [l for l in km.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = keras.Model(km.inputs, [l.input for l in bns])
    molded, metas, _ = model.mold_inputs(images)
    anchors = model._batch_anchors(molded)
    feed = [tf.constant(molded, tf.float32), tf.constant(metas, tf.float32),
            tf.constant(anchors, tf.float32)]
    run = tf.function(lambda *x: probe(list(x), training=False), autograph=False)
    for _ in range(passes):
        changed = 0.0
        for layer, x in zip(bns, run(*feed)):
            axes = tuple(range(len(x.shape) - 1))
            mean = tf.reduce_mean(x, axes).numpy()
            var = tf.math.reduce_variance(x, axes).numpy() + 1e-3
            old = layer.moving_variance.numpy()
            with np.errstate(all="ignore"):   # the first pass may meet overflowing inputs
                change = np.nan_to_num(np.abs(np.log(var / old)), nan=np.inf)
            changed = max(changed, float(np.max(change)))
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(var)
        if changed < 1e-3:
            break
    model._infer_fn = None
    return model


_SHARED = {}


def shared(key, make):
    """make() once per test session (the export tests and serve tests share a model and
    its SavedModel)."""
    if key not in _SHARED:
        _SHARED[key] = make()
    return _SHARED[key]


NAMES = ["BG", "shirt", "skirt", "shoe"]
ATTRIBUTES = ["plain", "striped", "floral", "dotted", "checked"]
EXTRA = {"category_ids": [-1, 11, 12, 13], "attribute_index_to_id": [100, 101, 102, 103, 104]}


def shared_model(tmp_path_factory):
    return shared("model", lambda: build_export_model(tmp_path_factory.mktemp("export_logs")))


def shared_saved_model(tmp_path_factory):
    """(model, path of its SavedModel version directory)."""
    model = shared_model(tmp_path_factory)
    path = shared("saved_model", lambda: model.export(
        str(tmp_path_factory.mktemp("exports") / "saved_model"), "saved_model",
        class_names=NAMES, attribute_names=ATTRIBUTES, metadata=EXTRA))
    return model, path


def build_export_model(model_dir, seed=3, config=None):
    """The calibrated tiny inference model (MaskRCNN)."""
    from mrcnn.model import MaskRCNN
    keras.utils.set_random_seed(seed)
    config = config or ExportConfig()
    model = MaskRCNN("inference", config, str(model_dir))
    side = int(config.IMAGE_MAX_DIM)
    calibrate_batch_norm(model, smooth_images(seed, [(side, side)] * 2))
    return model

"""Shared fixtures: tiny configs, a shapes dataset and models built once per session."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn.config import Config  # noqa: E402


class TinyConfig(Config):
    """ResNet50 at 128 px with few ROIs: what the core tests build."""
    NAME = "tiny"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 2
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    TRAIN_ROIS_PER_IMAGE = 32
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    PRE_NMS_LIMIT = 1000
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    DETECTION_MIN_CONFIDENCE = 0.0
    TRAIN_BN = None
    LEARNING_RATE = 0.005
    # Reference comparisons need bit-stable float32 on every machine ("auto" would pick
    # bf16 here and fp16 on a V100); tests/test_precision.py covers the mixed policies.
    MIXED_PRECISION = "float32"
    # The reference weights come from matterport's constant rate; tests/test_lr_schedule.py
    # covers the decaying schedules.
    LR_SCHEDULE = "constant"


# How scripts/test.sh spreads the suite over two processes (pytest-xdist, --dist
# loadgroup): each test file is one unit, and files that use the same session-trained
# model are one unit, so that model is trained once (each process trains its own).
SHARED_MODEL = {"test_core_model": "tiny_model", "test_efficientnet_model": "tiny_model",
                "test_run_report": "tiny_run", "test_tta": "tiny_run", "test_tune": "tiny_run"}
# Units that take longest (about 1-5 minutes each on two cores), longest first: started
# first, so that no long one is left for the end while the other process has nothing.
LONGEST_FIRST = ("test_export_runtimes", "test_fashion_cli_formats", "test_distribute",
                 "tiny_model", "tiny_run", "test_fashion_cli", "test_slurm",
                 "test_train_eval", "test_robustness", "test_notebooks", "test_export",
                 "test_demo", "test_export_ties", "test_data_formats")


def unit_of(item):
    """The xdist unit of a test: its file's name, or the name of the model it shares."""
    module = getattr(item, "module", None)
    module = module.__name__.rsplit(".", 1)[-1] if module else item.nodeid
    return SHARED_MODEL.get(module, module)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Marks each test with its unit (xdist_group) and puts the longest units first
    (a stable sort: the order within a file stays the file's)."""
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit_of(item)))
    items.sort(key=lambda item: rank.get(unit_of(item), len(rank)))


@pytest.fixture(scope="session")
def tiny_config():
    return TinyConfig()


@pytest.fixture
def deterministic():
    """For a training test: seeds Python, numpy and TF (keras.utils.set_random_seed(0))
    and turns on TF op determinism, so the test computes the same losses on every run of
    one machine (without it, thread scheduling changes even the first loss: 5.77 vs
    5.86). The previous determinism setting is restored afterwards."""
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # disable is not public
    was_enabled = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_enabled:
        tf_config.disable_op_determinism()


@pytest.fixture(scope="session")
def shapes_data():
    """(train, val) ShapesDataset at 128 px."""
    from samples.shapes.shapes import ShapesDataset
    train = ShapesDataset()
    train.load_shapes(12, 128, 128, seed=1)
    train.prepare()
    val = ShapesDataset()
    val.load_shapes(4, 128, 128, seed=2)
    val.prepare()
    return train, val


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, tiny_config, shapes_data):
    """A tiny training model after one short epoch; returns (model, checkpoint path)."""
    from mrcnn.model import MaskRCNN
    logs = tmp_path_factory.mktemp("logs")
    model = MaskRCNN("training", tiny_config, str(logs))
    model.train(shapes_data[0], shapes_data[1], tiny_config.LEARNING_RATE, 1, "all",
                verbose=0)
    return model, model.find_last()


@pytest.fixture(scope="session")
def inference_tiny(tiny_config, trained_tiny, tmp_path_factory):
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("inference", tiny_config, str(tmp_path_factory.mktemp("ilogs")))
    model.load_weights(trained_tiny[1])
    return model


def random_masks(rng, h, w, n):
    masks = np.zeros((h, w, n), bool)
    for i in range(n):
        y, x = rng.randint(0, h - 8), rng.randint(0, w - 8)
        masks[y:y + rng.randint(4, h - y), x:x + rng.randint(4, w - x), i] = True
    return masks

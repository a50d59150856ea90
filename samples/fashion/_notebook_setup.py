"""What the sample notebooks share: the demo data, a small config and a trained model.

The notebooks run top to bottom on a CPU in a few minutes: the synthetic demo set
(``fashion.demo_data``) at 128 px and a ResNet18 Mask R-CNN trained for a few dozen
steps inside the notebook. Environment variables change that:

* ``MRCNN_NOTEBOOK_WEIGHTS``: a checkpoint to use instead of training (it must have been
  trained with ``notebook_config`` on the same demo set, e.g. by another notebook run).
* ``MRCNN_NOTEBOOK_DATA``: where the demo set is generated (default ``data/demo_nb``
  under the repository root); ``MRCNN_NOTEBOOK_LOGS``: where training writes
  checkpoints (default ``logs/notebooks``).
* ``MRCNN_NOTEBOOK_STEPS``: training steps when training in the notebook.

Example (inside a notebook):
    from samples.fashion import _notebook_setup as nbs
    train, val = nbs.demo_datasets()
    weights = nbs.trained_weights(train, val)
    model = nbs.inference_model(train, weights)
"""
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WEIGHTS_ENV = "MRCNN_NOTEBOOK_WEIGHTS"
DATA_ENV = "MRCNN_NOTEBOOK_DATA"
LOGS_ENV = "MRCNN_NOTEBOOK_LOGS"
STEPS_ENV = "MRCNN_NOTEBOOK_STEPS"

IMAGE_SIZE = 128
NUM_IMAGES = 48
DEFAULT_STEPS = 60
# A small model for a CPU: narrow pyramid and heads, few ROIs, a short warm-up.
SMALL_MODEL = {"TOP_DOWN_PYRAMID_SIZE": 64, "FPN_CLASSIF_FC_LAYERS_SIZE": 256,
               "ATTRIBUTE_FC_SIZE": 128, "TRAIN_ROIS_PER_IMAGE": 32,
               "POST_NMS_ROIS_TRAINING": 256, "POST_NMS_ROIS_INFERENCE": 128,
               "MAX_GT_INSTANCES": 16, "DETECTION_MAX_INSTANCES": 16,
               "WARMUP_STEPS": 10, "LEARNING_RATE": 2e-3, "VALIDATION_STEPS": 1, "TRAIN_BN": False}


@contextlib.contextmanager
def native_stderr_off():
    """Sends the process's fd 2 to /dev/null: hides TensorFlow's C++ log lines, which a
    notebook would otherwise show. Python errors still show (they go to sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def quiet():
    """Less TensorFlow and Keras chatter in notebook outputs (TensorFlow is imported and
    its devices set up without the C++ start-up messages)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("fashion").setLevel(logging.WARNING)
    with native_stderr_off():
        import tensorflow as tf
        tf.config.list_physical_devices()
        tf.constant(0) + 1


def data_dir():
    return Path(os.environ.get(DATA_ENV) or ROOT / "data" / "demo_nb")


def logs_dir():
    return Path(os.environ.get(LOGS_ENV) or ROOT / "logs" / "notebooks")


def demo_datasets(num_images=NUM_IMAGES, size=IMAGE_SIZE, val_fraction=0.25):
    """Generates (or reuses) the demo set; returns prepared (train, val) FashionDatasets."""
    from fashion.dataset import FashionDataset
    from fashion.demo_data import generate_demo
    path = generate_demo(data_dir(), num_images=num_images, size=size, seed=0)
    out = []
    for subset in ("train", "val"):
        ds = FashionDataset()
        ds.load_imat2019(path, subset=subset, val_fraction=val_fraction)
        ds.prepare()
        out.append(ds)
    return tuple(out)


def notebook_config(dataset, inference=False, **overrides):
    """The notebooks' config: ResNet18 at 128 px, from scratch, with attributes.

    inference=True gives one image per batch and a low confidence threshold, so a
    briefly trained model still shows detections.
    """
    from fashion.config import make_config
    values = dict(SMALL_MODEL, STEPS_PER_EPOCH=int(os.environ.get(STEPS_ENV) or DEFAULT_STEPS))
    values["IMAGES_PER_GPU"] = 1 if inference else 2
    if inference:
        values["DETECTION_MIN_CONFIDENCE"] = 0.1
    values.update(overrides)
    return make_config(IMAGE_SIZE, dataset.num_classes, dataset.num_attributes,
                       backbone="resnet18", pretrained=False, **values)


def trained_weights(train, val, epochs=1, verbose=2):
    """The checkpoint the notebooks inspect: $MRCNN_NOTEBOOK_WEIGHTS, else one trained
    now (epochs x MRCNN_NOTEBOOK_STEPS steps, all layers) under logs_dir()."""
    given = os.environ.get(WEIGHTS_ENV)
    if given:
        if not os.path.isfile(given):
            raise FileNotFoundError(f"{WEIGHTS_ENV}={given} does not exist; point it at a "
                                    "checkpoint (.h5) or unset it to train in the notebook.")
        print(f"Using the checkpoint {given} (from ${WEIGHTS_ENV}).")
        return given
    from mrcnn.model import MaskRCNN
    config = notebook_config(train)
    model = MaskRCNN("training", config, str(logs_dir()))
    t0 = time.time()
    import matplotlib
    backend = matplotlib.get_backend()
    try:
        with native_stderr_off():
            model.train(train, val, learning_rate=config.LEARNING_RATE, epochs=epochs,
                        layers="all", augmentation="flip", verbose=verbose)
    finally:
        # The loss-curve callback selects Agg; give the notebook its inline plots back.
        if matplotlib.get_backend() != backend:
            import matplotlib.pyplot as plt
            plt.switch_backend(backend)
    path = model.checkpoint_path.format(epoch=model.epoch)
    print(f"Trained {epochs * config.STEPS_PER_EPOCH} steps in {time.time() - t0:.0f} s; "
          f"checkpoint {path}")
    return path


def inference_model(dataset, weights, **overrides):
    """A MaskRCNN in inference mode with the weights loaded."""
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("inference", notebook_config(dataset, inference=True, **overrides),
                     str(logs_dir()))
    model.load_weights(weights)
    return model

"""What the sample notebooks share: the demo data, a small config and a trained model.

The notebooks run top to bottom on a CPU in a few minutes: the synthetic demo set
(``fashion.data.demo_data``) at 128 px and a ResNet18 Mask R-CNN trained for a few dozen
steps inside the notebook. Environment variables change that:

* ``MRCNN_NOTEBOOK_WEIGHTS``: a checkpoint to use instead of training (it must have been
  trained with ``notebook_config`` on the same demo set, e.g. by another notebook run).
* Without it, the newest checkpoint of ``python fashion/fashion.py demo`` under
  ``logs/fashion*/`` (one with its fashion_run.json) is used when present: the notebooks
  then show that model, with its own config, on the demo set it was trained on.
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
    """The demo set the notebooks read: a demo run's own (see demo_run()), else
    $MRCNN_NOTEBOOK_DATA or data/demo_nb."""
    found = demo_run()
    if found:
        given = found[1].get("dataset") or ""
        return Path(given) if os.path.isdir(given) else ROOT / "data" / "demo"
    return Path(os.environ.get(DATA_ENV) or ROOT / "data" / "demo_nb")


def logs_dir():
    return Path(os.environ.get(LOGS_ENV) or ROOT / "logs" / "notebooks")


def demo_run():
    """(checkpoint, run file dict) of the newest `fashion.py demo` run under logs/, or
    None; None too when $MRCNN_NOTEBOOK_WEIGHTS is set."""
    import json
    if os.environ.get(WEIGHTS_ENV):
        return None
    for run_dir in sorted((ROOT / "logs").glob("fashion*"), reverse=True):
        checkpoints = sorted(run_dir.glob("mask_rcnn_fashion_[0-9]*.h5"))
        if checkpoints and (run_dir / "fashion_run.json").is_file():
            with open(run_dir / "fashion_run.json", encoding="utf-8") as f:
                return str(checkpoints[-1]), json.load(f)
    return None


def demo_datasets(num_images=NUM_IMAGES, size=IMAGE_SIZE, val_fraction=0.25):
    """Generates (or reuses) the demo set; returns prepared (train, val) FashionDatasets.
    With a demo run (demo_run()), its own demo set and held-out split."""
    from fashion.data.fashion_dataset import FashionDataset
    from fashion.data.demo_data import generate_demo
    found = demo_run()
    if found:  # the demo's own set as it is, else made as `fashion.py demo` makes it
        path = data_dir()
        if not (path / "train.csv").is_file():
            path = generate_demo(path, num_images=300, seed=0,
                                 size=int(found[1]["config"]["IMAGE_MAX_DIM"]))
        val_fraction = 0.2                       # fashion.py's --val-fraction default
    else:
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
    if not given and demo_run():
        print(f"Using the demo model {demo_run()[0]} (from `fashion.py demo`).")
        return demo_run()[0]
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
    """A MaskRCNN in inference mode with the weights loaded (the config of the run
    beside the weights when it has a fashion_run.json, else notebook_config)."""
    from mrcnn.model import MaskRCNN
    config = _run_config(weights, overrides) or notebook_config(
        dataset, inference=True, **overrides)
    model = MaskRCNN("inference", config, str(logs_dir()))
    model.load_weights(weights)
    return model


def _run_config(weights, overrides):
    """The inference config of a `fashion.py` run's checkpoint, or None."""
    import json
    run_file = Path(weights).parent / "fashion_run.json"
    if not run_file.is_file():
        return None
    from fashion.config import make_config
    from mrcnn.config_io import values_to_overrides
    with open(run_file, encoding="utf-8") as f:
        values = values_to_overrides(json.load(f)["config"])
    values.update(IMAGES_PER_GPU=1, GPU_COUNT=1, **overrides)
    return make_config(int(values.pop("IMAGE_MAX_DIM")), values.pop("NUM_CLASSES"),
                       values.pop("NUM_ATTRIBUTES"), values.pop("BACKBONE"), **values)

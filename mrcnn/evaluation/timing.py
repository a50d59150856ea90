"""How long an evaluation while training will take, measured before training starts.

A time budget must end with the final evaluation done, so the EvaluationCallback times
its parts once, at the start of a budgeted run (its tracing then happens before
training rather than after it):

* one batch through the evaluation model's graph (the graph always returns
  DETECTION_MAX_INSTANCES rows, so this does not change as the model learns);
* loading a val image;
* what a trained model's detections cost after the graph: pasting
  DETECTION_MAX_INSTANCES masks into the image and encoding their records (a model
  that has learnt returns many detections above the 0.05 evaluation threshold; the
  random starting model returns few, so its own detections would underestimate);
* scoring such predictions (COCO AP and the application's metrics).

Example:
    seconds = evaluation_estimate(callback, len(callback.image_ids))
"""
import math
import time

import numpy as np

# Kept on top of the measured parts: timing noise and the panels drawn for TensorBoard.
SAFETY = 1.25
SCORED_IMAGES = 10


def _fake_detections(config, rng):
    """[D, 6] normalised detections and [D, h, w, classes] mask probabilities: a full
    set of DETECTION_MAX_INSTANCES boxes of 5-40% of the side."""
    d = int(config.DETECTION_MAX_INSTANCES)
    sides = rng.uniform(0.05, 0.4, (d, 2))
    y1x1 = rng.uniform(0, 1, (d, 2)) * (1 - sides)
    boxes = np.concatenate([y1x1, y1x1 + sides], axis=1)
    classes = rng.integers(1, int(config.NUM_CLASSES), d)
    detections = np.concatenate([boxes, classes[:, None], rng.uniform(0.05, 1, (d, 1))],
                                axis=1).astype(np.float32)
    shape = config.mask_output_shape() if hasattr(config, "mask_output_shape") else \
        tuple(config.MASK_SHAPE) + (int(config.NUM_CLASSES),)
    masks = rng.uniform(0, 1, (d,) + tuple(shape)).astype(np.float32)
    return detections, masks


def _time(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def evaluation_estimate(callback, n_images, rng=None):
    """Seconds the callback's evaluation of n_images takes (see the module docstring).

    callback: an EvaluationCallback whose inference model is built (its _build())."""
    from mrcnn.evaluation.coco import evaluate_coco
    from mrcnn.inference import unmold_detections
    rng = rng or np.random.default_rng(0)
    config, dataset = callback.config, callback.dataset
    size = int(config.BATCH_SIZE)
    ids = callback.image_ids[:size]
    load, images = _time(lambda: [dataset.load_image(i) for i in ids])
    images = images + images[-1:] * (size - len(images))
    callback.inference.detect(images)                  # traces the graph once
    graph, _ = _time(callback.inference.detect, images)

    detections, masks = _fake_detections(config, rng)
    shape = tuple(config.IMAGE_SHAPE)
    window = np.array([0, 0, shape[0], shape[1]])
    image_id = int(ids[0])
    post, records = _time(lambda: callback.to_records(
        unmold_detections(detections, masks, images[0].shape, shape, window),
        image_id, "estimate", 1))

    picked = callback.image_ids[:SCORED_IMAGES]
    predictions = [dict(r, image_id=int(i)) for i in picked for r in records]
    scoring, _ = _time(evaluate_coco, callback._gt, predictions, ("segm", "boundary", "bbox"),
                       False)
    if callback.metrics_fn is not None:
        extra, _ = _time(callback.metrics_fn, callback._gt, predictions)
        scoring += extra
    batches = math.ceil(n_images / size)
    per_image = load / max(1, len(ids)) + post
    return SAFETY * (batches * graph + n_images * per_image
                     + scoring * n_images / max(1, len(picked)))

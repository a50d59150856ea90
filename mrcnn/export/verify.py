"""Export self-checks: a converted model must reproduce the TensorFlow function on probe
images (same detections, boxes within 0.5 px, scores and attributes within 1e-4, mask
probabilities within 1e-3), or the export fails instead of writing something that
differs."""
import numpy as np
import tensorflow as tf

from mrcnn.export.metadata import ExportError


def probe_images(config):
    """Two smooth pseudo-photos: one smaller than the input, one larger and wider."""
    rng = np.random.default_rng(0)
    side = int(config.IMAGE_MAX_DIM)
    images = []
    for h, w in [(max(8, side * 3 // 4), max(8, side // 2)), (side + 37, side * 2 - 5)]:
        walk = np.cumsum(rng.integers(-5, 6, (h, w, 3)), axis=0)
        walk = walk + np.cumsum(rng.integers(-5, 6, (1, w, 3)), axis=1)
        images.append(np.clip(walk + 128, 0, 255).astype(np.uint8))
    return images


def _worst(expected, got):
    """The first way `got` (dict of arrays) differs from `expected`, or None."""
    n = int(expected["num_detections"][0])
    if int(got["num_detections"][0]) != n:
        return f"{int(got['num_detections'][0])} detections instead of {n}"
    if not np.array_equal(got["detection_classes"][0, :n], expected["detection_classes"][0, :n]):
        return "other class ids"
    limits = {"detection_boxes": 0.5, "detection_scores": 1e-4,
              "detection_attributes": 1e-4, "detection_masks": 1e-3}
    for name, limit in limits.items():
        if name in expected:
            diff = np.abs(np.asarray(got[name], np.float64)[0, :n]
                          - np.asarray(expected[name], np.float64)[0, :n])
            if diff.size and diff.max() > limit:
                return f"{name} off by {diff.max():.3g}"
    return None


def check_against_tf(tf_fn, run_converted, config, fmt):
    """Runs tf_fn (uint8 [1, H, W, 3] -> outputs) and run_converted (numpy image batch
    -> dict of arrays) on the probe images; raises ExportError when they differ."""
    for image in probe_images(config):
        expected = {k: v.numpy() for k, v in tf_fn(tf.constant(image[None])).items()}
        problem = _worst(expected, run_converted(image[None]))
        if problem:
            raise ExportError(f"The {fmt} model does not reproduce TensorFlow on a "
                              f"{image.shape[0]}x{image.shape[1]} probe image ({problem}); "
                              "the export was not written.")

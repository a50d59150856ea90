"""What the server runs: a checkpoint through MaskRCNN.detect(), or an exported
SavedModel through its image_tensor signature. Both take a uint8 [H, W, 3] image and
return detect()'s result dict; calls are serialized by a lock (one model, many clients).
detect_batch(images) gives each image's detect() result in as few model calls as the
model takes (the server's batching).
"""
import argparse
import json
import os
import threading

import numpy as np

from fashion.errors import CLIError


class Predictor:
    """Base: labels (run meta: class_names, category_ids, attribute names) + a lock."""

    def __init__(self, labels, source):
        self.labels = labels
        self.source = source
        self._lock = threading.Lock()

    def detect(self, image):
        with self._lock:
            return self._detect(image)

    def _detect(self, image):  # pragma: no cover
        raise NotImplementedError

    def detect_batch(self, images):
        """[detect(image) for image in images], batched where the model can take it."""
        with self._lock:
            return self._detect_batch(list(images))

    def _detect_batch(self, images):
        return [self._detect(image) for image in images]


class CheckpointPredictor(Predictor):
    """MaskRCNN.detect() on a checkpoint (the `detect` command's model)."""

    def __init__(self, model, meta, weights):
        super().__init__(meta, os.path.abspath(weights))
        self.model = model

    def _detect(self, image):
        return self.model.detect([image])[0]

    def _detect_batch(self, images):
        # "square" molds every image to one shape: detect() runs BATCH_SIZE per call
        # (make_predictor builds the model with IMAGES_PER_GPU = serve's --max-batch).
        if self.model.config.IMAGE_RESIZE_MODE == "square":
            return self.model.detect(images)
        return super()._detect_batch(images)


def saved_model_dir(path):
    """PATH itself when it holds saved_model.pb, else its highest numeric version."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                       and os.path.isfile(os.path.join(path, d, "saved_model.pb")))
                      if os.path.isdir(path) else [])
    if not versions:
        raise CLIError(f"--export {path} holds no SavedModel (saved_model.pb or "
                       "<version>/saved_model.pb); write one with `fashion.py export`.")
    return os.path.join(path, str(versions[-1]))


class ExportPredictor(Predictor):
    """An exported SavedModel's image_tensor signature + postprocess.to_results."""

    def __init__(self, path):
        import tensorflow as tf
        directory = saved_model_dir(path)
        with open(os.path.join(directory, "assets", "labels.json"), encoding="utf-8") as f:
            labels = json.load(f)
        meta = dict(labels.get("extra") or {})
        meta.setdefault("class_names", labels["class_names"])
        meta.setdefault("attribute_names", labels["attribute_names"])
        meta.setdefault("category_ids", list(range(len(labels["class_names"]))))
        super().__init__(meta, os.path.abspath(directory))
        self._fn = tf.saved_model.load(directory).signatures["image_tensor"]
        self._tf = tf

    def _detect(self, image):
        from mrcnn.export.postprocess import to_results
        out = self._fn(images=self._tf.constant(np.asarray(image, np.uint8)[None]))
        return to_results(out, [image.shape])[0]

    def _detect_batch(self, images):
        """One image_tensor call per image size ([B, H, W, 3] takes one size)."""
        from mrcnn.export.postprocess import to_results
        results, groups = [None] * len(images), {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        for shape, index in groups.items():
            stack = np.stack([np.asarray(images[i], np.uint8) for i in index])
            for i, r in zip(index, to_results(self._fn(images=self._tf.constant(stack)),
                                              [shape] * len(index))):
                results[i] = r
        return results


def make_predictor(args):
    """The predictor for `serve`'s flags (--export DIR, or --weights with --logs)."""
    if getattr(args, "export", None):
        return ExportPredictor(args.export)
    from fashion.runs import inference_model
    if getattr(args, "max_batch", 1) > 1:       # detect() runs IMAGES_PER_GPU per call
        args = argparse.Namespace(**dict(vars(args), set=list(args.set or []) + [
            f"IMAGES_PER_GPU={int(args.max_batch)}"]))
    model, meta, weights = inference_model(args)
    return CheckpointPredictor(model, meta, weights)

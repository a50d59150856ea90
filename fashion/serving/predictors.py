"""What the server runs: a checkpoint through MaskRCNN.detect(), or an export of any
format (SavedModel through its image_tensor signature, model.onnx on onnxruntime,
OpenVINO IR on OpenVINO Runtime, model.tflite; told apart by mrcnn.export.runtime).
Both take a uint8 [H, W, 3] image and return detect()'s result dict; calls are
serialized by a lock (one model, many clients). `runtime` names what runs the model.
detect_batch(images) gives each image's detect() result in as few model calls as the
model takes (the server's batching).
"""
import os
import threading

import numpy as np

from fashion.errors import CLIError


class Predictor:
    """Base: labels (run meta: class_names, category_ids, attribute names) + a lock."""

    def __init__(self, labels, source, runtime="TensorFlow"):
        self.labels = labels
        self.source = source
        self.runtime = runtime
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
        import tensorflow as tf
        super().__init__(meta, os.path.abspath(weights),
                         f"TensorFlow {tf.__version__} detect() {model.precision}")
        self.model = model

    def _detect(self, image):
        return self.model.detect([image])[0]

    def _detect_batch(self, images):
        # "square" molds every image to one shape: detect() runs BATCH_SIZE per call
        # (make_predictor builds the model with IMAGES_PER_GPU = serve's --max-batch).
        if self.model.config.IMAGE_RESIZE_MODE == "square":
            return self.model.detect(images)
        return super()._detect_batch(images)


class ExportPredictor(Predictor):
    """An export of any format (mrcnn.export.runtime.open_export) +
    postprocess.to_results; a SavedModel runs a batch per image size in one call."""

    def __init__(self, path):
        from mrcnn.export import ExportError
        from mrcnn.export.runtime import open_export
        try:
            self.loaded = open_export(path)
        except ExportError as e:
            raise CLIError(f"--export: {e}") from None
        labels = self.loaded.labels
        meta = dict(labels.get("extra") or {})
        meta.setdefault("class_names", labels["class_names"])
        meta.setdefault("attribute_names", labels["attribute_names"])
        meta.setdefault("category_ids", list(range(len(labels["class_names"]))))
        super().__init__(meta, os.path.abspath(self.loaded.path), self.loaded.runtime)
        if self.loaded.format == "saved_model":
            import tensorflow as tf
            self._fn, self._tf = self.loaded.run.signature, tf

    def _detect(self, image):
        from mrcnn.export.results import to_results
        return to_results(self.loaded.run(image), [image.shape])[0]

    def _detect_batch(self, images):
        """SavedModel: one image_tensor call per image size ([B, H, W, 3] takes one
        size); the converted formats take one image per call."""
        if self.loaded.format != "saved_model":
            return super()._detect_batch(images)
        from mrcnn.export.results import to_results
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
    from fashion.run import Run
    run = Run.from_args(args)
    batch = int(vars(args).get("max_batch") or 1)  # detect() runs IMAGES_PER_GPU per call
    model = run.model(**({"IMAGES_PER_GPU": batch} if batch > 1 else {}))
    return CheckpointPredictor(model, run.meta, run.checkpoint)

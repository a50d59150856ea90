"""Open any export of mrcnn.export by its directory: which format it is, its labels and
a runner on the runtime that runs it.

    loaded = open_export("export/onnx")          # or a SavedModel / OpenVINO directory
    print(loaded.format, loaded.runtime)          # onnx, "onnxruntime 1.32.0 (CPU)"
    result = to_results(loaded.run(image), [image.shape])[0]      # detect()-like

Formats are told apart by their files: ``saved_model.pb`` (in the directory or its
highest numeric version directory), ``model.onnx``, ``model.xml`` (OpenVINO IR),
``model.tflite``; a path to one of those files works too.
"""
import json
import os

import numpy as np

from mrcnn.export.metadata import ExportError

MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml", "tflite": "model.tflite"}


class LoadedExport:
    """format, path (the model file or SavedModel directory), labels (labels.json),
    runtime (what runs it, with its version) and run(image uint8 [H, W, 3]) -> the
    exports' outputs dict."""

    def __init__(self, fmt, path, labels, runtime, run):
        self.format, self.path, self.labels = fmt, path, labels
        self.runtime, self.run = runtime, run

    @property
    def precision(self):
        return self.labels.get("precision", "float32")


def saved_model_dir(path):
    """PATH itself when it holds saved_model.pb, else its highest numeric version, else
    None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted(int(d) for d in os.listdir(path) if d.isdigit()
                      and os.path.isfile(os.path.join(path, d, "saved_model.pb")))
    return os.path.join(path, str(versions[-1])) if versions else None


def find_export(path):
    """(format, model path) of an export directory or model file; ExportError naming
    what was looked for when there is none."""
    path = os.fspath(path)
    if os.path.isfile(path):
        for fmt, name in MODEL_FILES.items():
            if path.endswith(os.path.splitext(name)[1]):
                return fmt, path
    elif os.path.isdir(path):
        directory = saved_model_dir(path)
        if directory:
            return "saved_model", directory
        for fmt, name in MODEL_FILES.items():
            if os.path.isfile(os.path.join(path, name)):
                return fmt, os.path.join(path, name)
    raise ExportError(f"{path} holds no export (saved_model.pb or <version>/saved_model.pb, "
                      "model.onnx, model.xml or model.tflite); write one with "
                      "MaskRCNN.export or mrcnn.export.export.")


def _labels(fmt, path):
    where = os.path.join(path, "assets") if fmt == "saved_model" else os.path.dirname(path)
    labels = os.path.join(where, "labels.json")
    try:
        with open(labels, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"{labels} cannot be read ({e}); export the model again "
                          "(MaskRCNN.export).") from None


def _saved_model(path):
    import tensorflow as tf
    fn = tf.saved_model.load(path).signatures["image_tensor"]

    def run(image):
        out = fn(images=tf.constant(np.asarray(image, np.uint8)[None]))
        return {k: v.numpy() for k, v in out.items()}
    run.signature = fn                      # batches: fn(images=uint8 [B, H, W, 3])
    return f"TensorFlow {tf.__version__} (SavedModel image_tensor)", run


def open_export(path, precision=None):
    """A LoadedExport of the export at path; precision: OpenVINO's inference precision
    (f32 by default, bf16, auto)."""
    fmt, model_path = find_export(path)
    labels = _labels(fmt, model_path)
    if fmt == "saved_model":
        runtime, run = _saved_model(model_path)
    elif fmt == "onnx":
        from mrcnn.export import onnx as onnx_export
        sess, run = onnx_export.load(model_path)
        import onnxruntime
        runtime = f"onnxruntime {onnxruntime.__version__} ({sess.get_providers()[0]})"
    elif fmt == "openvino":
        from mrcnn.export import openvino as openvino_export
        run = openvino_export.load(model_path, precision or "f32")
        import openvino
        runtime = (f"OpenVINO {openvino.__version__.split('-')[0]} (CPU, "
                   f"{precision or 'f32'})")
    else:
        from mrcnn.export import tflite
        run = tflite.load(model_path)
        import tensorflow as tf
        runtime = f"TFLite (tf.lite.Interpreter {tf.__version__})"
    if labels.get("precision") == "int8":
        runtime += ", int8 model"
    return LoadedExport(fmt, model_path, labels, runtime, run)

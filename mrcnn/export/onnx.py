"""ONNX export through tf2onnx, run with onnxruntime.

    DIR/model.onnx   input "images" uint8 [1, H, W, 3] (any H, W), outputs by name
    DIR/labels.json  (see mrcnn.export.metadata)

    sess = onnxruntime.InferenceSession("DIR/model.onnx")
    names = [o.name for o in sess.get_outputs()]
    outputs = dict(zip(names, sess.run(None, {"images": image[None]})))
    result = mrcnn.export.results.to_results(outputs, [image.shape])[0]

One image per call (the batch dimension is 1). The model must compute in float32:
ONNX Runtime has no bfloat16 / float16 convolution that matches TensorFlow's.
"""
import logging
import os
import re

import numpy as np
import tensorflow as tf

from mrcnn.export import preprocess
from mrcnn.export.extras import require
from mrcnn.export.metadata import ExportError
from mrcnn.export.saved_model import image_fn
from mrcnn.export.verify import check_against_tf
from mrcnn.fileio import atomic_directory, write_json
from mrcnn.ops.portable import portable

OPSET = 17
SINGLE_IMAGE_SPEC = tf.TensorSpec([1, None, None, 3], tf.uint8, name="images")


def require_float32(model, fmt):
    """Raises ExportError when any layer computes in another dtype than float32."""
    for layer in model.keras_model.layers:
        dtype = getattr(layer, "compute_dtype", "float32")
        if layer.weights and dtype != "float32":
            raise ExportError(
                f"Layer {layer.name} computes in {dtype} (MIXED_PRECISION), which {fmt} "
                "cannot run as TensorFlow does; build the inference model with "
                "MIXED_PRECISION='float32' and export again.")


def single_image_fn(model, mul=tf.multiply, ties=False):
    """The one-image function that ONNX (tf.multiply) and TFLite (MulNoNan) convert;
    ties=True: the self-checks' reference (TensorFlow only, see mrcnn.export.ties)."""
    return tf.function(image_fn(model.keras_model, model.config, mul, ties),
                       input_signature=[SINGLE_IMAGE_SPEC], autograph=False)


def _session(model_bytes):
    ort = require("onnxruntime", "Running an ONNX model")
    try:
        return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception classes
        text = " ".join(str(e).split())
        op = re.search(r"No Op registered for (\w+)", text)
        if op:
            raise ExportError(f"ONNX cannot express the TensorFlow op {op.group(1)} here "
                              "(tf2onnx left it unconverted); the export was not "
                              "written.") from None
        raise ExportError(f"onnxruntime rejects the converted model: {text[:300]}.") from None


def convert(model, opset=OPSET, output_path=None):
    """The ONNX ModelProto of model's one-image function, traced under
    mrcnn.ops.portable (ops onnxruntime and OpenVINO run fast; the same numbers)."""
    tf2onnx = require("tf2onnx", "The ONNX export")
    require("onnx", "The ONNX export")
    require_float32(model, "ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)     # no per-node INFO lines
    with portable():
        proto, _ = tf2onnx.convert.from_function(
            single_image_fn(model), input_signature=[SINGLE_IMAGE_SPEC], opset=opset,
            output_path=output_path)
    return proto


def reference_fn(model):
    """The TensorFlow function converted models are checked against, with tie outputs.

    It is the SavedModel's function (MulNoNan), which equals detect(): run by
    TensorFlow, tf.multiply resize taps are reordered by Grappler's arithmetic
    optimizer (a pixel of a downscaled image can end one level off), while onnxruntime
    computes them in the written order, as numpy does."""
    return single_image_fn(model, mul=preprocess.EXACT_MUL, ties=True)


def export_onnx(model, path, meta, opset=OPSET):
    """Writes PATH/model.onnx and PATH/labels.json; returns the .onnx path."""
    with atomic_directory(path) as tmp:
        target = os.path.join(tmp, "model.onnx")
        proto = convert(model, opset, output_path=target)
        sess = _session(proto.SerializeToString())
        names = [o.name for o in sess.get_outputs()]
        check = check_against_tf(
            reference_fn(model), lambda x: dict(zip(names, sess.run(None, {"images": x}))),
            model.config, "ONNX")
        write_json(os.path.join(tmp, "labels.json"), dict(
            meta, input="images uint8 [1, H, W, 3]", opset=opset, self_check=check,
            runtime="onnxruntime"))
    return os.path.join(path, "model.onnx")


def load(path):
    """(onnxruntime session, run(image) -> outputs dict) for PATH/model.onnx."""
    ort = require("onnxruntime", "Running an ONNX model")
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(image):
        batch = np.asarray(image, np.uint8)[None]
        return dict(zip(names, sess.run(None, {"images": batch})))
    return sess, run

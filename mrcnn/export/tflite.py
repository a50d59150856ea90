"""TFLite export through the TFLite converter, run with the TFLite interpreter.

    DIR/model.tflite  input "images" uint8 [1, H, W, 3] (resize the input tensor to the
                      image's size before allocating), outputs by name
    DIR/labels.json   (see mrcnn.export.metadata)

The graph keeps TensorFlow ops where TFLite has no exact builtin (the float64 resize
and box arithmetic that reproduce detect() bit for bit, CropAndResize, DynamicPartition,
DynamicStitch, Cumprod): SELECT_TF_OPS, so it needs an interpreter linked with the Flex
delegate (Android: tensorflow-lite-select-tf-ops). The export runs the converted model
on probe images and compares it with TensorFlow; where no Flex-capable interpreter is
installed (TF 2.21's tf.lite.Interpreter and ai-edge-litert 2.3 pip wheels have none)
that check cannot run and the export fails with ExportError instead of writing an
unverified model. The model must compute in float32.
"""
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from mrcnn.export import preprocess
from mrcnn.export.metadata import ExportError
from mrcnn.export.onnx import SINGLE_IMAGE_SPEC, require_float32, single_image_fn
from mrcnn.export.saved_model import image_fn, write_archive
from mrcnn.export.verify import check_against_tf
from mrcnn.fileio import atomic_directory, write_json


def convert(saved_model_dir):
    """TFLite flatbuffer bytes of a SavedModel's serving_default (builtins + select TF
    ops, no quantization or other optimization that changes numbers)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    converter.optimizations = []
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError and others
        text = " ".join(str(e).split())
        op = re.search(r"'(tfl\.\w+|tf\.\w+)' op", text)
        raise ExportError(f"The TFLite converter cannot express "
                          f"{op.group(1) if op else 'an op'} exactly ({text[:200]}); the "
                          "export was not written.") from None


def runner(model_content=None, model_path=None):
    """run(image batch uint8 [1, H, W, 3]) -> outputs dict, on tf.lite.Interpreter."""
    interpreter = tf.lite.Interpreter(model_content=model_content, model_path=model_path,
                                      num_threads=os.cpu_count())
    runner_fn = interpreter.get_signature_runner()

    def run(batch):
        try:
            out = runner_fn(images=np.asarray(batch, np.uint8))
        except RuntimeError as e:
            flex = re.search(r"\((Flex\w+)\)", str(e))
            if flex is None:
                raise
            raise ExportError(
                f"The TFLite model needs TensorFlow select ops ({flex.group(1)}: float64 "
                "resize and box arithmetic, CropAndResize, DynamicPartition) and this "
                "TFLite interpreter has no Flex delegate to run them; use an interpreter "
                "linked with the Flex delegate.") from None
        return {k: np.asarray(v) for k, v in out.items()}
    return run


def export_tflite(model, path, meta):
    """Writes PATH/model.tflite and PATH/labels.json; returns the .tflite path."""
    require_float32(model, "TFLite")
    fn = single_image_fn(model, preprocess.EXACT_MUL, ties=True)
    with atomic_directory(path) as tmp:
        staging = os.path.join(tmp, "saved_model")             # the converter's input
        write_archive(model, staging, {"serving_default": (
            image_fn(model.keras_model, model.config), SINGLE_IMAGE_SPEC)})
        content = convert(staging)
        shutil.rmtree(staging)
        check_against_tf(fn, runner(model_content=content), model.config, "TFLite")
        with open(os.path.join(tmp, "model.tflite"), "wb") as f:
            f.write(content)
        write_json(os.path.join(tmp, "labels.json"),
                   dict(meta, input="images uint8 [1, H, W, 3]",
                        runtime="tf.lite.Interpreter (Flex delegate for select TF ops)"))
    return os.path.join(path, "model.tflite")


def load(path):
    """run(image uint8 [H, W, 3]) -> outputs dict for PATH/model.tflite."""
    run = runner(model_path=os.fspath(path))
    return lambda image: run(np.asarray(image, np.uint8)[None])

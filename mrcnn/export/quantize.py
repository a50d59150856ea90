"""int8 exports with an accuracy guard: post-training static quantization of the ONNX
model (onnxruntime's quantize_static) or of the OpenVINO IR (NNCF), written only when
the caller's accuracy measure of the int8 model stays within a margin of float32's.

    info = export_int8(model, "export/onnx-int8", "onnx", calibration_images,
                       evaluate=lambda run: segm_ap(run), max_drop=0.01)

``evaluate(run)`` gets ``run(image uint8 [H, W, 3]) -> outputs dict`` (as every export's
runner) and returns a number where higher is better (e.g. segm AP on val images); it
is called for the float32 and the int8 model. Only convolutions and matrix products are
quantized (per-channel int8 weights, uint8 activations calibrated by min/max on the
calibration images); box arithmetic, ROI align, NMS and the preprocessing stay float,
and so do the heads' last layers (FLOAT32_LAYERS: RPN objectness and deltas, class
logits, box deltas, attribute logits, mask logits), which are cheap and which int8
would round where it shows.
"""
import contextlib
import json
import logging
import os
import re
import shutil
import tempfile

import numpy as np

from mrcnn.export.extras import require
from mrcnn.export.metadata import ExportError
from mrcnn.export.runtime import MODEL_FILES
from mrcnn.fileio import atomic_directory, write_json

FLOAT32_LAYERS = ("rpn_class_raw", "rpn_bbox_pred", "mrcnn_class_logits", "mrcnn_bbox_fc",
                  "mrcnn_attr_logits", "mrcnn_mask", "mrcnn_point_head")
# OpenVINO node types NNCF would otherwise quantize (it quantizes elementwise inputs
# too, which would round the box arithmetic and the ROI align interpolation).
OPENVINO_FLOAT_TYPES = ("Add", "Multiply", "Subtract", "Divide", "Sqrt", "LessEqual",
                        "Squeeze", "Unsqueeze", "Transpose", "Reshape", "Gather",
                        "GatherND", "Concat")


class QuantizationRefused(ExportError):
    """The int8 model lost more than the allowed accuracy; nothing was written.
    ``info`` holds the figures (see export_int8)."""

    def __init__(self, message, info):
        super().__init__(message)
        self.info = info


def layer_pattern(layers=FLOAT32_LAYERS):
    """Regex matching graph node names of the given Keras layers (tf2onnx and OpenVINO
    keep the layer's name scope, with Keras' _N suffix)."""
    names = "|".join(re.escape(name) for name in layers)
    return f"(^|/)({names})(_\\d+)?/" if layers else "(?!)"


def quantize_onnx(float_path, out_path, images, keep_float=FLOAT32_LAYERS):
    """Writes the QDQ int8 model of float_path (an ONNX export) to out_path, calibrated
    on images (uint8 [H, W, 3]); returns the names of nodes left in float32."""
    onnx = require("onnx", "The int8 ONNX export")
    quant = require("onnxruntime.quantization", "The int8 ONNX export")
    pattern = re.compile(layer_pattern(keep_float))
    graph = onnx.load(float_path).graph
    keep = [n.name for n in graph.node if pattern.search(n.name)
            and n.op_type in ("Conv", "MatMul", "Gemm")]

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(images)

        def get_next(self):
            image = next(self._feeds, None)
            return None if image is None else {"images": np.asarray(image, np.uint8)[None]}

    try:
        with _quiet_logging():            # the quantizer logs every bias copy at INFO
            quant.quantize_static(
                float_path, out_path, Reader(), quant_format=quant.QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                activation_type=quant.QuantType.QUInt8, weight_type=quant.QuantType.QInt8,
                nodes_to_exclude=keep, calibrate_method=quant.CalibrationMethod.MinMax)
    except AssertionError as e:
        # A tensor that is empty (no detection, so the mask head never ran) or NaN on
        # every calibration image has no range: onnxruntime asserts "scale issue".
        raise ExportError(
            f"The int8 calibration could not measure every layer's range ({e}): some "
            "layers saw no values (no detections) or only NaN on the calibration "
            "images; calibrate on more images (--calibration-images) where this model "
            "detects garments.") from e
    return keep


@contextlib.contextmanager
def _quiet_logging(level=logging.WARNING):
    root = logging.getLogger()
    previous = root.level
    root.setLevel(max(level, previous))
    try:
        yield
    finally:
        root.setLevel(previous)


def quantize_openvino(xml_path, out_dir, images, config, keep_float=FLOAT32_LAYERS):
    """Writes OUT_DIR/model.xml, the NNCF int8 model of xml_path (an OpenVINO export),
    calibrated on images molded as detect() molds them; returns the ignored patterns."""
    ov = require("openvino", "The int8 OpenVINO export")
    nncf = require("nncf", "The int8 OpenVINO export")
    from mrcnn.export.openvino import INPUTS, save
    from mrcnn.inference import mold_inputs

    def transform(image):
        molded, metas, _ = mold_inputs([np.asarray(image, np.uint8)], config)
        return {INPUTS[0]: molded.astype(np.float32), INPUTS[1]: metas.astype(np.float32)}

    patterns = [f".*{layer_pattern(keep_float)}.*"] if keep_float else []
    scope = nncf.IgnoredScope(patterns=patterns, types=list(OPENVINO_FLOAT_TYPES),
                              validate=False)
    nncf.set_log_level(logging.WARNING)
    quantized = nncf.quantize(ov.Core().read_model(xml_path),
                              nncf.Dataset(list(images), transform),
                              subset_size=len(images), ignored_scope=scope)
    save(quantized, out_dir)
    return patterns


def _float_export(model, directory, fmt, names):
    """The checked float32 export in directory -> (model file, run(image))."""
    from mrcnn.export import export
    path = export(model, directory, fmt, **names)
    return path, runner(fmt, path, model.config)


def runner(fmt, path, config=None):
    """run(image uint8 [H, W, 3]) -> outputs dict of an ONNX or OpenVINO model file."""
    if fmt == "onnx":
        from mrcnn.export import onnx as onnx_export
        return onnx_export.load(path)[1]
    from mrcnn.export import openvino as openvino_export
    return openvino_export.load(path, config=config)


def export_int8(model, path, fmt, calibration_images, evaluate, max_drop=0.01,
                force=False, keep_float=FLOAT32_LAYERS, report=print, float_export=None,
                **names):
    """Quantizes model's float32 `fmt` export ("onnx" or "openvino") on
    calibration_images, evaluates both with evaluate(run), and writes the int8 export
    (model file + labels.json with the figures under "int8") to path when its score is
    at most max_drop below float32's, or with force. names: class_names,
    attribute_names, metadata as for export(). float_export: the directory of this
    model's checked float32 `fmt` export when one was just written (`benchmark` has
    one), used instead of converting and checking the model again. Returns a dict:
    float32, int8, difference, max_drop, calibration_images, kept_float32, written,
    forced, path. Raises QuantizationRefused (nothing written) otherwise."""
    if fmt not in ("onnx", "openvino"):
        raise ExportError(f"int8 exports are made for onnx and openvino, not {fmt}.")
    if not len(calibration_images):
        raise ExportError("int8 quantization needs calibration images; none were given.")
    work = tempfile.mkdtemp(prefix="int8.")
    try:
        if float_export is not None:
            float_path = os.path.join(float_export, MODEL_FILES[fmt])
            float_run = runner(fmt, float_path, model.config)
        else:
            float_path, float_run = _float_export(model, os.path.join(work, "float32"),
                                                  fmt, names)
        int8_dir = os.path.join(work, "int8")
        os.makedirs(int8_dir)
        if fmt == "onnx":
            kept = quantize_onnx(float_path, os.path.join(int8_dir, "model.onnx"),
                                 calibration_images, keep_float)
            int8_path = os.path.join(int8_dir, "model.onnx")
        else:
            kept = quantize_openvino(float_path, int8_dir, calibration_images, model.config,
                                     keep_float)
            int8_path = os.path.join(int8_dir, "model.xml")
        report(f"evaluating the float32 {fmt} model ...")
        float_score = float(evaluate(float_run))
        report(f"evaluating the int8 {fmt} model ...")
        int8_score = float(evaluate(runner(fmt, int8_path, model.config)))
        info = {"float32": float_score, "int8": int8_score,
                "difference": int8_score - float_score, "max_drop": max_drop,
                "calibration_images": len(calibration_images), "kept_float32": kept,
                "written": force or int8_score >= float_score - max_drop, "forced": force}
        if not info["written"]:
            raise QuantizationRefused(
                f"The int8 {fmt} model scores {int8_score:.4f} against float32's "
                f"{float_score:.4f} ({info['difference']:+.4f}, more than {max_drop} "
                "lower), so it was not written.", info)
        with open(os.path.join(os.path.dirname(float_path), "labels.json"),
                  encoding="utf-8") as f:
            labels = dict(json.load(f), precision="int8", int8=info)
        with atomic_directory(path) as tmp:
            for name in os.listdir(int8_dir):
                shutil.copy(os.path.join(int8_dir, name), os.path.join(tmp, name))
            write_json(os.path.join(tmp, "labels.json"), labels)
        info["path"] = os.path.join(path, os.path.basename(int8_path))
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)

"""Exports of an inference MaskRCNN: TF SavedModel (TF Serving), ONNX, OpenVINO IR and
TFLite.

    model.export("export/fashion", format="saved_model")   # export/fashion/1/ (TF Serving)
    model.export("export/onnx", format="onnx")             # model.onnx + labels.json
    model.export("export/openvino", format="openvino")     # model.xml/.bin + labels.json
    model.export("export/tflite", format="tflite")         # model.tflite + labels.json

Every format takes uint8 images and returns ``detect()``'s detections (see
``mrcnn.export.serving`` for the outputs, ``mrcnn.export.results`` for full-image
masks and RLE in numpy). Decoding, resizing, mean subtraction, image meta and anchors
are inside the exported graph. Writes are atomic (``mrcnn.fileio``).
"""
import os

from mrcnn.export.metadata import ExportError, labels_metadata

FORMATS = ("saved_model", "onnx", "openvino", "tflite")

__all__ = ["FORMATS", "ExportError", "export", "labels_metadata"]


def export(model, path, format="saved_model", class_names=None, attribute_names=None,
           **options):
    """Writes `model` (an inference-mode MaskRCNN) to `path` in `format`; returns the
    path of the written model (the SavedModel's version directory, the .onnx or the
    .tflite file). options: metadata (a JSON-able dict stored in labels.json under
    "extra"), version (SavedModel version directory, default 1)."""
    if format not in FORMATS:
        raise ExportError(f"Export format {format!r} is unknown; use one of "
                          f"{', '.join(FORMATS)}.")
    if getattr(model, "mode", "inference") != "inference":
        raise ExportError("Only inference-mode models can be exported; build "
                          "MaskRCNN(mode='inference', ...) and load the weights into it.")
    if model.config.IMAGE_RESIZE_MODE != "square":
        raise ExportError(f"IMAGE_RESIZE_MODE {model.config.IMAGE_RESIZE_MODE!r} cannot be "
                          "exported; exports resize in 'square' mode, set it before "
                          "building the model.")
    meta = labels_metadata(model.config, class_names, attribute_names, format,
                           options.pop("metadata", None))
    path = os.fspath(path)
    if format == "saved_model":
        from mrcnn.export.saved_model import export_saved_model
        return export_saved_model(model, path, meta, **options)
    if format == "onnx":
        from mrcnn.export.onnx import export_onnx
        return export_onnx(model, path, meta, **options)
    if format == "openvino":
        from mrcnn.export.openvino import export_openvino
        return export_openvino(model, path, meta, **options)
    from mrcnn.export.tflite import export_tflite
    return export_tflite(model, path, meta, **options)

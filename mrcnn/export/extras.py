"""Optional runtimes: onnxruntime (with tf2onnx and onnx) and OpenVINO (with NNCF) are
extras of the package; a missing one is named with the extra that installs it."""
import importlib

from mrcnn.export.metadata import ExportError

EXTRAS = {"onnxruntime": "onnx", "tf2onnx": "onnx", "onnx": "onnx",
          "openvino": "openvino", "nncf": "openvino"}


def require(module, purpose):
    """Imports module (e.g. "onnxruntime"), or raises ExportError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module.split(".")[0]]
        raise ExportError(f"{purpose} needs {module.split('.')[0]}, which is not "
                          f"installed; install the {extra} extra: pip install "
                          f"'fashion-mrcnn[{extra}]' (in a checkout: pip install -e "
                          f"'.[{extra}]').") from None


def require_format(fmt, int8=False):
    """Raises ExportError naming the extra when a module `fmt` needs is missing."""
    needs = {"onnx": ("tf2onnx", "onnx", "onnxruntime"),
             "openvino": ("tf2onnx", "onnx", "openvino") + (("nncf",) if int8 else ())}
    for module in needs.get(fmt, ()):
        require(module, f"The {'int8 ' if int8 else ''}{fmt} export")

"""OpenVINO IR export through OpenVINO's own converter, run with OpenVINO Runtime.

    DIR/model.xml, DIR/model.bin   the model on one molded image (below)
    DIR/labels.json                (see mrcnn.export.metadata)

    run = mrcnn.export.openvino.load("DIR/model.xml")      # image -> outputs dict
    result = mrcnn.export.results.to_results(run(image), [image.shape])[0]

OpenVINO's CPU plugin computes float64 in float32, and the exact resize and box
arithmetic of the other exports are float64 (a resized pixel would land one level off
detect()'s, a box a pixel off at a .5). So the IR holds the model from the molded image
on, and ``load()`` molds and unmolds with detect()'s own numpy code around it:

- inputs ``images`` float32 [1, S, S, 3] (``mrcnn.inference.mold_inputs``: resized,
  padded, mean subtracted) and ``image_meta`` float32 [1, META];
- outputs ``detections`` [1, D, 6] (y1, x1, y2, x2 normalised in the molded image,
  class id, score), ``detection_masks`` [1, D, h, w] (the detected class's mask) and,
  with an attribute head, ``detection_attributes`` [1, D, A].

``openvino.convert_model`` converts that graph, traced for converted runtimes
(``mrcnn.ops.portable``), from its ONNX form (OpenVINO 2026.4's TensorFlow frontend
crashes on the SavedModel of it); ``openvino.save_model`` writes it with float32
weights. On CPUs with bfloat16
(AVX512_BF16, AMX) OpenVINO computes in bfloat16 unless compiled with
``INFERENCE_PRECISION_HINT`` f32: the export's check and ``load()`` use f32, which
reproduces TensorFlow; ``load(path, precision="bf16")`` trades that for speed.

Two of OpenVINO's own liberties would still move detections at f32, and both are
undone here: its TopK orders equal values its own way (the IR's TopKs are made
``stable``, as TensorFlow's top_k and ONNX's TopK are), and its graph transformations
turn a / b into a * (1 / b) (``compile_model`` marks every float Divide to stay a
division). What remains are float32 rounding differences of its kernels (convolution
sums, exp), a few units in the last place.
"""
import os

import numpy as np

from mrcnn.export.extras import require
from mrcnn.export.metadata import ExportError
from mrcnn.export.verify import check_against_tf
from mrcnn.fileio import atomic_directory, write_json

INPUTS = ("images", "image_meta")
PRECISIONS = {"f32": "f32", "bf16": "bf16", "auto": None}


def compile_model(model, precision="f32", device="CPU"):
    """An openvino.CompiledModel of model (ov.Model or .xml path) on the CPU; precision
    f32 (TensorFlow's numbers), bf16, or auto (OpenVINO's default for this CPU)."""
    ov = require("openvino", "Running an OpenVINO model")
    if precision not in PRECISIONS:
        raise ExportError(f"OpenVINO precision {precision!r} is unknown; use one of "
                          f"{', '.join(PRECISIONS)}.")
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision]} if PRECISIONS[precision] \
        else {}
    core = ov.Core()
    if not isinstance(model, ov.Model):
        model = core.read_model(os.fspath(model))
    return core.compile_model(exact_divisions(model), device, config)


def molded_fn(model):
    """(tf.function on (molded images [1, S, S, 3], image_meta [1, META]) -> the IR's
    outputs, its input specs)."""
    import tensorflow as tf
    from mrcnn.export.serving import detected_class_masks, run_model
    config = model.config
    side = int(config.IMAGE_MAX_DIM)
    specs = [tf.TensorSpec([1, side, side, 3], tf.float32, name=INPUTS[0]),
             tf.TensorSpec([1, int(config.IMAGE_META_SIZE)], tf.float32, name=INPUTS[1])]

    def molded(images, image_meta):
        det, masks, attrs = run_model(model.keras_model, config, images, image_meta)
        masks = detected_class_masks(masks, tf.cast(det[..., 4], tf.int32))  # [1, D, h, w]
        out = {"detections": det, "detection_masks": masks}
        if attrs is not None:
            out["detection_attributes"] = attrs
        return out
    return tf.function(molded, input_signature=specs, autograph=False), specs


def unmold(raw, image_shape, meta, config):
    """The IR's outputs for one image -> the outputs of the other exports
    (mrcnn.export.serving), with unmold_detections' numpy box arithmetic."""
    from mrcnn.inference import boxes_to_original
    from mrcnn.meta import parse_image_meta
    det = np.asarray(raw["detections"])[0]                              # [D, 6]
    d = det.shape[0]
    zero = np.where(det[:, 4] == 0)[0]
    n = int(zero[0]) if zero.size else d
    fields = parse_image_meta(meta[None])
    boxes = boxes_to_original(det[:n, :4], fields["window"][0], fields["image_shape"][0],
                              image_shape)
    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    rows = [("detection_boxes", boxes[keep]), ("detection_classes", det[keep, 4]),
            ("detection_scores", det[keep, 5]),
            ("detection_masks", np.asarray(raw["detection_masks"])[0, keep])]
    if "detection_attributes" in raw:
        rows.append(("detection_attributes", np.asarray(raw["detection_attributes"])[0, keep]))
    out = {"num_detections": np.array([len(keep)], np.int32)}
    for name, value in rows:
        dtype = np.int32 if name == "detection_classes" else np.float32
        full = np.zeros((1, d) + value.shape[1:], dtype)
        full[0, :len(keep)] = value
        out[name] = full
    return out


def runner(compiled, config):
    """run(image batch uint8 [1, H, W, 3]) -> the exports' outputs dict: detect()'s
    numpy molding, the compiled IR, detect()'s numpy unmolding."""
    from mrcnn.inference import mold_inputs
    request = compiled.create_infer_request()
    outputs = [(o.get_any_name(), o) for o in compiled.outputs]

    def run(batch):
        image = np.asarray(batch, np.uint8)[0]
        molded, metas, _ = mold_inputs([image], config)
        result = request.infer({INPUTS[0]: molded.astype(np.float32),
                                INPUTS[1]: metas.astype(np.float32)})
        raw = {name: result[o] for name, o in outputs}
        return unmold(raw, image.shape, metas[0], config)
    return run


def _from_onnx(model, tmp):
    """ov.Model converted from the ONNX form of the portable molded-image function."""
    ov = require("openvino", "The OpenVINO export")
    tf2onnx = require("tf2onnx", "The OpenVINO export")
    from mrcnn.export.onnx import OPSET
    from mrcnn.ops.portable import portable
    staging = os.path.join(tmp, "staging.onnx")
    fn, specs = molded_fn(model)
    with portable():
        tf2onnx.convert.from_function(fn, input_signature=specs, opset=OPSET,
                                      output_path=staging)
    converted = ov.convert_model(staging)
    os.remove(staging)
    return stable_topk(converted)


NONCONVERTIBLE_DIVIDE = "nonconvertable_divide_0"   # OpenVINO's rt_info key, spelt so


def exact_divisions(ov_model):
    """ov_model with every floating-point Divide marked to stay a division; returns it.

    OpenVINO's graph transformations otherwise rewrite a / b as a * b^-1, which rounds
    differently. ROI align's sample positions divide a box's extent by the samples
    minus one (as TensorFlow's crop_and_resize kernel does); a position one rounding
    step past the feature map's last pixel reads zero instead of that pixel, so a box
    touching the image's edge could get another crop, class score and box (a score off
    by 0.08 on a 256 px ResNet18 run's probe image). The mark is runtime information,
    not saved in model.xml: ``compile_model`` sets it on every model it compiles."""
    for node in ov_model.get_ordered_ops():
        if node.get_type_name() == "Divide" and node.get_output_element_type(0).is_real():
            node.get_rt_info()[NONCONVERTIBLE_DIVIDE] = True
    return ov_model


def stable_topk(ov_model):
    """ov_model with every TopK stable (equal values keep their input order), as
    TensorFlow's top_k and ONNX's TopK order them; returns ov_model.

    OpenVINO's ONNX frontend makes TopK-11 nodes with ``stable`` false, and its CPU
    plugin then orders equal values its own way. The proposal layer's top-k over the
    RPN scores meets such ties (saturated scores round to one float32 value), so the
    proposals kept, then NMS's choices, then a detection's box and score, could
    differ from TensorFlow's at full float32 precision (a box off by 11 px and a score
    by 0.08 on a 256 px ResNet18 run's probe image).

    A stable TopK costs OpenVINO's CPU plugin ~100x an unstable one, so the TopKs of
    keys that are unique by construction (PointRend's choice of cells, named
    ``mrcnn.ops.points.UNIQUE_KEYS_TOPK``) are left as they are."""
    from mrcnn.ops.points import UNIQUE_KEYS_TOPK
    for node in ov_model.get_ordered_ops():
        if node.get_type_name() == "TopK" and "stable" in node.get_attributes() \
                and UNIQUE_KEYS_TOPK not in node.get_friendly_name():
            node.set_attribute("stable", True)
    ov_model.validate_nodes_and_infer_types()
    return ov_model


def to_openvino(model, tmp):
    """The ov.Model of an inference MaskRCNN, converted by OpenVINO from the ONNX form
    of its molded-image graph (staged in tmp)."""
    from mrcnn.export.onnx import require_float32
    require_float32(model, "OpenVINO")
    try:
        return _from_onnx(model, tmp)
    except ExportError:
        raise
    except Exception as e:  # OpenVINO's converter raises its own error classes
        text = " ".join(str(e).split())
        raise ExportError(f"OpenVINO cannot convert the model ({text[:300]}); the export "
                          "was not written.") from None


def save(ov_model, directory):
    """Writes DIR/model.xml + model.bin with float32 weights; returns the .xml path."""
    ov = require("openvino", "The OpenVINO export")
    target = os.path.join(directory, "model.xml")
    ov.save_model(ov_model, target, compress_to_fp16=False)
    return target


def export_openvino(model, path, meta):
    """Writes PATH/model.xml, model.bin and labels.json; returns the .xml path."""
    from mrcnn.export.onnx import reference_fn
    with atomic_directory(path) as tmp:
        ov_model = to_openvino(model, tmp)
        check = check_against_tf(reference_fn(model),
                                 runner(compile_model(ov_model), model.config),
                                 model.config, "OpenVINO")
        save(ov_model, tmp)
        write_json(os.path.join(tmp, "labels.json"), dict(
            meta, self_check=check,
            input="images float32 [1, S, S, 3] molded (mrcnn.inference.mold_inputs), "
                  "image_meta float32 [1, META]",
            ir_outputs="detections [1, D, 6] normalised in the molded image, "
                       "detection_masks [1, D, h, w], detection_attributes [1, D, A]",
            runtime="OpenVINO Runtime (CPU, INFERENCE_PRECISION_HINT f32)"))
    return os.path.join(path, "model.xml")


def load(path, precision="f32", config=None):
    """run(image uint8 [H, W, 3]) -> the exports' outputs dict for PATH/model.xml (the
    molding settings come from the labels.json beside it unless config is given)."""
    if config is None:
        config = config_from_labels(os.path.join(os.path.dirname(os.fspath(path)),
                                                 "labels.json"))
    run = runner(compile_model(os.fspath(path), precision), config)
    return lambda image: run(np.asarray(image, np.uint8)[None])


def config_from_labels(path):
    """The Config stored in an export's labels.json (its molding settings)."""
    import json
    from mrcnn.config import Config
    from mrcnn.config_io import values_to_overrides
    with open(path, encoding="utf-8") as f:
        values = values_to_overrides(json.load(f)["config"])
    return type("ExportedConfig", (Config,), values)()

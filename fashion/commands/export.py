"""`export`: write a trained model as a TF SavedModel (TF Serving), ONNX, OpenVINO IR or
TFLite, or (--int8) as an int8 ONNX / OpenVINO model guarded by its accuracy.

The export takes images and returns detect()'s detections (decoding, resizing, molding
and anchors are inside the graph; OpenVINO's runner molds with detect()'s numpy code);
labels.json (class and attribute names, category ids, the config, the input size)
travels with it. The model is built in float32 for the export (ONNX, OpenVINO and
TFLite have no bfloat16 convolution that matches TensorFlow's).
"""
import argparse
import json
import os

from fashion.cli_args import FORMATS, add_model_args
from fashion.errors import CLIError

EXPORT_FORMATS = ("saved_model", "onnx", "openvino", "tflite")
MAX_AP_DROP = 0.01      # --int8 writes only when segm AP drops at most this much

EXAMPLES = """examples:
  python fashion/fashion.py export --weights last --format saved_model --out export/fashion
      # export/fashion/1/ : serve with TF Serving (MODEL_BASE_PATH=export, MODEL_NAME=fashion)
  python fashion/fashion.py export --weights last --format onnx --out export/onnx
  python fashion/fashion.py export --weights last --format openvino --out export/openvino
  python fashion/fashion.py export --weights best --format openvino --int8 --calibration \\
      --calibration-images 64 --limit 200 --out export/openvino-int8
      # calibrates on 64 val images of the run's dataset, writes only when segm AP on
      # 200 val images stays within 0.01 of float32's (--force writes anyway)
  python fashion/fashion.py export --weights logs/fashion20250101T1200/mask_rcnn_fashion_0040.h5 \\
      --format tflite --out export/tflite
"""


def add_parser(subparsers, parents):
    from fashion.commands.export_eval import add_val_data_args
    p = subparsers.add_parser(
        "export", parents=parents,
        help="export a model: SavedModel, ONNX, OpenVINO or TFLite (int8 with --int8)",
        description="Writes DIR/1/ (SavedModel with signatures serving_default: encoded "
        "images, image_tensor: uint8 [B, H, W, 3]), DIR/model.onnx, DIR/model.xml "
        "(OpenVINO IR) or DIR/model.tflite, each with labels.json; the outputs are "
        "detect()'s detections (num_detections, detection_boxes, detection_classes, "
        "detection_scores, detection_masks, detection_attributes).", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, data_flags=False)
    p.add_argument("--format", dest="export_format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--version", type=int, default=1,
                   help="SavedModel version directory under --out (default 1)")
    p.add_argument("--label-set", dest="format", default=None, choices=FORMATS,
                   help="label set when the weights have no fashion_run.json beside them")
    g = p.add_argument_group(
        "int8", "post-training static quantization (onnx: onnxruntime, openvino: NNCF), "
        f"written only when segm AP stays within {MAX_AP_DROP} of float32's")
    g.add_argument("--int8", action="store_true", help="quantize to int8 (onnx, openvino)")
    add_val_data_args(g, "--calibration", "val split to calibrate and check on: a "
                      "dataset path or 'demo'; bare --calibration: the run's dataset",
                      bare="run")
    g.add_argument("--calibration-images", type=int, default=32, metavar="N",
                   help="val images to calibrate on (default 32); AP is measured on the "
                   "val split (--limit images)")
    g.add_argument("--force", action="store_true",
                   help="write the int8 model even when it loses more segm AP")
    p.set_defaults(func=run)
    return p


def _check_int8_flags(args):
    if not args.int8:
        if args.calibration is not None or args.force:
            raise CLIError("--calibration and --force go with --int8; add --int8 to "
                           "quantize.")
        return
    if args.export_format not in ("onnx", "openvino"):
        raise CLIError(f"--int8 quantizes onnx and openvino exports, not "
                       f"{args.export_format}; use --format onnx or openvino.")
    if args.calibration is None:
        raise CLIError("--int8 needs --calibration (a dataset path, 'demo', or bare for "
                       "the run's dataset) to calibrate and check the int8 model.")
    if args.calibration_images <= 0:
        raise CLIError(f"--calibration-images {args.calibration_images} must be positive.")


def run_int8(args, model, names, meta):
    """Quantizes, evaluates float32 and int8 on the same val images, writes or refuses."""
    from fashion.commands.export_eval import evaluate, export_detector, val_split
    from mrcnn.export.quantize import QuantizationRefused, export_int8
    dataset, ids = val_split(None if args.calibration == "run" else args.calibration,
                             meta, args, int(model.config.IMAGE_MAX_DIM), "--calibration",
                             label_set=args.format)
    calibration = [dataset.load_image(i) for i in ids[:args.calibration_images]]
    print(f"int8 {args.export_format}: calibrating on {len(calibration)} val images, "
          f"segm AP on {len(ids)} val images")

    def segm_ap(run):
        return evaluate(export_detector(run), dataset, ids, meta, "segm AP")["segm_AP"]
    try:
        info = export_int8(model, args.out, args.export_format, calibration, segm_ap,
                           MAX_AP_DROP, args.force, **names)
    except QuantizationRefused as e:
        _print_int8(e.info)
        raise CLIError(f"{e} Pass --force to write it anyway.") from None
    _print_int8(info)
    return info


def _print_int8(info):
    print(f"segm AP float32 {info['float32']:.4f}  int8 {info['int8']:.4f}  difference "
          f"{info['difference']:+.4f} (allowed -{info['max_drop']})"
          + ("  -- written with --force" if info["forced"] and
             info["difference"] < -info["max_drop"] else ""))


def run(args):
    from fashion.run import Run
    from mrcnn.export import ExportError
    from mrcnn.export.extras import require_format
    if os.path.isfile(args.out):
        raise CLIError(f"--out {args.out} is a file; give a directory for the export.")
    _check_int8_flags(args)
    try:
        require_format(args.export_format, args.int8)
    except ExportError as e:
        raise CLIError(str(e)) from None
    run = Run.from_args(args)                 # float32, as every export is checked in
    model, meta, weights = run.model(), run.meta, run.checkpoint
    extra = {k: v for k, v in meta.items() if k not in ("class_names", "attribute_names")}
    extra["weights"] = os.path.abspath(weights)
    names = {"class_names": meta["class_names"],
             "attribute_names": meta.get("attribute_names"), "metadata": extra}
    try:
        if args.int8:
            info = run_int8(args, model, names, meta)
            path = info["path"]
        else:
            options = {"version": args.version} if args.export_format == "saved_model" \
                else {}
            path = model.export(args.out, args.export_format, **names, **options)
    except ExportError as e:
        raise CLIError(str(e)) from None
    kind = f"int8 {args.export_format}" if args.int8 else args.export_format
    print(f"{kind} export of {weights} -> {path}")
    _note_empty_self_check(path)
    return {"path": path, "format": args.export_format, "weights": weights,
            "int8": info if args.int8 else None}


def _note_empty_self_check(path):
    """One line when the converted model's self-check compared no detection (a model that
    finds nothing on the synthetic probe images): boxes and masks went unchecked."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    labels = os.path.join(folder, "labels.json")
    if not os.path.isfile(labels):
        return
    with open(labels, encoding="utf-8") as f:
        check = json.load(f).get("self_check") or {}
    if check.get("images") and not check.get("matched"):
        print(f"note: the model found nothing on the self-check's {check['images']} probe "
              "images, so no box or mask was compared; `fashion.py benchmark --weights ... "
              "--formats tf,<format>` compares them on val images.")

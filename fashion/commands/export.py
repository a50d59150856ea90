"""`export`: write a trained model as a TF SavedModel (TF Serving), ONNX or TFLite.

The export takes images and returns detect()'s detections (decoding, resizing, molding
and anchors are inside the graph); labels.json (class and attribute names, category
ids, the config, the input size) travels with it. The model is built in float32 for
the export (ONNX and TFLite have no bfloat16 convolution that matches TensorFlow's).
"""
import argparse
import os

from fashion.cli_args import FORMATS, add_model_args
from fashion.errors import CLIError

EXPORT_FORMATS = ("saved_model", "onnx", "tflite")

EXAMPLES = """examples:
  python fashion/fashion.py export --weights last --format saved_model --out export/fashion
      # export/fashion/1/ : serve with TF Serving (MODEL_BASE_PATH=export, MODEL_NAME=fashion)
  python fashion/fashion.py export --weights last --format onnx --out export/onnx
  python fashion/fashion.py export --weights logs/fashion20250101T1200/mask_rcnn_fashion_0040.h5 \\
      --format tflite --out export/tflite
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "export", parents=parents, help="export a model: SavedModel, ONNX or TFLite",
        description="Writes DIR/1/ (SavedModel with signatures serving_default: encoded "
        "images, image_tensor: uint8 [B, H, W, 3]), DIR/model.onnx or DIR/model.tflite, "
        "each with labels.json; the outputs are detect()'s detections (num_detections, "
        "detection_boxes, detection_classes, detection_scores, detection_masks, "
        "detection_attributes).", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, data_flags=False)
    p.add_argument("--format", dest="export_format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--version", type=int, default=1,
                   help="SavedModel version directory under --out (default 1)")
    p.add_argument("--label-set", dest="format", default=None, choices=FORMATS,
                   help="label set when the weights have no fashion_run.json beside them")
    p.set_defaults(func=run)
    return p


def run(args):
    from fashion.runs import inference_model
    from mrcnn.export import ExportError
    if os.path.isfile(args.out):
        raise CLIError(f"--out {args.out} is a file; give a directory for the export.")
    if not any(s.upper().startswith("MIXED_PRECISION=") for s in args.set or []):
        args.set = ['MIXED_PRECISION="float32"'] + list(args.set or [])
    model, meta, weights = inference_model(args)
    extra = {k: v for k, v in meta.items() if k not in ("class_names", "attribute_names")}
    extra["weights"] = os.path.abspath(weights)
    options = {"version": args.version} if args.export_format == "saved_model" else {}
    try:
        path = model.export(args.out, args.export_format, class_names=meta["class_names"],
                            attribute_names=meta.get("attribute_names"), metadata=extra,
                            **options)
    except ExportError as e:
        raise CLIError(str(e)) from None
    print(f"{args.export_format} export of {weights} -> {path}")
    return {"path": path, "format": args.export_format, "weights": weights}

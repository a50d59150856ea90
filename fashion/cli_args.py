"""Argument groups shared by the CLI's commands, and what they turn into.

* ``common_parser``: --logs, --quiet and --verbose, which every command takes.
* ``add_data_args``: --dataset/--format/--split/--image-size/... (train, evaluate, tune,
  tfrecords).
* ``add_model_args``: --weights/--backbone/--min-confidence/--set (detect, evaluate,
  check).
* ``parse_sets``: --set KEY=VALUE items -> Config overrides.
* ``build_config``: the run's Config from train's or tfrecords' flags.
* ``command_args``: a command's arguments as a Namespace, built from values rather
  than argv strings (the demo runs train, evaluate and detect this way).

Command modules import this module; it imports no command module.
"""
import argparse

from fashion.errors import CLIError

FORMATS = ("imat2019", "imat2020", "fashionpedia", "deepfashion2")  # bundled label sets
# what --dataset may hold: the competition formats and annotation-tool exports
EXPORT_FORMATS = ("coco", "via", "labelme")  # annotation tools' exports (fashion/data)
DATA_FORMATS = FORMATS + EXPORT_FORMATS
DEMO_DIR = "data/demo"  # relative to the working directory, never to the installed package


def common_parser():
    """The parent parser of every command: --logs, --quiet and --verbose."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--logs", default="logs", metavar="DIR",
                        help="run directories and checkpoints (default logs/)")
    common.add_argument("--quiet", action="store_true", help="less logging")
    common.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's C++ start-up lines (CUDA probing, "
                        "CPU features, absl notices), hidden by default")
    return common


def add_data_args(p, required):
    p.add_argument("--dataset", required=required, metavar="PATH|demo",
                   help="dataset directory (or Fashionpedia JSON), or 'demo' for the "
                   "bundled synthetic set")
    p.add_argument("--format", choices=DATA_FORMATS, default=None,
                   help="dataset format: the competition formats, coco (CVAT, Label "
                   "Studio, Roboflow exports), via or labelme (default: recognised from "
                   "the files; not needed with --dataset demo)")
    p.add_argument("--split", default=None, metavar="FRACTION|PATH",
                   help="coco/via/labelme: validation images, a share held out of the "
                   "data (e.g. 0.2) or a file / folder of the same format (default: the "
                   "export's own val split when it has one, else --val-fraction)")
    p.add_argument("--via-class-attribute", default=None, metavar="NAME",
                   help="via: the region attribute holding each region's class "
                   "(default: one class, 'object', for every region)")
    p.add_argument("--image-dir", default=None, help="Fashionpedia images (default: "
                   "next to the annotations)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="iMaterialist, coco, via, labelme: share of the images held out "
                   "as the val split")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input side, a multiple of 64 (default 1024; 128 for demo)")
    p.add_argument("--demo-dir", default=None, help="where --dataset demo is generated "
                   f"(default {DEMO_DIR} under the current directory)")
    p.add_argument("--demo-images", type=int, default=None,
                   help="images in the demo set (default: the set already in --demo-dir "
                   "at this size, else 300)")


def add_model_args(p, data_flags=True):
    """Flags choosing the inference model; data_flags=False when the parser already
    has --format and --image-size (evaluate)."""
    p.add_argument("--weights", default="last", metavar="PATH|last|best",
                   help="a checkpoint, the newest one under --logs (default) or the "
                   "newest run's best one (kept by train --keep-best)")
    if data_flags:
        p.add_argument("--format", default=None, choices=FORMATS, help="label set when "
                       "the weights have no fashion_run.json beside them")
        p.add_argument("--image-size", type=int, default=None,
                       help="override the run's image size")
    p.add_argument("--backbone", default=None, help="override the run's backbone")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="DETECTION_MIN_CONFIDENCE (detect/check: the run's value; "
                   "evaluate: 0.05, as usual for AP)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any Config attribute for the inference model")


def parse_sets(items):
    """--set KEY=VALUE items -> dict (values parsed as JSON when they parse)."""
    from mrcnn.config_io import parse_overrides
    try:
        return parse_overrides(items, "--set")
    except ValueError as e:
        raise CLIError(str(e)) from None


def default_backbone(weights, image_size):
    """--backbone when not given: matterport's ResNet101 with --weights coco, ResNet18
    from scratch up to 512 px (it learnt most per CPU-minute; docs/benchmarks.md),
    else ResNet50."""
    if weights == "coco":
        return "resnet101"
    if weights == "none" and int(image_size) <= 512:
        return "resnet18"
    return "resnet50"


def build_config(args, train_ds, pretrained, saved=None, weights_path=None, **given):
    """The run's config from the flags (train's or tfrecords'), the data's class and
    attribute counts (train_ds.num_classes / num_attributes), a resumed run's values and
    the starting weights (--weights; weights_path: the file they come from), whose
    pyramid and head sizes the model takes (fashion.config.weights_layout). `given`
    (flag names with '_') take the place of the flags' values, e.g. the precision the
    command settled on; the caller's namespace is left as it is."""
    from fashion.config import make_config, weights_layout
    from mrcnn.config_io import values_to_overrides
    if given:
        args = argparse.Namespace(**{**vars(args), **given})
    values = values_to_overrides(saved["config"]) if saved else {}
    values.update(weights_layout(getattr(args, "weights", None), weights_path))
    size = args.image_size or values.get("IMAGE_MAX_DIM") or (
        128 if args.dataset == "demo" else 1024)
    backbone = getattr(args, "backbone", None) or values.pop("BACKBONE", None) or \
        default_backbone(getattr(args, "weights", None), size)
    values.pop("BACKBONE", None)
    if args.image_size:
        values.pop("IMAGE_MAX_DIM", None), values.pop("IMAGE_MIN_DIM", None)
    for key, flag in (("STEPS_PER_EPOCH", "steps_per_epoch"),
                      ("IMAGES_PER_GPU", "images_per_gpu"),
                      ("LEARNING_RATE", "learning_rate"),
                      ("MIXED_PRECISION", "mixed_precision")):
        value = getattr(args, flag, None)
        if value is not None:
            values[key] = value
    if values.get("MIXED_PRECISION") == "float32":
        values["MIXED_PRECISION"] = None  # explicitly off; "auto" is the default
    values.update(parse_sets(getattr(args, "set", None)))
    values.pop("NUM_CLASSES", None), values.pop("NUM_ATTRIBUTES", None)
    return make_config(size, train_ds.num_classes, train_ds.num_attributes, backbone,
                       pretrained=pretrained, **values)


def command_args(command, **values):
    """The Namespace `fashion.py COMMAND` would parse, from a command module and values
    (flag names with '_'): the command's own defaults fill in the rest. TypeError names
    a value that is no flag of the command."""
    holder = argparse.ArgumentParser(add_help=False)
    sub = holder.add_subparsers()
    parser = command.add_parser(sub, [common_parser()])
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise TypeError(f"{parser.prog} has no flag for {unknown}.")
    defaults.update(parser._defaults)
    defaults.update(values)
    return argparse.Namespace(**defaults)

"""Training runs on disk: the run file beside the checkpoints, finding a checkpoint
(--weights last|PATH), loading it, and the inference model rebuilt from a run.

A run directory <logs>/fashionYYYYMMDDTHHMMSS/ (plus _2, _3, ... when two runs start
in the same second: a new run never reuses a directory, only --weights last resumes
into its own) holds mask_rcnn_fashion_NNNN.h5 files and fashion_run.json: the config
values, the dataset's labels and the training flags, so evaluate/detect/check rebuild
the same model without being told its settings.
"""
import json
import os

from fashion.errors import CLIError

RUN_FILE = "fashion_run.json"
# Layers whose size depends on the class count (left out when loading COCO weights).
CLASS_SIZED_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]


def write_run_file(log_dir, config, meta, extra=None):
    from mrcnn.config_io import config_values
    from mrcnn.fileio import write_json
    data = {"config": config_values(config), **meta, **(extra or {})}
    return write_json(os.path.join(log_dir, RUN_FILE), data)


def read_run_file(weights_path):
    """The fashion_run.json beside a checkpoint, or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights_path)), RUN_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise CLIError(f"{path} is not valid JSON ({e}); delete it and pass --format, "
                       "--backbone and --image-size instead.") from None


def find_last_checkpoint(logs, name="fashion"):
    """Newest checkpoint of the newest run under logs (mrcnn.model.find_last)."""
    from mrcnn.model import find_last
    return find_last(logs, name)


def find_best_checkpoint(logs, name="fashion"):
    """The best checkpoint (mask_rcnn_fashion_best.h5) of the newest run under logs."""
    from mrcnn.training.checkpoints import best_checkpoint
    run_dir = os.path.dirname(find_last_checkpoint(logs, name))
    path = best_checkpoint(run_dir)
    if path is None:
        raise CLIError(f"The newest run {run_dir} has no best checkpoint "
                       f"(mask_rcnn_{name}_best.h5); train with evaluation on and "
                       "--keep-best METRIC, or pass --weights last or a checkpoint path.")
    return path


def record_best(log_dir):
    """Copies the run's best checkpoint (best.json, written while training) into the
    run file as "best": {metric, mode, epoch, value, path}; returns it or None."""
    from mrcnn.training.checkpoints import read_best
    from mrcnn.fileio import write_json
    best = read_best(log_dir)
    path = os.path.join(log_dir, RUN_FILE)
    run = read_run_file(path)
    if best is None or run is None:
        return None
    best = dict(best, path=os.path.join(os.path.abspath(log_dir), best["path"]))
    write_json(path, dict(run, best=best))
    return best


def resolve_checkpoint(weights, logs):
    """--weights of evaluate/detect/check: 'last', 'best' or a file path -> path."""
    if weights == "last":
        return find_last_checkpoint(logs)
    if weights == "best":
        return find_best_checkpoint(logs)
    if weights in ("none", "coco", "imagenet"):
        raise CLIError(f"--weights {weights} has no trained heads to detect with; pass a "
                       "checkpoint file (logs/<run>/mask_rcnn_fashion_NNNN.h5), 'last' or "
                       "'best'.")
    if not os.path.isfile(weights):
        raise CLIError(f"Weights file {weights} does not exist; pass a checkpoint path "
                       "or 'last' / 'best' (the newest run under --logs).")
    return weights


def load_checkpoint(model, path, by_name=False, exclude=None):
    """model.load_weights with a one-sentence error when the file does not fit."""
    from mrcnn.weights.by_name import SizesMismatch, WeightsLayoutError
    try:
        return model.load_weights(path, by_name=by_name, exclude=exclude)
    except SizesMismatch as e:  # the library names the Config key; the CLI sets it so
        raise CLIError(str(e).replace('LAYOUT = "matterport" in its Config',
                                      "--set LAYOUT=matterport")) from None
    except WeightsLayoutError as e:
        detail = str(e).split(";")[0]
        c = model.config
        raise CLIError(f"{detail} — the file does not fit a {c.BACKBONE} model with "
                       f"{c.NUM_CLASSES} classes and {c.NUM_ATTRIBUTES} attributes; pass "
                       "the --backbone (and --set values) it was trained with.") from None


def _inference_values(args, path):
    """(run meta, Config values) of the checkpoint at path and the model flags."""
    from fashion.cli_args import parse_sets
    from mrcnn.config_io import values_to_overrides
    from fashion.config import weights_layout
    from fashion.data.sources import labels_meta
    run = read_run_file(path)
    if run is not None:
        meta = {k: v for k, v in run.items() if k != "config"}
        values = values_to_overrides(run["config"])
    else:
        if not getattr(args, "format", None):
            raise CLIError(f"{path} has no {RUN_FILE} beside it; pass --format (and "
                           "--backbone, --image-size) to say which model it holds.")
        meta = labels_meta(args.format)
        values = {"NUM_CLASSES": len(meta["class_names"]),
                  "NUM_ATTRIBUTES": len(meta["attribute_index_to_id"])}
    if getattr(args, "backbone", None):
        values["BACKBONE"] = args.backbone
    values.update(weights_layout(None, path))  # the checkpoint's own sizes
    if getattr(args, "image_size", None):
        values.pop("IMAGE_MAX_DIM", None), values.pop("IMAGE_MIN_DIM", None)
    values.update(IMAGES_PER_GPU=1, GPU_COUNT=1,
                  MIXED_PRECISION=inference_precision((run or {}).get("precision")))
    if getattr(args, "min_confidence", None) is not None:
        values["DETECTION_MIN_CONFIDENCE"] = args.min_confidence
    values.update(parse_sets(getattr(args, "set", None)))
    return meta, values


def inference_precision(trained):
    """The policy to detect with: this machine's half precision ("auto" as in training)
    for a run trained in a mixed policy, float32 for anything else. Outputs are float32
    either way."""
    from mrcnn.training.precision import resolve_precision
    if trained in ("mixed_bfloat16", "mixed_float16"):
        return resolve_precision("auto")
    return "float32"


def inference_model(args):
    """(MaskRCNN in inference mode with the weights loaded, run meta, weights path)."""
    from fashion.config import make_config
    path = resolve_checkpoint(args.weights, args.logs)
    meta, values = _inference_values(args, path)
    size = getattr(args, "image_size", None) or values.get("IMAGE_MAX_DIM") or 1024
    config = make_config(size, values.pop("NUM_CLASSES"), values.pop("NUM_ATTRIBUTES"),
                         values.pop("BACKBONE", "resnet50"), pretrained=True, **values)
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("inference", config, args.logs)
    load_checkpoint(model, path)
    return model, meta, path

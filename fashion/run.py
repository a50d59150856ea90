"""A training run, opened once: what detect, evaluate, tune, export, serve, benchmark and
check ask about the weights they were given.

A run directory <logs>/fashionYYYYMMDDTHHMMSS/ (plus _2, _3, ... when two runs start
in the same second: a new run never reuses a directory, only --weights last resumes
into its own) holds mask_rcnn_fashion_NNNN.h5 files and fashion_run.json: the config
values, the dataset's labels and the training flags, so evaluate/detect/check rebuild
the same model without being told its settings.

    run = Run.from_args(args)            # --weights, --logs, --set, --precision, ...
    run.checkpoint, run.directory, run.class_names, run.postprocess, run.precision
    model = run.model()                  # MaskRCNN("inference") with the weights loaded
    model = run.model(DETECTION_MAX_INSTANCES=200)   # a command's own values; --set wins

Inference is float32 unless half precision is asked for (``--precision bf16|fp16``),
whatever the run was trained in: one run gives the same detections on every machine.
"""
import json
import os

from fashion.errors import CLIError

RUN_FILE = "fashion_run.json"
# Layers whose size depends on the class count (left out when loading COCO weights).
CLASS_SIZED_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
# --precision -> the Keras policy the inference model is built with.
PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def add_precision_arg(p):
    """--precision (detect, evaluate, serve, benchmark)."""
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="float32",
                   help="float32 (default: the same detections on every machine), or "
                   "half precision where the hardware has it: bf16 (CPUs with "
                   "avx512_bf16/AMX, Ampere+ GPUs), fp16 (GPUs); costs a little AP "
                   "(docs/benchmarks.md)")


class Run:
    """One run's checkpoint, run file, labels, stored post-processing and the inference
    model built from them, with the user's model flags applied once.

    Args:
        checkpoint: the weights file (a path; see ``resolve_checkpoint``).
        logs: the --logs directory (the inference model's model_dir).
        label_format: the label set when the checkpoint has no run file beside it.
        backbone / image_size / min_confidence: override the run's values.
        sets: --set KEY=VALUE items, applied last (they win over everything).
        precision: "float32", "bf16" or "fp16".
        postprocess: "run" uses the run file's tuned post-processing, "none" ignores it.
    """

    def __init__(self, checkpoint, logs="logs", label_format=None, backbone=None,
                 image_size=None, min_confidence=None, sets=None, precision="float32",
                 postprocess="run"):
        from fashion.cli_args import parse_sets
        if precision not in PRECISIONS:
            raise CLIError(f"--precision {precision} is not one of "
                           f"{', '.join(PRECISIONS)}.")
        self.checkpoint = checkpoint
        self.directory = os.path.dirname(os.path.abspath(checkpoint))
        self.logs = logs
        self.precision = precision
        self.record = read_run_file(checkpoint) or {}
        self.meta = self._meta(label_format)
        self.flags = {"backbone": backbone, "image_size": image_size,
                      "min_confidence": min_confidence}
        self.sets = parse_sets(sets)
        stored = self.record.get("postprocess") if postprocess == "run" else None
        self.postprocess = dict(stored or {})
        self._layout = None

    @classmethod
    def open(cls, weights="last", logs="logs", **kwargs):
        """The run of --weights (last, best or a checkpoint path) under --logs."""
        return cls(resolve_checkpoint(weights, logs), logs, **kwargs)

    @classmethod
    def from_args(cls, args):
        """The run a command's parsed flags name (the model flags of add_model_args)."""
        flag = vars(args).get
        return cls.open(args.weights, args.logs, label_format=flag("format"),
                        backbone=flag("backbone"), image_size=flag("image_size"),
                        min_confidence=flag("min_confidence"), sets=flag("set"),
                        precision=flag("precision") or "float32",
                        postprocess=flag("postprocess") or "run")

    # ------------------------------------------------------------------ what it holds
    def _meta(self, label_format):
        """Labels and training facts: the run file's, or the label set's of --format."""
        if self.record:
            return {k: v for k, v in self.record.items() if k != "config"}
        if not label_format:
            raise CLIError(f"{self.checkpoint} has no {RUN_FILE} beside it; pass --format "
                           "(and --backbone, --image-size) to say which model it holds.")
        from fashion.data.sources import labels_meta
        return labels_meta(label_format)

    @property
    def class_names(self):
        return list(self.meta.get("class_names") or [])

    @property
    def attribute_names(self):
        return list(self.meta.get("attribute_names") or [])

    @property
    def trained_on(self):
        """(dataset, format) the run was trained on, or (None, None)."""
        return self.meta.get("dataset"), self.meta.get("format")

    def data_flags(self, flags, config):
        """What the data flags default to when left out (see data_flags below), with
        the demo set at the model's size (`config`)."""
        return data_flags(self.meta, flags, int(config.IMAGE_MAX_DIM))

    @property
    def saved_config(self):
        """The run file's config values (plain JSON), or {}."""
        return dict(self.record.get("config") or {})

    def values(self, **overrides):
        """Config values of the inference model: the run's, the checkpoint's own sizes,
        the model flags, a command's `overrides`, then --set (which wins)."""
        from fashion.config import weights_layout
        from mrcnn.config_io import values_to_overrides
        if self.record:
            values = values_to_overrides(self.record["config"])
        else:
            values = {"NUM_CLASSES": len(self.meta["class_names"]),
                      "NUM_ATTRIBUTES": len(self.meta["attribute_index_to_id"])}
        if self.flags["backbone"]:
            values["BACKBONE"] = self.flags["backbone"]
        if self._layout is None:                              # the checkpoint's own sizes
            self._layout = weights_layout(None, self.checkpoint)
        values.update(self._layout)
        if self.flags["image_size"]:
            values.pop("IMAGE_MAX_DIM", None), values.pop("IMAGE_MIN_DIM", None)
        values.update(IMAGES_PER_GPU=1, GPU_COUNT=1,
                      MIXED_PRECISION=PRECISIONS[self.precision])
        if self.flags["min_confidence"] is not None:
            values["DETECTION_MIN_CONFIDENCE"] = self.flags["min_confidence"]
        values.update(overrides)
        values.update(self.sets)
        return values

    @property
    def image_size(self):
        """The inference model's square input side."""
        return self._side(self.values())

    def _side(self, values):
        """The square input side of a model built from `values`."""
        return int(self.flags["image_size"] or values.get("IMAGE_MAX_DIM") or 1024)

    def config(self, **overrides):
        """The inference Config (see values())."""
        from fashion.config import make_config
        values = self.values(**overrides)
        return make_config(self._side(values), values.pop("NUM_CLASSES"),
                           values.pop("NUM_ATTRIBUTES"), values.pop("BACKBONE", "resnet50"),
                           pretrained=True, **values)

    def model(self, **overrides):
        """MaskRCNN in inference mode with the checkpoint loaded."""
        from mrcnn.model import MaskRCNN
        model = MaskRCNN("inference", self.config(**overrides), self.logs)
        load_checkpoint(model, self.checkpoint)
        return model

    def detector(self, tta=None, flags=None):
        """The Detector (fashion.inference.detector) detect and evaluate run: the stored
        post-processing and the flags' values (`flags`: {post-processing key: value}),
        with --tta's views (`tta`), on this run's model."""
        from fashion.inference.detector import Detector, detector_settings
        settings = detector_settings(self.postprocess, self.saved_config, tta, flags)
        model = self.model(**settings.overrides)
        return Detector.from_settings(model, settings)

    def describe(self, config=None):
        """The start-up line: checkpoint, backbone, size and the precision it runs in."""
        if config is None:
            values = self.values()
            backbone, side = values.get("BACKBONE", "resnet50"), self._side(values)
            policy = values.get("MIXED_PRECISION")
        else:
            backbone, side = config.BACKBONE, int(config.IMAGE_MAX_DIM)
            policy = config.MIXED_PRECISION
        return f"weights {self.checkpoint} ({backbone}, {side} px, {policy or 'float32'})"


def data_flags(meta, flags, image_size=None):
    """What the data flags default to when left out (`flags`: the command's flag values,
    e.g. vars(args)), from a run's `meta`: the dataset and format it was trained on with
    the load options it was read with (--split, --via-class-attribute), and the demo set
    at `image_size`. A dict for dataset_from_args(args, subset, **it)."""
    given, dataset = {}, flags.get("dataset")
    if dataset is None:
        dataset, fmt = meta.get("dataset"), meta.get("format")
        if not dataset:
            raise CLIError("--dataset is needed: these weights do not record their "
                           "dataset; pass --dataset PATH --format NAME (or demo).")
        given.update(dataset=dataset, format=fmt)
    if dataset != "demo" and os.path.abspath(dataset) == meta.get("dataset"):
        for key, value in (meta.get("load_options") or {}).items():
            if flags.get(key) is None:                   # --split, --via-class-attribute
                given[key] = value
    if dataset == "demo" and not flags.get("image_size") and image_size:
        given["image_size"] = image_size                 # the demo set at the run's size
    return given


def detector_from_args(args):
    """(Detector, Run) for detect/evaluate's flags: the run opened once."""
    from fashion.inference.postprocess import PARAM_KEYS
    run = Run.from_args(args)
    flags = {k: vars(args).get(k) for k in PARAM_KEYS}
    return run.detector(vars(args).get("tta"), flags), run


# ---------------------------------------------------------------------- run files
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
    return resolve_checkpoint("last", logs, name)


def find_best_checkpoint(logs, name="fashion"):
    """The best checkpoint (mask_rcnn_fashion_best.h5) of the newest run under logs."""
    return resolve_checkpoint("best", logs, name)


def record_best(log_dir):
    """Copies the run's best checkpoint (best.json, written while training) into the
    run file as "best": {metric, mode, epoch, value, path}; returns it or None."""
    from mrcnn.fileio import write_json
    from mrcnn.training.checkpoints import read_best
    best = read_best(log_dir)
    path = os.path.join(log_dir, RUN_FILE)
    run = read_run_file(path)
    if best is None or run is None:
        return None
    best = dict(best, path=os.path.join(os.path.abspath(log_dir), best["path"]))
    write_json(path, dict(run, best=best))
    return best


def resolve_checkpoint(weights, logs, name="fashion"):
    """--weights of evaluate/detect/check: 'last', 'best' or a file path -> path."""
    if weights in ("last", "best"):
        from mrcnn.model import find_last
        from mrcnn.training.checkpoints import best_checkpoint
        last = find_last(logs, name)
        if weights == "last":
            return last
        path = best_checkpoint(os.path.dirname(last))
        if path is None:
            raise CLIError(f"The newest run {os.path.dirname(last)} has no best checkpoint "
                           f"(mask_rcnn_{name}_best.h5); train with evaluation on and "
                           "--keep-best METRIC, or pass --weights last or a checkpoint "
                           "path.")
        return path
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

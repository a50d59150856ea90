"""Helpers shared by the CLI commands: errors, datasets, weights, run files, images.

Heavy modules (TensorFlow, the model) are imported inside functions so that
``fashion.py --help`` stays fast.
"""
import glob
import json
import logging
import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "data" / "demo"
FORMATS = ("imat2019", "imat2020", "fashionpedia", "deepfashion2")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
RUN_FILE = "fashion_run.json"
# Layers whose size depends on the class count (left out when loading COCO weights).
CLASS_SIZED_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]

log = logging.getLogger("fashion")


class CLIError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2."""


# ---------------------------------------------------------------------- files
def atomic_write_text(path, text):
    """Writes text (UTF-8) to path through a temporary file in the same directory."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data):
    """Writes bytes to path through a temporary file in the same directory."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=parent)
    try:
        _default_mode(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _default_mode(fd):
    """mkstemp makes 0600 files; give outputs the usual rw-r--r-- (minus the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def write_json(path, data):
    return atomic_write_text(path, json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def find_images(spec):
    """A directory, a glob or one file -> sorted image paths; CLIError when none."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        paths = [os.path.join(spec, f) for f in os.listdir(spec)]
    elif any(c in spec for c in "*?["):
        paths = glob.glob(spec)
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        raise CLIError(f"{spec} is neither an image file, a directory nor a glob that "
                       "matches files; check the --images path.")
    images = sorted(p for p in paths if os.path.isfile(p)
                    and os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
    if not images:
        raise CLIError(f"{spec} holds no images (looked for "
                       f"{', '.join(IMAGE_EXTENSIONS)}); point --images at image files.")
    return images


# ---------------------------------------------------------------------- datasets
def demo_dataset(out_dir=None, num_images=200, size=128, seed=0):
    """Generates (or reuses) the synthetic demo set and returns its directory."""
    from fashion.demo_data import generate_demo
    out_dir = Path(out_dir or DEMO_DIR)
    log.info("Demo dataset: %d images of %d px in %s", num_images, size, out_dir)
    return str(generate_demo(out_dir, num_images=num_images, size=size, seed=seed))


def _fashionpedia_paths(path, subset, image_dir=None):
    path = Path(path)
    if path.is_file():
        return path, Path(image_dir) if image_dir else path.parent
    year = {"train": "train2020", "val": "val2020"}[subset]
    candidates = [path / f"instances_attributes_{year}.json"] + sorted(
        path.glob(f"*{subset}*.json"))
    ann = next((c for c in candidates if c.is_file()), None)
    if ann is None:
        raise CLIError(f"{path} has no instances_attributes_{year}.json (or another "
                       f"*{subset}*.json); pass the Fashionpedia annotation JSON or its "
                       "directory as --dataset.")
    if image_dir:
        return ann, Path(image_dir)
    for name in ([subset, "images"] + (["test", "val"] if subset == "val" else [])):
        if (path / name).is_dir():
            return ann, path / name
    return ann, path


def load_dataset(path, fmt, subset, limit=None, val_fraction=0.2, image_dir=None):
    """A prepared FashionDataset of one split ("train" or "val") of a dataset."""
    from fashion.dataset import FashionDataset
    if fmt not in FORMATS:
        raise CLIError(f"--format {fmt!r} is unknown; use one of {', '.join(FORMATS)}.")
    if not os.path.exists(path):
        raise CLIError(f"Dataset path {path} does not exist; pass the dataset directory "
                       "as --dataset (or --dataset demo).")
    ds = FashionDataset()
    if fmt == "imat2019":
        ds.load_imat2019(path, subset=subset, limit=limit, val_fraction=val_fraction)
    elif fmt == "imat2020":
        ds.load_imat2020(path, subset=subset, limit=limit, val_fraction=val_fraction)
    elif fmt == "fashionpedia":
        ann, images = _fashionpedia_paths(path, subset, image_dir)
        ds.load_fashionpedia(str(ann), str(images), limit=limit)
    else:
        ds.load_deepfashion2(path, "validation" if subset == "val" else "train", limit=limit)
    ds.prepare()
    return ds


def dataset_from_args(args, subset):
    """(dataset path, format) of --dataset/--format; 'demo' generates the demo set."""
    if args.dataset == "demo":
        size = getattr(args, "image_size", None) or 128
        path = demo_dataset(getattr(args, "demo_dir", None),
                            getattr(args, "demo_images", 200), size)
        return load_dataset(path, "imat2019", subset, args.limit,
                            getattr(args, "val_fraction", 0.2)), path, "imat2019"
    if not args.format:
        raise CLIError(f"--format is needed with --dataset {args.dataset}; use one of "
                       f"{', '.join(FORMATS)}.")
    ds = load_dataset(args.dataset, args.format, subset, args.limit,
                      getattr(args, "val_fraction", 0.2), getattr(args, "image_dir", None))
    return ds, args.dataset, args.format


def dataset_meta(ds, path, fmt):
    """What a run must remember about its data to turn class ids into categories."""
    return {"dataset": os.path.abspath(path), "format": fmt,
            "class_names": list(ds.class_names),
            "category_ids": [int(c) for c in ds.category_ids],
            "attribute_index_to_id": [int(a) for a in ds.attribute_index_to_id],
            "attribute_names": list(ds.attribute_names)}


def labels_meta(fmt):
    """dataset_meta for a format's bundled labels (weights without a run file)."""
    from fashion.labels import load_labels
    labels = load_labels(fmt)
    return {"dataset": None, "format": fmt,
            "class_names": ["BG"] + [c["name"].split(",")[0] for c in labels.categories],
            "category_ids": [-1] + [int(c["id"]) for c in labels.categories],
            "attribute_index_to_id": [int(a) for a in labels.attribute_index_to_id],
            "attribute_names": list(labels.attribute_names)}


def h5_source(ds, config, logs, dataset_path, subset, cache_dir=None):
    """An H5RecordSource of ds, built (or reused) at <logs>/cache/<name>_<subset>_<size>.h5
    (or under cache_dir, e.g. a worker's local temp directory)."""
    from mrcnn.data.h5cache import H5RecordSource, build_h5_cache
    name = f"{os.path.basename(os.path.normpath(str(dataset_path)))}_{subset}_" \
           f"{int(config.IMAGE_MAX_DIM)}.h5"
    path = build_h5_cache(ds, config, os.path.join(cache_dir or os.path.join(logs, "cache"),
                                                   name))
    return H5RecordSource(path, config, dataset=ds)


# ---------------------------------------------------------------------- run files
def write_run_file(log_dir, config, meta, extra=None):
    from fashion.config import config_values
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
    """Newest checkpoint of the newest run under logs (MaskRCNN.find_last's rule)."""
    from types import SimpleNamespace

    from mrcnn.model import MaskRCNN
    probe = SimpleNamespace(config=SimpleNamespace(NAME=name), model_dir=logs)
    return MaskRCNN.find_last(probe)


def resolve_checkpoint(weights, logs):
    """--weights of evaluate/detect/check: 'last' or a file path -> path."""
    if weights == "last":
        return find_last_checkpoint(logs)
    if weights in ("none", "coco", "imagenet"):
        raise CLIError(f"--weights {weights} has no trained heads to detect with; pass a "
                       "checkpoint file (logs/<run>/mask_rcnn_fashion_NNNN.h5) or 'last'.")
    if not os.path.isfile(weights):
        raise CLIError(f"Weights file {weights} does not exist; pass a checkpoint path "
                       "or 'last' (the newest run under --logs).")
    return weights


def parse_sets(items):
    """--set KEY=VALUE items -> dict (values parsed as JSON when they parse)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--set {item!r} needs the form KEY=VALUE, e.g. "
                           "--set TOP_DOWN_PYRAMID_SIZE=128.")
        key, value = item.split("=", 1)
        try:
            value = json.loads(value)
        except ValueError:
            pass
        out[key.strip().upper()] = tuple(value) if isinstance(value, list) else value
    return out


def inference_model(args):
    """(MaskRCNN in inference mode with the weights loaded, run meta, weights path)."""
    from fashion.config import make_config, values_to_overrides
    path = resolve_checkpoint(args.weights, args.logs)
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
    size = getattr(args, "image_size", None) or values.get("IMAGE_MAX_DIM") or 1024
    if getattr(args, "image_size", None):
        values.pop("IMAGE_MAX_DIM", None), values.pop("IMAGE_MIN_DIM", None)
    values.update(IMAGES_PER_GPU=1, GPU_COUNT=1, MIXED_PRECISION=None)
    if getattr(args, "min_confidence", None) is not None:
        values["DETECTION_MIN_CONFIDENCE"] = args.min_confidence
    values.update(parse_sets(getattr(args, "set", None)))
    config = make_config(size, values.pop("NUM_CLASSES"), values.pop("NUM_ATTRIBUTES"),
                         values.pop("BACKBONE", "resnet50"), pretrained=True, **values)
    from mrcnn.model import MaskRCNN
    model = MaskRCNN("inference", config, args.logs)
    load_checkpoint(model, path)
    return model, meta, path


def load_checkpoint(model, path, by_name=False, exclude=None):
    """model.load_weights with a one-sentence error when the file does not fit."""
    from mrcnn.weights_io import WeightsLayoutError
    try:
        return model.load_weights(path, by_name=by_name, exclude=exclude)
    except WeightsLayoutError as e:
        detail = str(e).split(";")[0]
        c = model.config
        raise CLIError(f"{detail} — the file does not fit a {c.BACKBONE} model with "
                       f"{c.NUM_CLASSES} classes and {c.NUM_ATTRIBUTES} attributes; pass "
                       "the --backbone (and --set values) it was trained with.") from None


def category_of(meta):
    """Internal class id -> dataset category id, as a list indexed by class id."""
    return [int(c) for c in meta["category_ids"]]


def gt_coco(dataset, image_ids=None, progress=None):
    """COCO-format ground truth (compressed RLE masks) of a dataset's images.

    Image ids are the dataset's internal ids, category ids the source's ids and every
    annotation carries its attribute ids. Masks are encoded image by image.
    """
    import numpy as np

    from mrcnn.evaluation.predictions import encode_mask
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    images, annotations = [], []
    attr_ids = np.asarray(dataset.attribute_index_to_id)           # [A]
    for image_id in (progress(ids) if progress else ids):
        masks, class_ids = dataset.load_mask(image_id)             # [H, W, N], [N]
        attrs = (dataset.load_attributes(image_id) if dataset.num_attributes
                 else np.zeros((len(class_ids), 0), np.uint8))     # [N, A]
        h, w = masks.shape[:2]
        images.append({"id": int(image_id), "height": int(h), "width": int(w),
                       "file_name": os.path.basename(dataset.image_reference(image_id))})
        for i in range(masks.shape[-1]):
            rle = encode_mask(masks[:, :, i])
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id),
                "category_id": int(dataset.category_ids[class_ids[i]]),
                "segmentation": rle, "iscrowd": 0,
                "attribute_ids": [int(a) for a in attr_ids[attrs[i] > 0]]})
    categories = [{"id": int(c), "name": n}
                  for c, n in zip(dataset.category_ids[1:], dataset.class_names[1:])]
    out = {"images": images, "annotations": annotations, "categories": categories}
    if dataset.num_attributes:
        out["attributes"] = [{"id": int(a), "name": n}
                             for a, n in zip(attr_ids, dataset.attribute_names)]
    return out


def progress(iterable, desc, total=None, unit="img"):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)

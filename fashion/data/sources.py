"""What the commands read: datasets named by --dataset/--format (or the demo set),
H5 caches of them, image files named by --images, and the labels a run remembers.

Heavy modules (TensorFlow, h5py) are imported inside functions so that
``fashion.py --help`` stays fast.
"""
import glob
import logging
import os
from pathlib import Path

from fashion.cli_args import DATA_FORMATS, DEMO_DIR, FORMATS
from fashion.errors import CLIError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

log = logging.getLogger("fashion")


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


def progress(iterable, desc, total=None, unit="img"):
    """A tqdm progress bar over iterable."""
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)


# ---------------------------------------------------------------------- datasets
# Images in the demo set when nothing says otherwise (the Quick start's demo command).
DEMO_IMAGES = 300


def _existing_demo_images(out_dir, size, seed):
    """The image count of a complete demo set of this size and seed in out_dir, or None."""
    import json
    try:
        done = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if done.get("size") == size and done.get("seed") == seed and not done.get("hard"):
        return done.get("num_images")
    return None


def demo_dataset(out_dir=None, num_images=None, size=128, seed=0):
    """Generates (or reuses) the synthetic demo set and returns its directory
    (default data/demo under the current directory). num_images=None reuses the set
    already there at this size, else makes DEMO_IMAGES images, so a command run
    without --demo-images never regenerates a set another command made."""
    from fashion.data.demo_data import generate_demo
    out_dir = Path(out_dir or DEMO_DIR)
    if num_images is None:
        num_images = _existing_demo_images(out_dir, size, seed) or DEMO_IMAGES
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


def load_dataset(path, fmt, subset, limit=None, val_fraction=0.2, image_dir=None,
                 split=None, via_class_attribute=None):
    """A prepared FashionDataset of one split ("train" or "val") of a dataset.
    split (coco, via, labelme): a val share or a val file/folder (see --split)."""
    from fashion.data.fashion_dataset import FashionDataset
    if fmt not in DATA_FORMATS:
        raise CLIError(f"--format {fmt!r} is unknown; use one of {', '.join(DATA_FORMATS)}.")
    if not os.path.exists(path):
        raise CLIError(f"Dataset path {path} does not exist; pass the dataset directory "
                       "as --dataset (or --dataset demo).")
    if split is not None and fmt in FORMATS:
        raise CLIError(f"--split is for coco, via and labelme data; {fmt} has its own val "
                       "split (iMaterialist: --val-fraction).")
    ds = FashionDataset()
    if fmt == "imat2019":
        ds.load_imat2019(path, subset=subset, limit=limit, val_fraction=val_fraction)
    elif fmt == "imat2020":
        ds.load_imat2020(path, subset=subset, limit=limit, val_fraction=val_fraction)
    elif fmt == "fashionpedia":
        ann, images = _fashionpedia_paths(path, subset, image_dir)
        ds.load_fashionpedia(str(ann), str(images), limit=limit)
    elif fmt == "deepfashion2":
        ds.load_deepfashion2(path, "validation" if subset == "val" else "train", limit=limit)
    else:
        _load_export(ds, path, fmt, subset, limit, val_fraction, split, via_class_attribute)
    ds.prepare()
    return ds


def _load_export(ds, path, fmt, subset, limit, val_fraction, split, via_class_attribute):
    """coco, via or labelme data (fashion.data) into ds."""
    from fashion.data.coco_export import load_coco
    from fashion.data.labelme import load_labelme
    from fashion.data.via import load_via
    common = dict(subset=subset, limit=limit, split=split, val_fraction=val_fraction)
    # what a run must pass again to get the same classes and val split (evaluate, export)
    ds.load_options = {k: v for k, v in (("split", split),
                                         ("via_class_attribute", via_class_attribute))
                       if v is not None}
    if fmt == "coco":
        load_coco(ds, path, **common)
    elif fmt == "via":
        load_via(ds, path, class_attribute=via_class_attribute, **common)
    else:
        load_labelme(ds, path, **common)


_ANNOUNCED = set()  # datasets whose recognised format was printed (train + val: once)


def recognise_format(path):
    """--format left out: the format of path's files, printed in one line."""
    from fashion.data.detect_format import detect_format
    fmt, evidence = detect_format(path)
    if os.path.abspath(path) not in _ANNOUNCED:
        _ANNOUNCED.add(os.path.abspath(path))
        print(f"Format: {fmt} (recognised from {evidence}; pass --format to choose)")
    return fmt


def dataset_from_args(args, subset, **given):
    """(dataset, path, format) of --dataset/--format; 'demo' generates the demo set.
    Without --format the format is recognised from the files. `given` (flag names with
    '_') take the place of flags the user left out, e.g. the dataset a run was trained
    on; the caller's namespace is left as it is."""
    if given:
        import argparse
        args = argparse.Namespace(**{**vars(args), **given})
    if args.dataset == "demo":
        size = getattr(args, "image_size", None) or 128
        path = demo_dataset(getattr(args, "demo_dir", None),
                            getattr(args, "demo_images", None), size)
        return load_dataset(path, "imat2019", subset, args.limit,
                            getattr(args, "val_fraction", 0.2)), path, "imat2019"
    if not os.path.exists(args.dataset):
        raise CLIError(f"Dataset path {args.dataset} does not exist; pass the dataset "
                       "directory as --dataset (or --dataset demo).")
    fmt = args.format or recognise_format(args.dataset)
    ds = load_dataset(args.dataset, fmt, subset, args.limit,
                      getattr(args, "val_fraction", 0.2), getattr(args, "image_dir", None),
                      getattr(args, "split", None), getattr(args, "via_class_attribute", None))
    return ds, args.dataset, fmt


def h5_source(ds, config, logs, dataset_path, subset, cache_dir=None):
    """An H5RecordSource of ds, built (or reused) at <logs>/cache/<name>_<subset>_<size>.h5
    (or under cache_dir, e.g. a worker's local temp directory)."""
    from mrcnn.data.h5cache import H5RecordSource, build_h5_cache
    name = f"{os.path.basename(os.path.normpath(str(dataset_path)))}_{subset}_" \
           f"{int(config.IMAGE_MAX_DIM)}.h5"
    path = build_h5_cache(ds, config, os.path.join(cache_dir or os.path.join(logs, "cache"),
                                                   name))
    return H5RecordSource(path, config, dataset=ds)


# ---------------------------------------------------------------------- labels
def dataset_meta(ds, path, fmt):
    """What a run must remember about its data to turn class ids into categories."""
    meta = {"dataset": os.path.abspath(path), "format": fmt,
            "class_names": list(ds.class_names),
            "category_ids": [int(c) for c in ds.category_ids],
            "attribute_index_to_id": [int(a) for a in ds.attribute_index_to_id],
            "attribute_names": list(ds.attribute_names)}
    options = getattr(ds, "load_options", None)  # coco/via/labelme: --split, ...
    if options:
        meta["load_options"] = dict(options)
    return meta


def labels_meta(fmt):
    """dataset_meta for a format's bundled labels (weights without a run file)."""
    from fashion.data.labels import load_labels
    if fmt not in FORMATS:
        raise CLIError(f"--format {fmt} has no bundled class names, so weights without "
                       "their fashion_run.json cannot be read as it; use the checkpoint in "
                       "its run directory (beside fashion_run.json).")
    labels = load_labels(fmt)
    return {"dataset": None, "format": fmt,
            "class_names": ["BG"] + [c["name"].split(",")[0] for c in labels.categories],
            "category_ids": [-1] + [int(c["id"]) for c in labels.categories],
            "attribute_index_to_id": [int(a) for a in labels.attribute_index_to_id],
            "attribute_names": list(labels.attribute_names)}


def category_of(meta):
    """Internal class id -> dataset category id, as a list indexed by class id."""
    return [int(c) for c in meta["category_ids"]]

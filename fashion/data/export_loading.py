"""What the annotation-tool loaders (coco_export, via, labelme) share: the --split rule,
image files found beside the annotations, shape checks, counted warnings and filling a
FashionDataset.

A loader parses its files into records, one per image:
    {"key": "a.jpg", "file": "images/a.jpg", "bases": [folders to look in],
     "height": 480 | None, "width": 640 | None,
     "annotations": [{"polygons": [[x1, y1, ...]]} | {"coco_rle": {...}} |
                     {"ellipse": [cx, cy, rx, ry, theta]}, with "category_id" or "label"]}
and hands them to ``fill_dataset``, which finds the image files, chooses the subset and
adds the images to the dataset.
"""
import logging
import os

from fashion.data.fashion_dataset import _listing, existing_images, stratified_split
from fashion.data.labels import LabelSet

log = logging.getLogger("fashion")

SUBSET_NAMES = {"train": ("train",), "val": ("val", "valid", "validation")}
SPLIT_HELP = ("validation images: a share held out of the data (e.g. 0.2) or a file / "
              "folder of the same format holding them (default: the export's own val "
              "split when it has one, e.g. Roboflow's valid/ or a val/ folder, else "
              "--val-fraction of the images)")


# ---------------------------------------------------------------------- --split
def parse_split(split):
    """--split -> (fraction or None, path or None); ValueError for anything else."""
    if split is None or split == "":
        return None, None
    try:
        fraction = float(split)
    except ValueError:
        if not os.path.exists(split):
            raise ValueError(f"--split {split} is neither a share of the images (a number "
                             "between 0 and 1, e.g. 0.2) nor an existing file or folder; "
                             "pass one of those.") from None
        return None, str(split)
    if not 0 <= fraction < 1:
        raise ValueError(f"--split {split} is not a share between 0 and 1; pass e.g. "
                         "--split 0.2 to hold out a fifth of the images.")
    return fraction, None


def sibling_split(folder, names):
    """The first of folder/<name> for name in names that exists, else None."""
    for name in names:
        candidate = os.path.join(folder, name)
        if os.path.exists(candidate):
            return candidate
    return None


def choose_subset(records, subset, has_val_source, fraction, seed=0):
    """The records of subset ("train", "val", "all") of one source's records. A source
    with a separate val source is whole; otherwise a deterministic split keeps every
    class in both parts where it can (fraction of the images in val)."""
    if subset == "all" or has_val_source:
        return records
    if not fraction:  # --split 0: no validation
        return records if subset == "train" else []
    categories = {i: [a["category_id"] for a in r["annotations"]]
                  for i, r in enumerate(records)}
    train, val = stratified_split(categories, fraction, seed)
    return [records[i] for i in (train if subset == "train" else val)]


# ---------------------------------------------------------------------- labels
def labels_from_names(names, source):
    """A LabelSet of class names in sorted order, category ids 1..K."""
    return LabelSet([{"id": i, "name": n, "supercategory": ""}
                     for i, n in enumerate(sorted(names), start=1)], source=source)


def name_labels(records, labels):
    """Sets category_id of every annotation that carries a class "label"."""
    ids = {c["name"]: c["id"] for c in labels.categories}
    for r in records:
        for a in r["annotations"]:
            if "label" in a:
                a["category_id"] = ids[a.pop("label")]


# ---------------------------------------------------------------------- shapes
def polygon(xs, ys, size, what="polygon"):
    """Point coordinates -> one flat polygon [x1, y1, x2, y2, ...]; ValueError for fewer
    than 3 points or a polygon that lies wholly off the image (size: (h, w) or None)."""
    try:
        xs, ys = [float(v) for v in xs], [float(v) for v in ys]
    except (TypeError, ValueError):
        raise ValueError(f"{what} has coordinates that are not numbers") from None
    if len(xs) != len(ys):
        raise ValueError(f"{what} has {len(xs)} x but {len(ys)} y coordinates")
    if len(xs) < 3:
        raise ValueError(f"{what} has {len(xs)} point(s); a region needs at least 3")
    check_on_image(min(xs), min(ys), max(xs), max(ys), size, what)
    return [v for xy in zip(xs, ys) for v in xy]


def rectangle(x1, y1, x2, y2, size, what="rectangle"):
    """Two corners -> a 4-point polygon; ValueError when it has no area or is off the image."""
    x1, x2 = sorted((float(x1), float(x2)))
    y1, y2 = sorted((float(y1), float(y2)))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        raise ValueError(f"{what} has no area ({x2 - x1:g} x {y2 - y1:g})")
    return polygon([x1, x2, x2, x1], [y1, y1, y2, y2], size, what)


def ellipse(cx, cy, rx, ry, theta, size, what="ellipse"):
    """An ellipse [cx, cy, rx, ry, theta] (theta in radians, as a canvas rotates)."""
    cx, cy, rx, ry, theta = (float(v) for v in (cx, cy, rx, ry, theta or 0.0))
    if rx <= 0 or ry <= 0:
        raise ValueError(f"{what} has a radius of zero")
    r = max(rx, ry)
    check_on_image(cx - r, cy - r, cx + r, cy + r, size, what)
    return [cx, cy, rx, ry, theta]


def check_on_image(x1, y1, x2, y2, size, what):
    if size is None:
        return
    h, w = size
    if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
        raise ValueError(f"{what} spans x {x1:g}..{x2:g}, y {y1:g}..{y2:g}, off the "
                         f"{w}x{h} (WxH) image")


# ---------------------------------------------------------------------- warnings
_WARNED = set()  # the train and the val load read the same files: warn once


def warn_skipped(source, bad, total, what="regions"):
    """One counted warning naming the first few skipped items (once per process)."""
    if not bad:
        return
    message = (f"{source}: skipped {len(bad)} of {max(total, len(bad))} {what}; first: "
               + " | ".join(bad[:5]))
    log_once(logging.WARNING, message)


def log_once(level, message):
    """Logs message unless this process logged it already."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.log(level, "%s", message)


def extent(ann):
    """(x1, y1, x2, y2) of a polygon or ellipse annotation; None for an RLE."""
    if "polygons" in ann:
        xs = [v for p in ann["polygons"] for v in p[0::2]]
        ys = [v for p in ann["polygons"] for v in p[1::2]]
        return min(xs), min(ys), max(xs), max(ys)
    if "ellipse" in ann:
        cx, cy, rx, ry, _ = ann["ellipse"]
        r = max(rx, ry)
        return cx - r, cy - r, cx + r, cy + r
    return None


def check_image_sizes(records, source):
    """Reads each record's image size from the file header; leaves out annotations off
    the image and images that do not open (one counted warning each)."""
    from PIL import Image
    bad, kept, total = [], [], 0
    for r in records:
        try:
            with Image.open(r["path"]) as im:
                r["width"], r["height"] = im.size
        except (OSError, ValueError) as e:
            bad.append(f"{r['path']}: cannot be opened ({e})")
            continue
        anns = []
        for ann in r["annotations"]:
            total += 1
            try:
                check_on_image(*extent(ann), (r["height"], r["width"]),
                               ann.get("what", "region"))
                anns.append(ann)
            except ValueError as e:
                bad.append(f"{r['file']}: {e}")
        r["annotations"] = anns
        kept.append(r)
    warn_skipped(source, bad, total, "regions and images")
    return kept


def require_regions(records, source, bad, fix):
    """ValueError (one sentence) when no record has an annotation left."""
    if any(r["annotations"] for r in records):
        return
    why = f" (first problem: {bad[0]})" if bad else ""
    raise ValueError(f"{source} has no usable region{why}; {fix}")


# ---------------------------------------------------------------------- images
def find_image(name, bases, cache):
    """The path of an image named (relative, '/' or '\\' separated) in the first base
    folder holding it, else by its bare name; the first candidate when none holds it."""
    name = str(name).replace("\\", "/")
    candidates = [os.path.normpath(os.path.join(b, name)) for b in bases]
    candidates += [os.path.join(b, os.path.basename(name)) for b in bases]
    for path in candidates:
        folder, file = os.path.split(path)
        names = _listing(folder or ".", cache)
        if names is not None and file in names:
            return path
    return candidates[0]


def resolve_images(records, source, check_images=True):
    """Sets each record's "path"; drops records whose image is missing (one counted
    warning; ValueError naming the folder when none exists)."""
    cache = {}
    for r in records:
        r["path"] = find_image(r["file"], r["bases"], cache)
    if not check_images or not records:
        return records
    kept = set(existing_images([r["path"] for r in records], source)[0])
    return [r for r in records if r["path"] in kept]


def fill_dataset(ds, fmt, labels, records, files, limit=None):
    """Adds the records' images (the first `limit`) with their labels to ds."""
    ds._use_labels(labels, fmt, *files)
    for r in records[:limit]:
        for a in r["annotations"]:
            a.setdefault("attribute_ids", ())
        ds.add_image(fmt, image_id=r["key"], path=r["path"], width=r.get("width"),
                     height=r.get("height"), annotations=r["annotations"],
                     annotation_file=str(r.get("annotation_file", files[0])))


# ---------------------------------------------------------------------- the load
def load_export(ds, fmt, path, subset, limit=None, split=None, val_fraction=0.2, seed=0,
                check_images=True, *, sources, read, labels, fix, what="regions",
                after=None):
    """The load every tool format shares, into FashionDataset ds:

    sources(path) -> (train source, val source or None) (a file or a folder);
    read(source) -> {"records", "bad", "total", "classes"} (bad: skipped items);
    labels(parsed list, all records, train source) -> the LabelSet of both sources (and
    sets each annotation's category_id); fix: the sentence's advice when no region is
    usable; after(records, source): a last check of the subset's records (VIA: sizes).
    The subset is the val source's images, or a share held out of the train source's."""
    fraction, split_path = parse_split(split)
    train_src, val_src = sources(path)
    if split_path:
        val_src = sources(split_path)[0]
    elif fraction is not None:
        val_src = None
    parts = {"train": (train_src, read(train_src))}
    if val_src:
        parts["val"] = (val_src, read(val_src))
    for src, parsed in parts.values():
        warn_skipped(src, parsed["bad"], parsed["total"], what)
    everything = [r for _, p in parts.values() for r in p["records"]]
    require_regions(everything, train_src,
                    [b for _, p in parts.values() for b in p["bad"]], fix)
    label_set = labels([p for _, p in parts.values()], everything, train_src)
    src, parsed = parts["val" if subset == "val" and val_src else "train"]
    records = choose_subset(parsed["records"], subset, bool(val_src),
                            val_fraction if fraction is None else fraction, seed)
    records = resolve_images(records, src, check_images)
    if after is not None and check_images:
        records = after(records, src)
    fill_dataset(ds, fmt, label_set, records,
                 [train_src] + ([val_src] if val_src else []), limit)
    return ds


def labels_of_names(parsed, records, source):
    """labels() of load_export for formats whose classes are names (VIA, labelme)."""
    label_set = labels_from_names(set().union(*(p["classes"] for p in parsed)), source)
    name_labels(records, label_set)
    return label_set

"""labelme: a folder of images with one JSON per image beside them (``--format labelme``).

Each JSON is ``{"version", "flags", "shapes": [{"label", "points": [[x, y], ...],
"shape_type": "polygon" | "rectangle" | "circle" | ..., "group_id", "flags"}],
"imagePath", "imageData", "imageHeight", "imageWidth"}``. ``imagePath`` is relative to
the JSON. Polygons, rectangles (two corners) and circles (centre and a point on the rim)
are regions; shapes with the same label and ``group_id`` are one instance (an object
cut in two by an occluder). Lines and points are not regions: skipped, counted.

Class names are the labels, sorted (category ids 1..K). Splits: a folder with train/
and val/ subfolders validates on val/; a single folder is split by share.
"""
import logging
import math
import os

from fashion.data.export_loading import (SUBSET_NAMES, ellipse, labels_of_names, load_export,
                                 polygon, rectangle)
from fashion.data.labels import read_json

log = logging.getLogger("fashion")


def is_labelme(data):
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) \
        and "imagePath" in data


def labelme_files(folder):
    """The *.json files of a folder, sorted."""
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.lower().endswith(".json") and os.path.isfile(os.path.join(folder, n)))


def labelme_sources(path):
    """--dataset of labelme data -> (train folder, val folder or None)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(os.path.abspath(path))
    for sub in SUBSET_NAMES["train"]:
        if os.path.isdir(os.path.join(path, sub)) and labelme_files(os.path.join(path, sub)):
            val = next((os.path.join(path, v) for v in SUBSET_NAMES["val"]
                        if os.path.isdir(os.path.join(path, v))), None)
            return os.path.join(path, sub), val
    if not labelme_files(path):
        raise ValueError(f"{path} holds no labelme JSON files (one <image>.json per image, "
                         "saved by labelme beside the image); pass the folder labelme "
                         "saved into as --dataset.")
    return path, None


def _region(shape, size, what):
    """A labelme shape -> {"polygons"} or {"ellipse"}; ValueError when it is no region."""
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points") or []
    try:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
    except (TypeError, IndexError, KeyError):
        raise ValueError(f"{what} has points that are not [x, y] pairs") from None
    if kind == "polygon":
        return {"polygons": [polygon(xs, ys, size, what)]}
    if kind == "rectangle":
        if len(points) != 2:
            raise ValueError(f"{what} is a rectangle of {len(points)} points, not 2 corners")
        return {"polygons": [rectangle(xs[0], ys[0], xs[1], ys[1], size, what)]}
    if kind == "circle":
        if len(points) != 2:
            raise ValueError(f"{what} is a circle of {len(points)} points, not 2")
        r = math.hypot(float(xs[1]) - float(xs[0]), float(ys[1]) - float(ys[0]))
        return {"ellipse": ellipse(xs[0], ys[0], r, r, 0.0, size, what)}
    raise ValueError(f"{what} is a {kind!r}, not a region (polygon, rectangle or circle)")


def read_labelme(json_path):
    """One labelme JSON -> (record, class names, bad items, shape count)."""
    data = read_json(json_path)
    name = os.path.basename(json_path)
    if not is_labelme(data):
        raise ValueError(f"{name} is not a labelme file (no 'shapes' and 'imagePath')")
    size = None
    if data.get("imageHeight") and data.get("imageWidth"):
        size = (int(data["imageHeight"]), int(data["imageWidth"]))
    anns, groups, names, bad = [], {}, set(), []
    for n, shape in enumerate(data["shapes"], start=1):
        what = f"{name} shape {n}"
        try:
            label = str(shape.get("label") or "").strip()
            if not label:
                raise ValueError(f"{what} has no label")
            ann = _region(shape, size, what)
        except (ValueError, TypeError, AttributeError) as e:
            bad.append(str(e))
            continue
        group = shape.get("group_id")
        if group is not None and "polygons" in ann and (label, group) in groups:
            groups[(label, group)]["polygons"] += ann["polygons"]
            continue
        ann.update(label=label, what=what)
        if group is not None and "polygons" in ann:
            groups[(label, group)] = ann
        names.add(label)
        anns.append(ann)
    folder = os.path.dirname(os.path.abspath(json_path))
    record = {"key": os.path.splitext(name)[0], "file": str(data["imagePath"]),
              "bases": [folder], "height": size and size[0], "width": size and size[1],
              "annotations": anns, "annotation_file": str(json_path)}
    return record, names, bad, len(data["shapes"])


def read_folder(folder):
    """All labelme JSONs of a folder -> {"records", "bad", "total", "classes"}; a JSON
    of another kind is one counted item, and ValueError when no file is labelme."""
    records, names, bad, total = [], set(), [], 0
    for path in labelme_files(folder):
        try:
            record, found, problems, shapes = read_labelme(path)
        except ValueError as e:
            bad.append(str(e))
            total += 1
            continue
        records.append(record)
        names |= found
        bad += problems
        total += shapes
    if not records:
        raise ValueError(f"{folder} holds no labelme JSON file (first problem: {bad[0]}); "
                         "pass the folder labelme saved into as --dataset.")
    return {"records": records, "bad": bad, "total": total, "classes": names}


def load_labelme(ds, path, subset="train", limit=None, split=None, val_fraction=0.2,
                 check_images=True, seed=0):
    """Adds one subset ("train", "val" or "all") of labelme data to FashionDataset ds."""
    return load_export(ds, "labelme", path, subset, limit, split, val_fraction, seed,
                       check_images, sources=labelme_sources, read=read_folder,
                       labels=labels_of_names, what="shapes and files",
                       fix="draw polygons or rectangles in labelme and save again.")

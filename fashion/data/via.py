"""VGG Image Annotator (VIA) region JSON beside a folder of images (``--format via``).

VIA 2.x "Export annotations (as json)" writes ``via_region_data.json`` (matterport's
balloon sample): ``{"<filename><size>": {"filename", "size", "regions": [{
"shape_attributes": {...}, "region_attributes": {...}}], "file_attributes": {}}}``.
VIA 1.x kept ``regions`` as a dict ``{"0": {...}}``; a saved VIA project keeps the same
entries under ``_via_img_metadata``. All three are read.

Shapes: polygon (``all_points_x``/``all_points_y``), rect (``x, y, width, height``),
circle (``cx, cy, r``) and ellipse (``cx, cy, rx, ry, theta`` in radians). The class of a
region is the value of its region attribute ``class_attribute`` (a text or dropdown
value, or the one ticked checkbox); without one every region is of the class "object".

Splits: ``--dataset balloon`` with ``balloon/train/`` and ``balloon/val/`` (each a folder
of images and its JSON) validates on val/; a single folder is split by share.
"""
import logging
import os

from fashion.data.export_loading import (SUBSET_NAMES, check_image_sizes, ellipse, labels_of_names,
                                 load_export, log_once, polygon, rectangle)
from fashion.data.labels import read_json

log = logging.getLogger("fashion")

VIA_FILE = "via_region_data.json"
DEFAULT_CLASS = "object"
REGION_SHAPES = ("polygon", "rect", "circle", "ellipse")


def via_entries(data):
    """The image entries of a VIA export or project, or None when data is not VIA."""
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        data = data["_via_img_metadata"]
    if not isinstance(data, dict) or not data:
        return None
    if not any(isinstance(v, dict) and "filename" in v and "regions" in v
               for v in data.values()):
        return None
    return data


def via_json_in(folder):
    """via_region_data.json in folder, else the first *.json holding VIA entries."""
    if os.path.isfile(os.path.join(folder, VIA_FILE)):
        return os.path.join(folder, VIA_FILE)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.lower().endswith(".json") and os.path.isfile(path):
            try:
                if via_entries(read_json(path)) is not None:
                    return path
            except ValueError:
                continue
    return None


def via_sources(path):
    """--dataset of VIA data -> (train JSON, val JSON or None)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path, _val_beside(path)
    for sub in SUBSET_NAMES["train"]:
        if os.path.isdir(os.path.join(path, sub)):
            found = via_json_in(os.path.join(path, sub))
            if found:
                return found, _val_beside(found)
    found = via_json_in(path)
    if found is None:
        raise ValueError(f"{path} holds no VIA region JSON ({VIA_FILE} or another *.json "
                         "of VIA entries); export it from VIA with Annotation > Export "
                         "annotations (as json) into the image folder.")
    return found, _val_beside(found)


def _val_beside(json_path):
    folder = os.path.dirname(os.path.abspath(json_path))
    if os.path.basename(folder).lower() not in SUBSET_NAMES["train"]:
        return None
    for sub in SUBSET_NAMES["val"]:
        d = os.path.join(os.path.dirname(folder), sub)
        if os.path.isdir(d):
            found = via_json_in(d)
            if found:
                return found
    return None


def _shape(shape, what):
    """shape_attributes -> an annotation ({"polygons"} or {"ellipse"}), unchecked size."""
    kind = shape.get("name")
    try:
        if kind == "polygon":
            return {"polygons": [polygon(shape["all_points_x"], shape["all_points_y"],
                                         None, what)]}
        if kind == "rect":
            x, y = float(shape["x"]), float(shape["y"])
            return {"polygons": [rectangle(x, y, x + float(shape["width"]),
                                           y + float(shape["height"]), None, what)]}
        if kind == "circle":
            return {"ellipse": ellipse(shape["cx"], shape["cy"], shape["r"], shape["r"],
                                       0.0, None, what)}
        if kind == "ellipse":
            return {"ellipse": ellipse(shape["cx"], shape["cy"], shape["rx"], shape["ry"],
                                       shape.get("theta", 0.0), None, what)}
    except KeyError as e:
        raise ValueError(f"{what} lacks {e.args[0]!r}") from None
    raise ValueError(f"{what} is a {kind!r}, not a region (use one of "
                     f"{', '.join(REGION_SHAPES)})")


def _class_of(attrs, class_attribute, what):
    if class_attribute is None:
        return DEFAULT_CLASS
    value = (attrs or {}).get(class_attribute)
    if isinstance(value, dict):  # checkboxes: {"option": true}
        ticked = [k for k, v in value.items() if v]
        if len(ticked) != 1:
            raise ValueError(f"{what} has {len(ticked)} ticked {class_attribute!r} "
                             "options; tick exactly one")
        value = ticked[0]
    if value is None or not str(value).strip():
        raise ValueError(f"{what} has no {class_attribute!r} region attribute")
    return str(value).strip()


def read_via(json_path, class_attribute=None):
    """A VIA JSON -> (records, class names, bad items, region count)."""
    data = read_json(json_path)
    entries = via_entries(data)
    if entries is None:
        raise ValueError(f"{json_path} is not a VIA region file (no entries with "
                         "'filename' and 'regions'); export it from VIA as json or pass "
                         "the matching --format.")
    folder = os.path.dirname(os.path.abspath(json_path))
    records, names, bad, total, other_attrs = [], set(), [], 0, {}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            bad.append(f"entry {key!r} is not a VIA image entry (no 'filename')")
            continue
        regions = entry.get("regions") or []
        if isinstance(regions, dict):  # VIA 1.x
            regions = [regions[k] for k in sorted(regions, key=lambda k: (len(k), k))]
        anns = []
        for n, region in enumerate(regions, start=1):
            total += 1
            what = f"{entry['filename']} region {n}"
            try:
                ann = _shape(region.get("shape_attributes") or {}, what)
                attrs = region.get("region_attributes") or {}
                for k, v in attrs.items():
                    other_attrs.setdefault(k, set()).add(str(v))
                ann["label"] = _class_of(attrs, class_attribute, what)
            except (ValueError, AttributeError, TypeError) as e:
                bad.append(str(e))
                continue
            ann["what"] = what
            names.add(ann["label"])
            anns.append(ann)
        records.append({"key": str(key), "file": str(entry["filename"]),
                        "bases": [folder, os.path.join(folder, "images")],
                        "annotations": anns, "annotation_file": str(json_path)})
    if class_attribute is None:
        _hint(json_path, other_attrs)
    return records, names, bad, total


def _hint(json_path, attrs):
    useful = {k: v for k, v in attrs.items() if 1 < len(v) <= 100}
    if useful:
        name = sorted(useful, key=lambda k: -len(useful[k]))[0]
        log_once(logging.INFO, f"{json_path}: every region is of one class "
                 f"{DEFAULT_CLASS!r}; its regions have the attribute {name!r} with "
                 f"{len(useful[name])} values, which --via-class-attribute {name} would "
                 "make classes.")


def load_via(ds, path, subset="train", limit=None, split=None, val_fraction=0.2,
             class_attribute=None, check_images=True, seed=0):
    """Adds one subset ("train", "val" or "all") of VIA data to FashionDataset ds.
    Class names: the values of the region attribute class_attribute over the train and
    val files, sorted (category ids 1..K)."""
    def read(json_path):
        records, names, bad, total = read_via(json_path, class_attribute)
        return {"records": records, "bad": bad, "total": total, "classes": names}

    fix = ("draw polygons, rectangles, circles or ellipses in VIA"
           + (f" and give each region its {class_attribute!r} attribute"
              if class_attribute else "") + ", then export again.")
    return load_export(ds, "via", path, subset, limit, split, val_fraction, seed,
                       check_images, sources=via_sources, read=read,
                       labels=labels_of_names, fix=fix, after=check_image_sizes)

"""COCO instances JSON as CVAT, Label Studio and Roboflow export it (``--format coco``).

Where the files are (``--dataset`` takes the JSON or the folder the tool wrote):
- CVAT (COCO 1.0): ``annotations/instances_default.json`` (or ``instances_<subset>.json``
  per subset) and ``images/``; masks drawn with the brush are ``iscrowd: 1``
  annotations with an uncompressed RLE (a plain ``counts`` list, column-major).
- Label Studio: ``result.json`` and ``images/``; ``file_name`` is ``images/<name>``
  (``images\\<hash>-<name>`` on Windows).
- Roboflow: ``_annotations.coco.json`` beside the images, in ``train/``, ``valid/`` and
  ``test/``; category 0 is the project's name, the supercategory of the real classes.

Polygons, compressed and uncompressed RLE; ``iscrowd: 1`` masks are instances like the
rest (that is how CVAT writes masks). Category ids may start at 0 or 1 and have gaps; the
class names are the file's. A category that is only the supercategory of others and has
no annotation (Roboflow's category 0) is left out. Images without annotations stay, as
negatives. An optional top-level ``attributes`` list with ``attribute_ids`` on the
annotations (Fashionpedia's layout) gives attributes.

Example:
    ds = FashionDataset()
    load_coco(ds, "exports/cvat_task", subset="train")
    ds.prepare()
"""
import logging
import os

from fashion.data.export_loading import SUBSET_NAMES, check_on_image, load_export, log_once
from fashion.data.fashion_dataset import _as_list
from fashion.data.labels import LabelSet, read_json

log = logging.getLogger("fashion")

EXPORT_FILES = ("_annotations.coco.json", "result.json",
                os.path.join("annotations", "instances_default.json"))
MAX_SCANNED = 5  # JSON files of a folder read to find a COCO file there
LOOKED_FOR = ("_annotations.coco.json (Roboflow), result.json (Label Studio), "
              "annotations/instances_*.json (CVAT) or another *.json with 'images' and "
              "'annotations'")


# ---------------------------------------------------------------------- where
def looks_like_coco(path):
    """True when a JSON file's text has COCO's 'images' and 'annotations' keys."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    return '"images"' in text and '"annotations"' in text


def _subset_file(folder, subset):
    """annotations/instances_<subset name>.json (any case) in folder, or None."""
    ann = os.path.join(folder, "annotations")
    names = sorted(os.listdir(ann)) if os.path.isdir(ann) else []
    for name in names:
        stem = name.lower()
        if stem.endswith(".json") and stem[:-5].startswith("instances_") and \
                stem[len("instances_"):-5] in SUBSET_NAMES[subset]:
            return os.path.join(ann, name)
    return None


def export_json(folder):
    """The annotation file of an export folder, or None."""
    for name in EXPORT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    found = _subset_file(folder, "train")
    if found:
        return found
    for sub in ("annotations", ""):
        d = os.path.join(folder, sub)
        names = [n for n in (sorted(os.listdir(d)) if os.path.isdir(d) else [])
                 if n.lower().endswith(".json") and os.path.isfile(os.path.join(d, n))]
        if len(names) > MAX_SCANNED:  # one JSON per image: labelme, not a COCO export
            continue
        for name in names:
            if looks_like_coco(os.path.join(d, name)):
                return os.path.join(d, name)
    return None


def _val_beside(json_path):
    """The val file of the same export as a train file, or None: instances_val*.json
    beside instances_train*.json, or <subset>/<same name> beside train/<name>."""
    folder, name = os.path.split(os.path.abspath(json_path))
    if name.lower()[:-5].startswith("instances_") and \
            name.lower()[len("instances_"):-5] in SUBSET_NAMES["train"]:
        return _subset_file(os.path.dirname(folder), "val")
    if os.path.basename(folder).lower() in SUBSET_NAMES["train"]:
        for sub in SUBSET_NAMES["val"]:
            candidate = os.path.join(os.path.dirname(folder), sub, name)
            if os.path.isfile(candidate):
                return candidate
    return None


def coco_sources(path):
    """--dataset of a COCO export -> (train JSON, val JSON or None)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path, _val_beside(path)
    for sub in SUBSET_NAMES["train"]:
        found = export_json(os.path.join(path, sub)) if os.path.isdir(
            os.path.join(path, sub)) else None
        if found:
            return found, _val_beside(found)
    found = export_json(path)
    if found is None:
        raise ValueError(f"{path} holds no COCO annotation file (looked for {LOOKED_FOR}); "
                         "pass the export's JSON file or folder as --dataset.")
    return found, _val_beside(found)


def image_bases(json_path):
    """Folders that file_name may be relative to: the JSON's own, its images/, and
    for annotations/<file>.json (CVAT) the export's images/ and root."""
    folder = os.path.dirname(os.path.abspath(json_path))
    bases = [folder, os.path.join(folder, "images")]
    if os.path.basename(folder) == "annotations":
        root = os.path.dirname(folder)
        bases = [os.path.join(root, "images"), root] + bases
    return bases


# ---------------------------------------------------------------------- parsing
def read_coco(json_path):
    """A COCO file -> (records, categories, attributes, bad items, shape count)."""
    data = read_json(json_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{json_path} is not a COCO instances file (it needs 'images' and "
                         "'annotations' lists); export the data as COCO (instances) or "
                         "pass the matching --format.")
    name, bad = os.path.basename(json_path), []
    records = {}
    for n, img in enumerate(data["images"]):
        try:
            key = int(img["id"])
            size = [int(img[k]) if img.get(k) else None for k in ("height", "width")]
            records[key] = {"key": key, "file": str(img["file_name"]),
                            "bases": image_bases(json_path), "height": size[0],
                            "width": size[1], "annotations": [],
                            "annotation_file": str(json_path)}
        except (KeyError, TypeError, ValueError) as e:
            bad.append(f"{name} image {n}: no valid {e}")
    attributes = data.get("attributes") or []
    known_attrs = {int(a["id"]) for a in attributes if isinstance(a, dict) and "id" in a}
    categories = {int(c["id"]): c for c in data.get("categories") or []
                  if isinstance(c, dict) and "id" in c}
    shapes = 0
    for n, ann in enumerate(data["annotations"]):
        where = f"{name} annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        try:
            record = records.get(int(ann["image_id"]))
            if record is None:
                raise ValueError(f"image_id {ann['image_id']} is not in 'images'")
            category = int(ann["category_id"])
            if category not in categories:
                raise ValueError(f"category_id {category} is not in 'categories'")
            attr_ids = tuple(sorted({int(a) for a in _as_list(ann.get("attribute_ids")
                                                             or [])}))
            unknown = [a for a in attr_ids if a not in known_attrs]
            if unknown:
                raise ValueError(f"attribute id(s) {unknown} are not in 'attributes'")
            size = (record["height"], record["width"]) if record["height"] else None
            region, count = _segmentation(ann.get("segmentation"), size, where, bad)
            shapes += count
        except (KeyError, TypeError, ValueError) as e:
            shapes += 1
            msg = f"{e.args[0]!r} is missing" if isinstance(e, KeyError) else str(e)
            bad.append(msg if msg.startswith(where) else f"{where}: {msg}")
            continue
        if region is not None:
            record["annotations"].append(dict(region, category_id=category,
                                              attribute_ids=attr_ids))
    return list(records.values()), categories, attributes, bad, shapes


def _segmentation(seg, size, where, bad):
    """A segmentation -> ({"polygons"} or {"coco_rle"} or None, shapes counted). Bad
    polygons are left out and named in bad; ValueError when nothing of it is usable."""
    seg = _as_list(seg)
    if isinstance(seg, dict):
        h, w = (int(v) for v in seg.get("size") or (0, 0))
        if "counts" not in seg or not h or not w:
            raise ValueError("the RLE needs 'size' and 'counts'")
        if size is not None and (h, w) != tuple(size):
            raise ValueError(f"the RLE mask is {h}x{w} (HxW), off the {size[0]}x{size[1]} "
                             "image")
        counts = seg["counts"]
        if isinstance(counts, list) and sum(int(c) for c in counts) != h * w:
            raise ValueError(f"the RLE counts sum to {sum(counts)}, not {h}x{w} = "
                             f"{h * w} pixels")
        return {"coco_rle": {"size": [h, w], "counts": counts}}, 1
    if not isinstance(seg, list) or not seg:
        raise ValueError("it has no segmentation (a box alone is no mask)")
    polygons = []
    for k, poly in enumerate(seg):
        what = f"polygon {k + 1}" if len(seg) > 1 else "its polygon"
        try:
            if not isinstance(poly, list) or len(poly) % 2:
                raise ValueError(f"{what} is not a flat [x1, y1, x2, y2, ...] list")
            if len(poly) < 6:
                raise ValueError(f"{what} has {len(poly) // 2} point(s); a region needs "
                                 "at least 3")
            xs, ys = [float(v) for v in poly[0::2]], [float(v) for v in poly[1::2]]
            check_on_image(min(xs), min(ys), max(xs), max(ys), size, what)
            polygons.append([float(v) for v in poly])
        except (TypeError, ValueError) as e:
            bad.append(f"{where}: {e}")
    if not polygons:
        return None, len(seg)
    return {"polygons": polygons}, len(seg)


# ---------------------------------------------------------------------- labels
def merge_categories(parts, used):
    """Categories of the train and val files -> one LabelSet (same id, same name).
    A category with no annotation that is the supercategory of others is left out."""
    merged, source = {}, parts[0][1]
    for categories, path in parts:
        for cid, c in categories.items():
            if cid in merged and merged[cid]["name"] != c.get("name"):
                raise ValueError(f"Category {cid} is {merged[cid]['name']!r} in {source} "
                                 f"but {c.get('name')!r} in {path}; export every split "
                                 "from one project so the ids agree.")
            merged.setdefault(cid, dict(c, id=cid, name=str(c.get("name", cid))))
    supers = {str(c.get("supercategory")) for c in merged.values()}
    dropped = [c for cid, c in merged.items()
               if cid not in used and c["name"] in supers
               and any(o.get("supercategory") == c["name"] for o in merged.values()
                       if o is not c)]
    for c in dropped:
        del merged[c["id"]]
        log_once(logging.INFO, f"{source}: left out category {c['id']} {c['name']!r}: "
                 "it is the supercategory of other categories and has no annotation.")
    if not merged:
        raise ValueError(f"{source} has no 'categories'; the class names come from there, "
                         "so export the file with its categories.")
    return LabelSet(list(merged.values()), source=source)


# ---------------------------------------------------------------------- loading
def _parsed(json_path):
    records, categories, attributes, bad, total = read_coco(json_path)
    return {"records": sorted(records, key=lambda r: r["key"]), "bad": bad,
            "total": total, "classes": (categories, attributes, json_path)}


def _labels(parsed, records, source):
    used = {a["category_id"] for r in records for a in r["annotations"]}
    labels = merge_categories([(p["classes"][0], p["classes"][2]) for p in parsed], used)
    attributes = parsed[0]["classes"][1]
    return LabelSet(labels.categories, attributes, source=source) if attributes else labels


def load_coco(ds, path, subset="train", limit=None, split=None, val_fraction=0.2,
              check_images=True, seed=0):
    """Adds one subset ("train", "val" or "all") of a COCO export to FashionDataset ds.
    The val images are the export's own val file (see coco_sources), the file given as
    split, or a share (split as a number, else val_fraction) held out of the train file."""
    return load_export(ds, "coco", path, subset, limit, split, val_fraction, seed,
                       check_images, sources=coco_sources, read=_parsed, labels=_labels,
                       fix="draw polygons or masks in the tool and export again.")

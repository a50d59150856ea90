"""Which format a --dataset path holds, recognised from its files when --format is left
out: the four competition layouts first (as their loaders expect them), then the
annotation-tool exports (COCO, VIA, labelme).

Example:
    fmt, why = detect_format("exports/balloon")   # -> ("via", "train/via_region_data.json")
"""
import os

from fashion.data.labels import read_json

KNOWN = ("imat2019, imat2020 (train.csv), fashionpedia (instances_attributes_*.json), "
         "deepfashion2 (train/annos/), coco (a COCO instances JSON), via "
         "(via_region_data.json) or labelme (one JSON per image)")


def _csv_format(csv_path):
    with open(csv_path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
    return "imat2020" if "AttributesIds" in header else "imat2019"


def _json_format(path):
    """The format of one JSON file, or None."""
    from fashion.data.coco_export import looks_like_coco
    from fashion.data.labelme import is_labelme
    from fashion.data.via import via_entries
    name = os.path.basename(path)
    if name.startswith("instances_attributes_") and looks_like_coco(path):
        return "fashionpedia"
    if looks_like_coco(path):
        return "coco"
    try:
        data = read_json(path)
    except ValueError:
        return None
    if via_entries(data) is not None:
        return "via"
    if is_labelme(data):
        return "labelme"
    return None


def _folder_format(folder):
    """(format, the file that shows it) of a folder, or (None, None)."""
    from fashion.data.coco_export import export_json
    from fashion.data.labelme import labelme_files
    from fashion.data.via import VIA_FILE
    if os.path.isfile(os.path.join(folder, "train.csv")):
        return _csv_format(os.path.join(folder, "train.csv")), "train.csv"
    for sub in ("train", "validation"):
        if os.path.isdir(os.path.join(folder, sub, "annos")):
            return "deepfashion2", f"{sub}/annos/"
    names = sorted(os.listdir(folder))
    for name in names:
        if name.startswith("instances_attributes_") and name.endswith(".json"):
            return "fashionpedia", name
    if os.path.isfile(os.path.join(folder, VIA_FILE)):
        return "via", VIA_FILE
    found = export_json(folder)
    if found:
        return "coco", os.path.relpath(found, folder)
    for path in labelme_files(folder)[:20]:
        fmt = _json_format(path)
        if fmt in ("via", "labelme"):
            return fmt, os.path.basename(path)
    return None, None


def detect_format(path):
    """(format, evidence) of a --dataset path; ValueError naming what was looked for."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.lower().endswith(".csv"):
            return _csv_format(path), os.path.basename(path)
        fmt = _json_format(path) if path.lower().endswith(".json") else None
        if fmt:
            return fmt, os.path.basename(path)
        raise ValueError(f"{path} is not a dataset file this program recognises; pass "
                         f"--format with one of {KNOWN}.")
    fmt, why = _folder_format(path)
    if fmt is None:  # an export with train/ valid/ folders (Roboflow, balloon)
        for sub in ("train", "training"):
            if os.path.isdir(os.path.join(path, sub)):
                fmt, inner = _folder_format(os.path.join(path, sub))
                why = inner and f"{sub}/{inner}"
                if fmt:
                    break
    if fmt is None:
        raise ValueError(f"The format of {path} is not recognisable from its files; pass "
                         f"--format with one of {KNOWN}.")
    return fmt, why

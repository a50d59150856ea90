"""Tiny datasets written exactly as annotation tools export them, for the loader tests.

Each writer returns what it wrote (the regions per image file), so a test can decode
the masks with the format's own reference (pycocotools for COCO polygons and RLE) and
compare them pixel for pixel with what the loader gives.

- cvat(root): CVAT "COCO 1.0": annotations/instances_default.json + images/ (file_name
  with a sub-folder), category ids 1 and 4, brush masks as iscrowd=1 uncompressed RLE,
  CVAT's per-annotation "attributes" dict, one image without annotations.
- label_studio(root): result.json + images/, file_name "images\\<hash>-<name>" (Windows)
  and "images/<name>", category ids from 0.
- roboflow(root): train/, valid/, test/ each with _annotations.coco.json beside the
  images; category 0 is the project (supercategory of the classes, no annotation).
- plain_coco(path): one instances JSON with compressed RLE, polygons of several parts,
  a top-level attribute list; images beside it.
- via_balloon(root): matterport's balloon layout: train/ and val/, each with
  via_region_data.json (VIA 2.x regions list; one VIA 1.x regions dict) and images.
- labelme_folder(root): one <name>.json per image (polygons, rectangles, group_id).
"""
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

H, W = 48, 64


def image(path, h=H, w=W, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8)).save(path)


def _box(poly):
    xs, ys = poly[0::2], poly[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _uncompressed_rle(mask):
    """A mask [h, w] -> {"counts": [ints], "size": [h, w]}, column-major (as CVAT and
    pycocotools' frPyObjects expect): alternating runs, starting with background."""
    flat = mask.ravel(order="F").astype(np.uint8)                  # [h * w]
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"counts": [int(c) for c in counts], "size": list(mask.shape)}


def brush_mask(h=H, w=W):
    """A ring-shaped mask (not a polygon: two runs per column)."""
    ys, xs = np.mgrid[0:h, 0:w]
    d = np.hypot(ys - h * 0.6, xs - w * 0.3)
    return (d < 12) & (d > 5)                                      # [h, w] bool


TOP = [16.2, 4.5, 48.7, 4.1, 52.3, 22.8, 12.6, 23.4]
BOTTOM = [20.5, 26.3, 44.1, 26.8, 40.7, 45.2, 22.9, 44.6]
TINY = [3.0, 3.0, 9.0, 3.0]                                        # 2 points


def cvat(root):
    """CVAT COCO 1.0 export; returns {file_name: [(category_id, segmentation)]}."""
    files = ["batch1/a.jpg", "batch1/b.jpg", "c.jpg", "empty.jpg"]
    images, anns, truth = [], [], {}
    ring = _uncompressed_rle(brush_mask())
    plan = {"batch1/a.jpg": [(1, [TOP]), (4, [BOTTOM])],
            "batch1/b.jpg": [(1, ring), (4, [BOTTOM])],
            "c.jpg": [(4, [TOP]), (1, [TINY])],                    # TINY: < 3 points
            "empty.jpg": []}
    for i, name in enumerate(files, start=1):
        image(os.path.join(root, "images", name), seed=i)
        images.append({"id": i, "width": W, "height": H, "file_name": name, "license": 0,
                       "flickr_url": "", "coco_url": "", "date_captured": 0})
        for cat, seg in plan[name]:
            crowd = isinstance(seg, dict)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "segmentation": seg, "area": 100.0,
                         "bbox": [0, 0, 10, 10] if crowd else _box(seg[0]),
                         "iscrowd": int(crowd),
                         "attributes": {"occluded": False}})
        truth[name] = [(c, s) for c, s in plan[name] if s is not plan["c.jpg"][1][1]]
    data = {"licenses": [{"name": "", "id": 0, "url": ""}],
            "info": {"contributor": "", "date_created": "", "description": "", "url": "",
                     "version": "", "year": ""},
            "categories": [{"id": 1, "name": "top", "supercategory": ""},
                           {"id": 4, "name": "trousers", "supercategory": ""}],
            "images": images, "annotations": anns}
    os.makedirs(os.path.join(root, "annotations"))
    with open(os.path.join(root, "annotations", "instances_default.json"), "w") as f:
        json.dump(data, f)
    return truth


def label_studio(root):
    """Label Studio COCO export; returns {image path on disk: [(cat, seg)]}."""
    names = ["images\\3f2a91c0-look1.jpg", "images/look2.png", "images/look3.png"]
    plan = [[(0, [TOP]), (1, [BOTTOM])], [(1, [TOP])], [(0, [BOTTOM, TOP])]]
    images, anns, truth = [], [], {}
    for i, (name, regions) in enumerate(zip(names, plan)):
        path = os.path.join(root, *name.replace("\\", "/").split("/"))
        image(path, seed=10 + i)
        images.append({"width": W, "height": H, "id": i, "file_name": name})
        for cat, seg in regions:
            anns.append({"id": len(anns), "image_id": i, "category_id": cat,
                         "segmentation": seg, "bbox": _box(seg[0]), "ignore": 0,
                         "iscrowd": 0, "area": 100.0})
        truth[path] = regions
    data = {"images": images,
            "categories": [{"id": 0, "name": "Jacket"}, {"id": 1, "name": "Skirt"}],
            "annotations": anns,
            "info": {"year": 2024, "version": "1.0", "description": "",
                     "contributor": "Label Studio", "url": "", "date_created": ""}}
    with open(os.path.join(root, "result.json"), "w") as f:
        json.dump(data, f)
    return truth


def roboflow(root):
    """Roboflow COCO Segmentation export: train/ (3 images), valid/ (2), test/ (1)."""
    categories = [{"id": 0, "name": "outfits", "supercategory": "none"},
                  {"id": 1, "name": "dress", "supercategory": "outfits"},
                  {"id": 2, "name": "hat", "supercategory": "outfits"}]
    truth = {}
    for split, count in (("train", 3), ("valid", 2), ("test", 1)):
        images, anns = [], []
        for i in range(count):
            name = f"{split}{i}_jpg.rf.0a1b2c3d{i}.jpg"
            image(os.path.join(root, split, name), seed=20 + i)
            images.append({"id": i, "license": 1, "file_name": name, "height": H,
                           "width": W, "date_captured": "2024-01-01T00:00:00+00:00"})
            regions = [(1, [BOTTOM]), (2, [TOP])]
            for cat, seg in regions:
                anns.append({"id": len(anns), "image_id": i, "category_id": cat,
                             "bbox": _box(seg[0]), "area": 100.0, "segmentation": seg,
                             "iscrowd": 0})
            truth[os.path.join(root, split, name)] = regions
        data = {"info": {"year": "2024", "version": "1"}, "licenses": [],
                "categories": categories, "images": images, "annotations": anns}
        with open(os.path.join(root, split, "_annotations.coco.json"), "w") as f:
            json.dump(data, f)
    return truth


def plain_coco(path):
    """A COCO instances file with compressed RLE and attributes; images beside it."""
    root = os.path.dirname(path)
    mask = brush_mask()
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed = {"size": [H, W], "counts": rle["counts"].decode("ascii")}
    plan = {"p.png": [(7, compressed, [2]), (3, [TOP, BOTTOM], [])],
            "q.png": [(3, [BOTTOM], [5, 2])],
            "missing.png": [(7, [TOP], [])]}                       # no such file
    images, anns = [], []
    for i, (name, regions) in enumerate(plan.items(), start=1):
        if name != "missing.png":
            image(os.path.join(root, name), seed=30 + i)
        images.append({"id": i, "file_name": name, "height": H, "width": W})
        for cat, seg, attrs in regions:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "segmentation": seg, "attribute_ids": attrs, "iscrowd": 0,
                         "area": 1.0, "bbox": [0, 0, 1, 1]})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 3, "name": "bag"}, {"id": 7, "name": "belt"}],
            "attributes": [{"id": 2, "name": "leather"}, {"id": 5, "name": "striped"}]}
    with open(path, "w") as f:
        json.dump(data, f)
    return {os.path.join(root, n): r for n, r in plan.items() if n != "missing.png"}


# ---------------------------------------------------------------------- VIA
def _via_entry(name, path, regions):
    return {"filename": name, "size": os.path.getsize(path), "regions": regions,
            "file_attributes": {}}


def via_region(shape, cls):
    return {"shape_attributes": shape, "region_attributes": {"type": cls, "note": ""}}


POLY = {"name": "polygon", "all_points_x": [10, 40, 44, 12], "all_points_y": [5, 6, 30, 28]}
RECT = {"name": "rect", "x": 30, "y": 20, "width": 25, "height": 18}
CIRCLE = {"name": "circle", "cx": 20.3, "cy": 30.7, "r": 9.4}
ELLIPSE = {"name": "ellipse", "cx": 40.3, "cy": 22.6, "rx": 18.2, "ry": 6.1, "theta": 0.6}


def via_balloon(root):
    """train/ (3 images) and val/ (2) with via_region_data.json; returns
    {image path: [(class, shape_attributes)]} of the usable regions."""
    truth = {}
    plans = {"train": {"t1.jpg": [(POLY, "hat"), (RECT, "bag")],
                       "t2.jpg": [(CIRCLE, "bag"), (ELLIPSE, "hat"),
                                  ({"name": "point", "cx": 3, "cy": 4}, "hat")],
                       "t3.jpg": [({"name": "polygon", "all_points_x": [1, 5],
                                    "all_points_y": [1, 5]}, "hat"), (RECT, "hat")]},
             "val": {"v1.jpg": [(ELLIPSE, "bag"), (POLY, "hat")],
                     "v2.jpg": [(RECT, "hat")]}}
    for split, plan in plans.items():
        entries = {}
        for k, (name, regions) in enumerate(plan.items()):
            path = os.path.join(root, split, name)
            image(path, seed=40 + k)
            listed = [via_region(s, c) for s, c in regions]
            if name == "t3.jpg":  # VIA 1.x wrote regions as a dict
                listed = {str(i): r for i, r in enumerate(listed)}
            entry = _via_entry(name, path, listed)
            entries[f"{name}{entry['size']}"] = entry
            truth[path] = [(c, s) for s, c in regions if s["name"] != "point"
                           and len(s.get("all_points_x", [0] * 3)) >= 3]
        with open(os.path.join(root, split, "via_region_data.json"), "w") as f:
            json.dump(entries, f)
    return truth


# ---------------------------------------------------------------------- labelme
def labelme_shape(label, points, kind="polygon", group=None):
    return {"label": label, "points": points, "group_id": group,
            "description": "", "shape_type": kind, "flags": {}, "mask": None}


def labelme_folder(root):
    """Four labelme files and images in one folder, plus a JSON of another kind;
    returns {image path: [(label, [polygons as flat lists])]} of the instances."""
    a = [[10.5, 5.2], [40.1, 6.3], [44.7, 30.2], [12.2, 28.9]]
    b = [[30.0, 26.0], [60.5, 44.2]]
    left = [[2.0, 30.0], [14.0, 30.0], [14.0, 46.0], [2.0, 46.0]]
    right = [[20.0, 30.0], [30.0, 30.0], [30.0, 46.0], [20.0, 46.0]]
    plan = {"img1": [labelme_shape("coat", a), labelme_shape("scarf", b, "rectangle")],
            "img2": [labelme_shape("scarf", left, group=1),
                     labelme_shape("scarf", right, group=1),
                     labelme_shape("coat", [[1, 1], [30, 2]], "line")],
            "img3": [labelme_shape("coat", b, "rectangle")],
            "img4": [labelme_shape("scarf", a)]}
    truth = {}
    for k, (stem, shapes) in enumerate(plan.items()):
        path = os.path.join(root, f"{stem}.jpg")
        image(path, seed=50 + k)
        data = {"version": "5.4.1", "flags": {}, "shapes": shapes,
                "imagePath": f"{stem}.jpg", "imageData": None,
                "imageHeight": H, "imageWidth": W}
        with open(os.path.join(root, f"{stem}.json"), "w") as f:
            json.dump(data, f)
    with open(os.path.join(root, "classes.json"), "w") as f:
        json.dump({"names": ["coat", "scarf"]}, f)                # another kind of JSON
    flat = lambda pts: [v for p in pts for v in p]              # noqa: E731
    corners = lambda p: [p[0][0], p[0][1], p[1][0], p[0][1],    # noqa: E731
                         p[1][0], p[1][1], p[0][0], p[1][1]]
    truth[os.path.join(root, "img1.jpg")] = [("coat", [flat(a)]), ("scarf", [corners(b)])]
    truth[os.path.join(root, "img2.jpg")] = [("scarf", [flat(left), flat(right)])]
    truth[os.path.join(root, "img3.jpg")] = [("coat", [corners(b)])]
    truth[os.path.join(root, "img4.jpg")] = [("scarf", [flat(a)])]
    return truth

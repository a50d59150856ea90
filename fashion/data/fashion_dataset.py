"""FashionDataset: iMaterialist 2019/2020, Fashionpedia and DeepFashion2 under matterport's
Dataset interface, with per-instance fine-grained attributes.

Masks are stored as annotations (Kaggle RLE, COCO RLE or polygons) in ``image_info`` and
decoded when ``load_mask`` asks for them. Attributes are multi-hot over a contiguous
index that depends only on the label file, so a train and a val dataset agree.

Bad rows (an RLE that does not fit its image, an unknown class or attribute id, ...) are
skipped with one warning that counts them and names the first few (a row repeated
word for word is skipped as a duplicate); a missing column or an empty file stops the
load at once. Images whose file does not exist are skipped when loading, with one
counted warning naming them (one directory listing per image folder, not a stat per
image; ``check_images=False`` keeps them); when none of the listed images exists the
load stops with one sentence. Corrupt images are reported when the image is loaded
(``load_image`` raises BadSample, a ValueError naming the file) or up front by
``verify_images()``.

Example:
    train = FashionDataset()
    train.load_imat2019("/data/imat2019", subset="train", val_fraction=0.1)
    train.prepare()
    masks, class_ids = train.load_mask(0)        # [H, W, N] bool, [N] int32
    attributes = train.load_attributes(0)        # [N, train.num_attributes] uint8
"""
import json
import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashion.data import rle
from fashion.data.labels import LabelSet, load_labels, read_json
from mrcnn.data.annotations import (clean_polygons, coco_rle_to_mask, ellipse_mask,
                                    polygons_to_mask)
from mrcnn.data.dataset import Dataset, read_image
from mrcnn.data.records import BadSample

log = logging.getLogger("fashion")

KAGGLE_COLUMNS = ["ImageId", "EncodedPixels", "Height", "Width", "ClassId"]
SUBSETS = ("train", "val", "all")


def stratified_split(image_categories, val_fraction=0.2, seed=0):
    """Deterministic split keeping every category in both parts when it has >= 2 images.

    image_categories: dict image key -> iterable of category ids.
    Returns (train_keys, val_keys), each sorted.
    """
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    keys = sorted(image_categories)
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    by_category = defaultdict(list)
    for key in order:
        for c in set(image_categories[key]):
            by_category[c].append(key)
    part = {}
    # Rarest categories first: give each one image in val and one in train.
    for c in sorted(by_category, key=lambda c: (len(by_category[c]), c)):
        images = by_category[c]
        if len(images) < 2:
            continue
        have = {part[k] for k in images if k in part}
        free = [k for k in images if k not in part]
        for side in ("val", "train"):
            if side not in have and free:
                part[free.pop(0)] = side
    n_val = sum(v == "val" for v in part.values())
    target = int(round(val_fraction * len(keys)))
    for key in order:
        if key not in part:
            part[key] = "val" if n_val < target else "train"
            n_val += part[key] == "val"
    return (sorted(k for k in keys if part[k] == "train"),
            sorted(k for k in keys if part[k] == "val"))


def _warn_bad(what, bad, total):
    if bad:
        log.warning("%s: skipped %d of %d %s; first: %s", what, len(bad), total,
                    "annotations", " | ".join(bad[:5]))


def _listing(directory, cache):
    """Names in a directory (one os.scandir, cached per directory); None if it is missing."""
    directory = str(directory)
    if directory not in cache:
        try:
            with os.scandir(directory) as entries:
                cache[directory] = {e.name for e in entries}
        except (FileNotFoundError, NotADirectoryError):
            cache[directory] = None
    return cache[directory]


def existing_images(paths, source):
    """Splits image paths into (kept, missing) by listing each folder once. Missing files
    are logged in one counted warning; ValueError when none of them exists."""
    cache, kept, missing = {}, [], []
    for path in paths:
        folder, name = os.path.split(str(path))
        names = _listing(folder or ".", cache)
        (kept if names is not None and name in names else missing).append(path)
    if missing and not kept:
        folder = os.path.dirname(str(missing[0])) or "."
        why = "does not exist" if _listing(folder, cache) is None else "holds none of them"
        raise ValueError(f"None of the {len(missing)} images listed in {source} exists: "
                         f"the image folder {folder} {why} (first missing: "
                         f"{os.path.basename(str(missing[0]))}); point the dataset at the "
                         "folder holding the images.")
    if missing:
        log.warning("%s: skipped %d of %d images whose file is missing; first: %s", source,
                    len(missing), len(paths), " | ".join(str(m) for m in missing[:5]))
    return kept, missing


def _as_list(value):
    """Fields that some JSON exports store as strings ("[1, 2]") -> Python objects."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return value


class FashionDataset(Dataset):
    """Fashion images with instance masks, categories and multi-hot attributes."""

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.labels = None
        self.source_name = None
        self.category_ids = np.array([-1], dtype=np.int64)
        self._source_files = []

    # ------------------------------------------------------------------ labels
    def _use_labels(self, labels, source, *files):
        if self.labels is not None and self.source_name != source:
            raise ValueError(f"This FashionDataset already holds {self.source_name} data; "
                             f"use a separate FashionDataset for {source}.")
        self.labels, self.source_name = labels, source
        for c in labels.categories:
            self.add_class(source, c["id"], c["name"])
        self._source_files += [str(f) for f in files if f is not None]

    @property
    def attribute_index_to_id(self):
        return self.labels.attribute_index_to_id if self.labels else np.zeros(0, np.int64)

    @property
    def attribute_id_to_index(self):
        return self.labels.attribute_id_to_index if self.labels else {}

    @property
    def attribute_names(self):
        return self.labels.attribute_names if self.labels else []

    @property
    def num_attributes(self):
        return self.labels.num_attributes if self.labels else 0

    def source_files(self):
        """The annotation and label files this dataset was read from."""
        return list(self._source_files)

    def prepare(self, class_map=None):
        super().prepare(class_map)
        # Internal class id -> the source's category id (-1 for background).
        self.category_ids = np.array([-1] + [c["id"] for c in self.class_info[1:]],
                                     dtype=np.int64)

    def class_id_of_category(self, category_id):
        """Source category id -> internal class id."""
        return self.map_source_class_id(f"{self.source_name}.{category_id}")

    # ------------------------------------------------------------------ iMaterialist
    def load_imat2019(self, dataset_dir, subset="train", limit=None, val_fraction=0.2,
                      seed=0, check_images=True):
        """iMaterialist (Fashion) 2019: train.csv with ClassId "category_attr_attr...",
        label_descriptions.json and images under train/. subset: "train", "val" (a
        deterministic stratified split of train.csv) or "all". check_images: skip rows
        whose image file is missing (counted warning)."""
        self._load_kaggle(dataset_dir, subset, limit, val_fraction, seed, 2019, check_images)

    def load_imat2020(self, dataset_dir, subset="train", limit=None, val_fraction=0.2,
                      seed=0, check_images=True):
        """iMaterialist (Fashion) 2020: train.csv with ClassId and AttributesIds."""
        self._load_kaggle(dataset_dir, subset, limit, val_fraction, seed, 2020, check_images)

    def _load_kaggle(self, dataset_dir, subset, limit, val_fraction, seed, year,
                     check_images=True):
        if subset not in SUBSETS:
            raise ValueError(f"subset {subset!r} is unknown; use 'train', 'val' or 'all'.")
        dataset_dir = Path(dataset_dir)
        csv_path = dataset_dir / "train.csv"
        label_path = dataset_dir / "label_descriptions.json"
        if not label_path.is_file():
            log.info("%s is missing; using the bundled imat%d labels.", label_path, year)
            label_path = None
        labels = load_labels(label_path or f"imat{year}")
        columns = KAGGLE_COLUMNS + (["AttributesIds"] if year == 2020 else [])
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path} does not exist; point dataset_dir at the "
                                    f"iMaterialist {year} folder holding train.csv.")
        try:
            df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{csv_path} is empty; an iMaterialist {year} train.csv needs "
                             f"the header {','.join(columns)} and one row per mask.") from None
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"{csv_path} lacks column(s) {missing} (found "
                             f"{list(df.columns)}); an iMaterialist {year} train.csv "
                             f"needs {columns}.")
        self._use_labels(labels, f"imat{year}", csv_path, label_path)
        images = self._parse_kaggle_rows(df, csv_path, labels, year)
        if subset != "all":
            categories = {k: [a["category_id"] for a in v["annotations"]]
                          for k, v in images.items()}
            train, val = stratified_split(categories, val_fraction, seed)
            keys = train if subset == "train" else val
        else:
            keys = sorted(images)
        paths = {key: str(dataset_dir / "train" / (key if Path(key).suffix else key + ".jpg"))
                 for key in keys[:limit]}
        if check_images and paths:
            kept = set(existing_images(list(paths.values()), csv_path)[0])
            paths = {k: p for k, p in paths.items() if p in kept}
        for key, path in paths.items():
            info = images[key]
            self.add_image(self.source_name, image_id=key, path=path, width=info["width"],
                           height=info["height"], annotations=info["annotations"],
                           annotation_file=str(csv_path))

    def _parse_kaggle_rows(self, df, csv_path, labels, year):
        """CSV rows -> {image id: {height, width, annotations}}; bad rows are skipped."""
        images, bad, seen = {}, [], {}
        attr_col = df["AttributesIds"] if year == 2020 else [""] * len(df)
        rows = zip(df["ImageId"], df["EncodedPixels"], df["Height"], df["Width"],
                   df["ClassId"], attr_col)
        for line, (image, pixels, h, w, class_id, attrs) in enumerate(rows, start=2):
            where = f"{csv_path.name} line {line} (ImageId {image})"
            row = (image, pixels, h, w, class_id, attrs)
            if row in seen:
                bad.append(f"{where}: a duplicate of line {seen[row]}")
                continue
            seen[row] = line
            try:
                h, w = _positive_int(h, "Height"), _positive_int(w, "Width")
                category, attr_ids = _parse_class(class_id, attrs, year)
                _check_labels(labels, category, attr_ids)
                starts, _ = rle.parse(pixels, h, w, where)
                if not len(starts):
                    raise ValueError("EncodedPixels is empty")
                entry = images.setdefault(image, {"height": h, "width": w,
                                                  "annotations": []})
                if (entry["height"], entry["width"]) != (h, w):
                    raise ValueError(f"Height/Width {h}x{w} differ from the image's "
                                     f"earlier rows ({entry['height']}x{entry['width']})")
            except ValueError as e:
                msg = str(e)
                bad.append(msg if msg.startswith(where) else f"{where}: {msg}")
                continue
            entry["annotations"].append({"rle": pixels, "category_id": category,
                                         "attribute_ids": attr_ids})
        _warn_bad(str(csv_path), bad, len(df))
        return {k: v for k, v in images.items() if v["annotations"]}

    # ------------------------------------------------------------------ Fashionpedia
    def load_fashionpedia(self, annotation_json, image_dir, limit=None, label_file=None,
                          check_images=True):
        """Fashionpedia COCO-style JSON (images, annotations with attribute_ids and
        polygon / RLE segmentations, categories, attributes). The JSON's own categories
        and attributes are used when present, else ``label_file`` (default: the bundled
        Fashionpedia list). Crowd annotations are skipped; so are images whose file is
        missing under image_dir (counted warning) unless check_images is False."""
        data = read_json(annotation_json)
        for key in ("images", "annotations"):
            if key not in data:
                raise ValueError(f"{annotation_json} has no {key!r} list; it is not a "
                                 "COCO-style annotation file.")
        if data.get("categories"):
            labels = LabelSet(data["categories"], data.get("attributes") or [],
                              source=annotation_json)
            label_path = None
        else:
            labels = load_labels(label_file or "fashionpedia")
            label_path = labels.source
        self._use_labels(labels, "fashionpedia", annotation_json, label_path)
        images = sorted(data["images"], key=lambda i: int(i["id"]))[:limit]
        sizes = {int(i["id"]): (int(i["height"]), int(i["width"])) for i in images}
        per_image, bad, crowd = defaultdict(list), [], 0
        for n, ann in enumerate(data["annotations"]):
            where = f"{Path(annotation_json).name} annotation {ann.get('id', n)}"
            try:
                image_id = int(ann["image_id"])
                if image_id not in sizes:
                    continue
                if int(ann.get("iscrowd", 0)):
                    crowd += 1
                    continue
                per_image[image_id].append(_coco_annotation(ann, labels, sizes[image_id]))
            except (ValueError, KeyError, TypeError) as e:
                bad.append(f"{where}: {e}")
        _warn_bad(str(annotation_json), bad, len(data["annotations"]))
        if crowd:
            log.info("%s: skipped %d crowd annotations.", annotation_json, crowd)
        paths = [str(Path(image_dir) / img["file_name"]) for img in images]
        kept = set(paths)
        if check_images and paths:
            kept = set(existing_images(paths, annotation_json)[0])
        for img, path in zip(images, paths):
            if path not in kept:
                continue
            image_id = int(img["id"])
            self.add_image("fashionpedia", image_id=image_id, path=path,
                           width=sizes[image_id][1], height=sizes[image_id][0],
                           annotations=per_image.get(image_id, []),
                           annotation_file=str(annotation_json))

    # ------------------------------------------------------------------ DeepFashion2
    def load_deepfashion2(self, dataset_dir, subset, limit=None, check_images=True):
        """DeepFashion2: <dataset_dir>/<subset>/annos/*.json (item1..itemN with
        category_id 1-13 and polygon ``segmentation``), images in <subset>/image/
        (an annotation file whose image is missing is skipped, counted)."""
        anno_dir = Path(dataset_dir) / subset / "annos"
        image_dir = Path(dataset_dir) / subset / "image"
        if not anno_dir.is_dir():
            raise FileNotFoundError(f"{anno_dir} does not exist; DeepFashion2 keeps "
                                    "annotations in <dataset_dir>/<subset>/annos/.")
        labels = load_labels("deepfashion2")
        self._use_labels(labels, "deepfashion2", anno_dir, labels.source)
        files = sorted(anno_dir.glob("*.json"))[:limit]
        bad, total, parsed = [], 0, []
        for path in files:
            try:
                data = read_json(path)
            except ValueError as e:
                bad.append(str(e))
                continue
            items = sorted((k for k in data if k.startswith("item")),
                           key=lambda k: int(k[4:]) if k[4:].isdigit() else 0)
            annotations = []
            for key in items:
                total += 1
                try:
                    annotations.append(_deepfashion2_item(data[key], labels))
                except (ValueError, KeyError, TypeError) as e:
                    bad.append(f"{path.name} {key}: {e}")
            parsed.append((path, str(image_dir / f"{path.stem}.jpg"), annotations))
        kept = {image for _, image, _ in parsed}
        if check_images and parsed:
            kept = set(existing_images([image for _, image, _ in parsed], anno_dir)[0])
        for path, image, annotations in parsed:
            if image in kept:
                self.add_image("deepfashion2", image_id=path.stem, path=image, width=None,
                               height=None, annotations=annotations,
                               annotation_file=str(path))
        _warn_bad(str(anno_dir), bad, max(total, len(files)))

    # ------------------------------------------------------------------ loading
    def image_size(self, image_id):
        """(height, width) of an image, from the annotations or the image header."""
        info = self.image_info[image_id]
        if not info.get("height"):
            try:
                with Image.open(info["path"]) as im:
                    info["width"], info["height"] = im.size
            except (OSError, ValueError) as e:
                raise BadSample(f"Image file {info['path']} cannot be opened ({e}); "
                                "replace it or remove it from the dataset.") from None
        return info["height"], info["width"]

    def load_image(self, image_id):
        """The image as uint8 RGB [H, W, 3]; raises BadSample (a ValueError) naming the
        file when it is missing, corrupt or not the size its annotations give."""
        info = self.image_info[image_id]
        try:
            image = read_image(info["path"])
        except (FileNotFoundError, ValueError) as e:
            raise BadSample(str(e)) from None
        h, w = info.get("height"), info.get("width")
        if h and (image.shape[0], image.shape[1]) != (h, w):
            raise BadSample(f"Image file {info['path']} is {image.shape[0]}x{image.shape[1]} "
                            f"(HxW) but {info.get('annotation_file', 'its annotation')} says "
                            f"{h}x{w}; fix Height/Width or replace the image.")
        return image

    def load_mask(self, image_id):
        """Instance masks -> (masks [H, W, N] bool, class_ids [N] int32)."""
        info = self.image_info[image_id]
        anns = info["annotations"]
        h, w = self.image_size(image_id)
        masks = np.zeros([h, w, len(anns)], dtype=bool)              # [H, W, N]
        for i, ann in enumerate(anns):
            masks[:, :, i] = decode_annotation(ann, h, w, self.image_reference(image_id))
        class_ids = np.array([self.class_id_of_category(a["category_id"]) for a in anns],
                             dtype=np.int32)                         # [N]
        return masks, class_ids

    def load_attributes(self, image_id):
        """Multi-hot attributes [N, num_attributes] uint8, in load_mask's order."""
        anns = self.image_info[image_id]["annotations"]
        out = np.zeros([len(anns), self.num_attributes], dtype=np.uint8)  # [N, A]
        for i, ann in enumerate(anns):
            out[i] = self.labels.multi_hot(ann["attribute_ids"])
        return out

    def verify_images(self, drop=False, full=False):
        """Checks every image file exists, opens and has its annotated size (``full``
        also decodes the pixels). Logs a counted warning and returns the problems;
        ``drop`` removes the bad images (call before or re-run prepare())."""
        problems, keep = [], []
        for info in self.image_info:
            try:
                with Image.open(info["path"]) as im:
                    w, h = im.size
                    if full:
                        im.load()
                if info.get("height") and (h, w) != (info["height"], info["width"]):
                    raise ValueError(f"is {h}x{w} (HxW) but the annotations say "
                                     f"{info['height']}x{info['width']}")
                keep.append(info)
            except FileNotFoundError:
                problems.append(f"{info['path']}: file does not exist")
            except (OSError, ValueError) as e:
                problems.append(f"{info['path']}: {e}")
        if problems:
            log.warning("verify_images: %d of %d images are unusable; first: %s",
                        len(problems), len(self.image_info), " | ".join(problems[:5]))
        if drop and problems:
            self.image_info = keep
            if hasattr(self, "num_images"):
                self.prepare()
        return problems


# ---------------------------------------------------------------------- parsing helpers
def _positive_int(value, column):
    try:
        v = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{column} {value!r} is not an integer") from None
    if v <= 0:
        raise ValueError(f"{column} {v} is not positive")
    return v


def _parse_class(class_id, attrs, year):
    """ClassId ("cat" or "cat_attr_attr" in 2019) and AttributesIds (2020, "a,b")."""
    parts = str(class_id).strip().split("_")
    if year == 2020:
        parts = [parts[0]] + [a for a in str(attrs).replace(" ", "").split(",") if a]
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"ClassId {class_id!r} / attributes {attrs!r} are not integer "
                         "ids") from None
    return ids[0], tuple(sorted(set(ids[1:])))


def _check_labels(labels, category, attribute_ids):
    if not labels.has_category(category):
        raise ValueError(f"category id {category} is not in {labels.source}")
    unknown = [a for a in attribute_ids if a not in labels.attribute_id_to_index]
    if unknown:
        raise ValueError(f"attribute id(s) {unknown} are not in {labels.source}")


def _coco_annotation(ann, labels, size):
    """A COCO/Fashionpedia annotation -> our annotation dict (validated)."""
    category = int(ann["category_id"])
    attribute_ids = tuple(sorted({int(a) for a in _as_list(ann.get("attribute_ids", []))}))
    _check_labels(labels, category, attribute_ids)
    seg = _as_list(ann["segmentation"])
    if isinstance(seg, dict):
        if [int(v) for v in seg.get("size", [])] != list(size):
            raise ValueError(f"RLE size {seg.get('size')} differs from the image size "
                             f"{list(size)}")
        return {"coco_rle": seg, "category_id": category, "attribute_ids": attribute_ids}
    polygons = clean_polygons(seg)
    return {"polygons": polygons, "category_id": category, "attribute_ids": attribute_ids}


def _deepfashion2_item(item, labels):
    category = int(item["category_id"])
    _check_labels(labels, category, ())
    return {"polygons": clean_polygons(item["segmentation"]), "category_id": category,
            "attribute_ids": ()}


def decode_annotation(ann, h, w, where):
    """One stored annotation -> mask [h, w] bool."""
    if "rle" in ann:
        return rle.decode(ann["rle"], h, w, where)
    if "coco_rle" in ann:
        return coco_rle_to_mask(ann["coco_rle"])
    if "ellipse" in ann:  # VIA circles and ellipses, labelme circles
        return ellipse_mask(ann["ellipse"], h, w)
    return polygons_to_mask(ann["polygons"], h, w)


def gt_coco(dataset, image_ids=None, progress=None):
    """COCO-format ground truth of a FashionDataset with its source's category ids: the
    old name (fashion.groundtruth.gt_coco) of mrcnn.evaluation.groundtruth's
    dataset_ground_truth(dataset, image_ids, dataset.category_ids), kept for one release."""
    from mrcnn.evaluation.groundtruth import dataset_ground_truth
    return dataset_ground_truth(dataset, image_ids, dataset.category_ids, progress)

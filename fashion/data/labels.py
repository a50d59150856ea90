"""Category and attribute lists of the fashion datasets (fashion/data/labels/*.json).

A ``LabelSet`` holds a dataset's categories and attributes and the contiguous index of
each attribute id (attribute ids of the 2020 taxonomy have gaps). The mapping depends
only on the label file, so a train and a val dataset built from it always agree.

Example:
    labels = load_labels("imat2019")             # or a path to a label JSON
    labels.category_name(23)                     # -> "shoe"
    labels.attribute_id_to_index[72]             # -> contiguous index of "stripe"
"""
import json
from pathlib import Path

import numpy as np

LABEL_DIR = Path(__file__).resolve().parent / "labels"
LABEL_FILES = {
    "imat2019": "imat2019_label_descriptions.json",
    "imat2020": "imat2020_label_descriptions.json",
    "fashionpedia": "fashionpedia_category_attributes_descriptions.json",
    "deepfashion2": "deepfashion2_categories.json",
}


class LabelSet:
    """Categories ({id, name, supercategory}) and attributes of one taxonomy.

    Attributes:
        categories: list of category dicts sorted by id.
        attributes: list of attribute dicts sorted by id (empty when none).
        attribute_index_to_id: int64 [A] attribute id of each contiguous index.
        attribute_id_to_index: dict attribute id -> contiguous index.
        attribute_names: list [A] of attribute names.
    """

    def __init__(self, categories, attributes=(), source="labels"):
        self.source = str(source)
        self.categories = sorted((_clean(c, self.source, "categories") for c in categories),
                                 key=lambda c: c["id"])
        self.attributes = sorted((_clean(a, self.source, "attributes") for a in attributes),
                                 key=lambda a: a["id"])
        for kind, items in (("category", self.categories), ("attribute", self.attributes)):
            ids = [i["id"] for i in items]
            if len(set(ids)) != len(ids):
                dup = sorted({i for i in ids if ids.count(i) > 1})
                raise ValueError(f"{self.source}: {kind} id(s) {dup[:5]} appear more than "
                                 "once; each id must be unique.")
        self.category_ids = [c["id"] for c in self.categories]
        self._category_names = {c["id"]: c["name"] for c in self.categories}
        self.attribute_index_to_id = np.array([a["id"] for a in self.attributes],
                                              dtype=np.int64)            # [A]
        self.attribute_id_to_index = {int(i): k for k, i in
                                      enumerate(self.attribute_index_to_id)}
        self.attribute_names = [a["name"] for a in self.attributes]

    @property
    def num_attributes(self):
        return len(self.attributes)

    def category_name(self, category_id):
        return self._category_names[category_id]

    def has_category(self, category_id):
        return category_id in self._category_names

    def attribute_id(self, name):
        """Attribute id of an exact attribute name (e.g. "stripe")."""
        for a in self.attributes:
            if a["name"] == name:
                return a["id"]
        raise KeyError(f"{self.source}: no attribute named {name!r}.")

    def category_id(self, name):
        """Category id of an exact category name (e.g. "pants")."""
        for c in self.categories:
            if c["name"] == name:
                return c["id"]
        raise KeyError(f"{self.source}: no category named {name!r}.")

    def multi_hot(self, attribute_ids):
        """Attribute ids -> uint8 [A] multi-hot over the contiguous index."""
        out = np.zeros([self.num_attributes], dtype=np.uint8)
        out[[self.attribute_id_to_index[int(i)] for i in attribute_ids]] = 1
        return out


def _clean(item, source, key):
    if not isinstance(item, dict) or "id" not in item or "name" not in item:
        raise ValueError(f"{source}: every entry of {key!r} needs 'id' and 'name'; found "
                         f"{str(item)[:80]!r}.")
    try:
        item_id = int(item["id"])
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {key} id {item['id']!r} is not an integer.") from None
    return dict(item, id=item_id)


def label_file(name_or_path):
    """A label set name ("imat2019", "imat2020", "fashionpedia", "deepfashion2") or a
    path -> the JSON file's Path."""
    if str(name_or_path) in LABEL_FILES:
        return LABEL_DIR / LABEL_FILES[str(name_or_path)]
    return Path(name_or_path)


def read_json(path):
    """Reads a JSON file with one clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check the dataset directory.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON (line {e.lineno}: {e.msg}); "
                         "replace it with an intact copy.") from None


def load_labels(name_or_path):
    """Reads a label file ({"categories": [...], "attributes": [...]}) -> LabelSet."""
    path = label_file(name_or_path)
    data = read_json(path)
    if not isinstance(data, dict) or "categories" not in data:
        raise ValueError(f"{path} has no 'categories' list; it is not a label "
                         "description file.")
    return LabelSet(data["categories"], data.get("attributes") or [], source=path)

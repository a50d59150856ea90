"""FashionDataset loaders on hand-made fixtures, bad inputs, the split and the demo set."""
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from fashion.data import rle
from fashion.data.fashion_dataset import FashionDataset, stratified_split
from fashion.data.demo_data import generate_demo
from fashion.data.labels import LABEL_DIR, load_labels

REPO = Path(__file__).resolve().parent.parent
H, W = 12, 10


def box_mask(y1, x1, y2, x2, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y1:y2, x1:x2] = True
    return m


def write_image(path, h=H, w=W):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(path)


# (ImageId, mask, ClassId) rows of a small 2019 train.csv
MASKS = {"a.jpg": [(box_mask(0, 0, 4, 4), "1_61_72"), (box_mask(5, 2, 12, 8), "6")],
         "b.jpg": [(box_mask(2, 2, 6, 9), "8_3_67")],
         "c.jpg": [(box_mask(1, 1, 3, 3), "23"), (box_mask(8, 1, 11, 9), "24")]}


def write_imat2019(root, extra_rows=(), drop_column=None):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LABEL_DIR / "imat2019_label_descriptions.json",
                    root / "label_descriptions.json")
    rows = []
    for image_id, items in MASKS.items():
        write_image(root / "train" / image_id)
        rows += [(image_id, rle.encode(m), H, W, c) for m, c in items]
    rows += list(extra_rows)
    df = pd.DataFrame(rows, columns=["ImageId", "EncodedPixels", "Height", "Width",
                                     "ClassId"])
    if drop_column:
        df = df.drop(columns=[drop_column])
    df.to_csv(root / "train.csv", index=False)
    return root


def load(root, subset="all", **kw):
    ds = FashionDataset()
    ds.load_imat2019(root, subset=subset, **kw)
    ds.prepare()
    return ds


def by_name(ds):
    return {info["id"]: i for i, info in enumerate(ds.image_info)}


def test_imat2019_masks_classes_attributes(tmp_path):
    ds = load(write_imat2019(tmp_path / "imat"))
    assert ds.num_classes == 47 and ds.num_attributes == 92
    ids = by_name(ds)
    masks, class_ids = ds.load_mask(ids["a.jpg"])
    assert masks.shape == (H, W, 2) and masks.dtype == bool and class_ids.dtype == np.int32
    np.testing.assert_array_equal(masks[:, :, 0], MASKS["a.jpg"][0][0])
    np.testing.assert_array_equal(masks[:, :, 1], MASKS["a.jpg"][1][0])
    assert list(ds.category_ids[class_ids]) == [1, 6]            # top, pants
    assert [ds.class_names[c] for c in class_ids] == ["top", "pants"]
    attributes = ds.load_attributes(ids["a.jpg"])
    assert attributes.shape == (2, 92) and attributes.dtype == np.uint8
    assert sorted(ds.attribute_index_to_id[attributes[0] == 1]) == [61, 72]
    assert attributes[1].sum() == 0
    assert ds.attribute_names[ds.attribute_id_to_index[72]] == "stripe"
    skirt = ds.load_attributes(ids["b.jpg"])
    assert sorted(ds.attribute_index_to_id[skirt[0] == 1]) == [3, 67]
    assert ds.get_source_class_id(int(ds.load_mask(ids["c.jpg"])[1][1]), "imat2019") == 24
    assert ds.load_image(ids["c.jpg"]).shape == (H, W, 3)
    assert str(tmp_path / "imat" / "train.csv") in ds.source_files()


def test_imat2020_attribute_ids_with_gaps(tmp_path):
    root = tmp_path / "imat2020"
    root.mkdir()
    shutil.copyfile(LABEL_DIR / "imat2020_label_descriptions.json",
                    root / "label_descriptions.json")
    write_image(root / "train" / "x.jpg")
    pd.DataFrame([("x", rle.encode(box_mask(0, 0, 5, 5)), H, W, "10", "115,136,281"),
                  ("x", rle.encode(box_mask(6, 0, 9, 9)), H, W, "31", ""),
                  ("x", rle.encode(box_mask(9, 0, 12, 9)), H, W, "31", "240")],
                 columns=["ImageId", "EncodedPixels", "Height", "Width", "ClassId",
                          "AttributesIds"]).to_csv(root / "train.csv", index=False)
    ds = FashionDataset()
    ds.load_imat2020(root, subset="all")   # attribute 240 is in the 235-280 gap
    ds.prepare()
    assert ds.num_attributes == 294 and ds.image_info[0]["path"].endswith("x.jpg")
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (H, W, 2) and list(ds.category_ids[class_ids]) == [10, 31]
    attributes = ds.load_attributes(0)
    assert sorted(ds.attribute_index_to_id[attributes[0] == 1]) == [115, 136, 281]
    assert ds.attribute_id_to_index[281] == 281 - 46   # ids 235-280 (46 ids) missing
    assert attributes[1].sum() == 0


def test_missing_column_stops_with_clear_error(tmp_path):
    root = write_imat2019(tmp_path / "imat", drop_column="EncodedPixels")
    with pytest.raises(ValueError, match=r"train.csv lacks column\(s\) \['EncodedPixels'\]"):
        load(root)


@pytest.mark.parametrize("row, message", [
    (("a.jpg", "100 50", H, W, "1"), "line 7 .*past the image end"),
    (("a.jpg", "1 2 3", H, W, "1"), "line 7 .*odd number"),
    (("a.jpg", "1 4", H, W, "99"), "line 7 .*category id 99"),
    (("a.jpg", "1 4", H, W, "1_61_500"), r"line 7 .*attribute id\(s\) \[500\]"),
    (("a.jpg", "1 4", H + 1, W, "1"), "line 7 .*differ from the image's earlier rows"),
    (("a.jpg", "1 4", "x", W, "1"), "line 7 .*Height 'x'"),
])
def test_bad_row_skipped_with_counted_warning(tmp_path, caplog, row, message):
    root = write_imat2019(tmp_path / "imat", extra_rows=[row])
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds = load(root)
    assert "skipped 1 of 6 annotations" in caplog.text
    assert re.search(message, caplog.text)
    masks, _ = ds.load_mask(by_name(ds)["a.jpg"])
    assert masks.shape[-1] == 2      # the valid rows of the same image are kept


def test_missing_corrupt_and_wrong_size_images(tmp_path, caplog):
    root = write_imat2019(tmp_path / "imat")
    (root / "train" / "b.jpg").write_bytes(b"not a jpeg")
    write_image(root / "train" / "c.jpg", h=H + 2)
    ds = load(root)
    ids = by_name(ds)
    (root / "train" / "a.jpg").unlink()          # gone after loading
    with pytest.raises(ValueError, match=r"a\.jpg does not exist"):
        ds.load_image(ids["a.jpg"])
    with pytest.raises(ValueError, match=r"b\.jpg cannot be read"):
        ds.load_image(ids["b.jpg"])
    with pytest.raises(ValueError, match=r"c\.jpg is 14x10 .*train\.csv says 12x10"):
        ds.load_image(ids["c.jpg"])
    with caplog.at_level(logging.WARNING, logger="fashion"):
        problems = ds.verify_images(drop=True)
    assert len(problems) == 3 and "3 of 3 images are unusable" in caplog.text
    assert ds.num_images == 0


def test_stratified_split_keeps_every_category_in_both_parts():
    rng = np.random.default_rng(1)
    cats = {f"img{i}": rng.choice(30, size=rng.integers(1, 4), replace=False).tolist()
            for i in range(200)}
    cats.update({"rare1": [99], "rare2": [99], "single": [77]})
    train, val = stratified_split(cats, val_fraction=0.2, seed=0)
    assert not set(train) & set(val) and set(train) | set(val) == set(cats)
    assert 0.15 < len(val) / len(cats) < 0.3
    train_cats = {c for k in train for c in cats[k]}
    val_cats = {c for k in val for c in cats[k]}
    assert train_cats == val_cats | {77} or val_cats == train_cats | {77}
    assert 99 in train_cats and 99 in val_cats
    assert stratified_split(cats, 0.2, seed=0) == (train, val)
    assert stratified_split(cats, 0.2, seed=1) != (train, val)


def test_train_val_subsets_through_loader(tmp_path):
    root = write_imat2019(tmp_path / "imat")
    train, val = load(root, "train", val_fraction=0.34), load(root, "val", val_fraction=0.34)
    names = {i["id"] for i in train.image_info}, {i["id"] for i in val.image_info}
    assert names[0] and names[1] and not names[0] & names[1]
    assert names[0] | names[1] == set(MASKS)
    assert list(train.attribute_index_to_id) == list(val.attribute_index_to_id)
    assert load(root, "train", limit=1).num_images == 1
    with pytest.raises(ValueError, match="subset 'test'"):
        load(root, "test")


def write_fashionpedia(path):
    poly_mask_rle = coco_mask.encode(np.asfortranarray(box_mask(2, 2, 6, 8).astype(np.uint8)))
    data = {
        "images": [{"id": 5, "width": W, "height": H, "file_name": "5.jpg"},
                   {"id": 7, "width": W, "height": H, "file_name": "7.jpg"}],
        "categories": load_labels("fashionpedia").categories,
        "attributes": load_labels("fashionpedia").attributes,
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 0, "attribute_ids": [115, 136],
             "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 33, "attribute_ids": [],
             "segmentation": {"size": [H, W], "counts": [25, 3, 9, 3, 80]},
             "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 6, "attribute_ids": [281],
             "segmentation": {"size": [H, W],
                              "counts": poly_mask_rle["counts"].decode()}, "iscrowd": 0},
            {"id": 4, "image_id": 7, "category_id": 6, "attribute_ids": [240],
             "segmentation": [[0, 0, 3, 0, 3, 3]], "iscrowd": 0},
            {"id": 5, "image_id": 7, "category_id": 6, "attribute_ids": [],
             "segmentation": [[0, 0, 3, 0, 3, 3]], "iscrowd": 1},
        ]}
    path.write_text(json.dumps(data))
    return path


def test_fashionpedia_polygons_and_rles(tmp_path, caplog):
    path = write_fashionpedia(tmp_path / "fp.json")
    ds = FashionDataset()
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds.load_fashionpedia(path, tmp_path / "images", check_images=False)
    ds.prepare()
    assert "annotation 4: attribute id(s) [240]" in caplog.text
    assert ds.num_attributes == 294 and ds.num_images == 2
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (H, W, 2) and list(ds.category_ids[class_ids]) == [0, 33]
    polygon = masks[:, :, 0]
    assert polygon[2, 2] and polygon[3, 4] and not polygon[8, 8]
    expected = np.zeros(H * W, bool)
    expected[25:28] = expected[37:40] = True          # uncompressed counts, column-major
    np.testing.assert_array_equal(masks[:, :, 1], expected.reshape(W, H).T)
    attributes = ds.load_attributes(0)
    assert sorted(ds.attribute_index_to_id[attributes[0] == 1]) == [115, 136]
    masks7, _ = ds.load_mask(1)                       # crowd and bad annotation skipped
    assert masks7.shape[-1] == 1
    np.testing.assert_array_equal(masks7[:, :, 0], box_mask(2, 2, 6, 8))


def test_fashionpedia_api_sample_areas():
    ds = FashionDataset()
    sample = REPO / "tests" / "data" / "fashionpedia_api_sample.json"
    ds.load_fashionpedia(sample, REPO / "missing-images", check_images=False)
    ds.prepare()
    data = json.loads(sample.read_text())
    areas = [float(a["area"]) for a in data["annotations"]]
    got = [a for i in ds.image_ids for a in ds.load_mask(i)[0].sum(axis=(0, 1))]
    assert len(got) == len(areas)
    np.testing.assert_allclose(sorted(got), sorted(areas), rtol=0.02, atol=10)


def test_deepfashion2(tmp_path, caplog):
    annos = tmp_path / "df2" / "validation" / "annos"
    annos.mkdir(parents=True)
    item = {"category_id": 3, "category_name": "short_sleeved_outwear",
            "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5], [7, 7, 8]]}
    (annos / "000001.json").write_text(json.dumps({
        "source": "user", "pair_id": 1, "item1": item,
        "item2": {"category_id": 13, "segmentation": [[0, 8, 9, 8, 9, 11, 0, 11]]},
        "item3": {"category_id": 14, "segmentation": [[0, 0, 2, 0, 2, 2]]}}))
    (annos / "000002.json").write_text("{broken")
    write_image(tmp_path / "df2" / "validation" / "image" / "000001.jpg")
    ds = FashionDataset()
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds.load_deepfashion2(tmp_path / "df2", "validation")
    ds.prepare()
    assert "000001.json item3: category id 14" in caplog.text
    assert "000002.json is not valid JSON" in caplog.text
    assert ds.num_classes == 14 and ds.num_attributes == 0 and ds.num_images == 1
    masks, class_ids = ds.load_mask(0)
    assert masks.shape == (H, W, 2) and list(ds.category_ids[class_ids]) == [3, 13]
    assert masks[3, 3, 0] and not masks[8, 3, 0] and masks[9, 3, 1]
    assert ds.load_attributes(0).shape == (2, 0)


def test_demo_is_deterministic_and_loads_with_attributes(tmp_path):
    a = generate_demo(tmp_path / "a", num_images=6, size=96, seed=3)
    b = generate_demo(tmp_path / "b", num_images=6, size=96, seed=3)
    assert (a / "train.csv").read_bytes() == (b / "train.csv").read_bytes()
    for f in sorted((a / "train").glob("*.jpg")):
        assert f.read_bytes() == (b / "train" / f.name).read_bytes()
    stamp = (a / "train.csv").stat().st_mtime_ns
    generate_demo(a, num_images=6, size=96, seed=3)              # same parameters: skipped
    assert (a / "train.csv").stat().st_mtime_ns == stamp
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["num_images"] == 6 and manifest["size"] == 96 and manifest["version"]
    ds = load(a)
    assert ds.num_images == 6
    names = {"top", "pants", "skirt", "shoe", "bag"}
    seen, patterns = set(), set()
    for i in ds.image_ids:
        masks, class_ids = ds.load_mask(i)
        assert masks.shape[:2] == ds.load_image(i).shape[:2] and masks.shape[-1] >= 3
        assert masks.sum(axis=(0, 1)).min() > 0
        assert not (masks.sum(axis=-1) > 1).any()                 # visible parts only
        seen |= {ds.class_names[c] for c in class_ids}
        attributes = ds.load_attributes(i)
        patterns |= {ds.attribute_names[k] for k in np.nonzero(attributes)[1]}
    assert seen <= names and {"top", "shoe"} <= seen
    assert patterns & {"plain (pattern)", "stripe", "dot", "check"}
    c = generate_demo(tmp_path / "c", num_images=6, size=96, seed=4)
    assert (c / "train.csv").read_bytes() != (a / "train.csv").read_bytes()

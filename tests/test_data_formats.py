"""Your own closet: COCO exports of CVAT, Label Studio and Roboflow, VIA region JSON and
labelme folders, written here as each tool writes them (tests/data_exports.py).

Masks are checked pixel for pixel against the regions they came from: COCO polygons and
RLE against pycocotools (the format's reference decoder) or the mask the RLE was made
from, rectangles against their pixel box, circles and ellipses against skimage's
rasteriser. The format is recognised from the files; bad regions are counted warnings
and a dataset with nothing usable is one sentence. One tiny model trains two steps on
each export through the real input pipeline; `train --report-only` draws each one.
"""
import json
import logging
import os

import numpy as np
import pytest
import skimage.draw
from PIL import Image
from pycocotools import mask as mask_utils

from fashion.data.detect_format import detect_format
from fashion.data.sources import dataset_meta, load_dataset
from tests import data_exports as ex
from tests.test_fashion_cli import assert_bad_input, run

H, W = ex.H, ex.W


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: (root, truth)} of the five exports and the plain COCO file."""
    base = tmp_path_factory.mktemp("exports")
    out = {}
    for name, write in (("cvat", ex.cvat), ("label_studio", ex.label_studio),
                        ("roboflow", ex.roboflow), ("via", ex.via_balloon),
                        ("labelme", ex.labelme_folder)):
        root = base / name
        root.mkdir()
        out[name] = (str(root), write(str(root)))
    (base / "plain").mkdir()
    out["plain"] = (str(base / "plain" / "instances.json"),
                    ex.plain_coco(str(base / "plain" / "instances.json")))
    return out


def both_splits(path, fmt, **kw):
    """(train, val) prepared datasets."""
    return tuple(load_dataset(path, fmt, subset, **kw) for subset in ("train", "val"))


def instances(ds):
    """{image path: [(class name, mask [H, W] bool)]} in annotation order."""
    out = {}
    for image_id in ds.image_ids:
        masks, class_ids = ds.load_mask(image_id)                  # [H, W, N], [N]
        out[ds.image_info[image_id]["path"]] = [
            (ds.class_names[c], masks[:, :, i]) for i, c in enumerate(class_ids)]
    return out


def coco_reference(seg, h=H, w=W):
    """pycocotools' decoding of a COCO segmentation: [h, w] bool."""
    if isinstance(seg, dict) and isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w)).astype(bool)
    if isinstance(seg, dict):
        return mask_utils.decode(dict(seg, counts=seg["counts"].encode())).astype(bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w))) > 0


def box(x1, y1, x2, y2):
    """Pixels whose centre lies inside [x1, x2] x [y1, y2]."""
    mask = np.zeros((H, W), bool)
    mask[int(np.ceil(y1 - 0.5)):int(np.floor(y2 - 0.5)) + 1,
         int(np.ceil(x1 - 0.5)):int(np.floor(x2 - 0.5)) + 1] = True
    return mask


# ---------------------------------------------------------------------- COCO
@pytest.mark.parametrize("name,names,split", [
    ("cvat", {1: "top", 4: "trousers"}, (3, 1)),
    ("label_studio", {0: "Jacket", 1: "Skirt"}, (1, 2)),
    ("roboflow", {1: "dress", 2: "hat"}, (3, 2))])
def test_coco_exports_decode_pixel_for_pixel(exports, name, names, split, caplog):
    root, truth = exports[name]
    assert detect_format(root)[0] == "coco"
    with caplog.at_level(logging.INFO, logger="fashion"):
        train, val = both_splits(root, "coco")
    # class names come from the file; Roboflow's project category 0 is left out
    assert train.class_names[1:] == val.class_names[1:] == list(names.values())
    assert [int(c) for c in train.category_ids[1:]] == list(names)
    assert (len(train.image_ids), len(val.image_ids)) == split
    got = {**instances(train), **instances(val)}
    if name == "cvat":  # file_name with a sub-folder, under images/
        got = {os.path.relpath(p, os.path.join(root, "images")): v for p, v in got.items()}
        assert "skipped 1 of 6 regions" in caplog.text and "2 point(s)" in caplog.text
        assert got["empty.jpg"] == []                         # kept as a negative
        ring = got["batch1/b.jpg"][0][1]                       # iscrowd=1, counts list
        np.testing.assert_array_equal(ring, ex.brush_mask())
    if name == "roboflow":
        assert "left out category 0 'outfits'" in caplog.text
        assert {os.path.relpath(p, root).split(os.sep)[0] for p in got} == {"train",
                                                                          "valid"}
    truth = {p: r for p, r in truth.items() if os.sep + "test" + os.sep not in p}
    assert set(got) == set(truth)
    for path, regions in truth.items():
        assert [n for n, _ in got[path]] == [names[c] for c, _ in regions], path
        for (_, mask), (_, seg) in zip(got[path], regions):
            np.testing.assert_array_equal(mask, coco_reference(seg))
            assert mask.sum() > 50


def test_plain_coco_file_with_compressed_rle_attributes_and_a_missing_image(exports,
                                                                         caplog):
    path, truth = exports["plain"]
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds = load_dataset(path, "coco", "train", split="0")    # every image in train
    assert "skipped 1 of 3 images whose file is missing" in caplog.text
    assert "missing.png" in caplog.text
    assert ds.class_names[1:] == ["bag", "belt"] and ds.attribute_names == ["leather",
                                                                           "striped"]
    got = instances(ds)
    assert set(got) == set(truth)
    for path_, regions in truth.items():
        for (name, mask), (cat, seg, _) in zip(got[path_], regions):
            np.testing.assert_array_equal(mask, coco_reference(seg))
            assert name == {3: "bag", 7: "belt"}[cat]
    p = [i for i in ds.image_ids if ds.image_info[i]["path"].endswith("p.png")][0]
    np.testing.assert_array_equal(ds.load_mask(p)[0][:, :, 0], ex.brush_mask())
    np.testing.assert_array_equal(ds.load_attributes(p), [[1, 0], [0, 0]])


# ---------------------------------------------------------------------- VIA, labelme
def via_reference(shape):
    kind = shape["name"]
    if kind == "polygon":
        xs, ys = shape["all_points_x"], shape["all_points_y"]
        return coco_reference([[v for xy in zip(xs, ys) for v in xy]])
    if kind == "rect":
        return box(shape["x"], shape["y"], shape["x"] + shape["width"],
                   shape["y"] + shape["height"])
    mask = np.zeros((H, W), bool)
    if kind == "circle":  # pixel centres: skimage's points shifted by half a pixel
        rr, cc = skimage.draw.disk((shape["cy"] - 0.5, shape["cx"] - 0.5), shape["r"],
                                   shape=(H, W))
    else:  # skimage turns counter-clockwise in (row, col); VIA's theta turns x to y
        rr, cc = skimage.draw.ellipse(shape["cy"] - 0.5, shape["cx"] - 0.5, shape["ry"],
                                      shape["rx"], (H, W), rotation=-shape["theta"])
    mask[rr, cc] = True
    return mask


def test_via_regions_and_classes_from_the_class_attribute(exports, caplog):
    root, truth = exports["via"]
    assert detect_format(root) == ("via", "train/via_region_data.json")
    with caplog.at_level(logging.INFO, logger="fashion"):
        train, val = both_splits(root, "via", via_class_attribute="type")
    assert train.class_names == val.class_names == ["BG", "bag", "hat"]
    assert len(train.image_ids) == 3 and len(val.image_ids) == 2     # train/, val/
    assert "skipped 2 of 7 regions" in caplog.text                    # point, 2 points
    got = {**instances(train), **instances(val)}
    assert set(got) == set(truth)
    for path, regions in truth.items():
        assert [n for n, _ in got[path]] == [c for c, _ in regions]
        for (_, mask), (_, shape) in zip(got[path], regions):
            np.testing.assert_array_equal(mask, via_reference(shape), err_msg=shape["name"])
    # theta turns the long axis from +x towards +y (down the image, as VIA draws it)
    e = ex.ELLIPSE
    ellipse = got[os.path.join(root, "val", "v1.jpg")][0][1]
    dx, dy = 12 * np.cos(e["theta"]), 12 * np.sin(e["theta"])
    assert ellipse[int(e["cy"] + dy), int(e["cx"] + dx)]
    assert not ellipse[int(e["cy"] - dy), int(e["cx"] + dx)]
    # --split PATH: the val images from another folder of the same format
    other = load_dataset(os.path.join(root, "val", "via_region_data.json"), "via", "val",
                         split=os.path.join(root, "train"), via_class_attribute="type")
    assert sorted(os.path.basename(i["path"]) for i in other.image_info) == [
        "t1.jpg", "t2.jpg", "t3.jpg"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fashion"):
        one = load_dataset(root, "via", "train")
    assert one.class_names == ["BG", "object"]
    assert "--via-class-attribute type would make classes" in caplog.text


def test_labelme_polygons_rectangles_and_groups(exports, caplog):
    root, truth = exports["labelme"]
    assert detect_format(root)[0] == "labelme"
    with caplog.at_level(logging.WARNING, logger="fashion"):
        train, val = both_splits(root, "labelme", split="0.5")
    assert train.class_names == ["BG", "coat", "scarf"]
    assert "skipped 2 of 8 shapes and files" in caplog.text
    assert "classes.json is not a labelme file" in caplog.text and "'line'" in caplog.text
    got = {**instances(train), **instances(val)}
    assert set(got) == set(truth) and len(train.image_ids) == len(val.image_ids) == 2
    for path, regions in truth.items():
        assert [n for n, _ in got[path]] == [c for c, _ in regions]
        for (_, mask), (_, polygons) in zip(got[path], regions):
            np.testing.assert_array_equal(mask, coco_reference(polygons))
    scarf = got[os.path.join(root, "img1.jpg")][1][1]             # a rectangle
    np.testing.assert_array_equal(scarf, box(30.0, 26.0, 60.5, 44.2))
    two_parts = got[os.path.join(root, "img2.jpg")][0][1]         # one group_id
    np.testing.assert_array_equal(two_parts, box(2, 30, 14, 46) | box(20, 30, 30, 46))


# ---------------------------------------------------------------------- recognition
def test_format_is_recognised_and_competition_layouts_keep_theirs(exports, tmp_path):
    from tests.test_fashion_dataset import write_fashionpedia, write_imat2019
    assert detect_format(write_imat2019(tmp_path / "imat")) == ("imat2019", "train.csv")
    (tmp_path / "imat2020").mkdir()
    (tmp_path / "imat2020" / "train.csv").write_text(
        "ImageId,EncodedPixels,Height,Width,ClassId,AttributesIds\n")
    assert detect_format(tmp_path / "imat2020")[0] == "imat2020"
    fp = tmp_path / "fp"
    fp.mkdir()
    write_fashionpedia(fp / "instances_attributes_train2020.json")
    assert detect_format(fp)[0] == detect_format(fp / "instances_attributes_train2020.json"
                                                 )[0] == "fashionpedia"
    (tmp_path / "df2" / "train" / "annos").mkdir(parents=True)
    assert detect_format(tmp_path / "df2") == ("deepfashion2", "train/annos/")
    assert detect_format(exports["plain"][0]) == ("coco", "instances.json")
    assert detect_format(os.path.join(exports["label_studio"][0], "result.json"))[0] == "coco"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="not recognisable from its files; pass --format"):
        detect_format(tmp_path / "notes")


# ---------------------------------------------------------------------- failures
def test_off_image_masks_are_counted_and_nothing_usable_is_one_sentence(tmp_path, caplog):
    image_file = tmp_path / "coco" / "a.png"
    ex.image(str(image_file))
    good = [[10, 10, 30, 10, 30, 30, 10, 30]]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": good},
            {"id": 2, "image_id": 1, "category_id": 1,                    # off the image
             "segmentation": [[70, 50, 90, 50, 90, 60]]},
            {"id": 3, "image_id": 1, "category_id": 1,                    # wrong RLE size
             "segmentation": {"size": [10, 10], "counts": [100]}, "iscrowd": 1},
            {"id": 4, "image_id": 9, "category_id": 1, "segmentation": good}]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "annotations": anns, "categories": [{"id": 1, "name": "sock"}]}
    (tmp_path / "coco" / "a.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds = load_dataset(str(tmp_path / "coco" / "a.json"), "coco", "train", split="0")
    assert len(ds.image_info[0]["annotations"]) == 1
    assert "skipped 3 of 4 regions" in caplog.text and "off the 64x48 (WxH)" in caplog.text
    assert "off the 48x64 image" in caplog.text and "image_id 9 is not in" in caplog.text
    logs = ["--logs", str(tmp_path / "logs"), "--report-only"]
    boxes = dict(data, annotations=[{"id": 1, "image_id": 1, "category_id": 1,
                                     "bbox": [1, 1, 5, 5], "segmentation": []}])
    (tmp_path / "coco" / "a.json").write_text(json.dumps(boxes))
    assert_bad_input(run(["train", "--dataset", str(tmp_path / "coco")] + logs),
                     "a.json has no usable region", "a box alone is no mask",
                     "export again")
    assert_bad_input(run(["train", "--dataset", str(tmp_path / "coco" / "a.json"),
                          "--format", "via"] + logs),
                     "a.json is not a VIA region file", "--format")
    labelme_dir = tmp_path / "lm"
    labelme_dir.mkdir()
    (labelme_dir / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    assert_bad_input(run(["train", "--dataset", str(labelme_dir), "--format", "labelme"]
                         + logs), "has no usable region", "draw polygons")
    via_dir = tmp_path / "via"
    via_dir.mkdir()
    (via_dir / "via_region_data.json").write_text(json.dumps({"x.jpg1": {
        "filename": "x.jpg", "size": 1, "file_attributes": {}, "regions": [
            {"shape_attributes": ex.RECT, "region_attributes": {}}]}}))
    assert_bad_input(run(["train", "--dataset", str(via_dir)] + logs),
                     "None of the 1 images listed in", "x.jpg")
    assert_bad_input(run(["train", "--dataset", str(via_dir), "--split", "2"] + logs),
                     "--split 2 is not a share between 0 and 1")
    assert not os.path.exists(tmp_path / "logs")


def test_a_run_remembers_the_options_that_give_its_classes(exports):
    from fashion.run import data_flags
    root = exports["via"][0]
    ds = load_dataset(root, "via", "train", via_class_attribute="type")
    meta = dataset_meta(ds, root, "via")
    assert meta["load_options"] == {"via_class_attribute": "type"}
    given = data_flags(meta, {"dataset": None, "format": None, "split": None,
                              "via_class_attribute": None})
    assert given == {"dataset": os.path.abspath(root), "format": "via",
                     "via_class_attribute": "type"}


# ---------------------------------------------------------------------- training
def test_report_only_on_each_export_names_the_recognised_format(exports, tmp_path):
    for name in ("cvat", "label_studio", "roboflow", "via", "labelme"):
        logs = str(tmp_path / name)
        extra = ["--via-class-attribute", "type"] if name == "via" else []
        code, out, err = run(["train", "--dataset", exports[name][0], "--logs", logs,
                              "--weights", "none", "--image-size", "64",
                              "--images-per-gpu", "2", "--report-only"] + extra)
        assert code == 0, err
        fmt = "coco" if name in ("cvat", "label_studio", "roboflow") else name
        recognised = [l for l in out.splitlines() if l.startswith("Format: ")]
        assert recognised == [f"Format: {fmt} (recognised from "
                              f"{detect_format(exports[name][0])[1]}; pass --format to "
                              "choose)"]
        for png in ("labels.png", "train_batches.png"):
            picture = np.asarray(Image.open(os.path.join(logs, "data_report", png)))
            assert picture.shape[0] > 100 and picture.std() > 5, (name, png)


def test_one_tiny_model_trains_two_steps_on_each_export(exports, tmp_path, deterministic):
    """Two classes in every export, so one model (built once) takes batches of each
    through the real input pipeline; the ground truth of each batch is the export's."""
    from fashion.config import make_config
    from mrcnn.data.pipeline import training_inputs
    from mrcnn.model import MaskRCNN
    from mrcnn.training import layers_regex, make_optimizer, set_trainable
    config = make_config(64, 3, 0, "resnet18", pretrained=False, IMAGES_PER_GPU=2,
                         TOP_DOWN_PYRAMID_SIZE=64, FPN_CLASSIF_FC_LAYERS_SIZE=128,
                         TRAIN_ROIS_PER_IMAGE=16, MIXED_PRECISION=None)
    model = MaskRCNN("training", config, str(tmp_path))
    set_trainable(model.keras_model, layers_regex("all", config.BACKBONE))
    model.keras_model.compile(optimizer=make_optimizer(config, 0.001))
    for name, kw in (("cvat", {}), ("label_studio", {}), ("roboflow", {}),
                     ("via", {"via_class_attribute": "type"}), ("labelme", {})):
        ds = load_dataset(exports[name][0], None or detect_format(exports[name][0])[0],
                          "train", **kw)
        batch = next(iter(training_inputs(ds, config, 2, shuffle=False, repeat=True)))
        ids = batch["input_gt_class_ids"].numpy()                 # [2, MAX_GT]
        assert (ids[:, 0] > 0).all() and ids.max() <= 2, name
        losses = [float(model.keras_model.train_on_batch(batch, return_dict=True)["loss"])
                  for _ in range(2)]
        assert np.isfinite(losses).all(), (name, losses)

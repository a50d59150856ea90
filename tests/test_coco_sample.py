"""samples/coco/coco.py on a generated COCO-format set: CocoDataset masks (polygons,
compressed and uncompressed RLE, crowd regions with negative class ids) and the
train -> evaluate commands with a tiny ResNet18 model."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samples.coco.coco import CocoDataset, main

SIZE = 128
TINY = ["--backbone", "resnet18", "--image-size", "128", "--no-augment", "--quiet",
        "--set", "TOP_DOWN_PYRAMID_SIZE=64", "--set", "FPN_CLASSIF_FC_LAYERS_SIZE=128",
        "--set", "TRAIN_ROIS_PER_IMAGE=16", "--set", "IMAGES_PER_GPU=1",
        "--set", "STEPS_PER_EPOCH=2", "--set", "VALIDATION_STEPS=1"]


def square_polygon(y, x, s):
    return [float(v) for v in (x, y, x + s, y, x + s, y + s, x, y + s)]


def disk(y, x, r):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r                   # [H, W]


def uncompressed_rle(mask):
    """Column-major run lengths starting with background, as COCO crowd annotations."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": [SIZE, SIZE], "counts": np.diff(np.concatenate([[0], changes])).tolist()}


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    """4 PNG images with 2 categories; every image has a polygon square and a disk as
    RLE (compressed on even images, uncompressed on odd); image 1 has a crowd region
    and image 2 a polygon with two points (unusable, skipped)."""
    base = tmp_path_factory.mktemp("coco")
    (base / "images").mkdir()
    rng = np.random.RandomState(0)
    images, anns, truth, masks = [], [], {}, []
    for i in range(4):
        image = (rng.rand(SIZE, SIZE, 3) * 60 + 40).astype(np.uint8)
        y, x, s = 10 + 6 * i, 12 + 4 * i, 40
        image[y:y + s, x:x + s] = (220, 40, 40)
        d = disk(90, 85 - 5 * i, 20)
        image[d] = (40, 40, 220)
        name = f"img_{i}.png"
        Image.fromarray(image).save(base / "images" / name)
        images.append({"id": 100 + i, "file_name": name, "height": SIZE, "width": SIZE})
        anns.append({"image_id": 100 + i, "category_id": 7, "iscrowd": 0,
                     "segmentation": [square_polygon(y, x, s)]})
        rle = mask_utils.encode(np.asfortranarray(d.astype(np.uint8)))
        rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")} if i % 2 == 0 \
            else uncompressed_rle(d)
        anns.append({"image_id": 100 + i, "category_id": 3, "iscrowd": 0,
                     "segmentation": rle})
        truth[100 + i] = d
        sq = np.zeros((SIZE, SIZE), bool)
        sq[y:y + s, x:x + s] = True
        masks += [sq, d]
    crowd = np.zeros((SIZE, SIZE), bool)
    crowd[100:120, 5:40] = True
    anns.append({"image_id": 101, "category_id": 7, "iscrowd": 1,
                 "segmentation": uncompressed_rle(crowd)})
    anns.append({"image_id": 102, "category_id": 3, "iscrowd": 0,
                 "segmentation": [[5.0, 5.0, 9.0, 9.0]]})
    masks += [crowd, np.zeros((SIZE, SIZE), bool)]
    for n, a in enumerate(anns, start=1):  # area and bbox as COCO files have them
        a["id"] = n
        m = masks[n - 1]
        ys, xs = np.nonzero(m) if m.any() else ([5], [5])
        a["area"] = float(m.sum())
        a["bbox"] = [float(min(xs)), float(min(ys)), float(max(xs) - min(xs) + 1),
                     float(max(ys) - min(ys) + 1)]
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 3, "name": "disk"}, {"id": 7, "name": "square"}]}
    path = base / "instances.json"
    path.write_text(json.dumps(data))
    return {"base": base, "json": str(path), "images": str(base / "images"),
            "truth": truth, "crowd": crowd}


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_dataset_masks_rle_and_crowd(coco_set):
    ds = CocoDataset()
    coco = ds.load_coco(annotations=coco_set["json"], images=coco_set["images"],
                        return_coco=True)
    ds.prepare()
    assert len(coco.imgs) == 4 and len(ds.image_ids) == 4
    assert ds.class_names == ["BG", "disk", "square"]
    assert ds.category_ids() == [-1, 3, 7]
    for image_id in ds.image_ids:
        info = ds.image_info[image_id]
        masks, class_ids = ds.load_mask(image_id)
        assert masks.dtype == bool and masks.shape[:2] == (SIZE, SIZE)
        assert masks.shape[-1] == len(class_ids)
        disks = masks[..., class_ids == 1]
        assert disks.shape[-1] == 1
        np.testing.assert_array_equal(disks[..., 0], coco_set["truth"][info["id"]])
        square = masks[..., class_ids == 2][..., 0]
        y1, x1, y2, x2 = utils_box(square)
        i = info["id"] - 100
        assert abs(y1 - (10 + 6 * i)) <= 1 and abs(x1 - (12 + 4 * i)) <= 1
        assert abs((y2 - y1) - 40) <= 2 and abs((x2 - x1) - 40) <= 2
        if info["id"] == 101:  # the crowd region: negative class id, its exact mask
            assert sorted(class_ids.tolist()) == [-2, 1, 2]
            np.testing.assert_array_equal(masks[..., class_ids == -2][..., 0],
                                          coco_set["crowd"])
        else:  # image 102's two-point polygon is skipped
            assert sorted(class_ids.tolist()) == [1, 2]
    assert np.asarray(ds.load_image(0)).shape == (SIZE, SIZE, 3)


def utils_box(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), xs.min(), ys.max() + 1, xs.max() + 1


def test_missing_files_are_one_clear_error(coco_set, tmp_path):
    code, _, err = run(["evaluate", "--annotations", str(tmp_path / "nope.json"),
                        "--images", coco_set["images"], "--model", "last",
                        "--logs", str(tmp_path)])
    assert code == 2
    assert err.strip().startswith("error:") and "nope.json does not exist" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(["evaluate", "--dataset", str(tmp_path), "--model", "last"])
    assert code == 2 and "instances_val2017.json" in err


def test_train_then_evaluate_prints_ap(coco_set, tmp_path):
    logs = str(tmp_path / "logs")
    data = ["--annotations", coco_set["json"], "--images", coco_set["images"]]
    code, out, err = run(["train"] + data + ["--model", "none", "--logs", logs,
                                             "--schedule", "heads:1"] + TINY)
    assert code == 0, err
    run_dir = os.path.join(logs, sorted(os.listdir(logs))[0])
    assert os.path.isfile(os.path.join(run_dir, "mask_rcnn_coco_0001.h5"))
    saved = json.load(open(os.path.join(run_dir, "coco_run.json")))
    assert saved["config"]["BACKBONE"] == "resnet18" and saved["category_ids"] == [-1, 3, 7]
    out_dir = str(tmp_path / "eval")
    code, out, err = run(["evaluate"] + data + ["--model", "last", "--logs", logs,
                                                "--limit", "3", "--out", out_dir,
                                                "--set", "DETECTION_MIN_CONFIDENCE=0.0"])
    assert code == 0, err
    assert "on 3 images" in out
    lines = {l.split()[0]: l.split()[1:] for l in out.splitlines()
             if l.startswith(("segm ", "bbox "))}
    assert set(lines) == {"segm", "bbox"}
    for values in lines.values():
        assert len(values) == 6 and all(-1.0 <= float(v) <= 1.0 for v in values)
    metrics = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert metrics["images"] == 3
    assert abs(metrics["segm"]["AP"] - float(lines["segm"][0])) < 1e-4
    with open(os.path.join(out_dir, "predictions.jsonl")) as f:
        preds = [json.loads(l) for l in f]
    assert len(preds) == metrics["detections"]
    assert {p["image_id"] for p in preds} <= {100, 101, 102}
    assert {p["category_id"] for p in preds} <= {3, 7}

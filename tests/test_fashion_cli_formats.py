"""fashion/fashion.py beyond iMaterialist: the `tfrecords` command, `train --tfrecords`
(two multi-worker processes, chief-only writes), the TPU input rule, and train + evaluate
on tiny Fashionpedia and DeepFashion2 sets written here in their own formats.

Models are tiny (resnet18, 64 px, small heads, 2 steps); commands run in-process through
main(argv), except the two workers, which are separate processes.
"""
import json
import os
import subprocess
import sys
import time
from argparse import Namespace

import numpy as np
import pytest
from PIL import Image
from skimage.draw import polygon as fill_polygon

from tests.demo_runs import run
from tests.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLI = os.path.join(ROOT, "fashion", "fashion.py")
TINY = ["--weights", "none", "--backbone", "resnet18", "--image-size", "64",
        "--schedule", "all:1", "--steps-per-epoch", "2", "--images-per-gpu", "1",
        "--set", "TOP_DOWN_PYRAMID_SIZE=64", "--set", "FPN_CLASSIF_FC_LAYERS_SIZE=128",
        "--set", "ATTRIBUTE_FC_SIZE=64", "--set", "TRAIN_ROIS_PER_IMAGE=16"]
LABELS = os.path.join(ROOT, "fashion", "data", "labels")


def one_error_line(result):
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip() and "img/s" not in l]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def checkpoint_of(stdout):
    line = next(l for l in stdout.splitlines() if l.startswith("Checkpoint: "))
    return line[len("Checkpoint: "):]


# ---------------------------------------------------------------------- tfrecords
@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """A demo set of 8 images at 64 px written as 3 train shards and 1 val shard."""
    base = tmp_path_factory.mktemp("records")
    demo = ["--dataset", "demo", "--demo-dir", str(base / "demo"), "--demo-images", "8",
            "--image-size", "64", "--logs", str(base / "logs")]
    out = {}
    for subset, shards in (("train", 3), ("val", 1)):
        code, stdout, err = run(["tfrecords"] + demo + [
            "--subset", subset, "--out", str(base / "rec" / subset),
            "--num-shards", str(shards)])
        assert code == 0, err
        out[subset] = stdout
    return {"base": base, "demo": str(base / "demo"), "stdout": out,
            "train": str(base / "rec" / "train-*.tfrecord"),
            "val": str(base / "rec" / "val-*.tfrecord")}


def test_tfrecords_command_writes_shards_that_read_back_as_the_records(records):
    from fashion.data.sources import load_dataset
    from fashion.config import make_config
    from mrcnn.data.records import build_record
    from mrcnn.data.tfrecords import read_tfrecords
    rec = records["base"] / "rec"
    shards = sorted(p.name for p in rec.glob("train-*.tfrecord"))
    assert shards == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    printed = [l for l in records["stdout"]["train"].splitlines() if l.endswith(".tfrecord")]
    assert [os.path.basename(p) for p in printed] == shards
    assert "--tfrecords '" in records["stdout"]["train"]
    assert "--val-tfrecords '" in records["stdout"]["val"]
    meta = json.loads((rec / "train.meta.json").read_text())
    ds = load_dataset(records["demo"], "imat2019", "train")
    assert meta["num_images"] == len(ds.image_ids) == 6 and meta["num_shards"] == 3
    assert meta["class_names"] == list(ds.class_names) and meta["format"] == "imat2019"
    assert meta["config"]["IMAGE_MAX_DIM"] == 64
    config = make_config(64, ds.num_classes, ds.num_attributes)
    got = list(read_tfrecords(records["train"], config).as_numpy_iterator())
    assert len(got) == 6
    for image_id, r in zip(ds.image_ids, got):
        want = build_record(ds, config, image_id)
        assert r["image"].shape == (64, 64, 3)                      # [H, W, 3]
        np.testing.assert_array_equal(r["image"], want["image"])
        np.testing.assert_array_equal(r["masks"], want["masks"])   # [H, W, N] bool
        assert r["masks"].shape[-1] == len(want["class_ids"]) > 0
        np.testing.assert_array_equal(r["class_ids"], want["class_ids"])
        np.testing.assert_array_equal(r["attributes"], want["attributes"])
        np.testing.assert_allclose(r["image_meta"], want["image_meta"])


def test_tfrecords_that_do_not_fit_the_model_stop_before_training(records):
    line = one_error_line(run(["train", "--tfrecords", records["train"],
                               "--logs", str(records["base"] / "bad")] + TINY
                              + ["--image-size", "128"]))
    assert "train-00000-of-00003.tfrecord" in line and "64x64" in line
    assert "--image-size 64" in line
    line = one_error_line(run(["train", "--tfrecords", str(records["base"] / "no-*.tfrecord"),
                               "--logs", str(records["base"] / "bad")]))
    assert "matches no file" in line
    line = one_error_line(run(["tfrecords", "--dataset", "demo", "--demo-dir",
                               records["demo"], "--demo-images", "8", "--image-size", "64",
                               "--out", str(records["base"] / "x"), "--num-shards", "0"]))
    assert "--num-shards 0" in line
    assert not os.path.exists(records["base"] / "bad")


def test_two_workers_train_from_tfrecords_and_only_the_chief_writes(records):
    """train --tfrecords under MultiWorkerMirroredStrategy in two processes: each reads
    its own shards, worker 0 writes the run directory, worker 1 writes nothing."""
    base = records["base"]
    cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, CLI, "train", "--tfrecords", records["train"],
             "--val-tfrecords", records["val"], "--strategy", "multiworker",
             "--logs", str(base / f"logs_worker{i}")] + TINY,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=420)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert "Worker 0 of 2 reads 2 of 3 TFRecord files" in outs[0]
    assert "Worker 1 of 2 reads 1 of 3 TFRecord files" in outs[1]
    assert "written by the chief worker" in outs[1]
    assert not os.path.exists(base / "logs_worker1")
    ckpt = checkpoint_of(outs[0])
    assert os.path.isfile(ckpt) and ckpt.endswith("mask_rcnn_fashion_0001.h5")
    run_file = json.loads(open(os.path.join(os.path.dirname(ckpt),
                                            "fashion_run.json")).read())
    assert run_file["tfrecords"] == records["train"]
    assert run_file["format"] == "imat2019" and run_file["config"]["IMAGE_MAX_DIM"] == 64
    assert run_file["config"]["BACKBONE"] == "resnet18"
    epochs = open(os.path.join(os.path.dirname(ckpt), "epochs.csv")).read()
    assert "val_loss" in epochs.splitlines()[0]


# ---------------------------------------------------------------------- TPU rules
def test_tpu_without_tfrecords_stops_at_once_with_one_sentence(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    t0 = time.time()
    line = one_error_line(run(["train", "--dataset", "demo", "--strategy", "tpu",
                               "--tpu", "grpc://127.0.0.1:1"]))
    assert time.time() - t0 < 5
    assert "TPUs read TFRecords" in line and "fashion.py tfrecords" in line
    assert "--tfrecords" in line and line.count(". ") == 0


def test_tpu_with_tfrecords_but_no_tpu_names_the_missing_flag(records, monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    line = one_error_line(run(["train", "--tfrecords", records["train"],
                               "--strategy", "tpu"]))
    assert "needs --tpu" in line


def test_mixed_precision_defaults_to_bfloat16_on_tpus_only():
    from fashion.cli_args import build_config
    from fashion.commands.train import precision_policy
    assert precision_policy(None, tpu=True) == "mixed_bfloat16"
    assert precision_policy(None, tpu=False) is None
    assert precision_policy("mixed_float16", tpu=True) == "mixed_float16"
    assert precision_policy("float32", tpu=True) == "float32"
    data = Namespace(num_classes=5, num_attributes=2)
    flags = dict(backbone="resnet18", weights="none", image_size=64, dataset="x", set=None)
    saved = {"config": {"MIXED_PRECISION": "mixed_float16", "BACKBONE": "resnet18"}}
    off = build_config(Namespace(mixed_precision="float32", **flags), data, False, saved)
    assert off.MIXED_PRECISION is None
    bf16 = build_config(Namespace(mixed_precision="mixed_bfloat16", **flags), data, False)
    assert bf16.MIXED_PRECISION == "mixed_bfloat16"


# ---------------------------------------------------------------------- other formats
def _scene(rng, h, w):
    """A noisy image with a top and a bottom garment -> (image [h, w, 3], polygons)."""
    image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)          # [h, w, 3]
    top = [w * 0.25, h * 0.1, w * 0.75, h * 0.1, w * 0.8, h * 0.5, w * 0.2, h * 0.5]
    bottom = [w * 0.3, h * 0.55, w * 0.7, h * 0.55, w * 0.6, h * 0.95, w * 0.4, h * 0.95]
    polys = []
    for colour, poly in (((220, 40, 40), top), ((40, 40, 220), bottom)):
        jitter = rng.uniform(-2, 2, len(poly))
        poly = [round(float(v + j), 1) for v, j in zip(poly, jitter)]
        rr, cc = fill_polygon(poly[1::2], poly[0::2], (h, w))
        image[rr, cc] = colour
        polys.append(poly)
    return image, polys


def _fashionpedia(base, rng):
    """instances_attributes_{train,val}2020.json with real Fashionpedia ids (category 0
    included), train PNGs in train/, val JPEGs in test/."""
    labels = json.load(open(os.path.join(LABELS,
                                         "fashionpedia_category_attributes_descriptions.json")))
    cats = [labels["categories"][0]["id"], labels["categories"][6]["id"]]
    attrs = [[labels["attributes"][1]["id"]], [labels["attributes"][20]["id"],
                                               labels["attributes"][100]["id"]]]
    for split, folder, count, ext in (("train", "train", 4, "png"), ("val", "test", 2, "jpg")):
        (base / folder).mkdir(parents=True)
        images, anns = [], []
        for i in range(count):
            image, polys = _scene(rng, 80, 96)
            name = f"{split}_{i}.{ext}"
            Image.fromarray(image).save(base / folder / name)
            images.append({"id": 100 + i, "file_name": name, "height": 80, "width": 96})
            for poly, cat, att in zip(polys, cats, attrs):
                xs, ys = poly[0::2], poly[1::2]
                anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat,
                             "attribute_ids": att, "segmentation": [poly], "iscrowd": 0,
                             "bbox": [min(xs), min(ys), max(xs) - min(xs),
                                      max(ys) - min(ys)], "area": 1.0})
        data = {"images": images, "annotations": anns, "categories": labels["categories"],
                "attributes": labels["attributes"]}
        (base / f"instances_attributes_{split}2020.json").write_text(json.dumps(data))
    return cats, attrs


def _deepfashion2(base, rng):
    """<split>/image/NNNNNN.jpg and <split>/annos/NNNNNN.json with item1, item2."""
    cats = [1, 8]                                  # short sleeved shirt, trousers
    for split, count in (("train", 4), ("validation", 2)):
        (base / split / "image").mkdir(parents=True)
        (base / split / "annos").mkdir(parents=True)
        for i in range(count):
            image, polys = _scene(rng, 80, 96)
            stem = f"{i + 1:06d}"
            Image.fromarray(image).save(base / split / "image" / f"{stem}.jpg", quality=95)
            anno = {"source": "shop", "pair_id": i + 1}
            for k, (poly, cat) in enumerate(zip(polys, cats), start=1):
                xs, ys = poly[0::2], poly[1::2]
                anno[f"item{k}"] = {"category_id": cat, "category_name": str(cat),
                                    "segmentation": [poly], "style": 1, "occlusion": 1,
                                    "bounding_box": [min(xs), min(ys), max(xs), max(ys)],
                                    "landmarks": [], "scale": 2, "viewpoint": 2, "zoom_in": 1}
            (base / split / "annos" / f"{stem}.json").write_text(json.dumps(anno))
    return cats


@pytest.mark.parametrize("fmt", ["fashionpedia", "deepfashion2"])
def test_train_and_evaluate_on_format(fmt, tmp_path):
    rng = np.random.default_rng(0 if fmt == "fashionpedia" else 1)
    data = tmp_path / fmt
    if fmt == "fashionpedia":
        cats, attrs = _fashionpedia(data, rng)
    else:
        cats, attrs = _deepfashion2(data, rng), None
    logs = str(tmp_path / "logs")
    code, out, err = run(["train", "--dataset", str(data), "--format", fmt,
                          "--logs", logs] + TINY)
    assert code == 0, err
    ckpt = checkpoint_of(out)
    assert os.path.isfile(ckpt)
    saved = json.load(open(os.path.join(os.path.dirname(ckpt), "fashion_run.json")))
    assert saved["format"] == fmt and saved["dataset"] == str(data)
    assert set(cats) <= set(saved["category_ids"])
    assert len(saved["attribute_index_to_id"]) == (294 if attrs else 0)
    epochs = open(os.path.join(os.path.dirname(ckpt), "epochs.csv")).read()
    assert "val_loss" in epochs.splitlines()[0]     # the val split validated each epoch
    out_dir = str(tmp_path / "eval")
    code, out, err = run(["evaluate", "--weights", ckpt, "--logs", logs, "--out", out_dir])
    assert code == 0, err
    gt = json.load(open(os.path.join(out_dir, "ground_truth_val.json")))
    assert len(gt["images"]) == 2 and len(gt["annotations"]) == 4
    assert sorted({a["category_id"] for a in gt["annotations"]}) == sorted(cats)
    areas = [a["segmentation"] for a in gt["annotations"]]
    from pycocotools import mask as mask_utils
    assert all(300 < mask_utils.area(s) < 3000 for s in areas)   # polygons decoded
    if attrs:
        assert sorted(sorted(a["attribute_ids"]) for a in gt["annotations"]) == \
            sorted(sorted(a) for a in attrs * 2)
    metrics = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert metrics["images"] == 2
    for t in ("segm", "bbox"):
        assert {"AP", "AP50", "iMat2019"} <= set(metrics[t])
        assert ("AP_iou_f1" in metrics[t]) == bool(attrs)

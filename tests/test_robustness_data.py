"""Nothing in the data breaks a command: missing images and duplicate rows are skipped
and counted, empty files are named, hostile prediction files are skipped (score) or
stop naming the line (submit), and a killed cache build leaves no worker behind."""
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as mask_utils

from fashion.data import rle
from fashion.data.fashion_dataset import FashionDataset
from tests.test_fashion_cli import assert_bad_input, run
from tests.test_fashion_dataset import write_fashionpedia, write_image, write_imat2019

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------- loaders
def test_missing_image_is_skipped_counted_and_named(tmp_path, caplog, monkeypatch):
    root = write_imat2019(tmp_path / "imat")
    (root / "train" / "b.jpg").unlink()
    listed = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda d: listed.append(d) or real_scandir(d))
    ds = FashionDataset()
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds.load_imat2019(root, subset="all")
    ds.prepare()
    assert sorted(i["id"] for i in ds.image_info) == ["a.jpg", "c.jpg"]
    assert "skipped 1 of 3 images whose file is missing" in caplog.text
    assert os.path.join("train", "b.jpg") in caplog.text
    assert len(listed) == 1                      # one listing of the folder, no stats


def test_missing_images_of_fashionpedia_and_deepfashion2(tmp_path, caplog):
    path = write_fashionpedia(tmp_path / "fp.json")
    write_image(tmp_path / "images" / "7.jpg")
    ds = FashionDataset()
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds.load_fashionpedia(path, tmp_path / "images")
    assert [i["id"] for i in ds.image_info] == [7]
    assert "skipped 1 of 2 images whose file is missing" in caplog.text
    assert "5.jpg" in caplog.text
    annos = tmp_path / "df2" / "train" / "annos"
    annos.mkdir(parents=True)
    item = {"category_id": 3, "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]]}
    for stem in ("000001", "000002"):
        (annos / f"{stem}.json").write_text(json.dumps({"item1": item}))
    write_image(tmp_path / "df2" / "train" / "image" / "000002.jpg")
    df2 = FashionDataset()
    df2.load_deepfashion2(tmp_path / "df2", "train")
    assert [i["id"] for i in df2.image_info] == ["000002"]


def test_image_folder_missing_stops_train_with_one_sentence(tmp_path):
    root = write_imat2019(tmp_path / "imat")
    for f in (root / "train").iterdir():
        f.unlink()
    (root / "train").rmdir()
    result = run(["train", "--dataset", str(root), "--format", "imat2019", "--logs",
                  str(tmp_path / "logs"), "--weights", "none", "--backbone", "resnet18",
                  "--image-size", "64"])
    assert_bad_input(result, "None of the 2 images listed in", "train.csv exists",
                     "the image folder", "does not exist")
    assert not os.path.exists(tmp_path / "logs")


def test_duplicate_row_is_skipped_with_a_count(tmp_path, caplog):
    root = write_imat2019(tmp_path / "imat")
    df = pd.read_csv(root / "train.csv", dtype=str)
    pd.concat([df, df.iloc[[1]]]).to_csv(root / "train.csv", index=False)
    ds = FashionDataset()
    with caplog.at_level(logging.WARNING, logger="fashion"):
        ds.load_imat2019(root, subset="all")
    ds.prepare()
    assert "skipped 1 of 6 annotations" in caplog.text
    assert "train.csv line 7 (ImageId a.jpg): a duplicate of line 3" in caplog.text
    a = next(i for i, info in enumerate(ds.image_info) if info["id"] == "a.jpg")
    assert ds.load_mask(a)[0].shape[-1] == 2


def test_empty_csv_names_the_file(tmp_path):
    root = write_imat2019(tmp_path / "imat")
    (root / "train.csv").write_text("")
    with pytest.raises(ValueError, match=r"imat/train\.csv is empty; an iMaterialist 2019"):
        FashionDataset().load_imat2019(root)
    assert_bad_input(run(["train", "--dataset", str(root), "--format", "imat2019",
                          "--weights", "none", "--logs", str(tmp_path / "logs")]),
                     "train.csv is empty")


def test_kaggle_rle_is_checked_against_the_image_before_allocating():
    t0 = time.time()
    with pytest.raises(ValueError, match="past the image end"):
        rle.decode("1 99999999999", 10, 10)
    with pytest.raises(ValueError, match="not an integer"):
        rle.decode("zzzz " * 100000, 10, 10)
    assert time.time() - t0 < 1


# ---------------------------------------------------------------------- predictions
def _coco_rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _ground_truth(path):
    mask = np.zeros((20, 30), bool)
    mask[4:12, 5:20] = True
    gt = {"images": [{"id": 1, "height": 20, "width": 30, "file_name": "1.jpg"}],
          "categories": [{"id": 3, "name": "shirt"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0,
                           "segmentation": _coco_rle(mask)}]}
    path.write_text(json.dumps(gt))
    return mask


def test_score_skips_masks_of_the_wrong_size_with_one_warning(tmp_path, caplog):
    mask = _ground_truth(tmp_path / "gt.json")
    good = {"image_id": 1, "category_id": 3, "score": 0.9, "segmentation": _coco_rle(mask)}
    wrong = dict(good, segmentation=_coco_rle(np.pad(mask, ((0, 4), (0, 0)))))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(json.dumps(r) for r in (good, wrong, good)) + "\n")
    with caplog.at_level(logging.WARNING, logger="mrcnn"):
        code, out, err = run(["score", "--annotations", str(tmp_path / "gt.json"),
                              "--predictions", str(pred), "--json"])
    assert code == 0, err
    assert f"skipped 1 of 3 predictions in {pred}; first: line 2: the mask is 24x30 but " \
           "image 1 is 20x30" in caplog.text
    assert json.loads(out.splitlines()[-1])["segm"]["AP"] > 0.99
    pred.write_text(json.dumps(wrong) + "\n")    # nothing left to score: an error
    assert_bad_input(run(["score", "--annotations", str(tmp_path / "gt.json"),
                          "--predictions", str(pred)]),
                     "none of the 1 predictions", "can be scored", "line 1: the mask is 24x30")


def _submit(tmp_path, records, *extra, sidecar=None):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    if sidecar is not None:
        (tmp_path / "pred.images.json").write_text(json.dumps({"images": sidecar}))
    return run(["submit", "--predictions", str(pred), "--format", "imat2019",
                "--out", str(tmp_path / "sub.csv"), *extra])


def test_submit_names_the_file_and_line_of_a_corrupt_or_wrong_size_mask(tmp_path):
    mask = np.zeros((20, 30), bool)
    mask[2:9, 3:12] = True
    good = {"image_id": "a", "filename": "a.jpg", "category_id": 1, "score": 0.9,
            "segmentation": _coco_rle(mask)}
    corrupt = dict(good, segmentation={"size": [20, 30], "counts": "zzzz" * 40})
    assert_bad_input(_submit(tmp_path, [good, corrupt]), "pred.jsonl: line 2:",
                     "character 'z'")
    wrong = dict(good, segmentation=_coco_rle(mask[:10]))
    sidecar = [{"image_id": "a", "filename": "a.jpg", "height": 20, "width": 30}]
    assert_bad_input(_submit(tmp_path, [good, wrong], sidecar=sidecar),
                     "pred.jsonl: line 2: the mask is 10x30 but image 'a' is 20x30")
    write_image(tmp_path / "imgs" / "a.jpg", h=20, w=30)
    os.remove(tmp_path / "pred.images.json")
    assert_bad_input(_submit(tmp_path, [wrong], "--images", str(tmp_path / "imgs")),
                     "line 1: the mask is 10x30 but image 'a' is 20x30")
    assert_bad_input(_submit(tmp_path, [good, wrong]), "prediction 2 of image a.jpg",
                     "[10, 30] mask but an earlier one has [20, 30]")
    assert not os.path.exists(tmp_path / "sub.csv")


def test_submit_of_an_empty_predictions_file_speaks(tmp_path, caplog):
    assert_bad_input(_submit(tmp_path, []), "pred.jsonl holds no predictions",
                     "the CSV would have no rows")
    with caplog.at_level(logging.WARNING, logger="fashion"):
        code, out, err = _submit(tmp_path, [], sidecar=[{"filename": "a.jpg"},
                                                       {"filename": "b.jpg"}])
    assert code == 0 and "pred.jsonl holds no predictions: every image gets the " \
        "placeholder row" in caplog.text
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 2


# ---------------------------------------------------------------------- cache workers
BUILD_SCRIPT = """
import os, sys, time
sys.path.insert(0, {root!r})
from samples.shapes.shapes import ShapesDataset
from mrcnn.data.h5cache import build_h5_cache
from tests.conftest import TinyConfig

class Slow(ShapesDataset):
    def load_image(self, image_id):
        open(os.path.join({pids!r}, str(os.getpid())), "w").close()
        time.sleep(0.5)
        return super().load_image(image_id)

ds = Slow()
ds.load_shapes(200, 64, 64, seed=0)
ds.prepare()
config = TinyConfig()
config.IMAGE_MIN_DIM = config.IMAGE_MAX_DIM = 64
build_h5_cache(ds, config, {out!r}, num_workers=2)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cache_workers_exit_when_the_builder_is_killed(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = BUILD_SCRIPT.format(root=ROOT, pids=str(pids), out=str(tmp_path / "c.h5"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(os.listdir(pids)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        workers = [int(p) for p in os.listdir(pids)]
        assert len(workers) == 2, "the cache build did not start two workers"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 5
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.1)
        left = [p for p in workers if _alive(p)]
    finally:
        for p in [int(p) for p in os.listdir(pids)]:
            if _alive(p) and p != os.getpid():
                os.kill(p, signal.SIGKILL)
    assert not left, f"cache workers {left} outlived their killed parent"

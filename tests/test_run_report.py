"""The run report: confusion-matrix counts of a hand-made case, mask P/R/F1 curves,
per-attribute precision / recall, early stopping, the files a tiny demo run writes
(each PNG checked for size and pixel variance), report.html in headless Chromium,
train --report-only, and TensorFlow's C++ start-up lines kept off stderr.

The demo run is tests/demo_runs.py's tiny_run (shared with test_tune and test_tta); one real
`fashion.py train` subprocess covers both --patience and the quiet start-up.
"""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from mrcnn.evaluation.confusion import (confusion_from_coco, confusion_matrix,
                                        greedy_pairs, images_of, normalize_columns)
from mrcnn.evaluation.predictions import encode_mask
from mrcnn.evaluation.thresholds import (add_matches, attribute_precision_recall,
                                         confidence_curves)
from tests.demo_runs import TINY, run, tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPORT_PNGS = ["labels.png", "train_batches.png", "confusion_matrix.png",
               "confusion_matrix_normalized.png", "mask_PR.png", "mask_F1.png",
               "val_pred_0001.png", "attribute_precision_recall.png", "training_curve.png"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def assert_picture(path, min_side=200):
    """A PNG of at least min_side px a side that is not blank: its pixels vary and
    more than 1% differ from the corner's colour (a white page with an empty axis
    frame has under 1%)."""
    from PIL import Image
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    assert min(pixels.shape[:2]) >= min_side, (path, pixels.shape)
    assert pixels.std() > 5, (path, pixels.std())
    assert (np.abs(pixels - pixels[0, 0]).max(axis=-1) > 0).mean() > 0.01, path


# ---------------------------------------------------------------------- the numbers
def _hand_made():
    """Two classes (category 7 "top", 3 "skirt"), 32x32 px, one image:
    g0 top matched by p0 top (IoU 1); g1 skirt predicted as top by p1 (IoU 0.9): the
    confusion; g2 skirt found only by p3 at score 0.1, under the matrix's 0.25: the
    miss; p2 skirt on empty background: the false positive."""
    def box(y, x, h=10, w=10):
        m = np.zeros((32, 32), bool)
        m[y:y + h, x:x + w] = True
        return m
    gts = [(box(0, 0), 7, [1, 2]), (box(0, 20), 3, []), (box(20, 0), 3, [2])]
    preds = [(box(0, 0), 7, 0.9, [1, 5]), (box(0, 21, w=9), 7, 0.8, []),
             (box(20, 20), 3, 0.7, []), (box(20, 0), 3, 0.1, [])]
    gt = {"images": [{"id": 1, "height": 32, "width": 32}],
          "categories": [{"id": 7, "name": "top"}, {"id": 3, "name": "skirt"}],
          "attributes": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"},
                         {"id": 5, "name": "c"}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "iscrowd": 0,
                           "segmentation": encode_mask(m), "area": int(m.sum()),
                           "bbox": [0, 0, 1, 1], "attribute_ids": a}
                          for i, (m, c, a) in enumerate(gts)]}
    predictions = [{"image_id": 1, "category_id": c, "score": s, "attribute_ids": a,
                    "segmentation": encode_mask(m), "attribute_probabilities": []}
                   for m, c, s, a in preds]
    return gt, predictions


# [predicted, true] over (top, skirt, background)
EXPECTED = [[1, 1, 0],     # top: g0 correct; g1 (skirt) called top
            [0, 0, 1],     # skirt: p2 on background
            [0, 1, 0]]     # background: g2 (skirt) missed


def test_confusion_matrix_counts_matches_confusion_miss_and_false_positive():
    ious = [[1.0, 0.0, 0.0, 0.0],      # [G, P] as the masks of _hand_made give them
            [0.0, 0.9, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0]]
    counts = confusion_matrix([0, 1, 1], [0, 0, 1, 1], [0.9, 0.8, 0.7, 0.1], ious, 2)
    assert counts.tolist() == EXPECTED
    gt, predictions = _hand_made()
    assert confusion_from_coco(gt, predictions).tolist() == EXPECTED  # from the masks
    # with no confidence threshold, p3 finds g2: no miss
    assert confusion_matrix([0, 1, 1], [0, 0, 1, 1], [0.9, 0.8, 0.7, 0.1], ious, 2,
                            conf_threshold=0.0).tolist() == [[1, 1, 0], [0, 1, 1],
                                                             [0, 0, 0]]
    assert normalize_columns(EXPECTED)[:, 1].tolist() == [0.5, 0.0, 0.5]
    # one to one, the highest IoU first: a duplicate of g0 is a false positive
    assert greedy_pairs([[0.6, 0.8], [0.7, 0.0]]) == [(0, 1), (1, 0)]
    assert confusion_matrix([0], [0, 0], [0.9, 0.9], [[0.6, 0.8]], 2).tolist() == \
        [[1, 0, 1], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix([2], [], [], np.zeros((1, 0)), 2)


def test_mask_curves_and_attributes_of_the_hand_made_case():
    from mrcnn.evaluation.coco import evaluate_coco
    gt, predictions = _hand_made()
    images = add_matches(images_of(gt, predictions))
    curves = confidence_curves(images, 2)
    # low thresholds: top P 1/2 R 1 (F1 2/3), skirt P 1/2 R 1/2 (F1 1/2)
    assert curves["best_confidence"] == 0.0
    assert curves["best_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    at_half = int(np.argmin(np.abs(curves["confidence"] - 0.5)))
    assert curves["precision"][:, at_half].tolist() == [0.5, 0.0]
    assert curves["recall"][:, at_half].tolist() == [1.0, 0.0]
    # the precision-recall curve is COCO's: its mean is pycocotools' segm AP50
    coco = evaluate_coco(gt, predictions, iou_types=("segm",), per_class=False)
    assert curves["map50"] == pytest.approx(coco["segm"]["AP50"], abs=1e-9)
    rows = {r["name"]: r for r in attribute_precision_recall(images, gt["attributes"])}
    assert [r["name"] for r in attribute_precision_recall(images, gt["attributes"])] == \
        ["b", "a", "c"]                                     # most frequent first
    assert (rows["a"]["precision"], rows["a"]["recall"]) == (1.0, 1.0)
    assert rows["b"]["recall"] == 0.0 and math.isnan(rows["b"]["precision"])
    assert rows["c"]["precision"] == 0.0 and math.isnan(rows["c"]["recall"])


def test_early_stopping_counts_evaluations_and_continues_a_run(tmp_path):
    import keras

    from mrcnn.training.checkpoints import EarlyStopping
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False                  # as fit() sets it
    stop = EarlyStopping("segm_AP50", 2)
    stop.set_model(model)
    stop.on_train_begin()
    for epoch, value in enumerate([0.1, 0.3, math.nan, 0.3, math.nan]):
        stop.on_epoch_end(epoch, {"segm_AP50": value})
        assert not model.stop_training          # NaN: not evaluated; 0.3 again: wait 1
    stop.on_epoch_end(5, {"segm_AP50": 0.2})
    assert model.stop_training and stop.stopped and (stop.best, stop.best_epoch) == (0.3, 2)
    # a later stage or a resumed run continues the count from epochs.csv
    epochs = tmp_path / "epochs.csv"
    epochs.write_text("epoch,val_loss\n0,1.0\n1,0.9\n2,0.95\n")
    model.stop_training = False
    stop = EarlyStopping("val_loss", 2, str(epochs))
    stop.set_model(model)
    stop.on_train_begin()
    assert (stop.best, stop.best_epoch, stop.wait) == (0.9, 2, 1)
    stop.on_epoch_end(3, {"val_loss": 0.91})
    assert model.stop_training


# ---------------------------------------------------------------------- the demo run
def test_demo_run_writes_every_report_file(env):
    run_dir = env["run_dir"]
    for name in REPORT_PNGS:
        assert_picture(os.path.join(run_dir, name))
    with open(os.path.join(run_dir, "evaluation_report.json")) as f:
        report = json.load(f)
    assert report["epoch"] == 1 and 0.0 <= report["best_confidence"] <= 1.0
    assert all(0.0 <= report[f"{t}_{k}"] <= 1.0 for t in ("segm", "boundary")
               for k in ("AP", "AP50", "AP75"))
    with open(os.path.join(run_dir, "confusion_matrix.csv"), newline="") as f:
        rows = list(csv.reader(f))
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert rows[0][-1] == "background" and counts.shape[0] == counts.shape[1]
    assert counts[:, :-1].sum() == report["instances"] > 0   # every instance is counted
    with open(os.path.join(run_dir, "attribute_precision_recall.csv"), newline="") as f:
        attributes = list(csv.DictReader(f))
    assert attributes and {"precision", "recall", "instances"} <= set(attributes[0])
    page = open(os.path.join(run_dir, "report.html"), encoding="utf-8").read()
    for name in REPORT_PNGS + ["fashion_run.json", "epochs.csv", "best.json"]:
        assert f'"{name}"' in page, name
    assert "Best epoch: <b>1</b>" in page
    assert "<td>boundary_AP</td>" in page and "<td>boundary_AP75</td>" in page


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="Debian chromium / chromium-driver are not installed "
                    "(.ci/run installs them)")
def test_report_page_loads_every_picture_in_headless_chromium(env, tmp_path):
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--disable-background-networking",
                 "--window-size=1400,1000", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get("file://" + os.path.join(env["run_dir"], "report.html"))
        images = driver.find_elements(By.TAG_NAME, "img")
        sources = {os.path.basename(i.get_attribute("src")) for i in images}
        assert set(REPORT_PNGS) <= sources, sources
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert all(done and width > 0 for done, width in widths), widths
        failed = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not failed, failed                    # e.g. "Failed to load resource"
        driver.save_screenshot(str(tmp_path / "report.png"))
        curve = driver.find_element(By.ID, "training_curve")
        driver.execute_script("arguments[0].scrollIntoView()", curve)
        curve.screenshot(str(tmp_path / "training_curve.png"))
    finally:
        driver.quit()
    assert_picture(str(tmp_path / "report.png"))
    shown = np.asarray(Image.open(tmp_path / "training_curve.png").convert("L"))
    assert shown.shape[1] > 300 and shown.std() > 10      # the curve, drawn


def test_report_only_writes_the_data_report_without_training(env, tmp_path):
    logs = str(tmp_path / "logs")
    data = [a if a != env["logs"] else logs for a in env["data"]]
    code, out, err = run(["train"] + data + ["--weights", "none", "--backbone", "resnet18",
                                             "--images-per-gpu", "2", "--augment",
                                             "--report-only"])
    assert code == 0, err
    assert os.listdir(logs) == ["data_report"]              # no run, no checkpoint
    report_dir = os.path.join(logs, "data_report")
    for name in ("labels.png", "train_batches.png"):
        assert_picture(os.path.join(report_dir, name))
        assert os.path.join(report_dir, name) in out
    assert os.path.isfile(os.path.join(report_dir, "report.html"))


def test_batches_are_drawn_from_the_model_inputs(env):
    from fashion.config import make_config
    from fashion.data.fashion_dataset import FashionDataset
    from mrcnn.report.batches import batch_instances, first_batches
    from mrcnn.utils import extract_bboxes
    dataset = FashionDataset()
    dataset.load_imat2019(env["demo"], "train", val_fraction=0.2)
    dataset.prepare()
    config = make_config(128, dataset.num_classes, dataset.num_attributes, "resnet18")
    batches = first_batches(dataset, config)
    assert len(batches) == 2
    for inputs in batches:
        for i in range(config.BATCH_SIZE):
            image, boxes, masks, class_ids = batch_instances(inputs, config, i)
            assert image.shape == (128, 128, 3) and image.std() > 5
            assert len(class_ids) and (class_ids > 0).all()
            # the mini-masks pasted back fill their boxes: box of the mask == gt box
            # (within a pixel: the mini-mask is resized into the box and back)
            assert np.abs(extract_bboxes(masks) - boxes).max() <= 1


# ---------------------------------------------------------------------- the program
def test_patience_stops_a_run_that_cannot_improve_and_start_up_is_quiet(env, tmp_path):
    logs = str(tmp_path / "logs")
    data = [a if a != env["logs"] else logs for a in env["data"]]
    # A learning rate of 1e-30 moves no float32 weight (|w| > 1e-23 stays bit-equal)
    # and TRAIN_BN=false freezes the batch-norm statistics, so every evaluation scores
    # the same weights: segm_AP50 cannot improve after epoch 1, and --patience 2 must
    # end the 10-epoch schedule after epoch 3.
    argv = [sys.executable, os.path.join(ROOT, "fashion", "fashion.py"), "train"] + data + [
        "--weights", "none", "--backbone", "resnet18", "--schedule", "all:10",
        "--steps-per-epoch", "1", "--images-per-gpu", "1", "--learning-rate", "1e-30",
        "--set", "TRAIN_BN=false", "--set", "VALIDATION_STEPS=1", "--eval-limit", "2",
        "--keep-last", "1", "--keep-best", "segm_AP50", "--patience", "2"] + TINY
    control = subprocess.Popen(  # the same TensorFlow, no filter: the lines do appear
        [sys.executable, "-c", "import tensorflow as tf; "
         "print(tf.config.list_physical_devices('GPU'))"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600, cwd=str(tmp_path))  # i.e. 2>&1
    control_out = control.communicate(timeout=300)[0]
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert not [l for l in lines if "cuInit" in l or "cuda_platform" in l], proc.stdout
    assert not [l for l in lines if "absl::InitializeLog" in l], proc.stdout
    if sys.platform.startswith("linux") and "[]" in control_out:  # CPU-only Linux
        assert "cuInit" in control_out, control_out
    stops = [l for l in lines if l.startswith("Early stopping:")]
    assert len(stops) == 1 and "segm_AP50 has not improved for 2 evaluations" in stops[0]
    assert "training ends after epoch 3" in stops[0]
    assert "Trained to epoch 3 " in proc.stdout
    (run_dir,) = [os.path.join(logs, d) for d in os.listdir(logs)]
    with open(os.path.join(run_dir, "best.json")) as f:
        assert json.load(f)["epoch"] == 1
    assert sorted(n for n in os.listdir(run_dir) if n.endswith(".h5")) == [
        "mask_rcnn_fashion_0003.h5", "mask_rcnn_fashion_best.h5"]

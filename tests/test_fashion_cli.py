"""End-to-end tests of fashion/fashion.py on a 12-image demo set with a tiny model.

One trained checkpoint (resnet18, 128 px, 2 steps) is shared by the module; commands
run in-process through main(argv); `--help` runs once as a subprocess.
"""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fashion.data import rle
from fashion.config import FROM_SCRATCH, make_config
from tests.demo_runs import SMALL_HEADS, run, settings, train_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = settings(*SMALL_HEADS, "TRAIN_ROIS_PER_IMAGE=16")


def assert_bad_input(result, *words):
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip() and "it/s" not in l and "img/s" not in l]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Demo data (12 images, 128 px), a logs dir and one trained checkpoint."""
    return train_demo(tmp_path_factory, "fashion_cli", images=12, size=128, steps=2,
                      sets=TINY)


@pytest.fixture(scope="module")
def evaluated(env):
    out_dir = str(env["base"] / "eval")
    code, out, err = run(["evaluate"] + env["data"] + ["--weights", env["ckpt"],
                                                       "--out", out_dir])
    assert code == 0, err
    return out_dir, out


@pytest.fixture(scope="module")
def detected(env):
    pred = str(env["base"] / "det" / "pred.jsonl")
    overlays = str(env["base"] / "det" / "overlays")
    code, out, err = run(["detect", "--logs", env["logs"], "--weights", "last",
                          "--images", os.path.join(env["demo"], "train"), "--out", pred,
                          "--overlays", overlays, "--min-confidence", "0"])
    assert code == 0, err
    return pred, overlays


# ---------------------------------------------------------------------- config
def test_from_scratch_defaults_only_without_pretrained_weights():
    scratch = make_config(128, 6, 3, "resnet18", pretrained=False)
    tuned = make_config(128, 6, 3, "resnet18", pretrained=True)
    for key, value in FROM_SCRATCH.items():
        assert getattr(scratch, key) == value
    assert scratch.TRAIN_BN is None and scratch.OPTIMIZER == "adamw"
    assert scratch.WARMUP_STEPS > 0
    # small images: 4 per step at 2e-3; large: 2 at 1e-3; the rate follows a given batch
    assert (scratch.IMAGES_PER_GPU, scratch.LEARNING_RATE) == (4, 2e-3)
    large = make_config(1024, 6, 3, "resnet18", pretrained=False)
    assert (large.IMAGES_PER_GPU, large.LEARNING_RATE) == (2, 1e-3)
    one = make_config(128, 6, 3, "resnet18", pretrained=False, IMAGES_PER_GPU=1)
    assert one.LEARNING_RATE == 5e-4
    mine = make_config(128, 6, 3, "resnet18", pretrained=False, LEARNING_RATE=0.01)
    assert (mine.IMAGES_PER_GPU, mine.LEARNING_RATE) == (4, 0.01)
    # Pretrained fine-tuning keeps matterport's choices.
    assert tuned.TRAIN_BN is False and tuned.OPTIMIZER == "sgd"
    assert tuned.WARMUP_STEPS == 0 and tuned.LEARNING_RATE == 0.001
    assert tuned.WEIGHT_DECAY == 0.0001


def test_size_settings_scale_and_match_matterport_at_1024():
    small = make_config(128, 6, 0, "resnet50")
    assert small.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert small.MASK_SHAPE == [14, 14] and small.MINI_MASK_SHAPE == (28, 28)
    assert small.TRAIN_ROIS_PER_IMAGE < 200 and small.IMAGE_MAX_DIM == 128
    big = make_config(1024, 6, 0, "resnet50")
    assert big.RPN_ANCHOR_SCALES == (32, 64, 128, 256, 512)
    assert (big.TRAIN_ROIS_PER_IMAGE, big.POST_NMS_ROIS_TRAINING, big.MASK_SHAPE) == \
        (200, 2000, [28, 28])
    assert big.IMAGE_MIN_DIM == 800 and big.MINI_MASK_SHAPE == (56, 56)
    with pytest.raises(ValueError, match="multiple of 64"):
        make_config(100, 6, 0)


# ---------------------------------------------------------------------- help
def test_help_runs_as_a_script():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "fashion", "fashion.py"),
                           "--help"], capture_output=True, text=True, timeout=120,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "evaluate", "detect", "submit", "score", "check", "demo"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["train", "evaluate", "detect", "submit", "score",
                                     "check", "demo"])
def test_every_command_has_help_with_examples(command):
    code, out, _ = run([command, "--help"])
    assert code == 0 and "examples:" in out and f"fashion.py {command}" in out


# ---------------------------------------------------------------------- train
def test_train_writes_checkpoint_curve_run_file_and_throughput(env):
    assert os.path.isfile(env["ckpt"])
    for name in ("training_curve.png", "training_curve.csv", "fashion_run.json"):
        assert os.path.isfile(os.path.join(env["run_dir"], name)), name
    assert "images/s" in env["train_out"]
    with open(os.path.join(env["run_dir"], "fashion_run.json")) as f:
        run_file = json.load(f)
    # --weights none: the from-scratch settings are what the run used.
    assert run_file["config"]["TRAIN_BN"] is None
    assert run_file["config"]["OPTIMIZER"] == "adamw"
    assert run_file["config"]["NUM_ATTRIBUTES"] == len(run_file["attribute_index_to_id"]) > 0
    assert run_file["format"] == "imat2019" and run_file["class_names"][0] == "BG"


def test_train_resumes_last_run_and_stops_on_time_budget(env):
    code, out, err = run(["train"] + env["data"] + [
        "--weights", "last", "--schedule", "all:3", "--time-budget", "0.001"])
    assert code == 0, err
    # Resumed in the same run directory at epoch 1; the budget stops after one step.
    assert os.path.isfile(os.path.join(env["run_dir"], "mask_rcnn_fashion_0002.h5"))
    assert not os.path.exists(os.path.join(env["run_dir"], "mask_rcnn_fashion_0003.h5"))
    assert "epoch 2" in out


def test_pretrained_weights_keep_matterport_defaults(env):
    logs = str(env["base"] / "logs_pretrained")
    code, _, err = run(["train"] + env["data"][:-1] + [logs, "--weights", env["ckpt"],
                        "--backbone", "resnet18", "--schedule", "heads:1",
                        "--steps-per-epoch", "1", "--images-per-gpu", "1"] + TINY)
    assert code == 0, err
    run_dir = os.path.join(logs, os.listdir(logs)[0])
    with open(os.path.join(run_dir, "fashion_run.json")) as f:
        config = json.load(f)["config"]
    assert config["TRAIN_BN"] is False and config["OPTIMIZER"] == "sgd"
    assert config["WARMUP_STEPS"] == 0


# ---------------------------------------------------------------------- evaluate/score
def test_evaluate_prints_metrics_and_writes_plots(evaluated):
    out_dir, out = evaluated
    for name in ("metrics.json", "precision_recall_segm.png", "precision_recall_bbox.png",
                 "precision_recall_boundary.png", "per_class_segm.csv",
                 "per_class_boundary.csv", "predictions_val.jsonl", "ground_truth_val.json"):
        assert os.path.isfile(os.path.join(out_dir, name)), name
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    for t in ("segm", "bbox"):
        for key in ("AP", "AP50", "AP75", "iMat2019", "AP_iou_f1"):
            assert 0.0 <= metrics[t][key] <= 1.0
    assert set(metrics["boundary"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    for key in ("AP", "AP50", "AP75"):
        assert 0.0 <= metrics["boundary"][key] <= 1.0, key
    assert json.loads(out.strip().splitlines()[-1])["boundary"] == metrics["boundary"]
    with open(os.path.join(out_dir, "evaluation_report.json")) as f:
        report = json.load(f)
    for key in ("AP", "AP50", "AP75"):
        assert report[f"boundary_{key}"] == round(metrics["boundary"][key], 4), key
    assert any(line.startswith("boundary ") for line in out.splitlines())
    assert "Per class" in out and "AP50" in out
    # the run report: epoch 1's checkpoint gives val_pred_0001.png; the page links them
    for name in ("confusion_matrix.png", "confusion_matrix_normalized.png", "mask_PR.png",
                 "mask_F1.png", "val_pred_0001.png", "attribute_precision_recall.csv",
                 "attribute_precision_recall.png"):
        assert os.path.getsize(os.path.join(out_dir, name)) > 1000, name
        assert f'"{name}"' in open(os.path.join(out_dir, "report.html")).read(), name
    assert "a good --min-confidence for detect" in out


def _perturbed_predictions(gt, seed=0):
    """Predictions made from the ground truth: shifted masks, false positives, scores."""
    rng = np.random.default_rng(seed)
    preds = []
    for ann in gt["annotations"]:
        m = mask_utils.decode(ann["segmentation"]).astype(bool)     # [H, W]
        if rng.random() < 0.2:
            continue                                               # a miss
        m = np.roll(m, int(rng.integers(0, 4)), axis=1)            # imperfect mask
        enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "score": float(rng.random()),
                      "segmentation": {"size": enc["size"],
                                       "counts": enc["counts"].decode()}})
        if rng.random() < 0.3:                                      # a wrong class
            preds.append(dict(preds[-1], category_id=gt["categories"][0]["id"],
                              score=float(rng.random())))
    return preds


def test_score_agrees_with_pycocotools(evaluated, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt_path = os.path.join(evaluated[0], "ground_truth_val.json")
    with open(gt_path) as f:
        gt = json.load(f)
    preds = _perturbed_predictions(gt)
    pred_path = tmp_path / "pred.jsonl"
    pred_path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    code, out, err = run(["score", "--annotations", gt_path, "--predictions",
                          str(pred_path), "--metric", "coco", "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    coco_gt = COCO()
    coco_gt.dataset = json.loads(json.dumps(gt))
    for ann in coco_gt.dataset["annotations"]:
        ann["area"] = float(mask_utils.area(ann["segmentation"]))
        ann["bbox"] = list(mask_utils.toBbox(ann["segmentation"]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        for t in ("segm", "bbox"):
            e = COCOeval(coco_gt, coco_gt.loadRes(json.loads(json.dumps(preds))), t)
            e.evaluate(), e.accumulate(), e.summarize()
            assert result[t]["AP"] == pytest.approx(e.stats[0], abs=1e-9)
            assert result[t]["AP50"] == pytest.approx(e.stats[1], abs=1e-9)
    assert 0.1 < result["segm"]["AP50"] < 1.0


# ---------------------------------------------------------------------- detect
def test_detect_writes_records_sidecar_and_overlays(env, detected):
    pred, overlays = detected
    with open(pred) as f:
        records = [json.loads(line) for line in f]
    keys = {"image_id", "filename", "category_id", "bbox", "score", "segmentation",
            "mask_mean_score", "mask_area_fraction", "attribute_probabilities",
            "attribute_ids", "id"}
    assert records and all(set(r) == keys for r in records)
    r = records[0]
    h, w = r["segmentation"]["size"]
    assert isinstance(r["segmentation"]["counts"], str) and len(r["bbox"]) == 4
    assert mask_utils.decode({"size": [h, w], "counts": r["segmentation"]["counts"]
                              .encode()}).shape == (h, w)
    assert len(r["attribute_probabilities"]) > 0
    assert sorted(x["id"] for x in records) == list(range(1, len(records) + 1))
    with open(os.path.splitext(pred)[0] + ".images.json") as f:
        side = json.load(f)
    assert len(side["images"]) == 12
    assert len(os.listdir(overlays)) == 12


def test_detect_tta_merges_flipped_detections(env, tmp_path):
    one = os.path.join(env["demo"], "train", "demo_00000.jpg")
    outs = {}
    for flag in ([], ["--tta"]):
        pred = str(tmp_path / f"p{len(flag)}.jsonl")
        code, _, err = run(["detect", "--logs", env["logs"], "--weights", env["ckpt"],
                            "--images", one, "--out", pred, "--min-confidence", "0"] + flag)
        assert code == 0, err
        with open(pred) as f:
            outs[bool(flag)] = [json.loads(line) for line in f]
    # TTA adds flipped detections that survive per-class mask NMS, never beyond the cap.
    assert len(outs[True]) >= len(outs[False]) > 0
    assert len(outs[True]) <= 50


# ---------------------------------------------------------------------- submit
def test_submit_decodes_back_to_non_overlapping_predicted_masks(tmp_path):
    h, w = 20, 16
    a = np.zeros((h, w), bool)
    a[2:12, 2:10] = True
    b = np.zeros((h, w), bool)
    b[8:18, 5:14] = True                                            # overlaps a
    preds = []
    for i, (m, score, cat, attrs) in enumerate([(a, 0.6, 1, [3, 1]), (b, 0.9, 6, [])]):
        enc = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        preds.append({"image_id": "img1", "filename": "img1.jpg", "category_id": cat,
                      "score": score, "attribute_ids": attrs,
                      "segmentation": {"size": [h, w], "counts": enc["counts"].decode()}})
    pred_path = tmp_path / "pred.jsonl"
    pred_path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    (tmp_path / "pred.images.json").write_text(json.dumps({"images": [
        {"filename": "img1.jpg"}, {"filename": "img2.jpg"}]}))
    out = tmp_path / "sub.csv"
    code, _, err = run(["submit", "--predictions", str(pred_path), "--format", "imat2020",
                        "--out", str(out)])
    assert code == 0, err
    import pandas as pd
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(df.columns) == ["ImageId", "EncodedPixels", "ClassId", "AttributesIds"]
    rows = df[df.ImageId == "img1"]
    decoded = {int(c): rle.decode(p, h, w) for p, c in zip(rows.EncodedPixels, rows.ClassId)}
    assert np.array_equal(decoded[6], b)                            # higher score keeps all
    assert np.array_equal(decoded[1], a & ~b)                       # loses the overlap
    assert not (decoded[1] & decoded[6]).any()
    assert rows[rows.ClassId == "1"].AttributesIds.item() == "1,3"
    empty = df[df.ImageId == "img2"]                                # no detections
    assert list(empty.EncodedPixels) == ["1 1"] and list(empty.ClassId) == ["23"]


def test_submit_2019_from_detect_output(detected, tmp_path):
    out = tmp_path / "sub2019.csv"
    code, _, err = run(["submit", "--predictions", detected[0], "--format", "imat2019",
                        "--out", str(out)])
    assert code == 0, err
    import pandas as pd
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(df.columns) == ["ImageId", "EncodedPixels", "ClassId"]
    assert df.ImageId.nunique() == 12 and df.ImageId.str.endswith(".jpg").all()
    with open(os.path.splitext(detected[0])[0] + ".images.json") as f:
        sizes = {i["filename"]: (i["height"], i["width"]) for i in json.load(f)["images"]}
    for image_id, group in df.groupby("ImageId"):
        masks = [rle.decode(p, *sizes[image_id]) for p in group.EncodedPixels if p != "1 1"]
        if len(masks) > 1:
            assert np.stack(masks).sum(axis=0).max() <= 1, image_id


# ---------------------------------------------------------------------- check
def test_check_passes_on_own_output_and_fails_on_shifted_mask(env, tmp_path):
    image = os.path.join(env["demo"], "train", "demo_00001.jpg")
    expected = str(tmp_path / "expected")
    base = ["check", "--logs", env["logs"], "--weights", env["ckpt"], "--image", image,
            "--expected", expected, "--min-confidence", "0"]
    code, out, err = run(base + ["--update"])
    assert code == 0, err
    names = sorted(os.listdir(expected))
    assert names
    code, out, err = run(base)
    assert code == 0, err
    assert out.count("OK") == len(names) and "FAIL" not in out
    mask = np.load(os.path.join(expected, names[0]))
    np.save(os.path.join(expected, names[0]), np.roll(mask, mask.shape[1] // 2, axis=1))
    code, out, err = run(base)
    assert code == 1 and "FAIL" in out and "check failed" in err


# ---------------------------------------------------------------------- bad input
def test_unknown_command_and_flag_values():
    assert_bad_input(run(["frobnicate"]), "frobnicate")
    assert_bad_input(run(["submit", "--predictions", "p", "--format", "imat2030",
                          "--out", "x.csv"]), "imat2030")
    assert_bad_input(run(["train", "--dataset", "demo", "--strategy", "quantum"]), "quantum")


def test_weights_that_do_not_match_the_backbone(env, tmp_path):
    loose = tmp_path / "weights.h5"                                 # no fashion_run.json
    shutil.copyfile(env["ckpt"], loose)
    out = tmp_path / "p.jsonl"
    result = run(["detect", "--weights", str(loose), "--format", "imat2019", "--backbone",
                  "resnet50", "--image-size", "128", "--images",
                  os.path.join(env["demo"], "train"), "--out", str(out)] + TINY)
    assert_bad_input(result, "resnet50", str(loose))
    assert not out.exists()


def test_malformed_prediction_line_is_named(env, tmp_path):
    pred = tmp_path / "bad.jsonl"
    enc = mask_utils.encode(np.asfortranarray(np.eye(4, dtype=np.uint8)))
    good = {"image_id": 1, "category_id": 1, "score": 0.5,
            "segmentation": {"size": [4, 4], "counts": enc["counts"].decode()}}
    pred.write_text(json.dumps(good) + "\n{not json\n")
    out = tmp_path / "sub.csv"
    assert_bad_input(run(["submit", "--predictions", str(pred), "--format", "imat2019",
                          "--out", str(out)]), "line 2")
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


def test_ground_truth_and_predictions_without_common_image(evaluated, tmp_path):
    pred = tmp_path / "other.jsonl"
    pred.write_text(json.dumps({"image_id": 99999, "category_id": 1, "score": 0.5,
                                "bbox": [0, 0, 2, 2]}) + "\n")
    gt = os.path.join(evaluated[0], "ground_truth_val.json")
    assert_bad_input(run(["score", "--annotations", gt, "--predictions", str(pred),
                          "--metric", "coco"]), "none of the")


def test_image_directory_without_images(env, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "p.jsonl"
    assert_bad_input(run(["detect", "--logs", env["logs"], "--weights", env["ckpt"],
                          "--images", str(tmp_path / "empty"), "--out", str(out)]),
                     "holds no images")
    assert not out.exists()


def test_coco_weights_offline_names_url_and_path(env, tmp_path, monkeypatch):
    from mrcnn.weights import download as weights
    entry = weights.REGISTRY["coco"]
    offline = weights.WeightsEntry("coco", entry.filename, "http://127.0.0.1:9/mask_rcnn_coco.h5",
                                   entry.hash, entry.size)
    monkeypatch.setitem(weights.REGISTRY, "coco", offline)
    monkeypatch.setenv("MRCNN_WEIGHTS_DIR", str(tmp_path / "weights"))
    result = run(["train"] + env["data"] + ["--weights", "coco", "--backbone", "resnet18",
                                            "--steps-per-epoch", "1"] + TINY)
    assert_bad_input(result, "http://127.0.0.1:9/mask_rcnn_coco.h5",
                     str(tmp_path / "weights" / entry.filename))

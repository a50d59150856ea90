"""fashion.py tune: post-processing tuned on a val split, stored in the run file and
applied by evaluate; the numpy post-processing steps on their own."""
import json
import os

import numpy as np
import pytest

from fashion.inference import postprocess as pp
from fashion.inference.tuning import coordinate_search
from tests.demo_runs import run, tiny_run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def _imat(out):
    """The segm iMat2019 score from evaluate's last (JSON) line."""
    return json.loads(out.strip().splitlines()[-1])["segm"]["iMat2019"]


def test_tune_stores_choice_and_evaluate_applies_it(env, tmp_path):
    split = ["--val-fraction", "0.5"]
    code, out, err = run(["tune"] + env["data"] + split + ["--weights", env["ckpt"]])
    assert code == 0, err
    choice = json.loads(out.strip().splitlines()[-1])
    assert choice["metric"] == "imat2019" and choice["after"] >= choice["before"]
    with open(os.path.join(env["run_dir"], "fashion_run.json")) as f:
        stored = json.load(f)["postprocess"]
    for key in pp.PARAM_KEYS:
        assert stored[key] == choice[key]
    print(f"\ntune (iMat2019, {choice['images']} images): before {choice['before']:.4f} "
          f"after {choice['after']:.4f}; {', '.join(f'{k}={choice[k]}' for k in pp.PARAM_KEYS)}")

    # evaluate on the tuned split applies the stored values: it scores exactly `after`
    code, out, err = run(["evaluate"] + env["data"] + split + [
        "--weights", env["ckpt"], "--out", str(tmp_path / "tuned")])
    assert code == 0, err
    assert f"score_threshold={choice['score_threshold']}" in out
    assert _imat(out) == pytest.approx(choice["after"], abs=1e-6)  # stored to 6 digits

    # a second, untouched demo set (other seed): tuned vs the run's own settings
    from fashion.data.demo_data import generate_demo
    other = str(generate_demo(str(tmp_path / "other"), num_images=12, size=128, seed=7))
    scores = {}
    for flag in ("run", "none"):
        code, out, err = run(["evaluate", "--dataset", other, "--format", "imat2019",
                              "--val-fraction", "1.0", "--logs", env["logs"],
                              "--weights", env["ckpt"], "--postprocess", flag,
                              "--out", str(tmp_path / flag)])
        assert code == 0, err
        assert ("post-processing:" in out) == (flag == "run")
        scores[flag] = _imat(out)
    print(f"untouched split (12 images): iMat2019 tuned {scores['run']:.4f}, "
          f"run's settings {scores['none']:.4f}")


def test_tune_with_tta_matches_evaluate_with_the_same_views(env, tmp_path):
    import shutil
    run_dir = shutil.copytree(env["run_dir"], str(tmp_path / "run"))  # own run file
    ckpt = os.path.join(run_dir, os.path.basename(env["ckpt"]))
    split = ["--val-fraction", "0.5"]
    code, out, err = run(["tune"] + env["data"] + split + ["--weights", ckpt,
                                                             "--tta", "flip"])
    assert code == 0, err
    choice = json.loads(out.strip().splitlines()[-1])
    assert choice["tta"] == "flip" and choice["after"] >= choice["before"]
    assert "with TTA flip" in out
    with open(os.path.join(run_dir, "fashion_run.json")) as f:
        assert json.load(f)["postprocess"]["tta"] == "flip"
    # evaluate with the same views applies the stored values and scores exactly `after`
    code, out, err = run(["evaluate"] + env["data"] + split + [
        "--weights", ckpt, "--tta", "flip", "--out", str(tmp_path / "tta")])
    assert code == 0, err
    assert "note: the stored post-processing" not in out
    assert _imat(out) == pytest.approx(choice["after"], abs=1e-6)
    # without --tta it still applies them, and says they were tuned for other views
    code, out, err = run(["evaluate"] + env["data"] + split + [
        "--weights", ckpt, "--out", str(tmp_path / "plain")])
    assert code == 0, err
    assert "note: the stored post-processing was tuned with --tta flip" in out


def test_flags_override_the_stored_values(env, tmp_path):
    pred = str(tmp_path / "p.jsonl")
    code, out, err = run(["detect", "--logs", env["logs"], "--weights", env["ckpt"],
                          "--images", os.path.join(env["demo"], "train"), "--out", pred,
                          "--score-threshold", "0.99", "--min-area", "5"])
    assert code == 0, err
    with open(pred) as f:
        records = [json.loads(line) for line in f]
    assert all(r["score"] >= 0.99 for r in records)


def test_coordinate_search_never_ends_below_the_defaults():
    space = {"score_threshold": [0.1, 0.5, 0.9], "nms_iou": [0.3, 0.5],
             "mask_threshold": [0.5], "min_area": [0, 10], "overlap": ["keep", "merge"]}
    defaults = {"score_threshold": 0.5, "nms_iou": 0.3, "mask_threshold": 0.5,
                "min_area": 0, "overlap": "keep"}

    def bumpy(p):   # best at score 0.1 with nms 0.5, a dip in between
        return {0.1: 0.2, 0.5: 0.4, 0.9: 0.1}[p["score_threshold"]] + (
            0.5 if (p["nms_iou"], p["score_threshold"]) == (0.5, 0.1) else 0.0)
    best, before, after, _ = coordinate_search(bumpy, defaults, space, log=lambda *_: None)
    assert before == 0.4 and after >= before
    assert coordinate_search(lambda p: 1.0, defaults, space, log=lambda *_: None)[0] == defaults


def _raw(boxes, classes, scores, shape=(40, 40)):
    boxes = np.array(boxes, dtype=np.int32)
    soft = np.ones((len(boxes), 8, 8), np.float32) * 0.9
    return {"nboxes": boxes / 40.0, "rois": boxes, "class_ids": np.array(classes, np.int32),
            "scores": np.array(scores, np.float32), "soft": soft, "shape": shape}


def test_numpy_steps_threshold_nms_area_and_overlaps():
    raw = _raw([[0, 0, 20, 20], [1, 1, 21, 21], [0, 0, 20, 20], [5, 5, 10, 10],
                [30, 30, 32, 32]], [1, 1, 2, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.2])
    base = {"score_threshold": 0.5, "nms_iou": 0.5, "mask_threshold": 0.5,
            "min_area": 0, "overlap": "keep"}
    r = pp.finish(raw, base, 10)
    # 1 is suppressed by 0 (same class, IoU 0.82), 2 is another class, 4 scores 0.2
    assert r["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert r["masks"].shape == (40, 40, 3) and r["masks"][:, :, 0].sum() == 400
    assert len(pp.finish(raw, dict(base, nms_iou=0.9), 10)["scores"]) == 4
    assert len(pp.finish(raw, dict(base, min_area=26), 10)["scores"]) == 2
    suppressed = pp.finish(raw, dict(base, overlap="suppress"), 10)
    assert suppressed["scores"].tolist() == pytest.approx([0.9, 0.7])  # 3 lies inside 0
    two = _raw([[0, 0, 20, 20], [10, 10, 24, 24]], [1, 1], [0.9, 0.6])  # 100 of 196 inside
    merged = pp.finish(two, dict(base, overlap="merge"), 10)
    assert merged["rois"].tolist() == [[0, 0, 24, 24]]
    assert merged["masks"].sum() == 400 + 196 - 100
    assert len(pp.finish(two, base, 10)["scores"]) == 2
    assert pp.finish(raw, dict(base, score_threshold=0.95), 10)["masks"].shape == (40, 40, 0)


def test_mask_threshold_reaches_paste_mask():
    raw = _raw([[0, 0, 16, 16]], [1], [0.9])
    raw["soft"][0] = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    areas = [pp.finish(raw, {"score_threshold": 0.5, "nms_iou": 0.5, "mask_threshold": t,
                             "min_area": 0, "overlap": "keep"}, 5)["masks"].sum()
             for t in (0.3, 0.5, 0.7)]
    assert areas[0] > areas[1] > areas[2] > 0

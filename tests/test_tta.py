"""Multi-scale + flip TTA (fashion/inference/tta.py): parsing, molding at a scale, mask voting, and
detect/evaluate with --tta on a briefly trained model; readable overlays."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from fashion.inference import postprocess as pp
from fashion.inference import tta
from tests.demo_runs import run, tiny_run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def test_parse_tta():
    assert tta.parse_tta(None) is None and tta.parse_tta("1.0") is None
    assert tta.parse_tta("flip") == ([1.0], True)
    assert tta.parse_tta("1.2,0.8,1.0,flip") == ([0.8, 1.0, 1.2], True)
    assert tta.parse_tta("0.8") == ([0.8], False)
    for bad in ("big", "9"):
        with pytest.raises(ValueError):
            tta.parse_tta(bad)


def test_mold_scaled_matches_detect_at_1_and_pads_to_64(env):
    from fashion.config import make_config
    from mrcnn.inference import mold_inputs
    config = make_config(128, 5, 0, "resnet18")
    image = np.random.default_rng(0).integers(0, 255, (100, 80, 3), dtype=np.uint8)
    molded, meta, window = tta.mold_scaled(image, config, 1.0)
    ref, ref_meta, ref_window = mold_inputs([image], config)
    assert np.array_equal(molded, ref[0]) and np.array_equal(meta, ref_meta[0])
    big, _, window = tta.mold_scaled(image, config, 1.2)
    assert big.shape == (192, 192, 3) and window[2] - window[0] == 154  # content 1.2 x 128
    small, _, window = tta.mold_scaled(image, config, 0.8)
    assert small.shape == (128, 128, 3) and window[2] - window[0] == 102


def _dets(view_boxes, scores, shape=(30, 30)):
    crops = [(tuple(b), np.ones((b[2] - b[0], b[3] - b[1]), bool)) for b in view_boxes]
    return {"rois": np.array(view_boxes, np.int32), "class_ids": np.ones(len(scores), np.int32),
            "scores": np.array(scores, np.float32), "mask_scores": np.ones(len(scores), np.float32),
            "masks": crops, "shape": shape}


def test_vote_clusters_views_and_votes_pixels():
    a = _dets([[0, 0, 10, 10], [20, 20, 25, 25]], [0.9, 0.4])
    b = _dets([[0, 0, 10, 12]], [0.7])          # the same object, 2 columns wider
    merged = tta.vote([a, b], (30, 30))
    assert merged["scores"].tolist() == pytest.approx([(0.9 + 0.7) / 2, 0.4 / 2])
    box, crop = merged["masks"][0]
    assert box == (0, 0, 10, 12) and crop[:, :10].all() and not crop[:, 10:].any()
    assert merged["rois"][0].tolist() == [0, 0, 10, round((0.9 * 10 + 0.7 * 12) / 1.6)]
    result = pp.densify(merged)
    assert result["masks"].shape == (30, 30, 2) and result["masks"][:, :, 0].sum() == 100


def test_detect_and_evaluate_with_multiscale_tta(env, tmp_path):
    image = os.path.join(env["demo"], "train", "demo_00000.jpg")
    pred, overlays = str(tmp_path / "p.jsonl"), str(tmp_path / "ov")
    code, out, err = run(["detect", "--logs", env["logs"], "--weights", env["ckpt"],
                          "--images", image, "--out", pred, "--overlays", overlays,
                          "--min-confidence", "0.05", "--tta", "0.8,1.0,1.2,flip",
                          "--postprocess", "none"])   # test_tune may have tuned this run
    assert code == 0, err
    with open(pred) as f:
        records = [json.loads(line) for line in f]
    assert records and all(0 < r["score"] <= 1 for r in records)
    with Image.open(os.path.join(overlays, "demo_00000.png")) as im:
        assert max(im.size) >= 512                               # 128 px image upscaled
    code, out, err = run(["evaluate"] + env["data"] + [
        "--weights", env["ckpt"], "--tta", "0.8,1.2", "--postprocess", "none",
        "--out", str(tmp_path / "ev")])
    assert code == 0, err
    assert "TTA scales 0.8,1.2" in out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert 0 <= metrics["segm"]["AP"] <= 1


def test_bad_tta_value_is_one_sentence(env, tmp_path):
    code, _, err = run(["detect", "--logs", env["logs"], "--weights", env["ckpt"],
                        "--images", os.path.join(env["demo"], "train"),
                        "--out", str(tmp_path / "p.jsonl"), "--tta", "0.8,huge"])
    assert code == 2 and "--tta item 'huge'" in err

"""Tests of mrcnn.evaluation (prediction files, COCO AP, Fashionpedia) and the
iMaterialist 2019 metric of fashion.imat_metric."""

import contextlib
import copy
import io
import json
import os
import struct

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashion.imat_metric import evaluate_imat, pair_score, score
from mrcnn.evaluation import (PredictionWriter, detection_to_records, evaluate_coco,
                              evaluate_fashionpedia, read_predictions)
from mrcnn.evaluation.fashionpedia import macro_f1_matrix
from mrcnn.evaluation.plots import plot_pr_curves, write_per_class_table
from mrcnn.evaluation.predictions import encode_mask

DATA = os.path.join(os.path.dirname(__file__), "data")
ATTRIBUTE_IDS = [3 * i + 1 for i in range(12)]  # non-contiguous ids, 12 attributes
NUM_CATEGORIES = 46  # ids 0..45 as in Fashionpedia (the official evaluator needs all 46)


# ---------------------------------------------------------------- generated data

def _rect_mask(h, w, y1, x1, y2, x2):
    mask = np.zeros((h, w), dtype=bool)  # [H, W]
    mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    return mask


def _finish_ann(ann, h, w):
    rle = mask_utils.frPyObjects(ann["segmentation"], h, w) \
        if isinstance(ann["segmentation"], list) else ann["segmentation"]
    rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
    ann["area"] = float(mask_utils.area(rle))
    ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
    return ann


def _random_attributes(rng):
    return sorted(int(a) for a in rng.choice(ATTRIBUTE_IDS, size=int(rng.integers(0, 4)),
                                            replace=False))


def make_ground_truth(seed=0, num_images=6, per_image=7, crowd=True):
    """COCO/Fashionpedia-format dict of rectangles and ellipses on small images.

    Each image also holds two heavily overlapping objects of one category (so
    matching has real choices) and, when `crowd`, some images a crowd region.
    """
    rng = np.random.default_rng(seed)
    h, w = 64, 80
    images, anns = [], []
    cats = rng.choice(NUM_CATEGORIES, size=8, replace=False)  # a few categories, dense
    cats = np.concatenate([cats, [0, 13]])  # one with attributes, one without, always
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(num_images):
        image_id = 100 + i
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.jpg"})
        for j in range(per_image):
            y1, x1 = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
            bh, bw = int(rng.integers(8, 30)), int(rng.integers(8, 30))
            y2, x2 = min(y1 + bh, h), min(x1 + bw, w)
            ann = {"id": len(anns) + 1, "image_id": image_id, "category_id": int(rng.choice(cats)),
                   "iscrowd": 0, "attribute_ids": _random_attributes(rng)}
            if j % 2:  # ellipse as RLE
                cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
                mask = ((yy - cy) / ((y2 - y1) / 2)) ** 2 + ((xx - cx) / ((x2 - x1) / 2)) ** 2 <= 1
                ann["segmentation"] = encode_mask(mask)
            else:  # rectangle as polygon
                ann["segmentation"] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            anns.append(_finish_ann(ann, h, w))
        category = int(rng.choice([0, 32, 13]))
        y1, x1 = int(rng.integers(0, 30)), int(rng.integers(0, 40))
        for dy, dx in ((0, 0), (2, 3)):  # two overlapping objects, one category
            box = [x1 + dx, y1 + dy, x1 + dx + 22, y1 + dy + 18]
            anns.append(_finish_ann({
                "id": len(anns) + 1, "image_id": image_id, "category_id": category,
                "iscrowd": 0, "attribute_ids": _random_attributes(rng),
                "segmentation": [[box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]]]},
                h, w))
        if crowd and i % 2 == 0:
            anns.append(_finish_ann({
                "id": len(anns) + 1, "image_id": image_id, "category_id": [32, 13][i % 4 // 2],
                "iscrowd": 1, "attribute_ids": [ATTRIBUTE_IDS[1]],
                "segmentation": encode_mask(_rect_mask(h, w, 30, 40, 64, 80))}, h, w))
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"cat{c}"} for c in range(NUM_CATEGORIES)],
            "attributes": [{"id": a, "name": f"attr{a}"} for a in ATTRIBUTE_IDS]}


def _gt_mask(gt, ann):
    coco = COCO()
    coco.dataset = {"images": gt["images"], "annotations": [], "categories": []}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco.annToMask(ann).astype(bool)


def _prediction(image_id, category, score, mask, attrs):
    rle = encode_mask(mask)
    return {"image_id": image_id, "category_id": category, "score": score,
            "segmentation": rle, "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "attribute_ids": sorted(attrs)}


def make_predictions(gt, seed=1, keep=0.85, extra=6):
    """Perturbed copies of the ground truth, duplicates, hits on crowds, false positives."""
    rng = np.random.default_rng(seed)
    preds = []
    for ann in gt["annotations"]:
        mask = _gt_mask(gt, ann)
        if ann["iscrowd"]:  # detections inside a crowd region are ignored, not false
            for k in range(2):
                part = np.zeros_like(mask)
                part[34 + 8 * k:44 + 8 * k, 45:70] = True
                preds.append(_prediction(ann["image_id"], ann["category_id"],
                                         round(float(rng.random()), 3), part, ann["attribute_ids"]))
            continue
        if rng.random() > keep:
            continue
        copies = 2 if rng.random() < 0.3 else 1  # sometimes a lower-scored duplicate
        for _ in range(copies):
            shift = tuple(int(s) for s in rng.integers(-3, 4, size=2))
            moved = np.roll(mask, shift, axis=(0, 1))  # [H, W]
            attrs = set(ann["attribute_ids"])
            for a in ATTRIBUTE_IDS:
                if rng.random() < 0.12:
                    attrs ^= {a}
            category = ann["category_id"] if rng.random() > 0.1 else int(rng.integers(0, NUM_CATEGORIES))
            preds.append(_prediction(ann["image_id"], category, round(float(rng.random()), 3),
                                     moved, attrs))
    for _ in range(extra):  # false positives
        image = gt["images"][int(rng.integers(len(gt["images"])))]
        y1, x1 = int(rng.integers(0, 40)), int(rng.integers(0, 50))
        mask = _rect_mask(image["height"], image["width"], y1, x1, y1 + 15, x1 + 20)
        preds.append(_prediction(image["id"], int(rng.choice([0, 13, 5, 20])),
                                 round(float(rng.random()), 3), mask, [ATTRIBUTE_IDS[0]]))
    return preds


def perfect_predictions(gt):
    preds = []
    for ann in gt["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = encode_mask(_gt_mask(gt, ann))
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "score": 1.0, "segmentation": rle, "bbox": list(ann["bbox"]),
                      "attribute_ids": list(ann["attribute_ids"])})
    return preds


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])  # (width, height)


# ---------------------------------------------------------------- predictions

def _detect_result():
    """A matterport-style detect() result for a 40x50 image with 3 instances."""
    masks = np.zeros((40, 50, 3), dtype=bool)  # [H, W, N]
    masks[5:15, 10:30, 0] = True
    masks[20:38, 2:12, 1] = True
    masks[0:40, 40:50, 2] = True
    return {"rois": np.array([[5, 10, 15, 30], [20, 2, 38, 12], [0, 40, 40, 50]]),
            "class_ids": np.array([1, 2, 1], dtype=np.int32),
            "scores": np.array([0.9, 0.8, 0.55], dtype=np.float32),
            "masks": masks,
            "attribute_probabilities": np.array([[0.9, 0.1, 0.6], [0.2, 0.3, 0.4],
                                                 [0.5, 0.7, 0.0]], dtype=np.float32),
            "mask_scores": np.array([0.8, 0.7, 0.6], dtype=np.float32)}


def test_prediction_round_trip(tmp_path):
    result = _detect_result()
    records = detection_to_records(7, "7.jpg", result, class_id_to_category_id={1: 10, 2: 32},
                                   attribute_index_to_id=[100, 200, 300])
    path = str(tmp_path / "preds.jsonl")
    with PredictionWriter(path) as writer:
        writer.write_all(records)
    assert not os.path.exists(path + ".tmp")
    back = list(read_predictions(path))
    assert len(back) == 3
    assert [r["category_id"] for r in back] == [10, 32, 10]
    assert back[0]["bbox"] == [10.0, 5.0, 20.0, 10.0]  # x, y, w, h
    assert [r["attribute_ids"] for r in back] == [[100, 300], [], [100, 200]]
    assert back[0]["mask_area_fraction"] == pytest.approx(200 / 2000)
    assert back[1]["mask_mean_score"] == pytest.approx(0.7)
    for i, r in enumerate(back):
        assert r["image_id"] == 7 and r["filename"] == "7.jpg" and r["id"] == i + 1
        assert isinstance(r["segmentation"]["counts"], str)
        assert r["segmentation"]["size"] == [40, 50]
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool),
                                      result["masks"][:, :, i])
        assert r["score"] == pytest.approx(float(result["scores"][i]))


def test_writer_leaves_nothing_on_error(tmp_path):
    path = str(tmp_path / "preds.jsonl")
    with pytest.raises(RuntimeError):
        with PredictionWriter(path) as writer:
            writer.write({"image_id": 1})
            raise RuntimeError("crash mid-way")
    assert not os.path.exists(path) and not os.path.exists(path + ".tmp")


def test_malformed_line_names_file_and_line(tmp_path):
    good = {"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [0, 0, 4, 4]}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"image_id": 1, "category_id": 2,
                                                              "bbox": [0, 0, 1, 1]}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3: missing key\(s\) 'score'"):
        list(read_predictions(path))
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2: invalid JSON"):
        list(read_predictions(path))
    path.write_text(json.dumps(dict(good, segmentation={"size": [4, 4], "counts": [3, 2]})) + "\n")
    with pytest.raises(ValueError, match=r"line 1: uncompressed RLE 'counts' sum to 5"):
        list(read_predictions(path))
    with pytest.raises(FileNotFoundError, match="missing.jsonl does not exist"):
        list(read_predictions(tmp_path / "missing.jsonl"))


def test_json_list_with_attribute_probabilities(tmp_path):
    rle = encode_mask(_rect_mask(10, 12, 2, 3, 6, 9))
    items = [{"image_id": 5, "category_id": 1, "score": 0.7, "segmentation": rle,
              "attribute_probabilities": [0.2, 0.5, 0.9]},
             {"image_id": 5, "category_id": 1, "score": 0.6, "bbox": [1, 2, 3, 4],
              "segmentation": {"size": [10, 12], "counts": [10, 5, 105]}}]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(items, indent=1))
    back = list(read_predictions(path, attribute_index_to_id=[11, 22, 33]))
    assert back[0]["attribute_ids"] == [22, 33]
    assert back[0]["bbox"] == [3.0, 2.0, 6.0, 4.0]  # from the mask
    assert back[1]["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert mask_utils.decode(back[1]["segmentation"]).sum() == 5  # uncompressed -> compressed
    items[1]["score"] = "high"
    path.write_text(json.dumps(items))
    with pytest.raises(ValueError, match=r"preds\.json: item 1: 'score' must be a number"):
        list(read_predictions(path))


# ---------------------------------------------------------------- COCO

def _pycocotools_stats(gt, preds, iou_type):
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_coco_equals_pycocotools_on_generated_data():
    gt = make_ground_truth(seed=3)
    preds = make_predictions(gt, seed=4)
    result = evaluate_coco(gt, preds)
    for iou_type in ("segm", "bbox"):
        ev = _pycocotools_stats(gt, preds, iou_type)
        expected = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), ev.stats[:6]))
        assert result[iou_type] == pytest.approx(expected, abs=1e-12)
        assert 0.1 < result[iou_type]["AP"] < 0.95  # imperfect but not hopeless
        np.testing.assert_array_equal(result["precision"][iou_type], ev.eval["precision"])
        rows = {r["category_id"]: r for r in result["per_class"][iou_type]}
        for k, cat in enumerate(ev.params.catIds):
            p = ev.eval["precision"][0, :, k, 0, -1]
            if (p > -1).any():
                assert rows[cat]["AP50"] == pytest.approx(p.mean())
            else:
                assert rows[cat]["AP"] == -1.0


def test_coco_perfect_predictions_score_one(tmp_path):
    gt = make_ground_truth(seed=5, crowd=False)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    result = evaluate_coco(str(path), perfect_predictions(gt))
    for iou_type in ("segm", "bbox"):
        assert result[iou_type]["AP"] == pytest.approx(1.0)
        assert result[iou_type]["AP75"] == pytest.approx(1.0)
        assert all(result[iou_type][k] in (pytest.approx(1.0), -1.0) for k in ("APs", "APm", "APl"))


def test_coco_errors_and_empty_predictions():
    gt = make_ground_truth(seed=6)
    preds = make_predictions(gt, seed=7)
    for p in preds:
        p["image_id"] += 1000
    with pytest.raises(ValueError, match="none of the .* predictions refers to an image"):
        evaluate_coco(gt, preds)
    empty = evaluate_coco(gt, [])
    assert empty["segm"]["AP"] == 0.0 and empty["bbox"]["AP50"] == 0.0
    with pytest.raises(ValueError, match="has no 'categories' key"):
        evaluate_coco({"images": [], "annotations": []}, [])


# ---------------------------------------------------------------- iMaterialist 2019

def _imat_gt(masks_by_class):
    anns = []
    for category, masks in masks_by_class.items():
        for m in masks:
            anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": category,
                         "segmentation": encode_mask(m), "iscrowd": 0})
    return {"images": [{"id": 1, "height": 20, "width": 20}], "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in range(5)]}


def _pred(mask, category, score=0.9):
    return {"image_id": 1, "category_id": category, "score": score, "segmentation": encode_mask(mask)}


def test_imat_hand_computed_cases():
    a = _rect_mask(20, 20, 0, 0, 10, 10)  # 100 px
    b = _rect_mask(20, 20, 10, 10, 20, 20)  # 100 px, disjoint from a
    a80 = _rect_mask(20, 20, 0, 0, 10, 8)  # IoU(a, a80) = 0.8
    gt = _imat_gt({1: [a, b]})
    assert evaluate_imat(gt, [_pred(a, 1), _pred(b, 1)])["score"] == 1.0  # perfect
    # one false positive of the same class: TP 2, FP 1 -> 2/3 at every threshold
    assert evaluate_imat(gt, [_pred(a, 1), _pred(b, 1), _pred(a80 ^ a, 1, 0.1)])["score"] == \
        pytest.approx(2 / 3)
    gt1 = _imat_gt({1: [a]})
    assert evaluate_imat(gt1, [_pred(a, 1), _pred(b, 1)])["score"] == 0.5  # one FP halves
    result = evaluate_imat(gt1, [_pred(a, 1), _pred(b, 2)])  # FP of another class: 2 pairs
    assert result["score"] == 0.5 and result["num_pairs"] == 2 and result["per_class"] == {1: 1.0, 2: 0.0}
    # IoU 0.8 is above 0.50 .. 0.75 (6 thresholds) but not 0.80 .. 0.95
    assert evaluate_imat(gt1, [_pred(a80, 1)])["score"] == pytest.approx(0.6)
    assert evaluate_imat(gt, [_pred(a, 1)])["score"] == pytest.approx(0.5)  # one miss
    assert evaluate_imat(gt1, [_pred(a, 3)])["score"] == 0.0  # wrong class
    # greedy by score, best IoU first: prediction 0 takes gt 0 (0.9) and leaves prediction 1
    # nothing, so 1/3 up to t=0.90 (where prediction 1 gets gt 0) and 0 at 0.95;
    # an optimal assignment would have scored 1.0 at 0.50 and 0.55
    assert pair_score(np.array([[0.9, 0.6], [0.95, 0.0]])) == pytest.approx(0.3)
    assert evaluate_imat(gt1, [_pred(a80, 1, 0.2)], min_score=0.5)["score"] == 0.0


# ---------------------------------------------------------------- Fashionpedia

def test_macro_f1_matches_hand_values():
    gt = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])  # [G, A]
    dt = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])  # [D, A]
    f1 = macro_f1_matrix(dt, gt)
    # dt0 vs gt0: label 1 F1 = 2/3, label 0 F1 = 2*2/(2*2+1) = 0.8
    assert f1[0, 0] == pytest.approx((2 / 3 + 0.8) / 2)
    assert f1[1, 1] == 1.0  # only label 0 present, all agree
    assert f1[1, 0] == pytest.approx((0.0 + 6 / 7) / 2)
    assert f1[0, 2] == pytest.approx((2 * 2 / (2 * 2 + 2) + 0.0) / 2)


def _official_fashionpedia(gt, preds, iou_type):
    pytest.importorskip("sklearn", reason="the official fashionpedia package needs scikit-learn")
    np.float = float  # the official package uses np.float, removed in numpy 1.24
    pytest.importorskip("fashionpedia", reason="pip install fashionpedia==1.1 to compare")
    from fashionpedia.fp import Fashionpedia
    from fashionpedia.fp_eval import FPEval
    with contextlib.redirect_stdout(io.StringIO()):
        fp_gt = Fashionpedia()
        fp_gt.dataset = copy.deepcopy(gt)
        fp_gt.createIndex()
        fp_dt = fp_gt.loadRes(copy.deepcopy(preds))
        ev = FPEval(fp_gt, fp_dt, iou_type)
        ev.run()
    return {"AP_iou_f1": ev.results["AP"], "AP_iou": ev.resultDet["AP"], "AP_f1": ev.resultF1["AP"]}


@pytest.mark.parametrize("seed", [11, 19])  # 11: crowd reuse; 19: "best so far" on IoU and F1
def test_fashionpedia_equals_official_on_generated_predictions(seed):
    gt = make_ground_truth(seed=seed)
    preds = make_predictions(gt, seed=seed + 100)
    ours = evaluate_fashionpedia(gt, preds)
    for iou_type in ("segm", "bbox"):
        official = _official_fashionpedia(gt, preds, iou_type)
        for key, value in official.items():
            assert ours[iou_type][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (iou_type, key)
        assert 0.05 < ours[iou_type]["AP_iou_f1"] < ours[iou_type]["AP_iou"] < 1.0
    coco = evaluate_coco(gt, preds, per_class=False)
    assert ours["segm"]["AP"] == coco["segm"]["AP"]


def test_fashionpedia_equals_official_on_api_sample():
    with open(os.path.join(DATA, "fashionpedia_api_sample.json")) as f:
        gt = json.load(f)
    with open(os.path.join(DATA, "fashionpedia_api_fake_results.json")) as f:
        preds = json.load(f)
    ours = evaluate_fashionpedia(gt, preds, iou_types=("segm",))
    official = _official_fashionpedia(gt, preds, "segm")
    assert ours["segm"]["AP_iou_f1"] == pytest.approx(official["AP_iou_f1"], rel=1e-9)
    assert ours["segm"]["AP_iou"] == pytest.approx(official["AP_iou"], rel=1e-9)
    assert ours["segm"]["AP_f1"] == pytest.approx(official["AP_f1"], rel=1e-9)
    # measured with fashionpedia 1.1: 0.58967, 0.53156, 0.69905
    assert ours["segm"]["AP_iou_f1"] == pytest.approx(0.589669, abs=1e-6)


def test_fashionpedia_perfect_and_unknown_attribute():
    gt = make_ground_truth(seed=13, crowd=False)
    preds = perfect_predictions(gt)
    result = evaluate_fashionpedia(gt, preds, coco_metrics=False)
    for iou_type in ("segm", "bbox"):
        assert result[iou_type]["AP_iou_f1"] == pytest.approx(1.0)
        assert result[iou_type]["AP_f1"] == pytest.approx(1.0)
    preds[0]["attribute_ids"] = [999]
    preds[0]["category_id"] = 0
    with pytest.raises(ValueError, match="attribute id 999, which is not in the annotations"):
        evaluate_fashionpedia(gt, preds, coco_metrics=False)


# ---------------------------------------------------------------- plots and score()

def test_pr_curve_png_and_per_class_table(tmp_path):
    gt = make_ground_truth(seed=21)
    result = evaluate_coco(gt, make_predictions(gt, seed=22), iou_types=("segm",))
    png = tmp_path / "pr.png"
    plot_pr_curves(result["precision"]["segm"], result["category_names"], str(png))
    assert png.stat().st_size > 5000
    assert _png_size(png) == (1200, 500)
    assert not os.path.exists(str(png) + ".tmp")
    out = io.StringIO()
    csv_path = tmp_path / "per_class.csv"
    table = write_per_class_table(result["per_class"]["segm"], str(csv_path), stream=out)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "category_id,name,num_gt,AP,AP50"
    assert len(lines) == 1 + NUM_CATEGORIES
    assert out.getvalue().strip() == table.strip() and "AP50" in table
    with pytest.raises(ValueError, match="2 category names for 46 categories"):
        plot_pr_curves(result["precision"]["segm"], ["a", "b"], str(png))


def test_score_on_fixture_files():
    gt_path = os.path.join(DATA, "eval_tiny_gt.json")
    pred_path = os.path.join(DATA, "eval_tiny_predictions.jsonl")
    coco = score(gt_path, pred_path, metric="coco")
    fp = score(gt_path, pred_path, metric="fashionpedia")
    imat = score(gt_path, pred_path, metric="imat")
    assert set(coco) == {"segm", "bbox"} and set(coco["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert fp["segm"]["AP"] == coco["segm"]["AP"]
    assert fp["segm"]["AP_iou_f1"] <= fp["segm"]["AP_iou"]
    assert 0.0 < imat["segm"]["iMat2019"] < 1.0
    json.dumps([coco, fp, imat])  # JSON-able
    with pytest.raises(ValueError, match="unknown metric 'lvis'"):
        score(gt_path, pred_path, metric="lvis")

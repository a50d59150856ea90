"""Boundary IoU and boundary AP on hand-made masks whose answers are worked out below.

Every case uses a 100 x 100 image unless it says otherwise: its diagonal is 141.42 px,
so the band width is d = round(0.02 x 141.42) = round(2.83) = 3 pixels, and a pixel is
in a mask's band when some background pixel (or the outside of the image) lies within
3 pixels of it in rows and columns at once. Eroding a mask by d leaves the pixels whose
7 x 7 neighbourhood is all mask.
"""
import argparse
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn.evaluation.boundary import band_width, boundary_band, boundary_iou
from mrcnn.evaluation.coco import evaluate_coco
from tests.demo_runs import run


def rect(top, left, height, width, shape=(100, 100)):
    m = np.zeros(shape, bool)
    m[top:top + height, left:left + width] = True
    return m


def square_and_shifted():
    """G: rows 20-59, cols 30-69 (40 x 40). P: G moved 2 columns right (cols 32-71).

    Mask IoU: overlap 40 x 38 = 1520, union 1600 + 1600 - 1520 = 1680 -> 0.9048.
    Bands: 40 x 40 - 34 x 34 = 444 pixels each (a frame 3 wide). Their overlap:
      top rows 20-22 and bottom rows 57-59: columns 32-69 in both, 2 x 3 x 38 = 228;
      rows 23-56 (34 rows): G's side columns {30,31,32} and {67,68,69} meet P's
      {32,33,34} and {69,70,71} in columns 32 and 69 only: 34 x 2 = 68.
    Overlap 296, union 444 + 444 - 296 = 592 -> Boundary IoU 296 / 592 = 0.5 exactly.
    """
    return rect(20, 30, 40, 40), rect(20, 32, 40, 40)


def test_band_of_a_square_is_a_frame_d_wide():
    assert band_width(100, 100) == 3
    g, _ = square_and_shifted()
    band = boundary_band(g)
    assert band.dtype == bool and band.shape == g.shape
    assert band.sum() == 40 * 40 - 34 * 34                  # 444
    assert band[20:23, 30:70].all() and not band[23:57, 33:67].any()


def test_square_against_a_shifted_square():
    g, p = square_and_shifted()
    assert boundary_iou(g, p) == 0.5                        # worked out above
    inter, union = (g & p).sum(), (g | p).sum()
    assert inter / union == pytest.approx(1520 / 1680)
    assert boundary_iou(g, g) == 1.0
    assert boundary_iou(g, rect(70, 70, 10, 10)) == 0.0     # disjoint
    assert boundary_iou(np.zeros((9, 9)), np.zeros((9, 9))) == 0.0


def test_zigzag_edge_against_its_smooth_hull():
    """H: rows 20-59, cols 20-73 (40 x 54 = 2160). Z: H with 4 notches 6 x 6 cut into
    its top edge (rows 20-25, cols 26-31, 38-43, 50-55, 62-67), leaving 5 teeth 6 wide;
    H is Z's convex hull. |Z| = 2160 - 4 x 36 = 2016.

    H's band: 2160 - 34 x 48 = 528. Z eroded: rows 29-56 keep cols 23-70 (28 x 48 =
    1344); in rows 23-28 every column of 23-70 lies within 3 of a notch column
    (26-31 covers 23-34, 38-43 covers 35-46, 50-55 covers 47-58, 62-67 covers 59-70),
    so nothing survives there: Z's band = 2016 - 1344 = 672.
    Overlap: Z's eroded part lies inside H's eroded part, so the overlap is H's band
    minus the notch pixels in it: rows 20-22 of the notches, 4 x 6 x 3 = 72 -> 456.
    Union 528 + 672 - 456 = 744: Boundary IoU 456 / 744 = 19 / 31 = 0.6129, while the
    mask IoU is 2016 / 2160 = 0.9333 -- the jagged edge costs little area, much edge.
    """
    hull = rect(20, 20, 40, 54)
    zigzag = hull.copy()
    for left in (26, 38, 50, 62):
        zigzag[20:26, left:left + 6] = False
    assert boundary_band(hull).sum() == 528 and boundary_band(zigzag).sum() == 672
    assert boundary_iou(hull, zigzag) == pytest.approx(19 / 31, abs=1e-12)
    assert (hull & zigzag).sum() / (hull | zigzag).sum() == pytest.approx(2016 / 2160)


def test_the_image_border_counts_as_background():
    """A 50 x 50 image: diagonal 70.7, d = round(1.41) = 1. A strip over rows 0-9 and
    every column touches the top, left and right borders: eroded by 1 with the outside
    as background it keeps rows 1-8, cols 1-48 (8 x 48 = 384) of its 500 pixels, so
    the band holds 116 (rows 0 and 9, columns 0 and 49), not just row 9's 50. A mask
    of the whole image keeps a frame 1 wide: 2500 - 48 x 48 = 196."""
    assert band_width(50, 50) == 1
    strip = rect(0, 0, 10, 50, (50, 50))
    band = boundary_band(strip)
    assert band.sum() == 116
    assert band[0].all() and band[:10, 0].all() and band[:10, 49].all()
    assert boundary_band(np.ones((50, 50), bool)).sum() == 196


def test_masks_thinner_than_the_band_are_all_band():
    """A 5-pixel-thick bar (thinner than 2d + 1 = 7) erodes to nothing: its band is the
    whole bar, and Boundary IoU equals mask IoU. The bar on rows 40-44 against it one
    row lower: overlap 4 x 80 = 320, union 6 x 80 = 480 -> 2/3. A single pixel is its
    own band."""
    bar, lower = rect(40, 10, 5, 80), rect(41, 10, 5, 80)
    assert (boundary_band(bar) == bar).all()
    assert boundary_iou(bar, lower) == pytest.approx(2 / 3, abs=1e-12)
    dot = rect(50, 50, 1, 1)
    assert (boundary_band(dot) == dot).all()


def test_band_matches_the_iterated_3x3_erosion_on_random_masks():
    """The official definition pads the mask with one ring of zeros and erodes it d
    times with a 3 x 3 square; the crop-and-(2d+1)-square erosion is the same set."""
    import cv2
    rng = np.random.default_rng(3)
    for i in range(20):
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        noise = rng.random((h, w)).astype(np.float32)
        mask = cv2.GaussianBlur(noise, (0, 0), 1 + i % 4) > 0.5
        d = band_width(h, w)
        padded = np.pad(mask.astype(np.uint8), 1)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
        assert (boundary_band(mask) == (mask & ~eroded.astype(bool))).all(), i


# ---------------------------------------------------------------------- boundary AP
def _rle(mask):
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": enc["size"], "counts": enc["counts"].decode()}


def _gt(masks, crowd=()):
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": _rle(m),
             "iscrowd": int(i in crowd)} for i, m in enumerate(masks)]
    return {"images": [{"id": 1, "height": 100, "width": 100}], "annotations": anns,
            "categories": [{"id": 1, "name": "shirt"}]}


def _pred(mask, score=0.9):
    return {"image_id": 1, "category_id": 1, "score": score, "segmentation": _rle(mask)}


def approx(value):
    """pycocotools averages precisions in float64: an exact 1.0 can come out 1 - 1e-16."""
    return pytest.approx(value, abs=1e-12)


def test_boundary_ap_matches_on_the_minimum_of_mask_and_boundary_iou():
    """The shifted square, one prediction for one ground truth. Segm: mask IoU 0.905
    clears the thresholds 0.50-0.90 but not 0.95 (9 of 10): AP = 0.9, AP75 = 1.
    Boundary: min(0.905, 0.5) = 0.5 clears 0.50 only (a high mask IoU with a poor edge
    is a miss at 0.75): AP50 = 1, AP75 = 0, AP = 0.1. The ground truth's 1600 px are
    "medium" (32^2 < area < 96^2), so APm = AP and the other sizes are -1."""
    g, p = square_and_shifted()
    out = evaluate_coco(_gt([g]), [_pred(p)], iou_types=("bbox", "segm", "boundary"))
    assert out["segm"]["AP"] == approx(0.9) and out["segm"]["AP75"] == approx(1.0)
    b = out["boundary"]
    assert set(b) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert b["AP50"] == approx(1.0) and b["AP75"] == 0.0 and b["AP"] == approx(0.1)
    assert b["APm"] == approx(0.1) and b["APs"] == -1.0 and b["APl"] == -1.0
    assert out["precision"]["boundary"].shape == out["precision"]["segm"].shape
    (row,) = out["per_class"]["boundary"]
    assert row["name"] == "shirt" and row["AP50"] == approx(1.0) and row["AP"] == approx(0.1)


def test_boundary_ap_of_a_perfect_and_a_missing_prediction():
    """Two squares, the first predicted exactly (IoU 1 both ways), the second not at
    all: recall 1/2 at every threshold, precision 1 up to it -> AP = 51/101 over the
    101 recall points (0.00-0.50 reached), the same for segm and boundary."""
    a, b = rect(10, 10, 30, 30), rect(60, 60, 30, 30)
    out = evaluate_coco(_gt([a, b]), [_pred(a)], iou_types=("segm", "boundary"))
    assert out["boundary"]["AP"] == approx(51 / 101)
    assert out["segm"]["AP"] == approx(51 / 101)


def test_crowd_regions_are_matched_by_mask_overlap_as_in_segm():
    """A crowd region (rows 50-99, cols 0-99) and one object (the square G). The
    predictions: G exactly (score 0.9) and a 10 x 10 box inside the crowd (score 0.8).
    COCO's crowd overlap is intersection over the prediction's area, here 1.0, so the
    second prediction is ignored, not a false positive: boundary AP = segm AP = 1.0.
    (Its band lies inside the crowd, far from the crowd's band: were the crowd's band
    used, the overlap would be 0 and the prediction a false positive, AP below 1.)"""
    g = rect(5, 30, 40, 40)
    crowd = rect(50, 0, 50, 100)
    gt = _gt([g, crowd], crowd=(1,))
    preds = [_pred(g, 0.9), _pred(rect(70, 40, 10, 10), 0.95)]
    out = evaluate_coco(gt, preds, iou_types=("segm", "boundary"))
    assert out["segm"]["AP"] == approx(1.0) and out["boundary"]["AP"] == approx(1.0)


def test_band_cache_is_reused_and_gives_the_same_numbers():
    g, p = square_and_shifted()
    cache = {}
    first = evaluate_coco(_gt([g]), [_pred(p)], iou_types=("boundary",), band_cache=cache)
    assert list(cache) == [1]                   # the ground truth's band, by annotation id
    again = evaluate_coco(_gt([g]), [_pred(p)], iou_types=("boundary",), band_cache=cache)
    assert again["boundary"] == first["boundary"]


def test_unknown_iou_type_names_the_choices():
    with pytest.raises(ValueError, match="'bbox', 'segm' or 'boundary'"):
        evaluate_coco(_gt([rect(1, 1, 5, 5)]), [], iou_types=("edge",))


# ---------------------------------------------------------------------- the CLI
def _files(tmp_path):
    g, p = square_and_shifted()
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.jsonl"
    gt_path.write_text(json.dumps(_gt([g])))
    pred_path.write_text(json.dumps(_pred(p)) + "\n")
    return str(gt_path), str(pred_path)


def test_score_iou_type_boundary(tmp_path):
    gt_path, pred_path = _files(tmp_path)
    code, out, err = run(["score", "--annotations", gt_path, "--predictions", pred_path,
                          "--iou-type", "boundary", "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {"boundary", "bbox"}
    assert result["boundary"]["AP50"] == approx(1.0) and result["boundary"]["AP75"] == 0.0
    assert result["boundary"]["AP"] == approx(0.1)
    assert any(line.startswith("boundary ") for line in out.splitlines())
    code, out, err = run(["score", "--annotations", gt_path, "--predictions", pred_path,
                          "--json"])                                 # segm by default
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert set(result) == {"segm", "bbox"} and result["segm"]["AP"] == approx(0.9)
    code, out, err = run(["score", "--annotations", gt_path, "--predictions", pred_path,
                          "--iou-type", "boundary", "--metric", "fashionpedia"])
    assert code == 2 and "--iou-type boundary" in err and "--metric coco" in err, err


def test_keep_best_accepts_the_boundary_metrics():
    from fashion.errors import CLIError
    from fashion.commands.train_eval import retention
    for metric in ("boundary_AP", "boundary_AP50", "boundary_AP75"):
        args = argparse.Namespace(keep_last=2, keep_best=metric, patience=3)
        assert retention(args, True, True, False) == (2, metric)
    args = argparse.Namespace(keep_last=2, keep_best="boundary_AP90", patience=0)
    with pytest.raises(CLIError, match="boundary_AP75"):
        retention(args, True, True, False)

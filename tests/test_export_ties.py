"""The export self-check matches detections to each other and does not count ties.

Unit cases on hand-made outputs (order of equal scores, a class flip inside and outside
the score tolerance, a threshold crossing, an NMS choice between equal scores, a box
that is really off), then a random-weights model whose classes 1-3 are tied to 1e-7:
its ONNX export must be written, and onnxruntime's detections must match TensorFlow's.
"""
import json
import os

import numpy as np
import pytest

from mrcnn.export.verify import TOLERANCES, match


class Cfg:
    DETECTION_MIN_CONFIDENCE = 0.3
    DETECTION_MAX_INSTANCES = 5
    DETECTION_NMS_THRESHOLD = 0.3


def outputs(rows, roi_probs=None, roi_boxes=None, margins=None):
    """Outputs dict of one image from rows (box, class, score); masks are boxes filled
    with 0.9, attributes a function of the box so that rows can be told apart."""
    d = Cfg.DETECTION_MAX_INSTANCES
    out = {"num_detections": np.array([len(rows)], np.int32),
           "detection_boxes": np.zeros((1, d, 4), np.float32),
           "detection_classes": np.zeros((1, d), np.int32),
           "detection_scores": np.zeros((1, d), np.float32),
           "detection_masks": np.zeros((1, d, 7, 7), np.float32),
           "detection_attributes": np.zeros((1, d, 2), np.float32)}
    for k, (box, cls, score) in enumerate(rows):
        out["detection_boxes"][0, k] = box
        out["detection_classes"][0, k] = cls
        out["detection_scores"][0, k] = score
        out["detection_masks"][0, k] = 0.9
        out["detection_attributes"][0, k] = [box[0] / 100, box[1] / 100]
    r = 0 if roi_probs is None else len(roi_probs)
    out["roi_probs"] = np.asarray(roi_probs if r else np.zeros((0, 3)), np.float32)[None]
    out["roi_boxes"] = np.asarray(roi_boxes if r else np.zeros((0, 3, 4)), np.float32)[None]
    out["tie_margin"] = np.ones((1, d), np.float32)
    for k, m in (margins or {}).items():
        out["tie_margin"][0, k] = m
    return out


A, B, C = [10, 10, 40, 40], [50, 50, 90, 90], [12, 10, 42, 40]
SHAPE = (100, 100, 3)


def test_equal_scores_in_either_order_match():
    ref = outputs([(A, 1, 0.9), (B, 2, 0.9)])
    got = outputs([(B, 2, 0.9), (A, 1, 0.9)])
    problem, figures = match(ref, got, Cfg, SHAPE)
    assert problem is None and figures["matched"] == 2 and figures["min_mask_iou"] == 1.0


def test_class_flip_accepted_only_within_the_score_tolerance():
    boxes = [[[0, 0, 0, 0], A, B]]                           # class 2's box differs
    tied = [[0.1, 0.45, 0.45 - 5e-5]]                        # top two within 1e-4
    ref = outputs([(A, 1, 0.45)], roi_probs=tied, roi_boxes=boxes, margins={0: 5e-5})
    got = outputs([(B, 2, 0.45 - 5e-5)])
    problem, figures = match(ref, got, Cfg, SHAPE)
    assert problem is None and figures["class_ties"] == 1, problem
    apart = [[0.1, 0.55, 0.35]]
    ref = outputs([(A, 1, 0.55)], roi_probs=apart, roi_boxes=boxes, margins={0: 0.2})
    problem, _ = match(ref, outputs([(B, 2, 0.55)]), Cfg, SHAPE)
    assert problem.startswith("a TensorFlow detection of class 1 (score 0.55"), problem


def test_threshold_and_nms_ties_accepted():
    at_threshold = outputs([(A, 1, 0.9), (B, 2, 0.3 + 2e-5)])
    problem, figures = match(outputs([(A, 1, 0.9)]), at_threshold, Cfg, SHAPE)
    assert problem is None and figures["one_sided"] == 1
    # NMS kept A in TensorFlow and the overlapping C (score 1e-6 lower) here.
    problem, figures = match(outputs([(A, 1, 0.8)]), outputs([(C, 1, 0.8 - 1e-6)]), Cfg,
                             SHAPE)
    assert problem is None and figures["one_sided"] == 2
    problem, _ = match(outputs([(A, 1, 0.8)]), outputs([(C, 1, 0.7)]), Cfg, SHAPE)
    assert "box off by 2 px, score off by 0.1" in problem, problem


def test_real_differences_are_refused():
    problem, _ = match(outputs([(A, 1, 0.9)]), outputs([(A, 1, 0.9), (B, 2, 0.8)]), Cfg,
                       SHAPE)
    assert problem.startswith("an extra detection of class 2 (score 0.8"), problem
    got = outputs([(A, 1, 0.9)])
    got["detection_masks"][0, 0, :, :4] = 0.1                # 4 of 7 columns gone
    problem, _ = match(outputs([(A, 1, 0.9)]), got, Cfg, SHAPE)
    assert problem.startswith("a pasted mask has IoU 0.42"), problem
    assert TOLERANCES == {"box_px": 0.5, "score": 1e-4, "attribute": 1e-4,
                          "mask_iou": 0.99}


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory):
    """The calibrated test model with classes 1, 2 and 3 tied: their logit weights are
    one column times (1, 1 + 1e-7, 1 - 1e-7), so every ROI's three class probabilities
    agree to ~1e-8 and onnxruntime's rounding picks among them differently."""
    from tests.export_model import build_export_model
    model = build_export_model(tmp_path_factory.mktemp("tied"))
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = (w.numpy() for w in layer.weights)
    for c, factor in ((2, 1 + 1e-7), (3, 1 - 1e-7)):
        kernel[:, c], bias[c] = kernel[:, 1] * factor, bias[1]
    layer.set_weights([kernel, bias])
    model._infer_fn = None
    return model


def test_tied_random_model_exports_to_onnx_and_matches(tied_model, tmp_path):
    pytest.importorskip("onnxruntime")
    import tensorflow as tf
    from mrcnn.export import onnx as onnx_export, preprocess
    from tests.export_model import smooth_images
    path = tied_model.export(str(tmp_path / "onnx"), "onnx")
    with open(os.path.join(os.path.dirname(path), "labels.json")) as f:
        check = json.load(f)["self_check"]
    # The case this test is about: onnxruntime took other classes than TensorFlow for
    # some detections (the probe images give ~40 detections, all nearly tied).
    assert check["class_ties"] > 0 and check["matched"] > 0, check
    _, run = onnx_export.load(path)
    ref = onnx_export.single_image_fn(tied_model, preprocess.EXACT_MUL, ties=True)
    for image in smooth_images(2, [(90, 60), (300, 200), (128, 128)]):
        expected = {k: v.numpy() for k, v in ref(tf.constant(image[None])).items()}
        problem, figures = match(expected, run(image), tied_model.config, image.shape)
        assert problem is None, problem
        assert figures["box_px"] == 0.0 and figures["min_mask_iou"] == 1.0, figures

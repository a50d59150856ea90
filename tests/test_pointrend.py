"""PointRend mask head: point operations against numpy, the subdivision step, config
checks, and a tiny model that trains and detects with MASK_HEAD = "pointrend"."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config, ConfigError
from mrcnn.ops import points as point_ops


def np_bilinear(grid, points, rows, corners=False):
    """Reference: half-pixel centres (or outer centres at 0 and 1 with corners), border
    replication; grid [G, H, W, C]."""
    _, h, w, _ = grid.shape
    out = np.zeros(points.shape[:2] + (grid.shape[-1],), np.float64)
    for n in range(points.shape[0]):
        for p in range(points.shape[1]):
            py, px = points[n, p]
            y, x = (py * (h - 1), px * (w - 1)) if corners else (py * h - 0.5, px * w - 0.5)
            y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, x - x0
            g = grid[rows[n]].astype(np.float64)
            out[n, p] = ((1 - dy) * ((1 - dx) * g[y0, x0] + dx * g[y0, x1])
                         + dy * ((1 - dx) * g[y1, x0] + dx * g[y1, x1]))
    return out


def test_bilinear_sample_matches_numpy():
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(3, 5, 7, 4)).astype(np.float32)
    pts = rng.uniform(-0.1, 1.1, size=(4, 9, 2)).astype(np.float32)  # some off the grid
    rows = np.array([2, 0, 1, 2])
    got = point_ops.bilinear_sample(tf.constant(grid), tf.constant(pts), tf.constant(rows))
    # float32 products of values |v| < 5 against float64: 1e-5 is ~20 ulps of 5
    np.testing.assert_allclose(got.numpy(), np_bilinear(grid, pts, rows), atol=1e-5)
    got = point_ops.bilinear_sample(tf.constant(grid), tf.constant(pts), tf.constant(rows),
                                    corners=True)
    np.testing.assert_allclose(got.numpy(), np_bilinear(grid, pts, rows, True), atol=1e-5)
    # pixel centres return the pixel itself
    centre = np.array([[[(2 + 0.5) / 5, (3 + 0.5) / 7]]], np.float32)
    one = point_ops.bilinear_sample(tf.constant(grid[:1]), tf.constant(centre))
    np.testing.assert_allclose(one.numpy()[0, 0], grid[0, 2, 3], atol=1e-6)


def test_upsample2x_is_tf_bilinear_resize():
    x = np.random.default_rng(1).normal(size=(2, 6, 5)).astype(np.float32)
    got = point_ops.upsample2x(tf.constant(x)).numpy()
    want = tf.image.resize(x[..., None], (12, 10), "bilinear").numpy()[..., 0]
    np.testing.assert_allclose(got, want, atol=1e-6)  # float32 blends vs TF's own order


def test_roi_points_and_uncertain_indices():
    rois = tf.constant([[0.2, 0.1, 0.6, 0.5]])
    pts = tf.constant([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]]])
    np.testing.assert_allclose(point_ops.roi_to_image_points(rois, pts).numpy()[0],
                               [[0.2, 0.1], [0.6, 0.5], [0.4, 0.2]], atol=1e-6)
    logits = tf.constant([[3.0, -0.1, 2.0, 0.05, -4.0]])
    assert point_ops.most_uncertain(logits, 2).numpy().tolist() == [[3, 1]]
    # |logit| differences below the key's step (2^-18 of a logit for 8 cells) tie, and
    # so do logits beyond the cap; tied cells come in a fixed scrambled order, the same
    # on every call. Every key is distinct, so a top-k of any k is the same set.
    tied = tf.constant([[0.5, -0.25, 0.25, 100.0, -0.25, -30.0, 1e-9, 0.0]])
    order = point_ops.most_uncertain(tied, 8).numpy()[0].tolist()
    assert set(order[:2]) == {6, 7} and set(order[2:5]) == {1, 2, 4} and order[5] == 0
    assert set(order[6:]) == {3, 5}
    assert point_ops.most_uncertain(tied, 8).numpy()[0].tolist() == order
    np.testing.assert_allclose(point_ops.grid_points(tf.constant([[5]]), 4).numpy(),
                               [[[0.375, 0.375]]])


def test_subdivision_step_replaces_only_the_most_uncertain_cells():
    """One 2x step on random inputs: every cell is the up-sampled coarse logit except the
    k most uncertain, which hold the point head's prediction at their centre."""
    from mrcnn.heads.pointrend import PointRendHead
    rng = np.random.default_rng(2)
    b, r, h, c, k = 1, 2, 4, 3, 5
    coarse = rng.uniform(0.02, 0.98, (b, r, h, h, c)).astype(np.float32)
    dets = np.zeros((b, r, 6), np.float32)
    dets[0, :, 4] = [1, 2]
    rois = np.array([[[0.1, 0.1, 0.5, 0.6], [0.3, 0.2, 0.9, 0.8]]], np.float32)
    p2 = rng.normal(size=(b, 8, 8, 6)).astype(np.float32)
    head = PointRendHead(c, fc_size=8, fc_layers=2, mode="inference",
                         subdivision_points=k, output_size=2 * h)
    out = head([coarse, dets, rois, p2]).numpy()[..., 0]                # [b, r, 8, 8]
    assert out.shape == (b, r, 2 * h, 2 * h)
    for i in range(r):
        cls = int(dets[0, i, 4])
        p = coarse[0, i, :, :, cls]
        up = point_ops.upsample2x(tf.constant(np.log(p / (1 - p))[None])).numpy()[0]
        idx = np.argsort(np.abs(up.ravel()), kind="stable")[:k]
        pts = point_ops.grid_points(tf.constant(idx[None]), 2 * h)
        fine = point_ops.bilinear_sample(
            tf.constant(p2), point_ops.roi_to_image_points(tf.constant(rois[0, i:i + 1]), pts),
            tf.constant([0]), corners=True)
        at = point_ops.bilinear_sample(tf.constant(coarse[0, i:i + 1]), pts)
        new = head.point_logits(fine, at).numpy()[0, :, cls]
        want = up.ravel().copy()
        want[idx] = new
        sig = 1 / (1 + np.exp(-want.reshape(2 * h, 2 * h)))
        np.testing.assert_allclose(out[0, i], sig, atol=1e-5)  # float32 logit round trip


def test_config_checks_name_the_key_and_the_fix():
    class Bad(Config):
        NUM_CLASSES = 2
        MASK_HEAD = "pointrend"
        MASK_OUTPUT_SIZE = 100
    with pytest.raises(ConfigError, match="MASK_OUTPUT_SIZE is 100.*e.g. 112"):
        Bad()

    class Huge(Config):
        NUM_CLASSES = 2
        MASK_HEAD = "pointrend"
        MASK_OUTPUT_SIZE = 28 * 128
    with pytest.raises(ConfigError, match="MASK_OUTPUT_SIZE is 3584.*1024 or less"):
        Huge()

    class Unknown(Config):
        NUM_CLASSES = 2
        MASK_HEAD = "fine"
    with pytest.raises(ConfigError, match="MASK_HEAD is 'fine'"):
        Unknown()

    class Beta(Config):
        NUM_CLASSES = 2
        MASK_HEAD = "pointrend"
        POINTREND_IMPORTANCE = 1.5
    with pytest.raises(ConfigError, match="POINTREND_IMPORTANCE"):
        Beta()
    assert Config.MASK_HEAD == "matterport"


def test_coarse_targets_and_point_loss():
    from mrcnn.losses import coarse_mask_targets, mrcnn_point_loss
    fine = np.zeros((1, 2, 8, 8), np.float32)
    fine[0, 0, :, :5] = 1                                    # left 5 of 8 columns
    coarse = coarse_mask_targets(tf.constant(fine), (2, 2)).numpy()
    assert coarse[0, 0].tolist() == [[1, 0], [1, 0]]         # 4/4 and 1/4 of each cell
    pts = np.array([[[[0.5, 0.1], [0.5, 0.9]]] * 2], np.float32)     # [1, 2, 2, 2]
    ids = np.array([[1, 0]])                                  # second ROI negative
    right = np.array([[[20.0, -20.0], [0.0, 0.0]]], np.float32)
    wrong = -right
    good = float(mrcnn_point_loss(fine, ids, right, pts))
    bad = float(mrcnn_point_loss(fine, ids, wrong, pts))
    assert good < 1e-6 and bad > 19                         # only the positive ROI counts


class PointRendTiny(Config):
    NAME = "pointrend_tiny"
    NUM_CLASSES = 1 + 3
    IMAGES_PER_GPU = 1
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 32
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    PRE_NMS_LIMIT = 1000
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (56, 56)
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_MAX_INSTANCES = 10
    MIXED_PRECISION = "float32"
    LR_SCHEDULE = "constant"
    MASK_HEAD = "pointrend"
    MASK_OUTPUT_SIZE = 56
    POINTREND_TRAIN_POINTS = 49
    POINTREND_SUBDIVISION_POINTS = 196


@pytest.fixture(scope="module")
def pointrend_run(tmp_path_factory, shapes_data):
    """A tiny PointRend model trained 2 steps, and its inference model from the checkpoint."""
    import keras
    from mrcnn.model import MaskRCNN
    keras.utils.set_random_seed(0)
    config = PointRendTiny()
    logs = tmp_path_factory.mktemp("pointrend")
    train = MaskRCNN("training", config, str(logs))
    train.train(shapes_data[0], None, 0.005, 1, "all", verbose=0)
    infer = MaskRCNN("inference", config, str(logs))
    infer.load_weights(train.find_last())
    return config, train, infer


def test_pointrend_trains_and_detects_fine_masks(pointrend_run, shapes_data):
    from mrcnn.inference import mold_inputs
    config, train, infer = pointrend_run
    assert config.POINTREND_FC_SIZE == 64           # the scaled layout's width (ResNet18)
    head = infer.keras_model.get_layer("mrcnn_point_head")
    trained = train.keras_model.get_layer("mrcnn_point_head")
    for a, b in zip(head.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)     # the checkpoint carried the point head
    # a checkpoint tells which head it was trained with (runs rebuild it so)
    from mrcnn.layout import sizes_in_weights
    from mrcnn.weights.by_name import read_weight_shapes
    sizes = sizes_in_weights(read_weight_shapes(train.find_last()))
    assert sizes["MASK_HEAD"] == "pointrend" and sizes["POINTREND_FC_SIZE"] == 64
    assert sizes["POINTREND_FC_LAYERS"] == 3
    image = shapes_data[1].load_image(0)[:120, :100]
    molded, metas, _ = mold_inputs([image], config)
    anchors = infer.get_anchors(molded[0].shape)[None]
    outs = infer._predict(molded, metas, anchors)
    assert outs["mrcnn_mask"].shape == (1, 10, 56, 56, 1)
    assert np.isfinite(outs["mrcnn_mask"]).all()
    r = infer.detect([image])[0]
    n = len(r["class_ids"])
    assert n > 0 and r["masks"].shape == (120, 100, n) and r["masks"].dtype == bool
    # each mask lies inside its box (pasted in the image's own coordinates)
    for i in range(n):
        y1, x1, y2, x2 = r["rois"][i]
        outside = r["masks"][:, :, i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()


def test_matterport_head_is_unchanged_by_default():
    from mrcnn import graph

    class M(Config):
        NAME = "m"
        NUM_CLASSES = 3
        BACKBONE = "resnet50"
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
        POST_NMS_ROIS_INFERENCE = 50
        MIXED_PRECISION = "float32"
    config = M()
    assert config.MASK_HEAD == "matterport"
    assert config.mask_target_shape() == (28, 28)
    inputs, outputs = graph.build_inference_graph(config)
    assert tuple(outputs["mrcnn_mask"].shape[2:]) == (28, 28, 3)
    import keras
    names = [layer.name for layer in keras.Model(inputs, outputs).layers]
    assert "mrcnn_mask" in names and "mrcnn_point_head" not in names


def test_subdivision_converts_to_onnx_and_openvino_without_loops(tmp_path):
    """The inference head (two unrolled 2x steps) traced for the converted exports runs
    in onnxruntime and OpenVINO with TensorFlow's numbers and no control flow."""
    ort = pytest.importorskip("onnxruntime")
    import tf2onnx
    from mrcnn.heads.pointrend import PointRendHead
    from mrcnn.ops.portable import portable
    rng = np.random.default_rng(4)
    b, r, h, c = 1, 6, 7, 4
    y1x1 = rng.uniform(0, 0.6, (b, r, 2))
    args = [rng.uniform(0.01, 0.99, (b, r, h, h, c)).astype(np.float32),
            np.concatenate([np.zeros((b, r, 4)), rng.integers(1, c, (b, r, 1)),
                            np.ones((b, r, 1))], -1).astype(np.float32),
            np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.4, (b, r, 2))],
                           -1).astype(np.float32),
            rng.normal(size=(b, 16, 16, 8)).astype(np.float32)]
    head = PointRendHead(c, fc_size=16, mode="inference", subdivision_points=30,
                         output_size=4 * h)
    head(args)           # builds the weights; then fixed values, whatever ran before
    head.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                      for w in head.get_weights()])
    specs = [tf.TensorSpec(a.shape, tf.float32) for a in args]
    fn = tf.function(lambda *a: head(list(a)), input_signature=specs, autograph=False)
    want = fn(*args).numpy()
    path = str(tmp_path / "head.onnx")
    with portable():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=17,
                                                 output_path=path)
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"Loop", "Scan", "If"} and "TopK" in ops
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {i.name: a for i, a in zip(sess.get_inputs(), args)}
    # onnxruntime's matrix products round differently (~1e-6 relative); the selected
    # points are the same, so probabilities agree far below a pixel's 0.5 threshold
    np.testing.assert_allclose(sess.run(None, feed)[0], want, atol=1e-4)
    ov = pytest.importorskip("openvino")
    from mrcnn.export.openvino import compile_model
    compiled = compile_model(ov.convert_model(path), precision="f32")  # as the export
    np.testing.assert_allclose(compiled(args)[0], want, atol=1e-4)

"""Graph variants traced for converted exports (mrcnn.ops.portable) compute what the
Keras layers compute: ROI align from gathers equals CropAndResize bit for bit, the mask
head's up-convolution as a matrix product equals Conv2DTranspose, NMS without its
per-image loop keeps the same boxes."""
import keras
import numpy as np
import tensorflow as tf

from mrcnn.heads.common import BlockConv2DTranspose
from mrcnn.layers import PyramidROIAlign
from mrcnn.ops import boxes as box_ops
from mrcnn.ops.portable import is_portable, portable


def traced(fn, *args, on=True):
    with portable(on):
        return tf.function(fn, autograph=False)(*args).numpy()


def test_switch_is_scoped():
    assert not is_portable()
    with portable():
        assert is_portable()
        with portable(False):
            assert not is_portable()
        assert is_portable()
    assert not is_portable()


def _roi_align_case():
    """40 boxes over a 4-level pyramid of a 256 px image; (inputs, layer)."""
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(1, s, s, 8)).astype(np.float32) for s in (64, 32, 16, 8)]
    y1x1 = rng.uniform(0, 0.8, (1, 40, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.01, 0.5, (1, 40, 2))], -1)
    boxes = np.clip(boxes, 0, 1).astype(np.float32)
    meta = np.zeros((1, 16), np.float32)
    meta[0, 4:7] = [256, 256, 3]                               # image_shape: all 4 levels
    args = [tf.constant(boxes), tf.constant(meta)] + [tf.constant(m) for m in maps]
    return args, PyramidROIAlign((7, 7))


def test_roi_align_from_gathers_equals_crop_and_resize():
    args, layer = _roi_align_case()
    want = traced(lambda *a: layer(list(a)), *args, on=False)
    got = traced(lambda *a: layer(list(a)), *args)
    np.testing.assert_array_equal(got, want)


def test_roi_align_under_onnxruntime_equals_crop_and_resize():
    """The converted ROI align gives TensorFlow's CropAndResize values bit for bit."""
    import pytest
    ort = pytest.importorskip("onnxruntime")
    import tf2onnx
    args, layer = _roi_align_case()
    specs = [tf.TensorSpec(a.shape, tf.float32) for a in args]
    fn = tf.function(lambda *a: layer(list(a)), input_signature=specs, autograph=False)
    with portable():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=17)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    want = traced(lambda *a: layer(list(a)), *args, on=False)
    np.testing.assert_array_equal(sess.run(None, feed)[0], want)


def test_block_conv_transpose_as_matrix_product():
    layer = BlockConv2DTranspose(16, 2, strides=2, activation="relu")
    x = tf.constant(np.random.default_rng(4).normal(size=(5, 7, 7, 8)).astype(np.float32))
    want = traced(layer, x, on=False)
    got = traced(layer, x)
    assert got.shape == (5, 14, 14, 16)
    # Each output is one 8-term dot product either way; oneDNN may sum it in another
    # order than the matrix product, so allow float32 rounding.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert isinstance(keras.layers.deserialize(keras.layers.serialize(layer)),
                      BlockConv2DTranspose)


def test_nms_without_its_loop_for_one_image():
    rng = np.random.default_rng(5)
    y1x1 = rng.uniform(0, 0.8, (1, 300, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.3, (1, 300, 2))], -1)
    scores = rng.uniform(0, 1, (1, 300)).astype(np.float32)
    run = lambda b, s: tf.concat(box_ops.batched_nms_padded(b, s, 50, 0.5)[0], 0)  # noqa
    args = (tf.constant(boxes, tf.float32), tf.constant(scores))
    np.testing.assert_array_equal(traced(run, *args), traced(run, *args, on=False))

"""In-graph image preparation that gives the exact molded image of ``detect()``.

``detect()`` molds with numpy: ``utils.resize_image`` (scale from IMAGE_MIN_DIM /
IMAGE_MAX_DIM / IMAGE_MIN_SCALE, skimage ``resize(order=1, mode="constant",
anti_aliasing=False, preserve_range=True)``, clip to the input's range, truncation back
to uint8, zero padding to a square) then ``mold_image`` (float64 mean subtraction, cast to
float32 on the way into the model). skimage's resize is scipy's ``ndimage.zoom`` with
``grid_mode=True`` and ``mode="grid-constant"``: source coordinate
``(i + 0.5) * in / out - 0.5``, two linear taps per axis, taps outside the image read 0.
This module computes the same thing in float64 with the same operation order
(``((v * wy) * wx)`` summed over the taps (y0, x0), (y0, x1), (y1, x0), (y1, x1)), so
the molded image is bit-identical and exported models see exactly what ``detect()`` sees.
Only the "square" resize mode is supported (what inference uses).
"""
import numpy as np
import tensorflow as tf

from mrcnn.meta import compose_image_meta


def _py_scale_graph(h, w, config):
    """resize_image's scale and output size (float64 / int32 tensors) for h, w."""
    h64, w64 = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    scale = tf.constant(1.0, tf.float64)
    if config.IMAGE_MIN_DIM:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_DIM) / tf.minimum(h64, w64))
    if config.IMAGE_MIN_SCALE:
        scale = tf.where(scale < float(config.IMAGE_MIN_SCALE),
                         tf.constant(float(config.IMAGE_MIN_SCALE), tf.float64), scale)
    image_max = tf.maximum(h64, w64)
    max_dim = float(config.IMAGE_MAX_DIM)
    scale = tf.where(tf.round(image_max * scale) > max_dim, max_dim / image_max, scale)
    out_h = tf.cast(tf.round(h64 * scale), tf.int32)
    out_w = tf.cast(tf.round(w64 * scale), tf.int32)
    return scale, out_h, out_w


def _taps(size_in, size_out):
    """Per output index along one axis: the two source indices (clamped), their
    validity and their weights, as scipy's zoom (grid mode, order 1) computes them."""
    zoom = tf.cast(size_in, tf.float64) / tf.cast(size_out, tf.float64)
    cc = (tf.range(size_out, dtype=tf.float64) + 0.5) * zoom - 0.5      # [out]
    start = tf.floor(cc)
    t = cc - start
    i0 = tf.cast(start, tf.int32)
    i1 = i0 + 1
    valid0 = (i0 >= 0) & (i0 < size_in)
    valid1 = (i1 >= 0) & (i1 < size_in)
    clamp = lambda i: tf.clip_by_value(i, 0, size_in - 1)  # noqa: E731
    return (clamp(i0), valid0, 1.0 - t), (clamp(i1), valid1, t)


def _tap(image, ytap, xtap, mul):
    """One bilinear tap of a uint8 image [H, W, C] -> float64 [oh, ow, C], 0 outside."""
    (yi, yv, wy), (xi, xv, wx) = ytap, xtap
    v = tf.gather(tf.gather(image, yi, axis=0), xi, axis=1)
    v = tf.cast(v, tf.float64)
    inside = tf.logical_and(tf.reshape(yv, [-1, 1, 1]), tf.reshape(xv, [1, -1, 1]))
    v = tf.where(inside, v, tf.zeros_like(v))
    return mul(mul(v, tf.reshape(wy, [-1, 1, 1])), tf.reshape(wx, [1, -1, 1]))


# MulNoNan is x * y for these finite values, and Grappler's arithmetic optimizer does not
# hoist common factors out of it (with Mul it rewrites (a*w)+(b*w) into (a+b)*w in loaded
# SavedModels, which changes the float64 rounding and so some pixels). ONNX has no
# MulNoNan; tf2onnx and onnxruntime keep Mul's order, so ONNX exports use tf.multiply.
EXACT_MUL = tf.math.multiply_no_nan


def skimage_resize_uint8(image, out_h, out_w, mul=EXACT_MUL):
    """utils.resize(image, (out_h, out_w), preserve_range=True).astype(uint8) in TF."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ytaps, xtaps = _taps(h, out_h), _taps(w, out_w)
    out = _tap(image, ytaps[0], xtaps[0], mul) + _tap(image, ytaps[0], xtaps[1], mul)
    out = out + _tap(image, ytaps[1], xtaps[0], mul)
    out = out + _tap(image, ytaps[1], xtaps[1], mul)
    lo = tf.cast(tf.reduce_min(image), tf.float64)
    hi = tf.cast(tf.reduce_max(image), tf.float64)
    out = tf.clip_by_value(out, lo, hi)
    return tf.cast(tf.floor(out), tf.uint8)                        # astype(uint8) truncates


def mold_one(image, config, mul=EXACT_MUL):
    """uint8 [H, W, 3] -> (padded uint8 [S, S, 3], image meta float32 [META]).

    The molded float input is ``molded_input(padded)``; S = IMAGE_MAX_DIM.
    """
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    scale, out_h, out_w = _py_scale_graph(h, w, config)
    # scale 1 (no resize in numpy) gives out = in: source index i, weights (1, 0), so
    # the same arithmetic returns the image unchanged; no branch needed.
    resized = skimage_resize_uint8(image, out_h, out_w, mul)
    side = int(config.IMAGE_MAX_DIM)
    top, left = (side - out_h) // 2, (side - out_w) // 2
    padded = tf.pad(resized, [[top, side - out_h - top], [left, side - out_w - left], [0, 0]])
    padded = tf.ensure_shape(tf.reshape(padded, [side, side, 3]), [side, side, 3])
    f32 = lambda *v: tf.cast(tf.stack(v), tf.float32)  # noqa: E731
    meta = tf.concat([
        tf.zeros([1], tf.float32),                                       # image_id
        f32(h, w, 3), tf.constant([side, side, 3], tf.float32),         # shapes
        f32(top, left, out_h + top, out_w + left),                      # window (pixels)
        tf.cast(scale, tf.float32)[None],
        tf.zeros([config.NUM_CLASSES], tf.float32)], axis=0)            # active class ids
    return padded, meta


def molded_input(padded, config):
    """uint8 images [B, S, S, 3] -> float32 model input, as mold_image + tf.constant."""
    mean = tf.constant(np.asarray(config.MEAN_PIXEL, np.float64))
    return tf.cast(tf.cast(padded, tf.float64) - mean, tf.float32)


def mold_batch(images, config, mul=EXACT_MUL):
    """uint8 [B, H, W, 3] -> (molded float32 [B, S, S, 3], meta [B, META])."""
    side = int(config.IMAGE_MAX_DIM)
    if images.shape[0] == 1:                       # one image: no loop (ONNX, TFLite)
        padded, meta = mold_one(images[0], config, mul)
        return molded_input(tf.expand_dims(padded, 0), config), tf.expand_dims(meta, 0)
    padded, metas = tf.map_fn(
        lambda im: mold_one(im, config, mul), images,
        fn_output_signature=(tf.TensorSpec([side, side, 3], tf.uint8),
                             tf.TensorSpec([config.IMAGE_META_SIZE], tf.float32)))
    return molded_input(padded, config), metas


def decode_image(data):
    """Encoded bytes -> uint8 [H, W, 3], pixel for pixel what PIL's
    ``Image.open(...).convert("RGB")`` gives (JPEG with the accurate integer IDCT, as
    PIL decodes it; TF's default fast IDCT differs by a few levels)."""
    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3])
    return tf.cond(tf.io.is_jpeg(data), jpeg, other)


def decode_batch(encoded, config):
    """tf.string [B] of JPEG/PNG/GIF/BMP bytes -> (molded [B, S, S, 3], meta [B, META])."""
    side = int(config.IMAGE_MAX_DIM)

    def one(data):
        return mold_one(decode_image(data), config)
    padded, metas = tf.map_fn(
        one, encoded,
        fn_output_signature=(tf.TensorSpec([side, side, 3], tf.uint8),
                             tf.TensorSpec([config.IMAGE_META_SIZE], tf.float32)))
    return molded_input(padded, config), metas


def numpy_reference(image, config):
    """What mold_inputs gives for one image (padded uint8, meta): for tests."""
    from mrcnn import utils
    resized, window, scale, _, _ = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode="square")
    meta = compose_image_meta(0, image.shape, resized.shape, window, scale,
                              np.zeros([config.NUM_CLASSES], np.int32))
    return resized, meta

"""Point operations of the PointRend mask head: bilinear sampling at continuous points,
2x bilinear up-sampling and the choice of uncertain points.

Coordinates: a point (y, x) lies in [0, 1]^2 of its grid's extent (a box's mask, or the
whole image for a feature map). In a box's mask, pixel i of n covers [i/n, (i+1)/n], so
its centre is (i + 0.5) / n, as the mask is pasted (half-pixel centres, as
tf.image.resize). Feature maps are read in matterport's normalised image coordinates,
where 0 and 1 are the outer pixels' centres, as ROI align reads them (corners=True).
Points beyond the outer pixel centres take the border pixel's value.

Every function is plain TensorFlow with static ranks and no loops, so the graphs they
build convert to ONNX and OpenVINO (Gather, TopK, ScatterND), and each gives every
runtime the same numbers to work on: fixed blends, and TopK on keys without ties.
"""
import numpy as np
import tensorflow as tf


def bilinear_sample(grid, points, rows=None, corners=False):
    """Bilinear samples of grid at points.

    grid: [G, H, W, C] float; points: [N, P, 2] (y, x) in [0, 1] of the grid's extent;
    rows: [N] int, which grid each point row samples (None: row n samples grid n, N = G).
    corners: 0 and 1 are the outer pixels' centres (matterport's normalised image
    coordinates, as ROI align reads the pyramid) instead of the grid's outer edges.
    Returns [N, P, C] in grid's dtype.
    """
    shape = tf.shape(grid)
    h, w, c = shape[1], shape[2], shape[3]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    if corners:
        y, x = points[..., 0] * (hf - 1.0), points[..., 1] * (wf - 1.0)
    else:
        y, x = points[..., 0] * hf - 0.5, points[..., 1] * wf - 0.5
    y = tf.clip_by_value(y, 0.0, hf - 1.0)                              # [N, P] pixel
    x = tf.clip_by_value(x, 0.0, wf - 1.0)
    y0f, x0f = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0f)[..., None], (x - x0f)[..., None]                 # [N, P, 1]
    y0, x0 = tf.cast(y0f, tf.int32), tf.cast(x0f, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, h - 1), tf.minimum(x0 + 1, w - 1)
    if rows is None:
        rows = tf.range(tf.shape(points)[0])
    base = (tf.cast(rows, tf.int32) * h * w)[:, None]                   # [N, 1]
    flat = tf.reshape(grid, tf.stack([-1, c]))                          # [G*H*W, C]

    def tap(yy, xx):
        return tf.cast(tf.gather(flat, base + yy * w + xx), tf.float32)  # [N, P, C]
    top = tap(y0, x0) * (1.0 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1.0 - wx) + tap(y1, x1) * wx
    return tf.cast(top * (1.0 - wy) + bottom * wy, grid.dtype)


def roi_to_image_points(rois, points):
    """Points in [0, 1] of their boxes -> points in [0, 1] of the image.

    rois: [N, 4] (y1, x1, y2, x2) normalised; points: [N, P, 2]. Returns [N, P, 2]."""
    y1, x1, y2, x2 = tf.split(rois[:, None, :], 4, axis=-1)            # [N, 1, 1] each
    return tf.concat([y1 + points[..., :1] * (y2 - y1),
                      x1 + points[..., 1:] * (x2 - x1)], axis=-1)


def upsample2x(x):
    """Bilinear 2x up-sampling with half-pixel centres and border replication (what
    tf.image.resize(..., "bilinear") computes for an exact factor 2), written as fixed
    0.75 / 0.25 blends so every runtime gives the same numbers: [N, H, W] -> [N, 2H, 2W]."""
    def axis(t, ax):
        n = t.shape[ax] if t.shape[ax] is not None else tf.shape(t)[ax]
        prev = tf.concat([tf.gather(t, [0], axis=ax),
                          tf.gather(t, tf.range(n - 1), axis=ax)], axis=ax)
        nxt = tf.concat([tf.gather(t, tf.range(1, n), axis=ax),
                         tf.gather(t, [n - 1], axis=ax)], axis=ax)
        even = 0.75 * t + 0.25 * prev
        odd = 0.75 * t + 0.25 * nxt
        out = tf.stack([even, odd], axis=ax + 1)                      # interleave
        shape = tf.unstack(tf.shape(t))
        shape[ax] = shape[ax] * 2
        return tf.reshape(out, tf.stack(shape))
    return axis(axis(x, 1), 2)


def grid_points(indices, side):
    """Flat indices [N, K] into a side x side grid -> their pixel centres [N, K, 2]
    (y, x) in [0, 1]."""
    side_f = tf.cast(side, tf.float32)
    y = tf.cast(indices // side, tf.float32)
    x = tf.cast(indices % side, tf.float32)
    return tf.stack([(y + 0.5) / side_f, (x + 0.5) / side_f], axis=-1)


UNCERTAINTY_CAP = 8.0      # |logit| beyond this (p within 3e-4 of 0 or 1) ties at the cap
UNIQUE_KEYS_TOPK = "topk_of_unique_keys"   # name of the TopK that needs no stable sort


def most_uncertain(logits, k):
    """Flat indices [N, k] of the k values of logits [N, M] (M static) nearest 0, the most
    uncertain predictions, most uncertain first.

    The choice is made on keys that are unique and exact in float32 (below 2^24): |logit|
    rounded down to a power-of-2 step in the high bits (2^-7 of a logit for 12544 cells,
    2^-9 for 3136), and in the low bits the cell's place in a fixed scrambled order, so
    that equally uncertain cells are not taken row by row from the top. With no two keys
    equal, every runtime's TopK picks the same cells without a stable sort, which
    OpenVINO's CPU plugin makes ~100x slower (44 ms against 0.5 ms for 784 of 12544
    cells, AVX-512 EPYC); the TopK is named UNIQUE_KEYS_TOPK so exports can tell."""
    cells = int(logits.shape[-1])
    index_bits = max(1, (cells - 1).bit_length())
    if index_bits > 20:
        raise ValueError(f"most_uncertain ranks at most 2^20 cells per row, not {cells}.")
    levels = 2 ** (24 - index_bits)
    scale = levels / UNCERTAINTY_CAP                           # a power of 2: exact product
    level = tf.minimum(tf.floor(tf.abs(tf.cast(logits, tf.float32)) * scale), levels - 1.0)
    # A multiplication by an odd number is a bijection modulo 2^index_bits.
    odd = (int(0.618034 * 2 ** index_bits) | 1) % 2 ** index_bits or 1
    order = (np.arange(cells, dtype=np.int64) * odd) % 2 ** index_bits
    key = level * float(2 ** index_bits) + tf.constant(order.astype(np.float32))
    return tf.math.top_k(-key, k=k, sorted=True, name=UNIQUE_KEYS_TOPK).indices


def training_points(rng_uniform, uncertainty_fn, num_points, oversample, importance):
    """PointRend's training points for each row: oversample x num_points random points,
    the importance x num_points most uncertain of them, plus uniform random points.

    rng_uniform(shape) -> uniform [0, 1) float32 tensor of that shape (with [N] taken from
    the caller); uncertainty_fn(points [N, M, 2]) -> [N, M] (larger = more uncertain).
    Returns [N, num_points, 2] with no gradient.
    """
    sampled = rng_uniform(int(oversample * num_points))                 # [N, kP, 2]
    n_uncertain = int(round(importance * num_points))
    parts = []
    if n_uncertain:
        top = tf.math.top_k(uncertainty_fn(sampled), k=n_uncertain).indices  # [N, bP]
        parts.append(tf.gather(sampled, top, batch_dims=1))
    if num_points - n_uncertain:
        parts.append(rng_uniform(num_points - n_uncertain))
    return tf.stop_gradient(tf.concat(parts, axis=1))

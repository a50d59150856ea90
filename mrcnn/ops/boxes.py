"""Box arithmetic on tensors, in matterport's conventions.

Boxes are ``(y1, x1, y2, x2)``; graph code works in normalised coordinates where a box's
height is ``y2 - y1`` (see ``docs/interfaces.md``). Deltas are ``(dy, dx, log(dh),
log(dw))``. Every function accepts any number of leading batch dimensions unless its
docstring says otherwise, so layers can stay vectorised over the batch.
"""

import numpy as np
import tensorflow as tf

from mrcnn.ops.portable import is_portable

BBOX_DELTA_CLAMP = float(np.log(1000.0 / 16))


def apply_box_deltas(boxes, deltas):
    """Applies ``(dy, dx, log(dh), log(dw))`` deltas to boxes.

    Args:
        boxes: ``[..., 4]`` float ``(y1, x1, y2, x2)``.
        deltas: ``[..., 4]`` float, broadcastable against ``boxes``; already multiplied
            by the std-dev (this function does not scale them).

    Returns:
        ``[..., 4]`` refined boxes.
    """
    boxes = tf.cast(boxes, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    # Untrained or diverging heads can predict huge size deltas; exp() of them gives
    # inf/NaN boxes that break ROI align, so they are clamped at log(1000 / 16).
    deltas = tf.concat([deltas[..., :2], tf.minimum(deltas[..., 2:], BBOX_DELTA_CLAMP)], -1)
    height = boxes[..., 2] - boxes[..., 0]  # [...]
    width = boxes[..., 3] - boxes[..., 1]  # [...]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * tf.exp(deltas[..., 2])
    width = width * tf.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1)  # [..., 4]


def clip_boxes(boxes, window):
    """Clips boxes to a window.

    Args:
        boxes: ``[..., 4]`` ``(y1, x1, y2, x2)``.
        window: ``[4]`` or ``[..., 4]`` broadcastable against ``boxes``
            ``(wy1, wx1, wy2, wx2)``, e.g. ``[B, 1, 4]`` for ``[B, N, 4]`` boxes.

    Returns:
        ``[..., 4]`` boxes with every coordinate inside the window.
    """
    boxes = tf.cast(boxes, tf.float32)
    window = tf.cast(window, tf.float32)
    low = tf.concat([window[..., :2], window[..., :2]], axis=-1)  # [..., 4] wy1 wx1 wy1 wx1
    high = tf.concat([window[..., 2:], window[..., 2:]], axis=-1)  # [..., 4] wy2 wx2 wy2 wx2
    return tf.maximum(tf.minimum(boxes, high), low)


def box_refinement(box, gt_box):
    """Deltas that turn ``box`` into ``gt_box`` (the inverse of ``apply_box_deltas``).

    Args:
        box: ``[..., 4]`` source boxes.
        gt_box: ``[..., 4]`` target boxes, same shape.

    Returns:
        ``[..., 4]`` ``(dy, dx, log(dh), log(dw))``, not divided by the std-dev.
    """
    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)
    return tf.stack([dy, dx, dh, dw], axis=-1)  # [..., 4]


def box_area(boxes):
    """``[..., 4]`` boxes -> ``[...]`` areas ``(y2 - y1) * (x2 - x1)``."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def overlaps(boxes1, boxes2):
    """IoU matrix between two sets of boxes.

    Args:
        boxes1: ``[..., N1, 4]``.
        boxes2: ``[..., N2, 4]`` (same leading dimensions).

    Returns:
        ``[..., N1, N2]`` IoU; 0 where the union is empty (e.g. zero padding).
    """
    boxes1 = tf.cast(boxes1, tf.float32)
    boxes2 = tf.cast(boxes2, tf.float32)
    b1 = tf.expand_dims(boxes1, -2)  # [..., N1, 1, 4]
    b2 = tf.expand_dims(boxes2, -3)  # [..., 1, N2, 4]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])  # [..., N1, N2]
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    intersection = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    union = box_area(b1) + box_area(b2) - intersection  # [..., N1, N2]
    return tf.math.divide_no_nan(intersection, union)


def _shape_scale(shape):
    """``(h, w)`` -> ``[4]`` float ``(h - 1, w - 1, h - 1, w - 1)``; also ``[..., 2]``."""
    shape = tf.cast(shape, tf.float32)
    hw = shape[..., :2] - 1.0
    return tf.concat([hw, hw], axis=-1)


def norm_boxes(boxes, shape):
    """Pixel boxes (exclusive y2/x2) -> normalised boxes, as ``utils.norm_boxes``.

    Args:
        boxes: ``[..., 4]`` pixel ``(y1, x1, y2, x2)``.
        shape: ``(height, width)`` of the image, ``[2]`` (or ``[..., 2]`` broadcastable).
    """
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return (tf.cast(boxes, tf.float32) - shift) / _shape_scale(shape)


def denorm_boxes(boxes, shape):
    """Normalised boxes -> int32 pixel boxes, as ``utils.denorm_boxes``."""
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    pixels = tf.cast(boxes, tf.float32) * _shape_scale(shape) + shift
    return tf.cast(tf.round(pixels), tf.int32)


def trim_zeros(boxes):
    """Drops all-zero rows (padding) of ``[N, 4]`` boxes.

    Returns:
        ``(boxes [M, 4], non_zero [N] bool)``.
    """
    non_zero = tf.reduce_any(tf.not_equal(boxes, 0), axis=-1)  # [N]
    return tf.boolean_mask(boxes, non_zero), non_zero


def non_zero_rows(boxes):
    """``[..., N, 4]`` -> ``[..., N]`` bool, True where a row is not zero padding."""
    return tf.reduce_any(tf.not_equal(boxes, 0), axis=-1)


def batched_nms_padded(boxes, scores, max_output_size, iou_threshold,
                       score_threshold=float("-inf")):
    """Greedy NMS per image with outputs padded to a fixed size.

    Uses the same kernel as ``tf.image.non_max_suppression`` (one call per image).

    Args:
        boxes: ``[B, N, 4]``.
        scores: ``[B, N]``.
        max_output_size: python int, the padded output length ``K``.
        iou_threshold: python float; a box is suppressed when its IoU with a kept box
            is above it.
        score_threshold: boxes scoring at or below it are never kept.

    Returns:
        ``(indices [B, K] int32, valid [B, K] bool)``; indices are in decreasing score
        order and only the first ``sum(valid)`` of a row are meaningful.
    """
    k = int(max_output_size)

    def one_image(args):
        image_boxes, image_scores = args  # [N, 4], [N]
        indices, count = tf.raw_ops.NonMaxSuppressionV4(
            boxes=image_boxes, scores=image_scores, max_output_size=k,
            iou_threshold=float(iou_threshold), score_threshold=float(score_threshold),
            pad_to_max_output_size=True)
        return indices, count  # [K], []

    boxes, scores = tf.cast(boxes, tf.float32), tf.cast(scores, tf.float32)
    if boxes.shape[0] == 1 and is_portable():        # one image: no loop to convert
        indices, count = one_image((boxes[0], scores[0]))
        indices, counts = indices[tf.newaxis], count[tf.newaxis]
    else:
        indices, counts = tf.map_fn(
            one_image, (boxes, scores),
            fn_output_signature=(tf.TensorSpec([k], tf.int32), tf.TensorSpec([], tf.int32)))
    valid = tf.range(k)[tf.newaxis, :] < counts[:, tf.newaxis]  # [B, K]
    return indices, valid


def _sample_grid(low, high, size, extent):
    """Sample positions of ``tf.image.crop_and_resize`` along one axis, with its CPU
    kernel's float32 arithmetic (so the crops equal it bit for bit):
    ``low * extent + i * ((high - low) * extent / (size - 1))``, or
    ``0.5 * (low + high) * extent`` (the sum in float32, the rest in float64) for one
    sample.

    Args:
        low, high: ``[M]`` normalised box edges.
        size: python int, output samples.
        extent: ``[M]`` float, image size minus one along this axis.

    Returns:
        ``[M, size]`` float pixel coordinates.
    """
    if size > 1:
        # A division, as the kernel does (Grappler rewrites x / constant into
        # x * (1 / constant), which rounds differently; it leaves DivNoNan alone).
        step = tf.math.divide_no_nan((high - low) * extent, float(size - 1))  # [M]
        index = tf.range(size, dtype=tf.float32)  # [size]
        return (low * extent)[:, tf.newaxis] + index[tf.newaxis, :] * step[:, tf.newaxis]
    mid = 0.5 * tf.cast(low + high, tf.float64) * tf.cast(extent, tf.float64)
    return tf.cast(mid, tf.float32)[:, tf.newaxis]


def bilinear_crops(flat_images, base, heights, widths, boxes, crop_size):
    """Bilinear crops gathered from images stored as rows of one flat tensor.

    Same sampling as ``tf.image.crop_and_resize(method="bilinear")`` with extrapolation
    value 0, but built from gathers, so XLA (and TPUs) can compile it and each box can
    come from an image of a different size (e.g. another pyramid level).

    Args:
        flat_images: ``[T, C]`` pixels of all images, each image row-major.
        base: ``[M]`` int32 row of each box's image's pixel (0, 0) in ``flat_images``.
        heights, widths: ``[M]`` int32 size of each box's image.
        boxes: ``[M, 4]`` normalised boxes.
        crop_size: ``(crop_height, crop_width)`` python ints.

    Returns:
        ``[M, crop_height, crop_width, C]``.
    """
    boxes = tf.cast(boxes, tf.float32)
    y_max = tf.cast(heights - 1, tf.float32)  # [M]
    x_max = tf.cast(widths - 1, tf.float32)
    ys = _sample_grid(boxes[:, 0], boxes[:, 2], crop_size[0], y_max)  # [M, ph]
    xs = _sample_grid(boxes[:, 1], boxes[:, 3], crop_size[1], x_max)  # [M, pw]
    inside_y = tf.logical_and(ys >= 0.0, ys <= y_max[:, tf.newaxis])  # [M, ph]
    inside_x = tf.logical_and(xs >= 0.0, xs <= x_max[:, tf.newaxis])  # [M, pw]
    y_top, x_left = tf.floor(ys), tf.floor(xs)
    dy = (ys - y_top)[:, :, tf.newaxis, tf.newaxis]  # [M, ph, 1, 1]
    dx = (xs - x_left)[:, tf.newaxis, :, tf.newaxis]  # [M, 1, pw, 1]
    last_y, last_x = (heights - 1)[:, tf.newaxis], (widths - 1)[:, tf.newaxis]
    y0 = tf.clip_by_value(tf.cast(y_top, tf.int32), 0, last_y)  # [M, ph]
    y1 = tf.minimum(y0 + 1, last_y)
    x0 = tf.clip_by_value(tf.cast(x_left, tf.int32), 0, last_x)  # [M, pw]
    x1 = tf.minimum(x0 + 1, last_x)
    row_base = base[:, tf.newaxis]  # [M, 1]
    rows0 = (row_base + y0 * widths[:, tf.newaxis])[:, :, tf.newaxis]  # [M, ph, 1]
    rows1 = (row_base + y1 * widths[:, tf.newaxis])[:, :, tf.newaxis]
    cols0, cols1 = x0[:, tf.newaxis, :], x1[:, tf.newaxis, :]  # [M, 1, pw]
    # Samples outside the image read an appended zero row (crop_and_resize's
    # extrapolation value 0): 0 + (0 - 0) * d is 0, and no select over the crops.
    flat_images = tf.cast(flat_images, tf.float32)
    zero_row = tf.shape(flat_images)[0]
    flat_images = tf.concat([flat_images, tf.zeros_like(flat_images[:1])], axis=0)
    inside = tf.logical_and(inside_y[:, :, tf.newaxis], inside_x[:, tf.newaxis, :])

    def corner(rows, cols):
        return tf.gather(flat_images, tf.where(inside, rows + cols, zero_row))

    top_left, top_right = corner(rows0, cols0), corner(rows0, cols1)  # [M, ph, pw, C]
    bottom_left, bottom_right = corner(rows1, cols0), corner(rows1, cols1)
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy  # [M, ph, pw, C]


def crop_and_resize_gather(images, boxes, box_indices, crop_size):
    """XLA-compilable stand-in for bilinear ``tf.image.crop_and_resize``.

    Args:
        images: ``[B, H, W, C]``.
        boxes: ``[M, 4]`` normalised.
        box_indices: ``[M]`` int32 image of each box.
        crop_size: ``(crop_height, crop_width)`` python ints.

    Returns:
        ``[M, crop_height, crop_width, C]``.
    """
    shape = tf.shape(images)
    count = tf.shape(boxes)[0]
    flat = tf.reshape(images, [-1, shape[3]])  # [B*H*W, C]
    base = tf.cast(box_indices, tf.int32) * shape[1] * shape[2]  # [M]
    heights = tf.fill([count], shape[1])
    widths = tf.fill([count], shape[2])
    return bilinear_crops(flat, base, heights, widths, boxes, crop_size)

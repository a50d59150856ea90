"""Numpy side of detection: molding inputs and unmolding detections (matterport's)."""
import functools

import numpy as np

from mrcnn import utils

try:  # cv2 gives a fast first estimate of the resized masks; see paste_mask
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

MASK_THRESHOLD = 0.5
# cv2's float32 bilinear resize differs from scipy's float64 arithmetic by <= 1.2e-7
# (measured over 3,000 random masks and sizes; bound: 4 float32 products of values <= 1,
# ~6e-7). Pixels whose estimate lies within this band of the threshold are recomputed
# exactly. 2**-17 = 7.6e-6: 60x the measured error, 12x the bound.
_BAND = 2.0 ** -17

def mold_inputs(images, config):
    """Images (list of [H, W, 3] uint8) -> (molded images, image metas, windows)."""
    molded, metas, windows = [], [], []
    for image in images:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"detect() takes RGB images [height, width, 3]; got an image "
                             f"of shape {image.shape}.")
        molded_image, window, scale, padding, crop = utils.resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        molded_image = utils.mold_image(molded_image, config)
        meta = utils.compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                        np.zeros([config.NUM_CLASSES], dtype=np.int32))
        molded.append(molded_image)
        windows.append(window)
        metas.append(meta)
    return np.stack(molded), np.stack(metas), np.array(windows)


@functools.lru_cache(maxsize=4096)
def _axis_taps(n_in, n_out):
    """One axis of scikit-image's order-1 resize n_in -> n_out (scipy.ndimage.zoom with
    grid_mode=True, mode="grid-constant", cval=0): output k samples the input at
    cc = (k + 0.5) * (n_in / n_out) - 0.5 with taps floor(cc), floor(cc) + 1; taps
    outside [0, n_in - 1] read the zero border.

    Returns (i0 [n_out] first tap's index into the input padded by one zero on each side,
    w0, w1 [n_out] float64 tap weights as scipy computes them (w0 = 1 - frac,
    w1 = 1 - w0), (lead, trail) border factors: float32 [k] arrays for the first and last
    outputs whose one tap is the zero border, the weight of their other tap, which turns
    an edge-repeating resize (cv2's) into the zero-border one).
    """
    zoom = n_in / n_out
    cc = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5
    start = np.floor(cc)
    w0 = 1.0 - (cc - start)
    w1 = 1.0 - w0
    i0 = start.astype(np.intp) + 1
    lead = w1[i0 == 0].astype(np.float32)  # a prefix: i0 increases with k
    trail = w0[i0 == n_in].astype(np.float32)  # a suffix
    return i0, w0, w1, (lead, trail)


def _exact_values(mask, h, w, ys=None, xs=None):
    """scikit-image's resize of `mask` to (h, w) before clipping, bit for bit: scipy's
    float64 sum ((v * wy) * wx) over the taps (y0, x0), (y0, x1), (y1, x0), (y1, x1),
    cast to mask.dtype. At the pixels (ys, xs) (1-D index arrays), or on the whole grid."""
    padded = np.pad(mask.astype(np.float64), 1)
    iy, wy0, wy1, _ = _axis_taps(mask.shape[0], h)
    ix, wx0, wx1, _ = _axis_taps(mask.shape[1], w)
    if ys is None:  # whole grid: broadcast rows against columns
        ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    a, b = iy[ys], ix[xs]
    u0, u1, v0, v1 = wy0[ys], wy1[ys], wx0[xs], wx1[xs]
    t = (padded[a, b] * u0) * v0
    t = t + (padded[a, b + 1] * u0) * v1
    t = t + (padded[a + 1, b] * u1) * v0
    t = t + (padded[a + 1, b + 1] * u1) * v1
    return t.astype(mask.dtype)


def _estimate(mask, h, w):
    """Fast estimate of scikit-image's resize (within 1.2e-7): cv2's bilinear resize uses
    the same sample positions but repeats the edge pixel, so the outer rows and columns
    are scaled by the weight of their in-image tap."""
    if cv2 is None:  # pragma: no cover
        return _exact_values(mask, h, w)
    out = cv2.resize(mask, (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
    out = out.reshape(h, w)  # cv2 drops a unit axis
    (top, bottom), (left, right) = _axis_taps(mask.shape[0], h)[3], \
        _axis_taps(mask.shape[1], w)[3]
    if top.size:
        out[:top.size] *= top[:, None]
    if bottom.size:
        out[h - bottom.size:] *= bottom[:, None]
    if left.size:
        out[:, :left.size] *= left
    if right.size:
        out[:, w - right.size:] *= right
    return out


def _threshold(mask, values, h, w, threshold=MASK_THRESHOLD):
    """values (the estimate of skimage's resize, modified in place: clipped like skimage)
    -> (bool [h, w] values >= threshold exactly as skimage's output, their count)."""
    lo, hi = mask.min(), mask.max()
    # clip=True clips the output to [lo, hi]; skimage widens that range to cval=0 only
    # when 0 lies outside it yet inside the output's range, impossible here: every output
    # keeps at least 1/4 of its weight on the mask, so it has the mask's sign.
    if lo >= threshold:  # clipping lifts every pixel to >= lo
        np.maximum(values, lo, out=values)
        return np.ones((h, w), bool), h * w
    if hi < threshold:  # and clipping caps every pixel at hi
        return np.zeros((h, w), bool), 0
    # Here clipping cannot move a pixel across the threshold.
    inside = values >= threshold - _BAND
    sure = values >= threshold + _BAND
    count = np.count_nonzero(inside)
    if count != np.count_nonzero(sure):  # some pixels lie in the band: decide exactly
        ys, xs = np.nonzero(inside != sure)
        inside[ys, xs] = _exact_values(mask, h, w, ys, xs) >= threshold
        count = np.count_nonzero(inside)
    return inside, count


def paste_mask(mask, box, full, threshold=MASK_THRESHOLD):
    """Pastes a [h, w] probability mask into its box of the full-size bool plane `full`
    exactly as matterport's utils.unmold_mask does (skimage resize, order 1, zero border,
    clip to the mask's range, then >= threshold, 0.5 as in matterport); returns the mean
    probability inside the pasted mask (detect()'s mask_scores).

    The estimate comes from cv2; the few pixels within _BAND of the threshold are
    recomputed with scipy's arithmetic, so every pixel equals utils.unmold_mask's, at
    5-8x its speed (benchmarks/bench_paste.py).
    """
    y1, x1, y2, x2 = (int(v) for v in box)
    h, w = y2 - y1, x2 - x1
    if h <= 0 or w <= 0:
        return 0.0
    mask = np.asarray(mask)
    if mask.dtype not in (np.float32, np.float64):  # skimage computes float16 in float32
        mask = mask.astype(np.float32 if mask.dtype == np.float16 else np.float64)
    values = _estimate(mask, h, w)
    inside, count = _threshold(mask, values, h, w, threshold)
    full[y1:y2, x1:x2] = inside
    if not count:
        return 0.0
    np.multiply(values, inside, out=values)
    return float(values.sum()) / count


_paste_mask = paste_mask  # the name mrcnn.export.results used to look for


def class_masks(mrcnn_mask, class_ids):
    """Each detection's mask of its class: mrcnn_mask [N', h, w, C] with C = NUM_CLASSES
    (one plane per class), or C = 1 (PointRend: the detected class's plane already),
    and class_ids [N] -> [N, h, w] for the first N rows."""
    n = len(class_ids)
    if mrcnn_mask.shape[-1] == 1:
        return mrcnn_mask[:n, :, :, 0]
    return mrcnn_mask[np.arange(n), :, :, class_ids]


def boxes_to_original(boxes, window, image_shape, original_image_shape):
    """Normalised boxes [N, 4] in the molded image -> int32 pixel boxes [N, 4] of the
    original image (y2/x2 exclusive), clipped to it: the window's shift and scale undone."""
    wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window, np.float32), image_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, original_image_shape[0])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, original_image_shape[1])
    return boxes


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window,
                      attributes=None):
    """One image's detections, in the molded image's frame -> matterport's result dict.

    detections: [D, (y1, x1, y2, x2, class_id, score)] normalised, zero padded;
    mrcnn_mask: [D, h, w, num_classes] (or [D, h, w, 1], see class_masks). Returns rois, class_ids, scores, masks
    [H, W, N] bool (in original image coordinates), mask_scores and, when attributes
    [D, NA] are given, attribute_probabilities.
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5]
    masks = class_masks(mrcnn_mask, class_ids)
    boxes = boxes_to_original(boxes, window, image_shape, original_image_shape)
    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    # One contiguous plane per instance, seen as [H, W, N]: no copy through np.stack.
    planes = np.zeros((len(keep),) + tuple(original_image_shape[:2]), dtype=bool)
    mask_scores = [paste_mask(masks[i], boxes[i], planes[i]) for i in range(len(keep))]
    result = {"rois": boxes, "class_ids": class_ids, "scores": scores,
              "masks": np.moveaxis(planes, 0, -1),
              "mask_scores": np.array(mask_scores, dtype=np.float32)}
    if attributes is not None:
        result["attribute_probabilities"] = attributes[:n][keep].astype(np.float32)
    return result

"""Anchors in pixels: matterport's order (per cell, per ratio; P2 first), cached per image
shape. Also found under matterport's names in mrcnn.utils."""
import functools
import math

import numpy as np


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one pyramid level -> [N, (y1, x1, y2, x2)] in pixels.

    Order: for each cell (row-major), for each ratio (the scale is one number).
    """
    scales, ratios = np.meshgrid(np.array(scales), np.array(ratios))
    scales = scales.flatten()
    ratios = ratios.flatten()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)
    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)
    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)
    centers = np.stack([box_centers_y, box_centers_x], axis=2).reshape([-1, 2])
    sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])
    return np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides,
                             anchor_stride):
    """Anchors of all levels, concatenated in level order (P2 first)."""
    anchors = [generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i],
                                anchor_stride) for i in range(len(scales))]
    return np.concatenate(anchors, axis=0)


def compute_backbone_shapes(config, image_shape):
    """[levels, 2] feature map sizes of P2..P6 for an image shape."""
    if callable(config.BACKBONE) and config.COMPUTE_BACKBONE_SHAPE:
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    return np.array([[int(math.ceil(image_shape[0] / s)), int(math.ceil(image_shape[1] / s))]
                     for s in config.BACKBONE_STRIDES])


@functools.lru_cache(maxsize=16)
def _cached_anchors(scales, ratios, strides, anchor_stride, shape):
    shapes = [[int(math.ceil(shape[0] / s)), int(math.ceil(shape[1] / s))] for s in strides]
    return generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)


def pixel_anchors(config, image_shape):
    """[A, (y1, x1, y2, x2)] float32 anchors in pixels for an image shape (cached)."""
    return _cached_anchors(tuple(config.RPN_ANCHOR_SCALES), tuple(config.RPN_ANCHOR_RATIOS),
                           tuple(config.BACKBONE_STRIDES), config.RPN_ANCHOR_STRIDE,
                           tuple(int(s) for s in image_shape[:2])).astype(np.float32)

"""Anchors for a given image shape, in matterport's order and coordinates."""
import functools
import math

import numpy as np

from mrcnn import utils


def compute_backbone_shapes(config, image_shape):
    """[levels, 2] feature map sizes of P2..P6 for an image shape."""
    if callable(config.BACKBONE) and config.COMPUTE_BACKBONE_SHAPE:
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    return np.array([[int(math.ceil(image_shape[0] / s)), int(math.ceil(image_shape[1] / s))]
                     for s in config.BACKBONE_STRIDES])


@functools.lru_cache(maxsize=16)
def _anchors(scales, ratios, strides, anchor_stride, shape):
    shapes = [[int(math.ceil(shape[0] / s)), int(math.ceil(shape[1] / s))] for s in strides]
    return utils.generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)


def pixel_anchors(config, image_shape):
    """[A, (y1, x1, y2, x2)] float32 anchors in pixels for an image shape (cached)."""
    return _anchors(tuple(config.RPN_ANCHOR_SCALES), tuple(config.RPN_ANCHOR_RATIOS),
                    tuple(config.BACKBONE_STRIDES), config.RPN_ANCHOR_STRIDE,
                    tuple(int(s) for s in image_shape[:2])).astype(np.float32)


def norm_anchors(config, image_shape):
    """[A, 4] anchors in normalised coordinates (what the graph consumes)."""
    return utils.norm_boxes(pixel_anchors(config, image_shape), image_shape[:2])

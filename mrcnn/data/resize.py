"""Resizing images and their masks to the model's input size (matterport's resize_image
and resize_mask, also found under those names in mrcnn.utils)."""
import warnings

import numpy as np
import skimage.transform


def resize(image, output_shape, order=1, mode="constant", cval=0, clip=True,
           preserve_range=False, anti_aliasing=False, anti_aliasing_sigma=None):
    """skimage.transform.resize with matterport's defaults."""
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """Resizes an image keeping its aspect ratio.

    mode: "none" (unchanged), "square" (scale then pad to max_dim x max_dim), "pad64"
    (pad sides to multiples of 64), "crop" (random min_dim x min_dim crop).
    Returns (image, window (y1, x1, y2, x2), scale, padding, crop).
    """
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max
    if scale != 1:
        image = resize(image, (round(h * scale), round(w * scale)), preserve_range=True)
    if mode == "square":
        h, w = image.shape[:2]
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top, left, h + top, w + left)
    elif mode == "pad64":
        h, w = image.shape[:2]
        assert min_dim % 64 == 0, "Minimum dimension must be a multiple of 64"
        bottom_pad = (64 - h % 64) % 64
        right_pad = (64 - w % 64) % 64
        top, left = bottom_pad // 2, right_pad // 2
        padding = [(top, bottom_pad - top), (left, right_pad - left), (0, 0)]
        image = np.pad(image, padding, mode="constant", constant_values=0)
        window = (top, left, h + top, w + left)
    elif mode == "crop":
        h, w = image.shape[:2]
        y = np.random.randint(0, (h - min_dim) + 1)
        x = np.random.randint(0, (w - min_dim) + 1)
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    else:
        raise ValueError(f"Mode {mode!r} not supported; use none, square, pad64 or crop.")
    return image.astype(image_dtype), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    """Resizes masks [H, W, N] with the scale and padding of resize_image."""
    if mask.shape[-1] == 0:
        h, w = mask.shape[:2]
        h2, w2 = round(h * scale), round(w * scale)
        out = np.zeros((h2, w2, 0), dtype=bool)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = resize(mask.astype(np.float32), (round(mask.shape[0] * scale),
                                                   round(mask.shape[1] * scale)),
                         order=0, preserve_range=True) > 0.5
    if crop is not None:
        y, x, h, w = crop
        out = out[y:y + h, x:x + w]
    else:
        out = np.pad(out, padding, mode="constant", constant_values=0)
    return out.astype(bool)

"""Instance masks from COCO-format segmentations: polygons and RLE (compressed or not).

Example:
    mask = segmentation_to_mask(ann["segmentation"], height, width)   # [H, W] bool
    polygons = clean_polygons(ann["segmentation"])   # drops polygons of < 3 points
    mask = ellipse_mask([cx, cy, rx, ry, theta], height, width)        # [H, W] bool
"""
import numpy as np
from pycocotools import mask as coco_mask


def clean_polygons(seg):
    """List of flat [x1, y1, x2, y2, ...] polygons; drops ones with < 3 points."""
    if not isinstance(seg, list):
        raise ValueError(f"segmentation must be polygons or an RLE dict, got "
                         f"{type(seg).__name__}")
    polygons = [[float(v) for v in p] for p in seg
                if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
    if not polygons:
        raise ValueError("segmentation has no polygon with at least 3 points")
    return polygons


def coco_rle_to_mask(coco_rle):
    """COCO RLE (compressed str/bytes counts or an uncompressed list) -> [h, w] bool."""
    if not isinstance(coco_rle, dict) or "size" not in coco_rle or "counts" not in coco_rle:
        raise ValueError(f"COCO RLE must be a dict with 'size' and 'counts', got "
                         f"{str(coco_rle)[:80]!r}.")
    h, w = (int(v) for v in coco_rle["size"])
    counts = coco_rle["counts"]
    if isinstance(counts, list):
        if sum(counts) != h * w:
            raise ValueError(f"uncompressed COCO RLE counts sum to {sum(counts)} but the "
                             f"size {h}x{w} has {h * w} pixels.")
        rle = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        counts = counts.encode("ascii") if isinstance(counts, str) else counts
        rle = {"size": [h, w], "counts": counts}
    return coco_mask.decode(rle).astype(bool)                      # [h, w]


def polygons_to_mask(polygons, height, width):
    """Flat polygons (see clean_polygons) -> their union as a [height, width] bool mask."""
    rles = coco_mask.frPyObjects(polygons, height, width)
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)    # [h, w]


def segmentation_to_mask(seg, height, width):
    """A COCO annotation's "segmentation" (polygons or an RLE dict) -> [h, w] bool.

    An RLE mask has the size it records (a crowd region may differ from the image);
    polygons are drawn at height x width. ValueError when nothing usable is there.
    """
    if isinstance(seg, dict):
        return coco_rle_to_mask(seg)
    return polygons_to_mask(clean_polygons(seg), height, width)


def ellipse_mask(shape, h, w):
    """An ellipse [cx, cy, rx, ry, theta] (theta in radians, turning the rx axis from
    +x towards +y, as a canvas rotates) -> [h, w] bool: the pixels whose centre lies
    inside (the rule COCO's polygon rasteriser follows too)."""
    cx, cy, rx, ry, theta = (float(v) for v in shape)
    ys, xs = np.mgrid[0:h, 0:w]                                    # [h, w] each
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy                          # pixel centres
    u = dx * np.cos(theta) + dy * np.sin(theta)                    # along rx
    v = -dx * np.sin(theta) + dy * np.cos(theta)                   # along ry
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0                    # [h, w] bool

"""Boundary IoU and boundary AP (Cheng et al. 2021, "Boundary IoU: Improving
Object-Centric Image Segmentation Evaluation").

    band = boundary_band(mask)                   # [H, W] bool: the mask's inner edge
    iou = boundary_iou(gt_mask, dt_mask)         # float in [0, 1]

The boundary band of a mask is the mask minus its erosion by d pixels, where
d = round(dilation_ratio x image diagonal), at least 1. The erosion treats everything
outside the image as background, so a mask that touches the image border has a band
along that border too. The erosion is the official API's (a 3x3 square d times, which
is one (2d+1) x (2d+1) square): a pixel is in the band when some background pixel lies
within d pixels of it along rows and columns at once (chessboard distance).

Boundary IoU of two masks G and P is |G_band & P_band| / |G_band | P_band|.

Boundary AP is COCO's AP where a prediction and a ground truth overlap by
min(mask IoU, Boundary IoU), as the official COCO-style API's "boundary" iouType
computes it. Crowd regions are matched as in segm AP, by COCO's crowd overlap of the
masks alone (intersection over the prediction's area): a crowd region's band says
nothing about the objects inside it. `BoundaryCOCOeval` is pycocotools' COCOeval with
that overlap; bands are computed once per annotation.
"""
import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

DILATION_RATIO = 0.02


def band_width(height, width, dilation_ratio=DILATION_RATIO):
    """d: the band's width in pixels for an image of height x width (at least 1)."""
    return max(1, int(round(dilation_ratio * float(np.hypot(height, width)))))


def _erode(mask, d):
    """mask [h, w] uint8 eroded by a (2d+1) square, outside the array counting as 0."""
    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)
    return cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def boundary_band(mask, dilation_ratio=DILATION_RATIO):
    """The boundary band of a mask [H, W] (bool or 0/1) -> [H, W] bool.

    d comes from the mask's own size (the image's diagonal): pass the mask at the
    image's resolution. Only a crop around the mask is eroded, so small masks in
    large images cost little.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"boundary_band needs one [H, W] mask, got shape {mask.shape}")
    h, w = mask.shape
    mask = mask.astype(bool)
    band = np.zeros((h, w), bool)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return band
    d = band_width(h, w, dilation_ratio)
    # A margin of d + 1 keeps every background pixel that can erode the mask in the
    # crop; past the image's edge the constant-0 border stands for the outside.
    y1, y2 = max(0, rows[0] - d - 1), min(h, rows[-1] + d + 2)
    x1, x2 = max(0, cols[0] - d - 1), min(w, cols[-1] + d + 2)
    crop = mask[y1:y2, x1:x2].astype(np.uint8)
    band[y1:y2, x1:x2] = (crop - _erode(crop, d)).astype(bool)
    return band


def boundary_iou(gt_mask, dt_mask, dilation_ratio=DILATION_RATIO):
    """Boundary IoU of two [H, W] masks of one image; 0.0 when both bands are empty."""
    gt_mask, dt_mask = np.asarray(gt_mask), np.asarray(dt_mask)
    if gt_mask.shape != dt_mask.shape:
        raise ValueError(f"boundary_iou needs masks of one image size, got {gt_mask.shape} "
                         f"and {dt_mask.shape}")
    g = boundary_band(gt_mask, dilation_ratio)
    p = boundary_band(dt_mask, dilation_ratio)
    union = np.count_nonzero(g | p)
    return float(np.count_nonzero(g & p)) / union if union else 0.0


def rle_band(rle, dilation_ratio=DILATION_RATIO):
    """The boundary band of a compressed COCO RLE, as a compressed RLE."""
    band = boundary_band(mask_utils.decode(rle), dilation_ratio)
    return mask_utils.encode(np.asfortranarray(band.astype(np.uint8)))


class BoundaryCOCOeval(COCOeval):
    """COCOeval on masks whose overlap is min(mask IoU, Boundary IoU).

    Runs as pycocotools' "segm" evaluation (same ground-truth preparation, area
    ranges from mask areas, crowd handling), with computeIoU taking the minimum per
    (prediction, ground truth) pair of one image and category. The bands of every
    annotation are computed once and kept in ``band_cache`` (pass a dict to share the
    ground truth's bands between evaluations of one COCO ground truth).
    """

    def __init__(self, coco_gt=None, coco_dt=None, dilation_ratio=DILATION_RATIO,
                 band_cache=None):
        super().__init__(coco_gt, coco_dt, "segm")
        self.dilation_ratio = dilation_ratio
        self.gt_bands = {} if band_cache is None else band_cache
        self.dt_bands = {}

    def _band(self, ann, cache):
        key = ann["id"]
        if key not in cache:
            cache[key] = rle_band(ann["segmentation"], self.dilation_ratio)
        return cache[key]

    def computeIoU(self, imgId, catId):  # noqa: N802 (pycocotools' name)
        ious = super().computeIoU(imgId, catId)       # mask IoU [D, G] or []
        if len(ious) == 0:
            return ious
        p = self.params
        if p.useCats:
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gt = [g for c in p.catIds for g in self._gts[imgId, c]]
            dt = [d for c in p.catIds for d in self._dts[imgId, c]]
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")  # as COCOeval
        dt = [dt[i] for i in order][:p.maxDets[-1]]
        ious = np.array(ious, np.float64).reshape(len(dt), len(gt))
        plain = [j for j, a in enumerate(gt) if not int(a["iscrowd"])]   # crowds: mask IoU
        if not plain:
            return ious
        g = [self._band(gt[j], self.gt_bands) for j in plain]
        d = [self._band(a, self.dt_bands) for a in dt]
        bious = np.asarray(mask_utils.iou(d, g, [0] * len(g))).reshape(len(d), len(g))
        ious[:, plain] = np.minimum(ious[:, plain], bious)
        return ious

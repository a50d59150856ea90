"""Numpy helpers under matterport's names and signatures.

Boxes are [N, (y1, x1, y2, x2)] in pixels with exclusive y2/x2 unless said otherwise;
masks are [height, width, N] bool.
"""
import logging

import numpy as np

from mrcnn.data.dataset import Dataset, read_image  # noqa: F401  (matterport's utils.Dataset)
from mrcnn.data.resize import resize, resize_image, resize_mask  # noqa: F401  (matterport's names)
from mrcnn.meta import compose_image_meta, parse_image_meta  # noqa: F401  (matterport's names)
from mrcnn.ops.anchors import (compute_backbone_shapes, generate_anchors,  # noqa: F401
                               generate_pyramid_anchors, pixel_anchors)

log = logging.getLogger("mrcnn")


# ----------------------------------------------------------------------------- boxes
def extract_bboxes(mask):
    """Bounding boxes from masks [H, W, N] -> int32 [N, (y1, x1, y2, x2)].

    An empty mask gives a zero box.
    """
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)
    for i in range(mask.shape[-1]):
        m = mask[:, :, i]
        rows = np.where(np.any(m, axis=1))[0]
        cols = np.where(np.any(m, axis=0))[0]
        if rows.size:
            boxes[i] = [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]
    return boxes


def _iou(boxes1, boxes2, area1, area2):
    """IoU matrix [N1, N2] of boxes [N1, 4] and [N2, 4] given their areas [N1], [N2]."""
    y1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
    x1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
    y2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
    x2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
    inter = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)  # [N1, N2]
    union = np.asarray(area1)[:, None] + np.asarray(area2)[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def _areas(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box [4] with boxes [N, 4] given their areas -> [N]."""
    box = np.asarray(box)[None, :4]
    return _iou(box, np.asarray(boxes), np.reshape(box_area, [1]), boxes_area)[0]


def compute_overlaps(boxes1, boxes2):
    """IoU matrix [N1, N2] between two sets of boxes."""
    boxes1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    return _iou(boxes1, boxes2, _areas(boxes1), _areas(boxes2))


def compute_overlaps_masks(masks1, masks2):
    """IoU matrix [N1, N2] between masks [H, W, N1] and [H, W, N2]."""
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    m1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    m2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    area1 = np.sum(m1, axis=0)
    area2 = np.sum(m2, axis=0)
    inter = m1.T @ m2
    union = area1[:, None] + area2[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def non_max_suppression(boxes, scores, threshold):
    """Greedy NMS; returns the indices of the kept boxes, best first."""
    assert boxes.shape[0] > 0
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    y1, x1, y2, x2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (y2 - y1) * (x2 - x1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        iou = compute_iou(boxes[i], boxes[order[1:]], area[i], area[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Applies [N, (dy, dx, log(dh), log(dw))] deltas to [N, 4] boxes."""
    boxes = boxes.astype(np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    cx = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = cy - 0.5 * height
    x1 = cx - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas [N, 4] that turn box into gt_box (both [N, 4])."""
    box = box.astype(np.float32)
    gt_box = gt_box.astype(np.float32)
    h = box[:, 2] - box[:, 0]
    w = box[:, 3] - box[:, 1]
    cy = box[:, 0] + 0.5 * h
    cx = box[:, 1] + 0.5 * w
    gh = gt_box[:, 2] - gt_box[:, 0]
    gw = gt_box[:, 3] - gt_box[:, 1]
    gcy = gt_box[:, 0] + 0.5 * gh
    gcx = gt_box[:, 1] + 0.5 * gw
    return np.stack([(gcy - cy) / h, (gcx - cx) / w, np.log(gh / h), np.log(gw / w)], axis=1)


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalised coordinates (matterport's convention)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalised boxes -> int32 pixel boxes (inverse of norm_boxes)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)


def trim_zeros(x):
    """Removes the all-zero rows of a 2-D array (padding)."""
    assert len(x.shape) == 2
    return x[~np.all(x == 0, axis=1)]


def minimize_mask(bbox, mask, mini_shape):
    """Crops each mask to its box and resizes it to mini_shape -> [h, w, N] bool."""
    mini_mask = np.zeros(tuple(mini_shape) + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        m = mask[y1:y2, x1:x2, i].astype(np.float32)
        if m.size == 0:
            continue
        mini_mask[:, :, i] = resize(m, mini_shape, order=1, preserve_range=True) >= 0.5
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of minimize_mask: mini masks back to full image size."""
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = bbox[i][:4]
        h, w = y2 - y1, x2 - x1
        if h <= 0 or w <= 0:
            continue
        m = resize(mini_mask[:, :, i].astype(np.float32), (h, w), order=1,
                   preserve_range=True)
        mask[y1:y2, x1:x2, i] = m >= 0.5
    return mask


def unmold_mask(mask, bbox, image_shape):
    """A predicted mask [h, w] float (0..1) in its box -> full-size bool [H, W]."""
    threshold = 0.5
    y1, x1, y2, x2 = bbox
    out = np.zeros(image_shape[:2], dtype=bool)
    if y2 <= y1 or x2 <= x1:
        return out
    m = resize(mask, (y2 - y1, x2 - x1))
    out[y1:y2, x1:x2] = m >= threshold
    return out


# ----------------------------------------------------------------------------- anchors
def norm_anchors(config, image_shape):
    """[A, 4] anchors in normalised coordinates (what the graph consumes)."""
    return norm_boxes(pixel_anchors(config, image_shape), image_shape[:2])


# ----------------------------------------------------------------------------- metrics
def compute_matches(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
                    pred_scores, pred_masks, iou_threshold=0.5, score_threshold=0.0):
    """Matches predictions to ground truth by mask IoU, best score first.

    Returns gt_match [N_gt] (index of the matched prediction or -1), pred_match
    [N_pred] (index of the matched gt or -1) and the overlaps [N_pred, N_gt].
    """
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = gt_masks[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = pred_scores[:pred_boxes.shape[0]]
    order = np.argsort(pred_scores)[::-1]
    pred_boxes = pred_boxes[order]
    pred_class_ids = pred_class_ids[order]
    pred_scores = pred_scores[order]
    pred_masks = pred_masks[..., order]
    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    match_count = 0
    pred_match = -1 * np.ones([pred_boxes.shape[0]])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(len(pred_boxes)):
        sorted_ixs = np.argsort(overlaps[i])[::-1]
        low_score_idx = np.where(overlaps[i, sorted_ixs] < score_threshold)[0]
        if low_score_idx.size > 0:
            sorted_ixs = sorted_ixs[:low_score_idx[0]]
        for j in sorted_ixs:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                match_count += 1
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids,
               pred_scores, pred_masks, iou_threshold=0.5):
    """Average precision at one IoU threshold (VOC-style, all points).

    Returns mAP, precisions, recalls, overlaps.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
        pred_masks, iou_threshold)
    precisions = np.cumsum(pred_match > -1) / (np.arange(len(pred_match)) + 1)
    recalls = np.cumsum(pred_match > -1).astype(np.float32) / max(len(gt_match), 1)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = np.maximum(precisions[i], precisions[i + 1])
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    mAP = np.sum((recalls[indices] - recalls[indices - 1]) * precisions[indices])
    return mAP, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                     pred_mask, iou_thresholds=None, verbose=1):
    """Mean AP over a range of IoU thresholds (default 0.5:0.95:0.05)."""
    iou_thresholds = np.arange(0.5, 1.0, 0.05) if iou_thresholds is None else iou_thresholds
    aps = []
    for t in iou_thresholds:
        ap, *_ = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                            pred_score, pred_mask, iou_threshold=t)
        if verbose:
            print(f"AP @{t:.2f}:\t {ap:.3f}")
        aps.append(ap)
    aps = np.array(aps).mean()
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {aps:.3f}")
    return aps


def compute_recall(pred_boxes, gt_boxes, iou):
    """Recall of gt_boxes by pred_boxes at an IoU threshold -> (recall, positive_ids)."""
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = np.max(overlaps, axis=1) if overlaps.size else np.zeros(len(pred_boxes))
    iou_argmax = np.argmax(overlaps, axis=1) if overlaps.size else np.zeros(0, int)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt_boxes = iou_argmax[positive_ids]
    recall = len(set(matched_gt_boxes)) / max(gt_boxes.shape[0], 1)
    return recall, positive_ids


# ----------------------------------------------------------------------------- molding
def mold_image(images, config):
    """uint8 RGB -> float32 with the mean pixel subtracted."""
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images, config):
    """Inverse of mold_image."""
    return (normalized_images + config.MEAN_PIXEL).astype(np.uint8)


def batch_slice(inputs, graph_fn, batch_size, names=None):
    """Runs graph_fn per batch item and stacks the results (matterport helper)."""
    import tensorflow as tf
    if not isinstance(inputs, list):
        inputs = [inputs]
    outputs = []
    for i in range(batch_size):
        output_slice = graph_fn(*[x[i] for x in inputs])
        if not isinstance(output_slice, (tuple, list)):
            output_slice = [output_slice]
        outputs.append(output_slice)
    outputs = list(zip(*outputs))
    names = names or [None] * len(outputs)
    result = [tf.stack(o, axis=0, name=n) for o, n in zip(outputs, names)]
    return result[0] if len(result) == 1 else result

"""Training targets built in TensorFlow (inside tf.data): boxes from masks, mini-masks,
RPN anchor targets and padding to fixed shapes.

Everything here is graph code, so the TFRecord / TPU input path runs without Python.
"""
import numpy as np
import tensorflow as tf

from mrcnn.ops import boxes as box_ops


def boxes_from_masks(masks):
    """[H, W, N] bool -> [N, (y1, x1, y2, x2)] int32, exclusive y2/x2; empty -> zeros."""
    rows = tf.reduce_any(masks, axis=1)                       # [H, N]
    cols = tf.reduce_any(masks, axis=0)                       # [W, N]

    def span(v):                                              # v: [L, N] bool
        n = tf.shape(v)[0]
        idx = tf.range(n)[:, None]
        first = tf.reduce_min(tf.where(v, idx, n), axis=0)
        last = tf.reduce_max(tf.where(v, idx, -1), axis=0) + 1
        empty = tf.logical_not(tf.reduce_any(v, axis=0))
        return tf.where(empty, 0, first), tf.where(empty, 0, last)
    y1, y2 = span(rows)
    x1, x2 = span(cols)
    return tf.cast(tf.stack([y1, x1, y2, x2], axis=1), tf.int32)


def crop_masks(masks, boxes, out_shape):
    """Crops each mask to its pixel box and resizes: [H, W, N] -> [h, w, N] bool."""
    shape = tf.cast(tf.shape(masks)[:2], tf.float32)
    b = tf.cast(boxes, tf.float32)
    # pixel box with exclusive ends -> normalised box over pixel centres
    norm = tf.stack([b[:, 0] / (shape[0] - 1), b[:, 1] / (shape[1] - 1),
                     (b[:, 2] - 1) / (shape[0] - 1), (b[:, 3] - 1) / (shape[1] - 1)], axis=1)
    images = tf.cast(tf.transpose(masks, [2, 0, 1])[..., None], tf.float32)  # [N, H, W, 1]
    n = tf.shape(boxes)[0]
    crops = tf.image.crop_and_resize(images, norm, tf.range(n), out_shape)  # [N, h, w, 1]
    return tf.transpose(crops[..., 0] >= 0.5, [1, 2, 0])


def rpn_targets(anchors, gt_class_ids, gt_boxes, config):
    """Anchor labels and deltas for RPN training (matterport's build_rpn_targets).

    anchors: [A, 4] float32 pixels; gt_class_ids: [G] (negative = crowd); gt_boxes:
    [G, 4] pixels. Returns rpn_match [A] int32 (1 positive, -1 negative, 0 neutral)
    and rpn_bbox [RPN_TRAIN_ANCHORS_PER_IMAGE, 4] deltas of the positive anchors in
    ascending anchor order, divided by RPN_BBOX_STD_DEV, zero padded.
    """
    total = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    crowd = gt_class_ids < 0
    # A zero-area dummy box keeps the reductions defined when there is no GT.
    dummy = tf.zeros([1, 4], tf.float32)
    objects = tf.concat([tf.boolean_mask(gt_boxes, tf.logical_not(crowd)), dummy], 0)
    crowds = tf.concat([tf.boolean_mask(gt_boxes, crowd), dummy], 0)
    no_crowd = tf.reduce_max(box_ops.overlaps(anchors, crowds), axis=1) < 0.001  # [A]

    overlaps = box_ops.overlaps(anchors, objects)                       # [A, G+1]
    best_gt = tf.argmax(overlaps, axis=1, output_type=tf.int32)         # [A]
    best_iou = tf.reduce_max(overlaps, axis=1)                          # [A]
    gt_max = tf.reduce_max(overlaps, axis=0)                            # [G+1]
    is_best = tf.reduce_any((overlaps == gt_max[None, :]) & (gt_max[None, :] > 0), axis=1)
    positive = (best_iou >= 0.7) | is_best
    negative = (best_iou < 0.3) & no_crowd & tf.logical_not(positive)

    pos_idx = tf.random.shuffle(tf.where(positive)[:, 0])[:total // 2]
    pos_idx = tf.sort(pos_idx)
    num_pos = tf.shape(pos_idx)[0]
    neg_idx = tf.random.shuffle(tf.where(negative)[:, 0])[:total - num_pos]
    a = tf.shape(anchors)[0]
    match = (tf.scatter_nd(pos_idx[:, None], tf.ones_like(pos_idx, tf.int32), [a])
             - tf.scatter_nd(neg_idx[:, None], tf.ones_like(neg_idx, tf.int32), [a]))

    pos_anchors = tf.gather(anchors, pos_idx)
    pos_gt = tf.gather(objects, tf.gather(best_gt, pos_idx))
    deltas = box_ops.box_refinement(pos_anchors, pos_gt)                # [P, 4]
    deltas = deltas / np.asarray(config.RPN_BBOX_STD_DEV, np.float32)
    rpn_bbox = tf.pad(deltas, [[0, total - num_pos], [0, 0]])
    return match, tf.ensure_shape(rpn_bbox, [total, 4])


def _pad_to(x, n, axis=0):
    """Zero-pads (or truncates) axis `axis` of x to length n."""
    x = tf.gather(x, tf.range(tf.minimum(tf.shape(x)[axis], n)), axis=axis)
    pad = [[0, 0]] * len(x.shape)
    pad[axis] = [0, n - tf.shape(x)[axis]]
    return tf.pad(x, pad)


def record_to_inputs(record, config, anchors):
    """A record (tensors) -> the training model's input dict, all with static shapes.

    anchors: [A, 4] float32 pixel anchors for the record's image shape.
    """
    masks = tf.cast(record["masks"], tf.bool)                           # [H, W, N]
    class_ids = tf.cast(record["class_ids"], tf.int32)                  # [N]
    attributes = tf.cast(record["attributes"], tf.float32)              # [N, NA]
    # Drop instances whose mask vanished (augmentation or resizing).
    keep = tf.reduce_any(masks, axis=[0, 1])
    masks = tf.boolean_mask(masks, keep, axis=2)
    class_ids = tf.boolean_mask(class_ids, keep)
    attributes = tf.boolean_mask(attributes, keep)
    max_gt = config.MAX_GT_INSTANCES
    masks, class_ids, attributes = (masks[:, :, :max_gt], class_ids[:max_gt],
                                    attributes[:max_gt])
    boxes = boxes_from_masks(masks)                                     # [N, 4] int32
    if config.USE_MINI_MASK:
        masks = crop_masks(masks, boxes, config.MINI_MASK_SHAPE)        # [h, w, N]
    rpn_match, rpn_bbox = rpn_targets(anchors, class_ids, boxes, config)
    image = tf.cast(record["image"], tf.float32) - np.asarray(config.MEAN_PIXEL, np.float32)
    mask_shape = (tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK
                  else tuple(image.shape[:2]))
    inputs = {
        "input_image": image,                                           # [H, W, 3]
        "input_image_meta": tf.cast(record["image_meta"], tf.float32),  # [META]
        "input_rpn_match": tf.ensure_shape(rpn_match[:, None], [anchors.shape[0], 1]),
        "input_rpn_bbox": rpn_bbox,                                     # [256, 4]
        "input_gt_class_ids": tf.ensure_shape(_pad_to(class_ids, max_gt), [max_gt]),
        "input_gt_boxes": tf.ensure_shape(tf.cast(_pad_to(boxes, max_gt), tf.float32),
                                          [max_gt, 4]),                # [MAX_GT, 4]
        "input_gt_masks": tf.ensure_shape(_pad_to(masks, max_gt, axis=2),
                                          mask_shape + (max_gt,)),      # [h, w, MAX_GT]
    }
    if config.NUM_ATTRIBUTES:
        inputs["input_gt_attributes"] = tf.ensure_shape(
            _pad_to(attributes, max_gt), [max_gt, config.NUM_ATTRIBUTES])
    return inputs

"""The Mask R-CNN losses (matterport's definitions), written with masks instead of
dynamic gathers so that every shape is static (XLA / TPU friendly)."""
import tensorflow as tf


def _safe_mean(total, count):
    """total / count, with count summed over replicas under a tf.distribute strategy.

    Each replica's share is scaled by the replica count, so the replicas' losses
    (divided by that count again in train_step) add up to the global mean: N replicas
    take the step one device takes on the same global batch, whatever images each sees.
    """
    count = tf.stop_gradient(tf.cast(count, tf.float32))
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    ctx = tf.distribute.get_replica_context()
    if replicas > 1 and ctx is not None:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        return replicas * total / tf.maximum(count, 1.0)
    return total / tf.maximum(count, 1.0)


def smooth_l1(y_true, y_pred):
    """Elementwise smooth-L1 (Huber with delta 1)."""
    diff = tf.abs(y_true - y_pred)
    return tf.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor classifier loss over non-neutral anchors.

    rpn_match: [B, A, 1] int (1, -1, 0); rpn_class_logits: [B, A, 2].
    """
    match = tf.squeeze(tf.cast(rpn_match, tf.int32), -1)               # [B, A]
    labels = tf.cast(match == 1, tf.int32)
    valid = tf.cast(match != 0, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(rpn_class_logits, tf.float32))    # [B, A]
    return _safe_mean(tf.reduce_sum(ce * valid), tf.reduce_sum(valid))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Smooth-L1 on positive anchors' deltas.

    target_bbox: [B, T, 4] deltas of the positive anchors in ascending anchor order;
    rpn_match: [B, A, 1]; rpn_bbox: [B, A, 4] predicted deltas.
    """
    positive = tf.squeeze(tf.cast(rpn_match, tf.int32), -1) == 1       # [B, A]
    pos_f = tf.cast(positive, tf.float32)
    # Rank of each positive anchor among the image's positives = its target row.
    rank = tf.cast(tf.cumsum(pos_f, axis=1) - 1, tf.int32)              # [B, A]
    rank = tf.clip_by_value(rank, 0, tf.shape(target_bbox)[1] - 1)
    target = tf.gather(target_bbox, rank, batch_dims=1)                 # [B, A, 4]
    loss = tf.reduce_sum(smooth_l1(target, tf.cast(rpn_bbox, tf.float32)), -1)
    return _safe_mean(tf.reduce_sum(loss * pos_f), 4 * tf.reduce_sum(pos_f))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier loss; predictions of classes not in the image's source are ignored.

    target_class_ids: [B, T]; pred_class_logits: [B, T, C]; active_class_ids: [B, C].
    """
    target = tf.cast(target_class_ids, tf.int32)
    logits = tf.cast(pred_class_logits, tf.float32)
    pred_ids = tf.argmax(logits, axis=2, output_type=tf.int32)          # [B, T]
    active = tf.cast(active_class_ids, tf.float32)
    pred_active = tf.gather(active, pred_ids, batch_dims=1)             # [B, T]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
    return _safe_mean(tf.reduce_sum(ce * pred_active), tf.reduce_sum(pred_active))


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Smooth-L1 on the class-specific deltas of positive ROIs.

    target_bbox: [B, T, 4]; target_class_ids: [B, T]; pred_bbox: [B, T, C, 4].
    """
    ids = tf.cast(target_class_ids, tf.int32)
    pos = tf.cast(ids > 0, tf.float32)                                  # [B, T]
    pred = tf.gather(tf.cast(pred_bbox, tf.float32), ids, batch_dims=2)  # [B, T, 4]
    loss = tf.reduce_sum(smooth_l1(tf.cast(target_bbox, tf.float32), pred), -1)
    return _safe_mean(tf.reduce_sum(loss * pos), 4 * tf.reduce_sum(pos))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Binary cross-entropy of the class's mask on positive ROIs.

    target_masks: [B, T, h, w]; target_class_ids: [B, T]; pred_masks: [B, T, h, w, C].
    """
    ids = tf.cast(target_class_ids, tf.int32)
    pos = tf.cast(ids > 0, tf.float32)                                  # [B, T]
    pred = tf.transpose(tf.cast(pred_masks, tf.float32), [0, 1, 4, 2, 3])  # [B, T, C, h, w]
    pred = tf.gather(pred, ids, batch_dims=2)                           # [B, T, h, w]
    pred = tf.clip_by_value(pred, 1e-7, 1 - 1e-7)
    y = tf.cast(target_masks, tf.float32)
    bce = -(y * tf.math.log(pred) + (1 - y) * tf.math.log(1 - pred))    # [B, T, h, w]
    return _safe_mean(tf.reduce_sum(tf.reduce_mean(bce, [2, 3]) * pos), tf.reduce_sum(pos))


def coarse_mask_targets(target_masks, mask_shape):
    """Fine 0/1 targets [B, T, H, W] (H a multiple of mask_shape's h) -> [B, T, h, w] 0/1:
    each cell is the fine cells' mean rounded at 0.5 (PointRend's coarse mask target)."""
    h, w = int(mask_shape[0]), int(mask_shape[1])
    if target_masks.shape[2] == h and target_masks.shape[3] == w:
        return target_masks
    fy, fx = int(target_masks.shape[2]) // h, int(target_masks.shape[3]) // w
    shape = tf.shape(target_masks)
    y = tf.reshape(tf.cast(target_masks, tf.float32),
                   tf.stack([shape[0], shape[1], h, fy, w, fx]))
    return tf.cast(tf.reduce_mean(y, [3, 5]) >= 0.5, tf.float32)


def mrcnn_point_loss(target_masks, target_class_ids, point_logits, points):
    """PointRend's point loss: binary cross-entropy of the class's logits at the points
    against the ground-truth mask sampled bilinearly there and thresholded at 0.5, on
    positive ROIs.

    target_masks: [B, T, H, W] 0/1; target_class_ids: [B, T]; point_logits: [B, T, N];
    points: [B, T, N, 2] (y, x) in [0, 1] of the ROI.
    """
    from mrcnn.ops.points import bilinear_sample
    pos = tf.cast(tf.cast(target_class_ids, tf.int32) > 0, tf.float32)  # [B, T]
    shape = tf.shape(points)
    masks = tf.cast(target_masks, tf.float32)
    grids = tf.reshape(masks, tf.concat([[-1], tf.shape(masks)[2:], [1]], 0))  # [BT, H, W, 1]
    labels = bilinear_sample(grids, tf.reshape(points, tf.stack([-1, shape[2], 2])))
    labels = tf.cast(tf.reshape(labels, shape[:3]) >= 0.5, tf.float32)  # [B, T, N]
    bce = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(point_logits, tf.float32))        # [B, T, N]
    return _safe_mean(tf.reduce_sum(tf.reduce_mean(bce, -1) * pos), tf.reduce_sum(pos))


def mrcnn_attr_loss(target_attributes, target_class_ids, attr_logits, kind="sigmoid",
                    gamma=2.0, alpha=0.25):
    """Multi-label attribute loss on positive ROIs ("sigmoid" BCE or "focal").

    target_attributes: [B, T, NA] multi-hot; attr_logits: [B, T, NA].
    """
    pos = tf.cast(tf.cast(target_class_ids, tf.int32) > 0, tf.float32)  # [B, T]
    y = tf.cast(target_attributes, tf.float32)
    logits = tf.cast(attr_logits, tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)  # [B, T, NA]
    if kind == "focal":
        p = tf.sigmoid(logits)
        p_t = y * p + (1 - y) * (1 - p)
        a_t = y * alpha + (1 - y) * (1 - alpha)
        bce = a_t * (1 - p_t) ** gamma * bce
    return _safe_mean(tf.reduce_sum(tf.reduce_mean(bce, -1) * pos), tf.reduce_sum(pos))


def weight_decay_loss(variables, weight_decay):
    """matterport's L2 term: decay * sum(l2(w) / size(w)) over kernels, not BN params."""
    terms = [tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) / tf.cast(tf.size(v), tf.float32)
             for v in variables
             if "gamma" not in v.name and "beta" not in v.name and len(v.shape) > 1]
    if not terms or not weight_decay:
        return tf.constant(0.0)
    return weight_decay * tf.add_n(terms)


def compute_losses(inputs, outputs, config):
    """All weighted losses as a dict name -> scalar, from model inputs and outputs."""
    losses = {
        "rpn_class_loss": rpn_class_loss(inputs["input_rpn_match"],
                                         outputs["rpn_class_logits"]),
        "rpn_bbox_loss": rpn_bbox_loss(inputs["input_rpn_bbox"], inputs["input_rpn_match"],
                                       outputs["rpn_bbox"]),
        "mrcnn_class_loss": mrcnn_class_loss(outputs["target_class_ids"],
                                             outputs["mrcnn_class_logits"],
                                             outputs["active_class_ids"]),
        "mrcnn_bbox_loss": mrcnn_bbox_loss(outputs["target_bbox"],
                                           outputs["target_class_ids"], outputs["mrcnn_bbox"]),
        "mrcnn_mask_loss": mrcnn_mask_loss(
            coarse_mask_targets(outputs["target_mask"], outputs["mrcnn_mask"].shape[2:4]),
            outputs["mask_target_class_ids"], outputs["mrcnn_mask"]),
    }
    if "mrcnn_point_logits" in outputs:
        losses["mrcnn_point_loss"] = mrcnn_point_loss(
            outputs["target_mask"], outputs["mask_target_class_ids"],
            outputs["mrcnn_point_logits"], outputs["mrcnn_points"])
    if "mrcnn_attr_logits" in outputs:
        losses["mrcnn_attr_loss"] = mrcnn_attr_loss(
            outputs["target_attributes"], outputs["target_class_ids"],
            outputs["mrcnn_attr_logits"], kind=config.ATTRIBUTE_LOSS)
    return {k: v * float(config.LOSS_WEIGHTS.get(k, 1.0)) for k, v in losses.items()}

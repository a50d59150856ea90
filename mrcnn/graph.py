"""Builds the Mask R-CNN Keras graphs (training and inference) from a Config.

backbone (by name) -> neck (by name) -> RPN -> proposals -> ROI heads. The training
graph also computes the detection targets; the losses are computed from its outputs in
``training.MaskRCNNTrainModel.train_step``.
"""
import keras
from keras import layers

from mrcnn.backbones import get_backbone
from mrcnn.heads.attributes import attribute_head
from mrcnn.heads.box import box_head
from mrcnn.heads.mask import mask_head
from mrcnn.heads.pointrend import point_head_from_config
from mrcnn.heads.rpn import RPNHead
from mrcnn.layers import (ActiveClassIds, ConstantAnchors, DetectionLayer, DetectionTargetLayer,
                          GatherRois, NormBoxes, PadRows, PositiveRows, ProposalLayer,
                          PyramidROIAlign, ValidDetectionBoxes)
from mrcnn.necks import get_neck
from mrcnn.utils import norm_anchors


# Names (and order) of the inference graph's outputs; "attributes" [B, D, NUM_ATTRIBUTES]
# follows when the config has an attribute head.
INFERENCE_OUTPUTS = ("detections", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "rpn_rois",
                     "rpn_class", "rpn_bbox")


def inference_output_names(config):
    """The inference graph's output keys for a config, in matterport's order."""
    return INFERENCE_OUTPUTS + (("attributes",) if config.NUM_ATTRIBUTES else ())


def backbone_and_neck(input_image, config):
    """Returns the pyramid {"P2".."P6"} for an input image tensor."""
    features = get_backbone(config.BACKBONE)(input_image, config)
    return get_neck(config.neck_name())(features, config)


def _heads(rois, input_image_meta, pyramid, config):
    """ROI align + classifier head on rois."""
    maps = [pyramid[k] for k in ("P2", "P3", "P4", "P5")]
    pooled = PyramidROIAlign([config.POOL_SIZE, config.POOL_SIZE],
                             static_shapes=config.STATIC_SHAPES,
                             name="roi_align_classifier")([rois, input_image_meta] + maps)
    return box_head(pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                    fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)


def _mask_branch(rois, input_image_meta, pyramid, config):
    maps = [pyramid[k] for k in ("P2", "P3", "P4", "P5")]
    pooled = PyramidROIAlign([config.MASK_POOL_SIZE, config.MASK_POOL_SIZE],
                             static_shapes=config.STATIC_SHAPES,
                             name="roi_align_mask")([rois, input_image_meta] + maps)
    return mask_head(pooled, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                     depth=config.MASK_HEAD_DEPTH, convs=config.MASK_HEAD_CONVS)


def _pointrend(config):
    return getattr(config, "MASK_HEAD", "matterport") == "pointrend"


def _rpn(pyramid, config):
    head = RPNHead(len(config.RPN_ANCHOR_RATIOS), config.RPN_ANCHOR_STRIDE,
                   depth=config.RPN_CONV_DEPTH)
    return head.over_levels([pyramid[k] for k in ("P2", "P3", "P4", "P5", "P6")])


def build_training_graph(config):
    """Inputs and outputs (dicts) of the training graph."""
    h, w = int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1])
    mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else (h, w)
    n_anchors = norm_anchors(config, (h, w)).shape[0]
    inputs = {
        "input_image": keras.Input((h, w, config.IMAGE_CHANNEL_COUNT), name="input_image"),
        "input_image_meta": keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta"),
        "input_rpn_match": keras.Input((n_anchors, 1), dtype="int32", name="input_rpn_match"),
        "input_rpn_bbox": keras.Input((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4),
                                      name="input_rpn_bbox"),
        "input_gt_class_ids": keras.Input((config.MAX_GT_INSTANCES,), dtype="int32",
                                          name="input_gt_class_ids"),
        "input_gt_boxes": keras.Input((config.MAX_GT_INSTANCES, 4), name="input_gt_boxes"),
        "input_gt_masks": keras.Input(mask_shape + (config.MAX_GT_INSTANCES,), dtype="bool",
                                      name="input_gt_masks"),
    }
    if config.NUM_ATTRIBUTES:
        inputs["input_gt_attributes"] = keras.Input(
            (config.MAX_GT_INSTANCES, config.NUM_ATTRIBUTES), name="input_gt_attributes")
    image, meta = inputs["input_image"], inputs["input_image_meta"]
    gt_boxes = NormBoxes(name="norm_gt_boxes")(inputs["input_gt_boxes"], image)

    pyramid = backbone_and_neck(image, config)
    rpn_class_logits, rpn_class, rpn_bbox = _rpn(pyramid, config)
    anchors = ConstantAnchors(norm_anchors(config, (h, w)), name="anchors")(image)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_TRAINING, config.RPN_NMS_THRESHOLD,
                             config, name="ROI")([rpn_class, rpn_bbox, anchors])
    active_class_ids = ActiveClassIds(name="active_class_ids")(meta)

    proposals = rpn_rois
    if config.ADD_GT_TO_PROPOSALS:
        # Ground-truth boxes as extra proposals: the heads see positives from step one.
        proposals = layers.Concatenate(axis=1, name="proposals_with_gt")([rpn_rois, gt_boxes])
    target_inputs = [proposals, inputs["input_gt_class_ids"], gt_boxes,
                     inputs["input_gt_masks"]]
    if config.NUM_ATTRIBUTES:
        target_inputs.append(inputs["input_gt_attributes"])
    # PointRend's point loss samples a finer crop of the ground truth (see losses.py).
    targets = DetectionTargetLayer(config, mask_shape=config.mask_target_shape(),
                                   name="proposal_targets")(target_inputs)
    rois, target_class_ids, target_bbox, target_mask = targets[:4]

    class_logits, class_probs, bbox, shared = _heads(rois, meta, pyramid, config)
    # Positive ROIs come first in the targets and only they have mask targets, so the
    # mask head runs on the first int(T * ROI_POSITIVE_RATIO) rows (same loss, less work).
    positives = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)

    def first(x, name):
        return PositiveRows(positives, config.STATIC_SHAPES, name=name)(x, target_class_ids)
    positive_rois = first(rois, "positive_rois")
    masks = _mask_branch(positive_rois, meta, pyramid, config)
    outputs = {
        "rpn_class_logits": rpn_class_logits, "rpn_class": rpn_class, "rpn_bbox": rpn_bbox,
        "rpn_rois": rpn_rois, "rois": rois, "active_class_ids": active_class_ids,
        "target_class_ids": target_class_ids, "target_bbox": target_bbox,
        "target_mask": first(target_mask, "positive_target_mask"),
        "mask_target_class_ids": first(target_class_ids, "positive_target_class_ids"),
        "mrcnn_class_logits": class_logits,
        "mrcnn_class": class_probs, "mrcnn_bbox": bbox, "mrcnn_mask": masks,
    }
    if _pointrend(config):
        # [B, P, N] point logits of the ROI's class, [B, P, N, 2] their box-relative points
        point_logits, points = point_head_from_config(config, "training")(
            [masks, outputs["mask_target_class_ids"], positive_rois, pyramid["P2"]])
        outputs["mrcnn_point_logits"], outputs["mrcnn_points"] = point_logits, points
    if config.NUM_ATTRIBUTES:
        attr_logits, _ = attribute_head(shared, config.NUM_ATTRIBUTES, config.ATTRIBUTE_FC_SIZE)
        outputs["mrcnn_attr_logits"] = attr_logits
        outputs["target_attributes"] = targets[4]
    return inputs, outputs


def build_inference_graph(config):
    """Inputs [image, image_meta, anchors] and the inference outputs, a dict keyed by
    INFERENCE_OUTPUTS (plus "attributes" when NUM_ATTRIBUTES > 0)."""
    h, w = config.IMAGE_SHAPE[:2] if config.IMAGE_RESIZE_MODE in ("square", "crop") \
        else (None, None)
    h = None if h is None else int(h)
    w = None if w is None else int(w)
    input_image = keras.Input((h, w, config.IMAGE_CHANNEL_COUNT), name="input_image")
    input_image_meta = keras.Input((config.IMAGE_META_SIZE,), name="input_image_meta")
    input_anchors = keras.Input((None, 4), name="input_anchors")

    pyramid = backbone_and_neck(input_image, config)
    rpn_class_logits, rpn_class, rpn_bbox = _rpn(pyramid, config)
    n = config.POST_NMS_ROIS_INFERENCE
    rpn_rois = ProposalLayer(n, config.RPN_NMS_THRESHOLD, config, name="ROI")(
        [rpn_class, rpn_bbox, input_anchors])
    _, class_probs, bbox, shared = _heads(rpn_rois, input_image_meta, pyramid, config)
    with_attrs = bool(config.NUM_ATTRIBUTES)
    det = DetectionLayer(config, name="mrcnn_detection", return_indices=with_attrs)(
        [rpn_rois, class_probs, bbox, input_image_meta])
    detections = det[0] if with_attrs else det
    # The mask head runs on the valid detections only, then pads back to a fixed size.
    det_boxes = ValidDetectionBoxes(name="detection_boxes")(detections)
    masks = _mask_branch(det_boxes, input_image_meta, pyramid, config)
    if _pointrend(config):
        # [B, n, S, S, 1]: the detected class's mask refined to MASK_OUTPUT_SIZE
        masks = point_head_from_config(config, "inference")(
            [masks, detections, det_boxes, pyramid["P2"]])
    masks = PadRows(config.DETECTION_MAX_INSTANCES, name="mrcnn_mask_padded")(masks)
    outputs = {
        "detections": detections,      # [B, D, (y1, x1, y2, x2, class_id, score)] normalised
        "mrcnn_class": class_probs,    # [B, R, NUM_CLASSES]
        "mrcnn_bbox": bbox,            # [B, R, NUM_CLASSES, (dy, dx, log(dh), log(dw))]
        "mrcnn_mask": masks,           # [B, D, h, w, NUM_CLASSES] (PointRend: [B, D, S, S, 1])
        "rpn_rois": rpn_rois,          # [B, R, (y1, x1, y2, x2)] normalised
        "rpn_class": rpn_class,        # [B, A, 2]
        "rpn_bbox": rpn_bbox,          # [B, A, 4]
    }
    if with_attrs:
        _, attr_probs = attribute_head(shared, config.NUM_ATTRIBUTES, config.ATTRIBUTE_FC_SIZE)
        # [B, D, NUM_ATTRIBUTES]: each detection's attribute probabilities
        outputs["attributes"] = GatherRois(name="mrcnn_attributes")(attr_probs, det[1])
    return [input_image, input_image_meta, input_anchors], outputs

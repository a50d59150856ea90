"""Pure-numpy helpers for exported models' outputs (no TensorFlow needed).

    outputs = saved_model.signatures["image_tensor"](images=batch)     # or ONNX / TFLite
    results = to_results(outputs, [image.shape for image in batch])    # detect()-like
    rles = [to_rle(m) for m in np.moveaxis(results[0]["masks"], -1, 0)]

``paste_masks`` pastes the box-relative masks exactly as ``detect()`` does (it calls
``mrcnn.inference``'s paste function), so the full-image masks equal ``detect()``'s.
"""
import numpy as np

from mrcnn import inference


def _paste_one(mask, box, plane):
    """inference's paste of one [h, w] probability mask into `plane`; returns its mean
    probability inside the pasted mask (detect()'s mask_scores)."""
    paste = getattr(inference, "paste_mask", None) or inference._paste_mask
    return paste(mask, box, plane)


def paste_masks(boxes, masks, image_shape):
    """Box masks -> full-image masks, as detect() makes them.

    boxes: [N, (y1, x1, y2, x2)] integer pixels of the original image (y2/x2 exclusive);
    masks: [N, h, w] float probabilities of the detected class; image_shape: (H, W[, 3]).
    Returns (masks [H, W, N] bool, mask_scores [N] float32).
    """
    boxes = np.asarray(boxes).reshape(-1, 4).astype(np.int32)
    masks = np.asarray(masks, np.float32)
    planes = np.zeros((len(boxes),) + tuple(int(s) for s in image_shape[:2]), dtype=bool)
    scores = [_paste_one(masks[i], boxes[i], planes[i]) for i in range(len(boxes))]
    return np.moveaxis(planes, 0, -1), np.array(scores, dtype=np.float32)


def to_rle(mask):
    """[H, W] bool mask -> compressed COCO RLE {"size": [H, W], "counts": str}."""
    from mrcnn.evaluation.predictions import encode_mask
    return encode_mask(np.asarray(mask, dtype=bool))


def _get(outputs, name):
    value = outputs[name]
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def to_results(outputs, image_shapes):
    """An exported model's outputs (dict of arrays or tensors) for a batch -> one
    detect()-like dict per image: rois, class_ids, scores, masks [H, W, N] bool,
    mask_scores and, with attributes, attribute_probabilities."""
    count = _get(outputs, "num_detections").astype(np.int64)
    boxes, classes = _get(outputs, "detection_boxes"), _get(outputs, "detection_classes")
    scores, masks = _get(outputs, "detection_scores"), _get(outputs, "detection_masks")
    attrs = _get(outputs, "detection_attributes") if "detection_attributes" in outputs \
        else None
    results = []
    for i, shape in enumerate(image_shapes):
        n = int(count[i])
        rois = np.round(boxes[i, :n]).astype(np.int32)
        full, mask_scores = paste_masks(rois, masks[i, :n], shape)
        result = {"rois": rois, "class_ids": classes[i, :n].astype(np.int32),
                  "scores": scores[i, :n].astype(np.float32), "masks": full,
                  "mask_scores": mask_scores}
        if attrs is not None:
            result["attribute_probabilities"] = attrs[i, :n].astype(np.float32)
        results.append(result)
    return results

"""Numpy side of detection: molding inputs and unmolding detections (matterport's)."""
import numpy as np

from mrcnn import utils

try:  # cv2 resizes the 28x28 masks much faster than skimage; both give the same masks
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None


def mold_inputs(images, config):
    """Images (list of [H, W, 3] uint8) -> (molded images, image metas, windows)."""
    molded, metas, windows = [], [], []
    for image in images:
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"detect() takes RGB images [height, width, 3]; got an image "
                             f"of shape {image.shape}.")
        molded_image, window, scale, padding, crop = utils.resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        molded_image = utils.mold_image(molded_image, config)
        meta = utils.compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                        np.zeros([config.NUM_CLASSES], dtype=np.int32))
        molded.append(molded_image)
        windows.append(window)
        metas.append(meta)
    return np.stack(molded), np.stack(metas), np.array(windows)


def _paste_mask(mask, box, full):
    """Pastes a [h, w] probability mask into its box of the full-size bool plane `full`;
    returns the mean probability inside the pasted mask."""
    y1, x1, y2, x2 = box
    h, w = y2 - y1, x2 - x1
    if h <= 0 or w <= 0:
        return 0.0
    if cv2 is not None:
        m = cv2.resize(mask.astype(np.float32), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)
    else:
        m = utils.resize(mask, (h, w))
    inside = m >= 0.5
    full[y1:y2, x1:x2] = inside
    return float(m[inside].mean()) if inside.any() else 0.0


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window,
                      attributes=None):
    """One image's detections, in the molded image's frame -> matterport's result dict.

    detections: [D, (y1, x1, y2, x2, class_id, score)] normalised, zero padded;
    mrcnn_mask: [D, h, w, num_classes]. Returns rois, class_ids, scores, masks
    [H, W, N] bool (in original image coordinates), mask_scores and, when attributes
    [D, NA] are given, attribute_probabilities.
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    n = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5]
    masks = mrcnn_mask[np.arange(n), :, :, class_ids]
    # Normalised window -> shift and scale boxes into the original image's frame.
    wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray(window, np.float32), image_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, original_image_shape[0])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, original_image_shape[1])
    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    # One contiguous plane per instance, seen as [H, W, N]: no copy through np.stack.
    planes = np.zeros((len(keep),) + tuple(original_image_shape[:2]), dtype=bool)
    mask_scores = [_paste_mask(masks[i], boxes[i], planes[i]) for i in range(len(keep))]
    result = {"rois": boxes, "class_ids": class_ids, "scores": scores,
              "masks": np.moveaxis(planes, 0, -1),
              "mask_scores": np.array(mask_scores, dtype=np.float32)}
    if attributes is not None:
        result["attribute_probabilities"] = attributes[:n][keep].astype(np.float32)
    return result

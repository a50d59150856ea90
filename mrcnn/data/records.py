"""Records: one image's resized pixels, masks, classes and attributes.

A record is the unit every data source yields (raw files, H5 cache, TFRecords); see
docs/interfaces.md for its keys. Building one applies the config's resize mode; the
input pipeline turns records into model inputs.
"""
import logging

import numpy as np

from mrcnn.data.resize import resize_image, resize_mask
from mrcnn.meta import compose_image_meta

log = logging.getLogger("mrcnn")


class BadSample(ValueError):
    """A sample that cannot be used (named in the message); the pipeline skips it."""


def _check_mask(dataset, image_id, image, masks, class_ids):
    ref = dataset.image_reference(image_id)
    if masks.ndim != 3:
        raise BadSample(f"{ref}: load_mask returned masks of shape {masks.shape}; "
                        "expected [height, width, instances].")
    if masks.shape[-1] and masks.shape[:2] != image.shape[:2]:
        raise BadSample(f"{ref}: mask size {masks.shape[:2]} differs from the image size "
                        f"{image.shape[:2]}; fix the annotation's Height/Width or the image.")
    if len(class_ids) != masks.shape[-1]:
        raise BadSample(f"{ref}: {masks.shape[-1]} masks but {len(class_ids)} class ids.")
    class_ids = np.asarray(class_ids, dtype=np.int32)
    if np.any(class_ids >= dataset.num_classes) or np.any(class_ids == 0):
        bad = class_ids[(class_ids >= dataset.num_classes) | (class_ids == 0)]
        raise BadSample(f"{ref}: class id(s) {sorted(set(bad.tolist()))} are outside the "
                        f"dataset's classes 1..{dataset.num_classes - 1}; map them with "
                        "map_source_class_id or drop those instances.")
    return class_ids


def build_record(dataset, config, image_id):
    """Loads one image of a prepared Dataset and resizes it by the config.

    Returns a record dict (image, image_meta, masks, class_ids, attributes). Raises
    BadSample naming the image when its data cannot be used.
    """
    image = dataset.load_image(image_id)
    masks, class_ids = dataset.load_mask(image_id)
    if masks.shape[-1] == 0:
        masks = np.zeros(image.shape[:2] + (0,), dtype=bool)
    class_ids = _check_mask(dataset, image_id, image, masks, class_ids)
    n_attr = int(getattr(config, "NUM_ATTRIBUTES", 0))
    if n_attr and hasattr(dataset, "load_attributes"):
        attributes = np.asarray(dataset.load_attributes(image_id), dtype=np.uint8)
        if attributes.shape != (len(class_ids), n_attr):
            raise BadSample(f"{dataset.image_reference(image_id)}: attributes have shape "
                            f"{attributes.shape}, expected {(len(class_ids), n_attr)}; "
                            "set Config.NUM_ATTRIBUTES to the dataset's attribute count.")
    else:
        attributes = np.zeros((len(class_ids), n_attr), dtype=np.uint8)
    original_shape = image.shape
    image, window, scale, padding, crop = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    masks = resize_mask(masks, scale, padding, crop)
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    source_class_ids = dataset.source_class_ids[dataset.image_info[image_id]["source"]]
    active_class_ids[source_class_ids] = 1
    # Datasets with fewer classes than the config (sub-sets) are padded.
    active = np.zeros([config.NUM_CLASSES], dtype=np.int32)
    active[:min(len(active_class_ids), config.NUM_CLASSES)] = \
        active_class_ids[:config.NUM_CLASSES]
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window,
                                          scale, active)
    return {"image": image, "image_meta": image_meta, "masks": masks,
            "class_ids": class_ids, "attributes": attributes}

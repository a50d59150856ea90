"""Image meta: the one definition of its layout (matterport's, see docs/interfaces.md).

One float32 vector per image:

    [image_id(1), original_image_shape(3), image_shape(3), window(4: y1, x1, y2, x2
     in pixels of the molded image), scale(1), active_class_ids(NUM_CLASSES)]

``FIELDS`` maps each field to its slice; ``FIXED_SIZE`` (12) is the length before the
active class ids, so ``meta_size(num_classes) == Config.IMAGE_META_SIZE``.
``compose_image_meta`` / ``parse_image_meta`` are the numpy side (also exported by
``mrcnn.utils`` under matterport's names); ``parse_image_meta_graph`` the tensor side.
TensorFlow is imported only by the tensor function.
"""
import numpy as np

FIXED_SIZE = 12  # image_id + original_image_shape + image_shape + window + scale

FIELDS = {
    "image_id": 0,
    "original_image_shape": slice(1, 4),
    "image_shape": slice(4, 7),
    "window": slice(7, 11),
    "scale": 11,
    "active_class_ids": slice(FIXED_SIZE, None),
}

# numpy dtypes of the parsed fields (matterport's parse_image_meta)
_NUMPY_DTYPES = {"image_id": np.int32, "original_image_shape": np.int32,
                 "image_shape": np.int32, "window": np.int32, "scale": np.float32,
                 "active_class_ids": np.int32}


def meta_size(num_classes):
    """Length of one image meta vector: ``FIXED_SIZE + num_classes``."""
    return FIXED_SIZE + int(num_classes)


def compose_image_meta(image_id, original_image_shape, image_shape, window, scale,
                       active_class_ids):
    """Packs image attributes into one float32 vector [FIXED_SIZE + NUM_CLASSES]."""
    return np.array([image_id] + list(original_image_shape) + list(image_shape)
                    + list(window) + [scale] + list(active_class_ids), dtype=np.float32)


def parse_image_meta(meta):
    """Unpacks image meta [batch, META] (numpy) into a dict of numpy arrays."""
    meta = np.asarray(meta)
    return {name: meta[:, where].astype(_NUMPY_DTYPES[name])
            for name, where in FIELDS.items()}


def parse_image_meta_graph(meta):
    """Splits ``[B, META]`` image meta tensors into their fields (float32 tensors):
    image_id [B], original_image_shape [B, 3], image_shape [B, 3] (h, w, c),
    window [B, 4] pixels (y1, x1, y2, x2), scale [B], active_class_ids [B, NUM_CLASSES].
    """
    import tensorflow as tf
    meta = tf.cast(meta, tf.float32)
    return {name: meta[:, where] for name, where in FIELDS.items()}

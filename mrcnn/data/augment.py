"""In-graph augmentation of training records (tf.data, no Python per sample).

A record is a dict of tensors: image [H, W, 3] uint8, masks [H, W, N] bool,
class_ids [N] int32, attributes [N, A] uint8 and image_meta; every function here keeps
H and W (the config's canvas), so batches keep their static shapes, and boxes are
taken from the masks afterwards (mrcnn.ops.targets), so they follow every change.
Instances whose mask vanishes (cropped away, hidden by a pasted one) are dropped there.

* ``random_flip``: horizontal flip with probability 0.5 (``Config.AUGMENT_FLIP``).
* ``scale_jitter``: resize by a random factor in ``Config.AUGMENT_SCALE`` = (lo, hi),
  then a random crop (zoom in) or padding (zoom out) back to the canvas: multi-scale
  training at a fixed input size.
* ``copy_paste``: with probability ``Config.AUGMENT_COPY_PASTE``, the instances of a
  second image are pasted over the first (Ghiasi et al., "Simple Copy-Paste", 2021):
  their pixels replace the first image's, and the first image's masks lose what the
  pasted ones cover. ``pairwise`` applies it to consecutive records of a dataset.

Example:
    records = records.map(lambda r: scale_jitter(random_flip(r), (0.75, 1.25)))
    records = pairwise(records, lambda a, b: copy_paste(a, b, 0.5))
"""
import tensorflow as tf


def random_flip(record, seed=None):
    """Horizontal flip of image and masks with probability 0.5."""
    flip = tf.random.uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: record["image"][:, ::-1], lambda: record["image"])
    masks = tf.cond(flip, lambda: record["masks"][:, ::-1], lambda: record["masks"])
    return dict(record, image=image, masks=masks)


def _place(x, h, w, dy, dx):
    """Crops x [h', w', C] at (dy, dx) when larger than h x w, pads it there when
    smaller (dy, dx <= 0 meaning the offset of x inside the canvas)."""
    x = x[tf.maximum(dy, 0):, tf.maximum(dx, 0):][:h, :w]
    top, left = tf.maximum(-dy, 0), tf.maximum(-dx, 0)
    sh, sw = tf.shape(x)[0], tf.shape(x)[1]
    return tf.pad(x, [[top, h - sh - top], [left, w - sw - left], [0, 0]])


def scale_jitter(record, scale_range, seed=None):
    """Resizes image and masks by s ~ U(lo, hi) and crops or pads back to H x W.

    The image is resized bilinearly, the masks by nearest neighbour; the crop or the
    padding sits at a random offset. Padding is black, as matterport's square resize.
    """
    lo, hi = float(scale_range[0]), float(scale_range[1])
    image, masks = record["image"], record["masks"]
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    s = tf.random.uniform([], lo, hi, seed=seed)
    nh = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * s), tf.int32))
    nw = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * s), tf.int32))
    big = tf.image.resize(image, [nh, nw], method="bilinear")
    big = tf.cast(tf.clip_by_value(tf.round(big), 0, 255), tf.uint8)
    big_masks = tf.image.resize(tf.cast(masks, tf.uint8), [nh, nw], method="nearest")
    # zoom in: offset in [0, nh - h] of the crop; zoom out: -offset of the image
    span_y, span_x = tf.abs(nh - h), tf.abs(nw - w)
    oy = tf.random.uniform([], 0, span_y + 1, tf.int32, seed=seed)
    ox = tf.random.uniform([], 0, span_x + 1, tf.int32, seed=seed)
    dy = tf.where(nh >= h, oy, -oy)
    dx = tf.where(nw >= w, ox, -ox)
    image = _place(big, h, w, dy, dx)
    masks = tf.cast(_place(big_masks, h, w, dy, dx), tf.bool)
    kept = tf.reduce_any(masks)
    # a crop that leaves no instance would give an image without targets: keep the
    # original instead
    image = tf.cond(kept, lambda: image, lambda: record["image"])
    masks = tf.cond(kept, lambda: masks, lambda: record["masks"])
    return dict(record, image=tf.ensure_shape(image, record["image"].shape),
                masks=masks)


def copy_paste(target, source, probability=0.5, seed=None):
    """Pastes the source's instances over the target with the given probability.

    The pasted pixels replace the target's; target masks lose the covered pixels (an
    instance hidden completely is dropped later, with its empty mask); the source's
    instances, classes and attributes are appended to the target's.
    """
    def paste():
        src_masks = tf.cast(source["masks"], tf.bool)              # [H, W, Ns]
        cover = tf.reduce_any(src_masks, axis=2)                   # [H, W]
        image = tf.where(cover[:, :, None], source["image"], target["image"])
        masks = tf.logical_and(tf.cast(target["masks"], tf.bool),
                               tf.logical_not(cover)[:, :, None])
        return (image, tf.concat([masks, src_masks], axis=2),
                tf.concat([target["class_ids"], source["class_ids"]], axis=0),
                tf.concat([target["attributes"], source["attributes"]], axis=0))

    def keep():
        return (target["image"], tf.cast(target["masks"], tf.bool), target["class_ids"],
                target["attributes"])

    image, masks, class_ids, attributes = tf.cond(
        tf.random.uniform([], seed=seed) < probability, paste, keep)
    return dict(target, image=image, masks=masks, class_ids=class_ids,
                attributes=attributes)


def pairwise(records, fn):
    """Applies fn(a, b) and fn(b, a) to consecutive pairs of records (a record dataset
    whose masks, class_ids and attributes may differ in instance count); the results
    follow one another. The instances added to pair the records have empty masks, so
    the targets drop them (mrcnn.ops.targets.record_to_inputs)."""
    def both(pair):
        a = {k: v[0] for k, v in pair.items()}
        b = {k: v[1] for k, v in pair.items()}
        first, second = fn(a, b), fn(b, a)
        return tf.data.Dataset.from_tensors(first).concatenate(
            tf.data.Dataset.from_tensors(second))

    return records.padded_batch(2, drop_remainder=True).flat_map(both)

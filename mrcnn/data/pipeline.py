"""The tf.data input pipeline: records -> (augmentation) -> targets -> batches.

Sources of records:
- ``DatasetSource(dataset, config)``: decodes images and masks from a utils.Dataset.
- ``mrcnn.data.h5cache.H5RecordSource``: reads a prebuilt H5 cache (fast).
- ``mrcnn.data.tfrecords.read_tfrecords``: parses TFRecords in-graph (TPU, multi-worker).

Python sources run in parallel ``tf.numpy_function`` calls; targets (boxes, mini-masks,
RPN targets, padding) are built in TensorFlow, so batches have static shapes.
Samples that cannot be used (unreadable image, no instances) are skipped and counted.
"""
import logging
import threading

import numpy as np
import tensorflow as tf

from mrcnn.data.augment import copy_paste, pairwise, random_flip, scale_jitter
from mrcnn.data.records import BadSample, build_record
from mrcnn.ops.anchors import pixel_anchors
from mrcnn.ops.targets import record_to_inputs

log = logging.getLogger("mrcnn")

# Records held in the shuffle buffer of tf.data / TFRecord inputs.
SHUFFLE_BUFFER = 256

# imgaug augmenters that move pixels, so masks must follow (matterport's list).
MASK_AUGMENTERS = ["Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud",
                   "CropAndPad", "Affine", "PiecewiseAffine"]


class DatasetSource:
    """Records built on the fly from a prepared utils.Dataset."""

    def __init__(self, dataset, config):
        self.dataset = dataset
        self.config = config
        self.image_ids = np.asarray(dataset.image_ids)

    def __len__(self):
        return len(self.image_ids)

    def get(self, index):
        return build_record(self.dataset, self.config, int(self.image_ids[index]))

    def describe(self, index):
        return self.dataset.image_reference(int(self.image_ids[index]))


class NoUsableSamples(ValueError):
    """Raised when too many samples in a row could not be used: the input would
    otherwise wait forever for a batch."""


class SkipCounter:
    """Counts skipped samples and logs the first few reasons (thread-safe).

    After `max_consecutive` skips with no usable sample in between, `add` raises
    NoUsableSamples naming the count and the first reasons, so a dataset whose
    samples are all unusable (e.g. an image folder that is missing) stops training at
    once instead of filtering forever.
    """

    def __init__(self, show=5, max_consecutive=200):
        self.count = 0
        self.consecutive = 0
        self.reasons = []
        self.show = show
        self.max_consecutive = max_consecutive
        self._gave_up = None  # the sentence NoUsableSamples was raised with
        self._lock = threading.Lock()

    def add(self, reason):
        with self._lock:
            self.count += 1
            self.consecutive += 1
            if len(self.reasons) < self.show:
                self.reasons.append(reason)
                log.warning("Skipping a training sample: %s", reason)
            elif len(self.reasons) == self.show:
                self.reasons.append("...")
                log.warning("Further skipped samples are counted, not listed.")
            if self.max_consecutive and self.consecutive >= self.max_consecutive:
                self._gave_up = self._gave_up or self.summary()
                raise NoUsableSamples(self._gave_up)

    def used(self):
        """A usable sample arrived: the run of consecutive skips ends."""
        self.consecutive = 0

    def exhausted(self):
        """True once `max_consecutive` samples in a row were skipped (NoUsableSamples
        was raised, perhaps inside tf.data where it arrives wrapped)."""
        return self._gave_up is not None

    def summary(self):
        if self._gave_up:
            return self._gave_up
        first = "; ".join(r for r in self.reasons[:3] if r != "...")
        return (f"No usable training sample after {self.consecutive} skipped in a row "
                f"({self.count} skipped in all); first reasons: {first}. Fix or remove "
                "those files (check the image folder and the annotations).")


def augment_record(record, augmentation):
    """Applies an imgaug augmenter to a record's image, and its geometric part to masks."""
    from mrcnn.data.imgaug_compat import import_imgaug
    import_imgaug()
    import imgaug

    def hook(images, augmenter, parents, default):
        return augmenter.__class__.__name__ in MASK_AUGMENTERS

    image, masks = record["image"], record["masks"]
    det = augmentation.to_deterministic()
    image_aug = det.augment_image(image)
    if masks.shape[-1]:
        masks_aug = np.stack(
            [det.augment_image(masks[..., i].astype(np.uint8),
                               hooks=imgaug.HooksImages(activator=hook))
             for i in range(masks.shape[-1])], axis=-1).astype(bool)
    else:
        masks_aug = masks
    if image_aug.shape != image.shape or masks_aug.shape[:2] != image.shape[:2]:
        raise ValueError("Augmentation changed the image shape; use augmenters that "
                         "keep the size (e.g. CropAndPad(keep_size=True)).")
    return dict(record, image=image_aug, masks=masks_aug)


def _python_loader(source, config, augmentation, skips):
    n_attr = config.NUM_ATTRIBUTES
    meta_size = config.IMAGE_META_SIZE

    def load(index):
        try:
            r = source.get(int(index))
            if augmentation is not None:
                r = augment_record(r, augmentation)
            if not np.any(r["masks"]):
                raise BadSample(f"{_describe(source, index)} has no instances")
            skips.used()
            return (r["image"].astype(np.uint8), r["image_meta"].astype(np.float32),
                    r["masks"].astype(bool), r["class_ids"].astype(np.int32),
                    r["attributes"].astype(np.uint8), True)
        except (BadSample, ValueError, FileNotFoundError, OSError) as e:
            skips.add(str(e))
            h, w = int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1])
            return (np.zeros((h, w, 3), np.uint8), np.zeros(meta_size, np.float32),
                    np.zeros((h, w, 0), bool), np.zeros(0, np.int32),
                    np.zeros((0, n_attr), np.uint8), False)
    return load


def _describe(source, index):
    return source.describe(int(index)) if hasattr(source, "describe") else f"sample {index}"


def records_from_source(source, config, shuffle=True, augmentation=None, seed=None,
                        repeat=True, skips=None):
    """tf.data.Dataset of record dicts from a Python source (Dataset or H5 cache)."""
    skips = skips if skips is not None else SkipCounter()
    load = _python_loader(source, config, augmentation, skips)
    ds = tf.data.Dataset.range(len(source))
    if shuffle:
        ds = ds.shuffle(len(source), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def to_record(index):
        out = tf.numpy_function(load, [index], (tf.uint8, tf.float32, tf.bool, tf.int32,
                                                tf.uint8, tf.bool), stateful=True)
        image, meta, masks, class_ids, attrs, ok = out
        image.set_shape([None, None, 3])
        meta.set_shape([config.IMAGE_META_SIZE])
        masks.set_shape([None, None, None])
        class_ids.set_shape([None])
        attrs.set_shape([None, config.NUM_ATTRIBUTES])
        return {"image": image, "image_meta": meta, "masks": masks,
                "class_ids": class_ids, "attributes": attrs, "ok": ok}

    ds = ds.map(to_record, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.filter(lambda r: r["ok"])


def make_input_dataset(records, config, batch_size, flip=False, drop_remainder=True,
                       augment=False):
    """Record dataset -> batched model inputs with static shapes, prefetched.

    flip: random horizontal flips. augment: the config's in-graph augmentation
    (AUGMENT_FLIP, AUGMENT_SCALE, AUGMENT_COPY_PASTE; training data only)."""
    shape = tuple(int(s) for s in config.IMAGE_SHAPE[:2])
    anchors = tf.constant(pixel_anchors(config, shape))
    flip = flip or (augment and config.AUGMENT_FLIP)
    scale = config.AUGMENT_SCALE if augment else None
    paste = float(config.AUGMENT_COPY_PASTE) if augment else 0.0

    def to_canvas(record):
        record = {k: v for k, v in record.items() if k != "ok"}
        image = record["image"]
        # Records from "none"/"pad64" modes can be smaller: pad to the config's shape.
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        pad = [[0, shape[0] - h], [0, shape[1] - w]]
        record["image"] = tf.ensure_shape(tf.pad(image, pad + [[0, 0]]), shape + (3,))
        record["masks"] = tf.pad(record["masks"], pad + [[0, 0]])
        if flip:
            record = random_flip(record)
        if scale:
            record = scale_jitter(record, scale)
        return record

    ds = records.map(to_canvas, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    if paste:
        ds = pairwise(ds, lambda a, b: copy_paste(a, b, paste))
    ds = ds.map(lambda r: record_to_inputs(r, config, anchors),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def as_source(data, config):
    """Accepts a utils.Dataset or anything with __len__ and get(i) -> record."""
    if hasattr(data, "get") and hasattr(data, "__len__"):
        return data
    if hasattr(data, "load_mask") and hasattr(data, "image_ids"):
        if not len(data.image_ids):
            raise ValueError(f"The dataset {type(data).__name__} has no images; call its "
                             "load_* method and prepare() before training.")
        return DatasetSource(data, config)
    raise TypeError(f"Cannot read training data from {type(data).__name__}; pass a "
                    "prepared utils.Dataset, an H5RecordSource or a tf.data.Dataset.")


def training_inputs(data, config, batch_size, shuffle=True, augmentation=None, seed=None,
                    repeat=True, skips=None, augment=False):
    """Any supported data (Dataset, H5 source, tf.data of records) -> input batches.

    A tf.data of records (e.g. TFRecords) is shuffled through a buffer; it takes only
    the in-graph augmentation ("flip"), since imgaug would need Python per sample.
    augment=True applies the config's in-graph augmentation (AUGMENT_*; what train()
    does for its training data, never for validation).
    """
    if isinstance(data, tf.data.Dataset):
        if augmentation is not None and augmentation != "flip":
            log.warning("imgaug augmentation needs Python per sample and is not applied "
                        "to a tf.data/TFRecord input; using the in-graph flip instead.")
            augmentation = "flip"
        records = data.shuffle(SHUFFLE_BUFFER, seed=seed) if shuffle else data
        records = records.repeat() if repeat else records
        return make_input_dataset(records, config, batch_size,
                                  flip=augmentation == "flip", augment=augment)
    source = as_source(data, config)
    records = records_from_source(source, config, shuffle=shuffle,
                                  augmentation=None if augmentation == "flip" else augmentation,
                                  seed=seed, repeat=repeat, skips=skips)
    return make_input_dataset(records, config, batch_size, flip=augmentation == "flip",
                              augment=augment)

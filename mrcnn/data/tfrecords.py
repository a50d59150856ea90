"""Sharded TFRecords of records, parsed in-graph (the library side: writing and reading
shards; the `tfrecords` command of the fashion CLI, fashion/commands/tfrecords.py, writes a
dataset split with it and adds its labels file).

Each example holds one record: the resized image as PNG bytes, each instance mask as a
single-channel PNG (lossless), class ids, attributes (raw uint8 bytes, [N, A]) and image
meta. Shards are written under a temporary name and renamed when complete, through
tf.io.gfile, so ``gs://`` prefixes work for writing and reading.

Example:
    paths = write_tfrecords(train_dataset, config, "records/train", num_shards=4)
    ds = read_tfrecords("records/train-*.tfrecord", config)   # tf.data of record dicts
    for record in ds.take(1):
        record["masks"]                                       # [H, W, N] bool
    peek_record("records/train-*.tfrecord")   # {"height": ..., "num_classes": ...}
"""
import logging
import os

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from mrcnn.data.records import BadSample, build_record
from mrcnn.fileio import atomic_write_text
from mrcnn.meta import FIXED_SIZE
from mrcnn.fileio import commit

log = logging.getLogger("mrcnn")

SKIPPABLE = (BadSample, ValueError, FileNotFoundError)


# ---------------------------------------------------------------------- writing
def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def serialize_record(record):
    """A record dict (numpy) -> a serialized tf.train.Example."""
    image, masks = record["image"], record["masks"]                     # [H,W,3], [H,W,N]
    mask_pngs = [tf.io.encode_png(masks[:, :, i:i + 1].astype(np.uint8) * 255).numpy()
                 for i in range(masks.shape[-1])]
    attributes = np.ascontiguousarray(record["attributes"], dtype=np.uint8)  # [N, A]
    feature = {
        "image": _bytes([tf.io.encode_png(image).numpy()]),
        "masks": _bytes(mask_pngs),
        "class_ids": tf.train.Feature(int64_list=tf.train.Int64List(
            value=np.asarray(record["class_ids"], np.int64).tolist())),
        "attributes": _bytes([attributes.tobytes()]),
        "image_meta": tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(record["image_meta"], np.float32).tolist())),
        "num_instances": tf.train.Feature(int64_list=tf.train.Int64List(
            value=[masks.shape[-1]])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _iter_records(source, config):
    """Yields records from an H5RecordSource-like object (get/__len__) or a Dataset."""
    if not hasattr(source, "load_mask"):  # an H5RecordSource or similar
        for i in range(len(source)):
            yield source.get(i)
        return
    skipped = []
    for image_id in source.image_ids:
        try:
            yield build_record(source, config, image_id)
        except SKIPPABLE as e:
            skipped.append(f"{source.image_reference(image_id)}: {e}")
    if skipped:
        log.warning("write_tfrecords: skipped %d of %d images that failed to load; "
                    "first: %s", len(skipped), len(source.image_ids),
                    " | ".join(skipped[:5]))


def shard_paths(out_prefix, num_shards):
    return [f"{out_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def write_tfrecords(dataset_or_source, config, out_prefix, num_shards=1):
    """Writes the records of a prepared Dataset (built with build_record) or an H5
    source into ``num_shards`` files ``<out_prefix>-00000-of-0000N.tfrecord``, in order
    (contiguous blocks per shard). Returns the list of paths."""
    if int(num_shards) < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    source = dataset_or_source
    total = len(source.image_ids) if hasattr(source, "load_mask") else len(source)
    paths = shard_paths(str(out_prefix), int(num_shards))
    parent = os.path.dirname(str(out_prefix))
    if parent:
        tf.io.gfile.makedirs(parent)
    temps = [f"{p}.tmp-{os.getpid()}" for p in paths]
    writers = [tf.io.TFRecordWriter(t) for t in temps]
    try:
        for k, record in enumerate(tqdm(_iter_records(source, config), total=total,
                                        desc="TFRecords", unit="img")):
            shard = min(k * num_shards // max(total, 1), num_shards - 1)
            writers[shard].write(serialize_record(record))
        for w in writers:
            w.close()
        for tmp, path in zip(temps, paths):
            if "://" in path:  # object stores (gs://) have no os.replace: tf.io.gfile's rename
                tf.io.gfile.rename(tmp, path, overwrite=True)
            else:
                commit(tmp, path)  # local: atomic, umask permissions
    except BaseException:
        for w, tmp in zip(writers, temps):
            w.close()
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        raise
    return paths


# ---------------------------------------------------------------------- reading
def parse_record(serialized, config=None):
    """A serialized example -> record dict of tensors (in-graph, no Python per sample):
    image [H, W, 3] uint8, masks [H, W, N] bool, class_ids [N] int32,
    attributes [N, A] uint8, image_meta [META] float32.

    Without a config (see peek_record) the meta length and the attribute count are
    read from the record itself and no fixed image shape is asserted."""
    meta_size = None if config is None else int(config.IMAGE_META_SIZE)
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "masks": tf.io.VarLenFeature(tf.string),
        "class_ids": tf.io.VarLenFeature(tf.int64),
        "attributes": tf.io.FixedLenFeature([], tf.string),
        "image_meta": (tf.io.FixedLenFeature([meta_size], tf.float32) if meta_size
                       else tf.io.VarLenFeature(tf.float32)),
        "num_instances": tf.io.FixedLenFeature([], tf.int64),
    }
    ex = tf.io.parse_single_example(serialized, spec)
    image_meta = ex["image_meta"] if meta_size else tf.sparse.to_dense(ex["image_meta"])
    image = tf.io.decode_png(ex["image"], channels=3)                   # [H, W, 3]
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    pngs = tf.sparse.to_dense(ex["masks"], default_value=b"")           # [N]
    n = tf.shape(pngs)[0]

    def decode_all():
        return tf.map_fn(lambda b: tf.io.decode_png(b, channels=1)[:, :, 0], pngs,
                         fn_output_signature=tf.TensorSpec([None, None], tf.uint8))

    stacked = tf.cond(n > 0, decode_all, lambda: tf.zeros([0, h, w], tf.uint8))  # [N,H,W]
    masks = tf.transpose(stacked, [1, 2, 0]) > 0                        # [H, W, N]
    class_ids = tf.cast(tf.sparse.to_dense(ex["class_ids"]), tf.int32)  # [N]
    raw_attributes = tf.io.decode_raw(ex["attributes"], tf.uint8)       # [N * A]
    n_attr = int(getattr(config, "NUM_ATTRIBUTES", 0)) if config is not None else \
        tf.size(raw_attributes) // tf.maximum(n, 1)
    attributes = tf.reshape(raw_attributes, [n, n_attr])                # [N, A]
    if config is not None and config.IMAGE_RESIZE_MODE in ("square", "crop"):
        side_h, side_w = int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1])
        image = tf.ensure_shape(image, [side_h, side_w, 3])
        masks = tf.ensure_shape(masks, [side_h, side_w, None])
    return {"image": image, "image_meta": image_meta, "masks": masks,
            "class_ids": class_ids, "attributes": attributes}


def peek_record(file_pattern_or_list):
    """Shape facts of the first record (parsed by parse_record), or None when the files
    hold no record: {"height", "width", "num_classes", "num_attributes"} (num_attributes
    None when the record has no instance). ValueError when it cannot be parsed."""
    files = _expand(file_pattern_or_list)
    try:
        for serialized in tf.data.TFRecordDataset(files).take(1):
            record = parse_record(serialized)
            has_instances = int(tf.shape(record["masks"])[-1]) > 0
            return {"height": int(record["image"].shape[0]),
                    "width": int(record["image"].shape[1]),
                    "num_classes": int(record["image_meta"].shape[0]) - FIXED_SIZE,
                    "num_attributes": (int(record["attributes"].shape[1])
                                       if has_instances else None)}
    except (tf.errors.OpError, ValueError, IndexError) as e:
        text = str(getattr(e, "message", "") or e)
        text = text.split("}} ")[-1].split(" [Op:")[0].splitlines()[0][:160] if text \
            else type(e).__name__
        raise ValueError(f"The first record of {files[0]} cannot be read ({text}); "
                         "rewrite the shards.") from None
    return None


def write_text(path, text):
    """Writes a small text file next to shards, whole or not at all: atomically through
    mrcnn.fileio for a local path, under a temporary name then renamed through
    tf.io.gfile for a gs:// (or other remote) path. Returns path."""
    path = str(path)
    if "://" not in path:
        return atomic_write_text(path, text)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
    return path


def _expand(file_pattern_or_list):
    patterns = [file_pattern_or_list] if isinstance(file_pattern_or_list, (str, bytes,
                                                                           os.PathLike)) \
        else list(file_pattern_or_list)
    files = []
    for p in patterns:
        p = os.fspath(p)
        p = p.decode() if isinstance(p, bytes) else p
        matches = sorted(tf.io.gfile.glob(p)) if any(c in p for c in "*?[") else [p]
        files.extend(matches)
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {file_pattern_or_list!r}; "
                                "write them with mrcnn.data.tfrecords.write_tfrecords.")
    missing = [f for f in files if not tf.io.gfile.exists(f)]
    if missing:
        raise FileNotFoundError(f"TFRecord file {missing[0]} does not exist; check the "
                                "path or write it with write_tfrecords.")
    return files


def expand_files(file_pattern_or_list):
    """A glob pattern (local or gs://) or a list of paths/patterns -> sorted file list;
    FileNotFoundError naming the pattern when nothing matches."""
    return _expand(file_pattern_or_list)


def read_tfrecords(file_pattern_or_list, config, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True, shuffle_files=False, seed=None):
    """TFRecord files (a glob pattern, local or gs://, or a list) -> tf.data.Dataset of
    record dicts, in file order then write order; with shuffle_files, the files are
    reshuffled every pass and read interleaved (training)."""
    files = _expand(file_pattern_or_list)
    if shuffle_files and len(files) > 1:
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    else:
        ds = tf.data.TFRecordDataset(files)
    return ds.map(lambda s: parse_record(s, config), num_parallel_calls=num_parallel_calls,
                  deterministic=deterministic)

"""The fashion app's TFRecord shards: the <prefix>.meta.json beside them (labels and
the config they were written with), finding the shards of a pattern, and checking that
they fit the model before a run starts.

The record format itself (writing, parsing, peeking at the first record) is
mrcnn.data.tfrecords'.
"""
import json
import re

from fashion.errors import CLIError

META_SUFFIX = ".meta.json"
META_KEYS = ("dataset", "format", "class_names", "category_ids", "attribute_index_to_id",
             "attribute_names")
_SHARD_RE = re.compile(r"^(.*)-\d{5}-of-(\d{5})\.tfrecord$")


def meta_path_of(prefix):
    return f"{prefix}{META_SUFFIX}"


def write_records_meta(prefix, meta):
    """<prefix>.meta.json, written whole or not at all (local or gs://)."""
    from mrcnn.data.tfrecords import write_text
    return write_text(meta_path_of(prefix), json.dumps(meta, indent=2) + "\n")


def records_files(pattern, flag="--tfrecords"):
    """A shard pattern -> its sorted files; CLIError when nothing (or a non-shard) matches."""
    from mrcnn.data.tfrecords import expand_files
    try:
        files = expand_files(pattern)
    except FileNotFoundError:
        raise CLIError(f"{flag} {pattern} matches no file; write the shards with "
                       "`fashion.py tfrecords --out PREFIX` and pass 'PREFIX-*.tfrecord'.")
    odd = [f for f in files if not f.endswith(".tfrecord")]
    if odd:
        raise CLIError(f"{flag} {pattern} also matches {odd[0]}, which is not a TFRecord "
                       "shard; narrow the pattern to 'PREFIX-*.tfrecord'.")
    return files


def read_records_meta(files):
    """The <prefix>.meta.json beside the shards (from their names), or None."""
    import tensorflow as tf
    m = _SHARD_RE.match(str(files[0]))
    if not m:
        return None
    path = meta_path_of(m.group(1))
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    except ValueError as e:
        raise CLIError(f"{path} is not valid JSON ({e}); rewrite the records with "
                       "`fashion.py tfrecords` or delete it and pass --dataset.") from None


def peek_record(files):
    """Shape facts of the first record in files, or None when they hold no record:
    {"height", "width", "num_classes", "num_attributes" (None without instances)}."""
    from mrcnn.data.tfrecords import peek_record as peek
    try:
        return peek(files)
    except ValueError as e:
        raise CLIError(f"{str(e).rstrip('.')} with `fashion.py tfrecords`.") from None


def check_records(files, config, flag="--tfrecords"):
    """CLIError unless the first record fits the model's image shape, classes and
    attributes (so a mismatch stops the run before it starts)."""
    first = peek_record(files)
    if first is None:
        raise CLIError(f"{flag} files ({files[0]} ...) hold no records; rewrite them with "
                       "`fashion.py tfrecords`.")
    h, w = int(config.IMAGE_SHAPE[0]), int(config.IMAGE_SHAPE[1])
    fixed = config.IMAGE_RESIZE_MODE in ("square", "crop")
    shape_ok = (first["height"], first["width"]) == (h, w) if fixed else \
        first["height"] <= h and first["width"] <= w
    attrs_ok = first["num_attributes"] in (None, config.NUM_ATTRIBUTES)
    if shape_ok and attrs_ok and first["num_classes"] == config.NUM_CLASSES:
        return first
    have = (f"{first['height']}x{first['width']} images with {first['num_classes']} "
            "classes" + ("" if first["num_attributes"] is None else
                         f" and {first['num_attributes']} attributes"))
    raise CLIError(f"{files[0]} holds {have}, but the model is set up for {h}x{w} with "
                   f"{config.NUM_CLASSES} classes and {config.NUM_ATTRIBUTES} attributes; "
                   f"pass --image-size {max(first['height'], first['width'])} (and the "
                   "--set values the records were written with) or rewrite them with "
                   "`fashion.py tfrecords`.")

"""`tfrecords`: write a dataset split as sharded TFRecords (TPUs, multi-worker input).

The records hold each image resized exactly as `train` would resize it, its instance
masks (lossless PNG), class ids, attributes and image meta. Beside the shards a
`<prefix>.meta.json` file records the dataset's labels and the config the records were
written with, so `train --tfrecords` needs no --dataset and can check that the shapes fit.
"""
import argparse
import json
import logging
import os
import re

from fashion.commands.common import (CLIError, _plain, atomic_write_text, dataset_from_args,
                                     dataset_meta, h5_source)

log = logging.getLogger("fashion")

META_SUFFIX = ".meta.json"
META_KEYS = ("dataset", "format", "class_names", "category_ids", "attribute_index_to_id",
             "attribute_names")
_SHARD_RE = re.compile(r"^(.*)-\d{5}-of-(\d{5})\.tfrecord$")
EXAMPLES = """examples:
  # the demo set at 128 px in 2 shards
  python fashion/fashion.py tfrecords --dataset demo --subset train --out records/train \\
      --num-shards 2
  # iMaterialist 2019 at 1024 px straight to a bucket, one shard per ~200 images
  python fashion/fashion.py tfrecords --dataset /data/imat2019 --format imat2019 \\
      --subset train --out gs://my-bucket/imat/train --num-shards 200 --h5py-dataset
  # then train from them (any strategy; TPUs need them)
  python fashion/fashion.py train --tfrecords 'gs://my-bucket/imat/train-*.tfrecord' \\
      --weights coco --strategy tpu --tpu my-tpu
"""


def add_parser(subparsers, parents):
    from fashion.commands.train import add_data_args
    p = subparsers.add_parser(
        "tfrecords", parents=parents, help="write a split as sharded TFRecords (TPU, "
        "multi-worker)", epilog=EXAMPLES,
        description="Write one split of a dataset as <out>-NNNNN-of-NNNNN.tfrecord shards "
        "(images resized as train resizes them, masks included) and <out>.meta.json. "
        "Local paths and gs:// prefixes both work.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, required=True)
    p.add_argument("--subset", choices=("train", "val"), default="train")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="shard prefix, e.g. records/train or gs://bucket/imat/train")
    p.add_argument("--num-shards", type=int, default=1, metavar="N",
                   help="files to write (default 1); give at least one per training "
                   "worker, better several")
    p.add_argument("--backbone", default=None, help="as for train (does not change the "
                   "records; kept so the saved config matches)")
    p.add_argument("--h5py-dataset", action="store_true",
                   help="build (or reuse) train's H5 cache under <logs>/cache and write "
                   "the records from it")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="Config values that change records (e.g. IMAGE_RESIZE_MODE=square); "
                   "pass the same ones to train")
    p.set_defaults(func=run)
    return p


def run(args):
    from fashion.commands.train import build_config
    from fashion.config import config_values
    from mrcnn.data.tfrecords import write_tfrecords
    if args.num_shards < 1:
        raise CLIError(f"--num-shards {args.num_shards} must be at least 1.")
    ds, path, fmt = dataset_from_args(args, args.subset)
    if not len(ds.image_ids):
        raise CLIError(f"The {args.subset} split of {path} has no images; check --dataset, "
                       "--format, --limit and --val-fraction.")
    if args.num_shards > len(ds.image_ids):
        log.warning("%d shards for %d images: some shards will be empty.",
                    args.num_shards, len(ds.image_ids))
    config = build_config(args, ds, pretrained=True)
    source = h5_source(ds, config, args.logs, path, args.subset) if args.h5py_dataset else ds
    prefix = args.out
    paths = write_tfrecords(source, config, prefix, num_shards=args.num_shards)
    meta = {**dataset_meta(ds, path, fmt), "subset": args.subset,
            "num_images": len(ds.image_ids), "num_shards": args.num_shards,
            "shards": [os.path.basename(p) for p in paths], "config": config_values(config)}
    meta_path = write_records_meta(prefix, meta)
    _warn_other_shards(prefix, args.num_shards)
    pattern = f"{prefix}-*-of-{args.num_shards:05d}.tfrecord"
    for p in paths:
        print(p)
    print(f"Wrote {len(ds.image_ids)} images of the {args.subset} split into "
          f"{len(paths)} shard(s) at {int(config.IMAGE_MAX_DIM)} px; labels and config in "
          f"{meta_path}")
    flag = "--val-tfrecords" if args.subset == "val" else "--tfrecords"
    print(f"Train from them with: {flag} '{pattern}'")
    return {"paths": paths, "pattern": pattern, "meta": meta_path,
            "images": len(ds.image_ids)}


def _warn_other_shards(prefix, num_shards):
    import tensorflow as tf
    others = [p for p in tf.io.gfile.glob(f"{prefix}-*.tfrecord")
              if not p.endswith(f"-of-{num_shards:05d}.tfrecord")]
    if others:
        log.warning("%d older shard(s) with another shard count share the prefix %s (e.g. "
                    "%s); use the printed pattern, which leaves them out, or delete them.",
                    len(others), prefix, others[0])


# ---------------------------------------------------------------------- meta files
def meta_path_of(prefix):
    return f"{prefix}{META_SUFFIX}"


def write_records_meta(prefix, meta):
    """<prefix>.meta.json, atomically (local) or through tf.io.gfile (gs://)."""
    path = meta_path_of(prefix)
    text = json.dumps(meta, indent=2, default=_plain) + "\n"
    if "://" not in path:
        return atomic_write_text(path, text)
    import tensorflow as tf
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


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
    import tensorflow as tf
    try:
        for raw in tf.data.TFRecordDataset(files).take(1):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            image = tf.io.decode_png(feature["image"].bytes_list.value[0], channels=3)
            n = int(feature["num_instances"].int64_list.value[0])
            attr_bytes = len(feature["attributes"].bytes_list.value[0])
            return {"height": int(image.shape[0]), "width": int(image.shape[1]),
                    "num_classes": len(feature["image_meta"].float_list.value) - 12,
                    "num_attributes": attr_bytes // n if n else None}
    except (tf.errors.OpError, ValueError, IndexError) as e:
        text = str(getattr(e, "message", "") or e)
        text = text.split("}} ")[-1].split(" [Op:")[0].splitlines()[0][:160] if text \
            else type(e).__name__
        raise CLIError(f"The first record of {files[0]} cannot be read ({text}); "
                       "rewrite the shards with `fashion.py tfrecords`.") from None
    return None


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

"""`tfrecords`: write a dataset split as sharded TFRecords (TPUs, multi-worker input).

The command of the fashion CLI over the library's writer (mrcnn/data/tfrecords.py): it
adds the dataset flags and the labels file beside the shards.

The records hold each image resized exactly as `train` would resize it, its instance
masks (lossless PNG), class ids, attributes and image meta. Beside the shards a
`<prefix>.meta.json` file records the dataset's labels and the config the records were
written with, so `train --tfrecords` needs no --dataset and can check that the shapes fit.
"""
import argparse
import logging
import os

from fashion.cli_args import add_data_args, build_config
from fashion.data.sources import dataset_from_args, dataset_meta, h5_source
from fashion.errors import CLIError
from fashion.data.shards import write_records_meta

log = logging.getLogger("fashion")

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
    from mrcnn.config_io import config_values
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

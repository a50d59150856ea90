"""`train`: staged training on iMaterialist / Fashionpedia / DeepFashion2, annotation-tool
exports (COCO, VIA, labelme) or the demo set."""
import argparse
import logging
import os
import time

from fashion.cli_args import add_data_args, build_config, parse_sets
from fashion.data.sources import dataset_from_args, dataset_meta, h5_source
from fashion.errors import CLIError
from fashion.data.shards import META_KEYS, check_records, peek_record, read_records_meta, \
    records_files
from fashion.run import (CLASS_SIZED_LAYERS, find_best_checkpoint, find_last_checkpoint,
                          load_checkpoint, read_run_file, record_best, write_run_file)
from fashion.commands.reports import add_report_args, report_only, write_data_report
from fashion.commands.train_eval import add_train_eval_args, evaluation_callback, retention

log = logging.getLogger("fashion")

WEIGHTS_CHOICES = "coco|imagenet|last|best|none|PATH"
EXAMPLES = """examples:
  # the synthetic demo set, from scratch, 10 minutes on a CPU
  python fashion/fashion.py train --dataset demo --weights none --backbone resnet18 \\
      --image-size 128 --schedule all:50 --steps-per-epoch 20 --time-budget 10
  # iMaterialist 2019 from matterport's COCO weights: heads 40 epochs, then all to 120
  python fashion/fashion.py train --dataset /data/imat2019 --format imat2019 \\
      --weights coco --schedule heads:40,all:120 --h5py-dataset --augment
  # your own photos: a CVAT / Label Studio / Roboflow COCO export, a labelme folder or
  # VIA's via_region_data.json (format recognised; docs/data.md); look at the labels first
  python fashion/fashion.py train --dataset closet/ --weights coco --report-only
  # resume the newest run under logs/ at its last epoch
  python fashion/fashion.py train --dataset /data/imat2019 --format imat2019 --weights last
  # from TFRecords written by `fashion.py tfrecords` (needed on TPUs; bfloat16 there)
  python fashion/fashion.py train --tfrecords 'gs://my-bucket/imat/train-*.tfrecord' \
      --val-tfrecords 'gs://my-bucket/imat/val-*.tfrecord' --weights coco \
      --strategy tpu --tpu my-tpu
"""
TPU_NEEDS_RECORDS = (
    "TPUs read TFRecords, not Python datasets, so --strategy tpu needs --tfrecords "
    "PATTERN; write them first with `python fashion/fashion.py tfrecords --dataset PATH "
    "--format FORMAT --subset train --out gs://BUCKET/train --num-shards 64` and pass "
    "--tfrecords 'gs://BUCKET/train-*.tfrecord'.")


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "train", parents=parents, help="train a model (staged schedule, checkpoints)",
        description="Train Mask R-CNN with an attribute head. Checkpoints, the training "
        "curve (CSV + PNG), TensorBoard logs and fashion_run.json go to "
        "<logs>/fashionYYYYMMDDTHHMMSS/ (a new directory per run; --weights last resumes "
        "into its run's own).", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, required=False)
    p.add_argument("--tfrecords", default=None, metavar="PATTERN",
                   help="train from TFRecord shards written by `fashion.py tfrecords` "
                   "(local or gs:// glob, e.g. 'records/train-*.tfrecord'); --dataset is "
                   "then optional and only used for validation")
    p.add_argument("--val-tfrecords", default=None, metavar="PATTERN",
                   help="validate on TFRecord shards (default: the --dataset val split, "
                   "if --dataset is given)")
    p.add_argument("--weights", default="coco", metavar=WEIGHTS_CHOICES,
                   help="starting weights: matterport's COCO file (downloaded with its "
                   "checksum), the backbone's ImageNet file, the newest run under --logs "
                   "(last: resumed at its epoch; best: its best checkpoint, as a new "
                   "run), none (random; from-scratch defaults) or a file")
    p.add_argument("--backbone", default=None,
                   help="resnet18|resnet50|resnet101|efficientnet-b0..b7 (default: "
                   "resnet101 with --weights coco, resnet18 with --weights none up to "
                   "512 px, else resnet50)")
    p.add_argument("--schedule", default=None,
                   help="stages LAYERS:EPOCHS with cumulative epochs, e.g. heads:40,all:120 "
                   "(heads at --learning-rate, later backbone stages at a tenth; layers: "
                   "heads, 3+, 4+, 5+, all or a regex). Default: heads:20,all:60 with "
                   "pretrained weights, all:60 from scratch")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--images-per-gpu", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly after this many minutes (final checkpoint kept)")
    p.add_argument("--mixed-precision", nargs="?", const="mixed_float16", default=None,
                   choices=["auto", "mixed_float16", "mixed_bfloat16", "float32"],
                   help="auto (the default: bfloat16 on CPUs with avx512_bf16/AMX and "
                   "GPUs of compute capability >= 8, float16 on 7.x GPUs, else float32), "
                   "mixed_float16 (the value when the flag is bare), mixed_bfloat16 (the "
                   "default with --strategy tpu) or float32 (off)")
    p.add_argument("--h5py-dataset", action="store_true",
                   help="build (or reuse) an H5 cache of resized records under "
                   "<logs>/cache and train from it")
    p.add_argument("--augment", action="store_true",
                   help="imgaug flips, small affine and colour jitter (graph flip only "
                   "when imgaug is missing)")
    p.add_argument("--strategy", default="auto", metavar="NAME",
                   help="tf.distribute strategy: auto (default), default (one device), "
                   "mirrored, multiworker or tpu")
    p.add_argument("--tpu", default=None, metavar="NAME", help="TPU name for --strategy tpu")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any Config attribute, e.g. --set TOP_DOWN_PYRAMID_SIZE=128")
    add_train_eval_args(p)
    add_report_args(p)
    p.set_defaults(func=run)
    return p


def get_strategy(name, tpu=None):
    """mrcnn.distribute.get_strategy, its setup failures (no TPU, bad TF_CONFIG) as
    CLIError; an unknown name is its ValueError."""
    from mrcnn.distribute import get_strategy as library_strategy
    try:
        return library_strategy(name, tpu=tpu)
    except RuntimeError as e:  # mrcnn.distribute.StrategyError
        raise CLIError(str(e)) from None


def precision_policy(requested, tpu):
    """--mixed-precision -> the MIXED_PRECISION to train with ("float32" = off);
    None (the run's or the config's own) when not given, bfloat16 on TPUs."""
    if requested is None and tpu:
        return "mixed_bfloat16"
    return requested


def _augmentation(enabled, graph_only=False):
    if not enabled:
        return None
    if graph_only:
        log.info("TFRecord input: --augment uses in-graph random horizontal flips only.")
        return "flip"
    try:
        from mrcnn.data.imgaug_compat import import_imgaug
        iaa = import_imgaug()
    except ImportError:
        log.warning("imgaug is not installed; --augment uses random horizontal flips only.")
        return "flip"
    return iaa.Sequential([iaa.Fliplr(0.5),
                           iaa.Sometimes(0.3, iaa.Affine(scale=(0.9, 1.1),
                                                         translate_percent=(-0.05, 0.05))),
                           iaa.Sometimes(0.3, iaa.Multiply((0.8, 1.2)))])


def _start_weights(args):
    """(weights path or None, pretrained flag, saved run config for 'last')."""
    if args.weights == "none":
        return None, False, None
    if args.weights in ("last", "best"):
        path = (find_last_checkpoint if args.weights == "last" else find_best_checkpoint)(
            args.logs)
        run = read_run_file(path)
        return path, run is None or run["config"].get("TRAIN_BN") is not None, run
    if args.weights in ("coco", "imagenet"):
        return args.weights, True, None
    if not os.path.isfile(args.weights):
        raise CLIError(f"--weights {args.weights} is not coco, imagenet, last, best, none "
                       "or an existing file; check the path.")
    return args.weights, True, None


def _load_start_weights(model, start, args):
    from mrcnn.weights.download import get_weights
    if start is None:
        log.info("Starting from random weights (from-scratch defaults).")
        return
    if start == "coco":
        path = get_weights("coco")
        report = load_checkpoint(model, path, by_name=True, exclude=CLASS_SIZED_LAYERS)
    elif start == "imagenet":
        path = model.get_imagenet_weights()
        report = load_checkpoint(model, path, by_name=True)
    elif args.weights == "last":
        report = load_checkpoint(model, start, by_name=True)
        log.info("Resuming %s at epoch %d.", start, model.epoch)
        return
    elif args.weights == "best":  # the same labels: every layer, as a new run
        report = load_checkpoint(model, start, by_name=True)
        path = start
    else:
        report = load_checkpoint(model, start, by_name=True, exclude=CLASS_SIZED_LAYERS)
        path = start
    model.set_log_dir()  # starting weights, not a resumed run: a new run at epoch 0
    log.info("Loaded %d layers from %s.", len(report["loaded"]), path)
    if not report["loaded"]:
        raise CLIError(f"{path} holds no layer of a {model.config.BACKBONE} model; pass "
                       "weights trained with this backbone.")


# ---------------------------------------------------------------------- training data
class TrainingData:
    """What run() trains on: train/val inputs (Datasets or TFRecord patterns), the
    run's label meta, class/attribute counts and the val image count (None: unknown)."""

    def __init__(self, train, val, meta, num_classes, num_attributes, val_images,
                 train_files=None, val_files=None, image_size=None):
        self.train, self.val, self.meta = train, val, meta
        self.image_size = image_size  # the records' size when --image-size is left out
        self.num_classes, self.num_attributes = num_classes, num_attributes
        self.val_images = val_images
        self.train_files, self.val_files = train_files, val_files


def training_data(args, tpu):
    """--dataset (Python datasets) or --tfrecords (shard patterns) -> TrainingData."""
    if args.tfrecords:
        return _records_data(args, tpu)
    if not args.dataset:
        raise CLIError("train needs --dataset PATH|demo (with --format) or --tfrecords "
                       "PATTERN; see fashion.py train --help.")
    train_ds, path, fmt = dataset_from_args(args, "train")
    val_ds, _, _ = dataset_from_args(args, "val")
    if not len(train_ds.image_ids):
        raise CLIError(f"The train split of {path} has no images; check --dataset, "
                       "--format and --limit.")
    return TrainingData(train_ds, val_ds, dataset_meta(train_ds, path, fmt),
                        train_ds.num_classes, train_ds.num_attributes,
                        len(val_ds.image_ids))


def _records_data(args, tpu):
    files = records_files(args.tfrecords, "--tfrecords")
    saved = read_records_meta(files)
    image_size = args.image_size
    if not image_size:  # the size the records were written at
        first = None if saved else peek_record(files)
        image_size = int(saved["config"]["IMAGE_MAX_DIM"]) if saved else (
            max(first["height"], first["width"]) if first else None)
    val, val_images, val_files = None, 0, None
    if args.val_tfrecords:
        val_files = records_files(args.val_tfrecords, "--val-tfrecords")
        val_saved = read_records_meta(val_files)
        val, val_images = args.val_tfrecords, (val_saved or {}).get("num_images")
    if args.dataset:
        ds, path, fmt = dataset_from_args(args, "val", image_size=image_size)
        meta = dataset_meta(ds, path, fmt)
        if val is None and tpu:
            log.info("TPU: validating needs --val-tfrecords; training without validation.")
        elif val is None:
            val, val_images = ds, len(ds.image_ids)
    elif saved:
        meta = {k: saved.get(k) for k in META_KEYS}
    else:
        raise CLIError(f"--tfrecords {args.tfrecords} has no .meta.json beside its shards "
                       "(`fashion.py tfrecords` writes one); pass --dataset and --format so "
                       "the run knows its classes.")
    if saved and list(saved["class_names"]) != list(meta["class_names"]):
        raise CLIError(f"--tfrecords {args.tfrecords} were written with "
                       f"{len(saved['class_names'])} classes of {saved.get('format')} but "
                       f"--dataset has {len(meta['class_names'])} of {meta['format']}; pass "
                       "the dataset the records were written from.")
    return TrainingData(args.tfrecords, val, meta, len(meta["class_names"]),
                        len(meta["attribute_index_to_id"]), val_images, files, val_files,
                        image_size)


def _sources(args, config, data, strategy):
    """--h5py-dataset: H5 caches of the Python datasets (TFRecord patterns stay).
    Non-chief workers build theirs in a local temp directory, not under --logs."""
    if not args.h5py_dataset:
        return data.train, data.val
    import tempfile

    from mrcnn.distribute import is_chief, worker_index
    cache_dir = None
    if not is_chief(strategy):
        cache_dir = os.path.join(tempfile.gettempdir(),
                                 f"fashion_cache_worker{worker_index(strategy)[0]}")
    path = args.dataset or "records"
    return tuple(h5_source(d, config, args.logs, path, subset, cache_dir)
                 if hasattr(d, "load_mask") else d
                 for subset, d in (("train", data.train), ("val", data.val)))


# With --time-budget, the val loss after each epoch takes at most this share of the
# epoch's steps (unless VALIDATION_STEPS is --set): 50 val steps after 100 training
# steps were a fifth of a 20-minute run's time.
BUDGET_VALIDATION_SHARE = 0.1


def _validation(config, data, args=None):
    """Drops validation when the val split is smaller than a batch; caps its steps (to
    the split's size, and with --time-budget to a tenth of STEPS_PER_EPOCH)."""
    if data.val is None:
        return None
    if data.val_images is not None and data.val_images < config.BATCH_SIZE:
        log.warning("The val split has %d image(s); training without validation.",
                    data.val_images)
        return None
    if data.val_images:
        config.VALIDATION_STEPS = max(1, min(config.VALIDATION_STEPS,
                                             data.val_images // config.BATCH_SIZE))
    budgeted = args is not None and getattr(args, "time_budget", None) is not None
    if budgeted and "VALIDATION_STEPS" not in parse_sets(getattr(args, "set", None)):
        cap = max(1, int(config.STEPS_PER_EPOCH * BUDGET_VALIDATION_SHARE))
        if config.VALIDATION_STEPS > cap:
            log.info("Val loss on %d steps per epoch, not %d (--time-budget; --set "
                     "VALIDATION_STEPS=N to choose).", cap, config.VALIDATION_STEPS)
            config.VALIDATION_STEPS = cap
    return data.val


# ---------------------------------------------------------------------- run
def run(args):
    if args.strategy == "tpu" and not args.tfrecords:
        raise CLIError(TPU_NEEDS_RECORDS)
    from mrcnn import distribute
    from mrcnn.model import MaskRCNN
    from mrcnn.training.precision import describe_precision
    from mrcnn.training.trainer import parse_schedule
    strategy = get_strategy(args.strategy, args.tpu)  # first: before other TF work
    tpu = distribute.is_tpu(strategy)
    if tpu and not args.tfrecords:
        raise CLIError(TPU_NEEDS_RECORDS)
    start, pretrained, saved = _start_weights(args)
    data = training_data(args, tpu)
    eval_data = data.val  # a Python val split (evaluated while training) or records
    given = {"mixed_precision": precision_policy(args.mixed_precision, tpu),
             "image_size": args.image_size or data.image_size}
    if start == "imagenet" and not args.backbone:
        given["backbone"] = "resnet50"
    config = build_config(args, data, pretrained, saved,
                          weights_path=start if start not in (None, "coco", "imagenet") else None,
                          **given)
    distribute.configure_for_strategy(config, strategy)
    if data.train_files:
        check_records(data.train_files, config, "--tfrecords")
        if data.val_files:
            check_records(data.val_files, config, "--val-tfrecords")
    if args.report_only:
        return report_only(args, config, data,
                           _augmentation(args.augment, bool(args.tfrecords) or tpu))
    schedule = args.schedule or (saved or {}).get("schedule") or (
        "heads:20,all:60" if pretrained else "all:60")
    stages = parse_schedule(schedule, config.LEARNING_RATE)
    val = _validation(config, data, args)
    evaluation = evaluation_callback(args, config, eval_data, data.meta)
    keep_last, keep_best = retention(args, evaluation is not None, val is not None,
                                     bool(data.meta.get("attribute_index_to_id")))
    model = MaskRCNN("training", config, args.logs, strategy=strategy)
    print(f"Precision: {describe_precision(config.MIXED_PRECISION)}")
    _load_start_weights(model, start, args)
    if distribute.is_chief(strategy):  # other workers of a multi-worker run write nothing
        model.create_log_dir()  # a new run never reuses another run's directory
        write_run_file(model.log_dir, config, data.meta,
                       {"schedule": schedule, "weights": args.weights,
                        "tfrecords": args.tfrecords, "val_tfrecords": args.val_tfrecords,
                        "precision": model.precision})
    data.val = val
    train_src, val_src = _sources(args, config, data, strategy)
    augmentation = _augmentation(args.augment, graph_only=bool(args.tfrecords) or tpu)
    if distribute.is_chief(strategy):  # labels.png, train_batches.png, report.html
        write_data_report(model.log_dir, config, data.train, train_src, augmentation,
                          data.meta["class_names"], again=args.weights != "last")
    return _train_stages(args, model, stages, (train_src, val_src), augmentation,
                         distribute.is_chief(strategy),
                         {"keep_last": keep_last, "keep_best": keep_best,
                          "evaluation": evaluation, "patience": args.patience or None})


def _train_stages(args, model, stages, sources, augmentation, chief=True, keep=None):
    train_src, val_src = sources
    meter = throughput_meter(model.config.BATCH_SIZE)
    # --time-budget is the whole command: every stage counts from the command's start
    t0 = getattr(args, "started", None) or time.time()
    trained = False
    for layers, lr, epochs in stages:
        if epochs <= model.epoch:
            continue
        # a spent budget skips later stages; the first one takes at least one step, so
        # the run always ends with a checkpoint
        if trained and args.time_budget is not None \
                and time.time() - t0 >= args.time_budget * 60:
            break
        trained = True
        log.info("Stage %s: lr %g up to epoch %d", layers, lr, epochs)
        model.train(train_src, val_src, learning_rate=lr, epochs=epochs, layers=layers,
                    augmentation=augmentation, custom_callbacks=[meter],
                    time_budget=args.time_budget, budget_start=t0,
                    verbose=2 if args.quiet else 1, **(keep or {}))
        if chief:
            record_best(model.log_dir)
        if getattr(model, "time_budget_exhausted", False):
            log.info("Time budget of %g minutes used up; stopped cleanly.", args.time_budget)
            break
        if getattr(model, "stopped_early", False):
            break
        if getattr(model, "stopped_by_signal", False):
            log.warning("Stopped by a signal at epoch %d; its checkpoint is written, "
                        "resume with --weights last.", model.epoch)
            break
    checkpoint = model.checkpoint_path.format(epoch=model.epoch)
    rate = meter.images_per_second()
    print(f"Trained to epoch {model.epoch} in {(time.time() - t0) / 60:.1f} min; "
          f"{meter.steps} steps, throughput {rate:.2f} images/s")
    if chief:
        print(f"Checkpoint: {checkpoint}")
        best = record_best(model.log_dir)
        if best:
            print(f"Best checkpoint: {best['path']} ({best['metric']} {best['value']:.4f} "
                  f"at epoch {best['epoch']})")
        print(f"Training curve: {os.path.join(model.log_dir, 'training_curve.png')}")
    else:
        print("Checkpoint and training curve: written by the chief worker (worker 0).")
    return {"checkpoint": checkpoint if chief else None,
            "log_dir": model.log_dir if chief else None, "epoch": model.epoch,
            "images_per_second": rate, "steps": meter.steps, "chief": chief}


def throughput_meter(batch_size):
    """A Keras callback counting train steps and their time; the first step of each
    stage (tracing, compilation) is left out of images_per_second()."""
    import keras

    class Throughput(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.timed_steps, self.seconds = 0, 0, 0.0
            self._t, self._first = None, True

        def on_train_begin(self, logs=None):
            self._first = True

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self._first:
                self._first = False
                return
            self.timed_steps += 1
            self.seconds += time.perf_counter() - self._t

        def images_per_second(self):
            return (self.timed_steps * batch_size / self.seconds) if self.timed_steps else 0.0

    return Throughput()

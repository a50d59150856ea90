"""`train`: staged training on iMaterialist / Fashionpedia / DeepFashion2 or the demo set."""
import argparse
import logging
import os
import time

from fashion.commands.common import (CLASS_SIZED_LAYERS, FORMATS, CLIError, dataset_from_args,
                                     dataset_meta, find_last_checkpoint, load_checkpoint,
                                     parse_sets, read_run_file, write_run_file)

log = logging.getLogger("fashion")

WEIGHTS_CHOICES = "coco|imagenet|last|none|PATH"
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
EXAMPLES = """examples:
  # the synthetic demo set, from scratch, 10 minutes on a CPU
  python fashion/fashion.py train --dataset demo --weights none --backbone resnet18 \\
      --image-size 128 --schedule all:50 --steps-per-epoch 20 --time-budget 10
  # iMaterialist 2019 from matterport's COCO weights: heads 40 epochs, then all to 120
  python fashion/fashion.py train --dataset /data/imat2019 --format imat2019 \\
      --weights coco --schedule heads:40,all:120 --h5py-dataset --augment
  # resume the newest run under logs/ at its last epoch
  python fashion/fashion.py train --dataset /data/imat2019 --format imat2019 --weights last
"""


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "train", parents=parents, help="train a model (staged schedule, checkpoints)",
        description="Train Mask R-CNN with an attribute head. Checkpoints, the training "
        "curve (CSV + PNG), TensorBoard logs and fashion_run.json go to "
        "<logs>/fashionYYYYMMDDTHHMM/.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, required=True)
    p.add_argument("--weights", default="coco", metavar=WEIGHTS_CHOICES,
                   help="starting weights: matterport's COCO file (downloaded with its "
                   "checksum), the backbone's ImageNet file, the newest run under --logs "
                   "(resumed at its epoch), none (random; from-scratch defaults) or a file")
    p.add_argument("--backbone", default=None,
                   help="resnet18|resnet50|resnet101|efficientnet-b0..b7 (default: "
                   "resnet101 with --weights coco, else resnet50)")
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
                   choices=["mixed_float16", "mixed_bfloat16"])
    p.add_argument("--h5py-dataset", action="store_true",
                   help="build (or reuse) an H5 cache of resized records under "
                   "<logs>/cache and train from it")
    p.add_argument("--augment", action="store_true",
                   help="imgaug flips, small affine and colour jitter (graph flip only "
                   "when imgaug is missing)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    p.add_argument("--tpu", default=None, metavar="NAME", help="TPU name for --strategy tpu")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any Config attribute, e.g. --set TOP_DOWN_PYRAMID_SIZE=128")
    p.set_defaults(func=run)
    return p


def add_data_args(p, required):
    p.add_argument("--dataset", required=required, metavar="PATH|demo",
                   help="dataset directory (or Fashionpedia JSON), or 'demo' for the "
                   "bundled synthetic set")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="dataset format (not needed with --dataset demo)")
    p.add_argument("--image-dir", default=None, help="Fashionpedia images (default: "
                   "next to the annotations)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="iMaterialist: share of train.csv held out as the val split")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input side, a multiple of 64 (default 1024; 128 for demo)")
    p.add_argument("--demo-dir", default=None, help="where --dataset demo is generated "
                   "(default data/demo)")
    p.add_argument("--demo-images", type=int, default=200)


def get_strategy(name, tpu=None):
    """mrcnn.distribute.get_strategy when present; no strategy for auto/default else."""
    try:
        from mrcnn.distribute import get_strategy as library_strategy
    except ImportError:
        if name in ("auto", "default"):
            return None
        raise CLIError(f"--strategy {name} needs mrcnn/distribute.py, which this checkout "
                       "lacks; use --strategy default.") from None
    try:
        return library_strategy(name, tpu=tpu)
    except RuntimeError as e:  # mrcnn.distribute.StrategyError: no TPU, bad TF_CONFIG
        raise CLIError(str(e)) from None


def _augmentation(enabled):
    if not enabled:
        return None
    try:
        from mrcnn.compat import import_imgaug
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
    if args.weights == "last":
        path = find_last_checkpoint(args.logs)
        run = read_run_file(path)
        return path, run is None or run["config"].get("TRAIN_BN") is not None, run
    if args.weights in ("coco", "imagenet"):
        return args.weights, True, None
    if not os.path.isfile(args.weights):
        raise CLIError(f"--weights {args.weights} is not coco, imagenet, last, none or an "
                       "existing file; check the path.")
    return args.weights, True, None


def build_config(args, train_ds, pretrained, saved=None):
    from fashion.config import make_config, values_to_overrides
    values = values_to_overrides(saved["config"]) if saved else {}
    backbone = args.backbone or values.pop("BACKBONE", None) or (
        "resnet101" if args.weights == "coco" else "resnet50")
    values.pop("BACKBONE", None)
    size = args.image_size or values.get("IMAGE_MAX_DIM") or (
        128 if args.dataset == "demo" else 1024)
    if args.image_size:
        values.pop("IMAGE_MAX_DIM", None), values.pop("IMAGE_MIN_DIM", None)
    for key, value in (("STEPS_PER_EPOCH", args.steps_per_epoch),
                       ("IMAGES_PER_GPU", args.images_per_gpu),
                       ("LEARNING_RATE", args.learning_rate),
                       ("MIXED_PRECISION", args.mixed_precision)):
        if value is not None:
            values[key] = value
    values.update(parse_sets(args.set))
    values.pop("NUM_CLASSES", None), values.pop("NUM_ATTRIBUTES", None)
    return make_config(size, train_ds.num_classes, train_ds.num_attributes, backbone,
                       pretrained=pretrained, **values)


def _load_start_weights(model, start, args):
    from mrcnn.weights import get_weights
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
    else:
        report = load_checkpoint(model, start, by_name=True, exclude=CLASS_SIZED_LAYERS)
        path = start
    model.set_log_dir()  # starting weights, not a resumed run: a new run at epoch 0
    log.info("Loaded %d layers from %s.", len(report["loaded"]), path)
    if not report["loaded"]:
        raise CLIError(f"{path} holds no layer of a {model.config.BACKBONE} model; pass "
                       "weights trained with this backbone.")


def _sources(args, config, train_ds, val_ds):
    if not args.h5py_dataset:
        return train_ds, val_ds
    from mrcnn.data.h5cache import H5RecordSource, build_h5_cache
    out = []
    for subset, ds in (("train", train_ds), ("val", val_ds)):
        if ds is None:
            out.append(None)
            continue
        name = f"{os.path.basename(os.path.normpath(args.dataset))}_{subset}_" \
               f"{int(config.IMAGE_MAX_DIM)}.h5"
        path = build_h5_cache(ds, config, os.path.join(args.logs, "cache", name))
        out.append(H5RecordSource(path, config, dataset=ds))
    return tuple(out)


def run(args):
    from mrcnn.model import MaskRCNN
    from mrcnn.training import parse_schedule
    start, pretrained, saved = _start_weights(args)
    if start == "imagenet" and not args.backbone:
        args.backbone = "resnet50"
    train_ds, path, fmt = dataset_from_args(args, "train")
    val_ds, _, _ = dataset_from_args(args, "val")
    if not len(train_ds.image_ids):
        raise CLIError(f"The train split of {path} has no images; check --dataset, "
                       "--format and --limit.")
    config = build_config(args, train_ds, pretrained, saved)
    schedule = args.schedule or (saved or {}).get("schedule") or (
        "heads:20,all:60" if pretrained else "all:60")
    stages = parse_schedule(schedule, config.LEARNING_RATE)
    if len(val_ds.image_ids) < config.BATCH_SIZE:
        log.warning("The val split has %d image(s); training without validation.",
                    len(val_ds.image_ids))
        val_ds = None
    else:
        config.VALIDATION_STEPS = max(1, min(config.VALIDATION_STEPS,
                                             len(val_ds.image_ids) // config.BATCH_SIZE))
    strategy = get_strategy(args.strategy, args.tpu)
    if strategy is not None:
        config.GPU_COUNT = strategy.num_replicas_in_sync
        config.BATCH_SIZE = config.IMAGES_PER_GPU * config.GPU_COUNT
    model = MaskRCNN("training", config, args.logs, strategy=strategy)
    _load_start_weights(model, start, args)
    os.makedirs(model.log_dir, exist_ok=True)
    write_run_file(model.log_dir, config, dataset_meta(train_ds, path, fmt),
                   {"schedule": schedule, "weights": args.weights})
    train_src, val_src = _sources(args, config, train_ds, val_ds)
    augmentation = _augmentation(args.augment)
    meter = throughput_meter(config.BATCH_SIZE)
    t0 = time.time()
    for layers, lr, epochs in stages:
        if epochs <= model.epoch:
            continue
        budget = None
        if args.time_budget is not None:
            budget = args.time_budget - (time.time() - t0) / 60
            if budget <= 0:
                break
        log.info("Stage %s: lr %g up to epoch %d", layers, lr, epochs)
        model.train(train_src, val_src, learning_rate=lr, epochs=epochs, layers=layers,
                    augmentation=augmentation, custom_callbacks=[meter],
                    time_budget=budget, verbose=2 if args.quiet else 1)
        if getattr(model, "time_budget_exhausted", False):
            log.info("Time budget of %g minutes used up; stopped cleanly.", args.time_budget)
            break
    checkpoint = model.checkpoint_path.format(epoch=model.epoch)
    rate = meter.images_per_second()
    print(f"Trained to epoch {model.epoch} in {(time.time() - t0) / 60:.1f} min; "
          f"{meter.steps} steps, throughput {rate:.2f} images/s")
    print(f"Checkpoint: {checkpoint}")
    print(f"Training curve: {os.path.join(model.log_dir, 'training_curve.png')}")
    return {"checkpoint": checkpoint, "log_dir": model.log_dir, "epoch": model.epoch,
            "images_per_second": rate, "steps": meter.steps}


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

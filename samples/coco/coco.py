"""Mask R-CNN on MS COCO or any COCO-format dataset, with matterport's coco.py commands.

    # train from matterport's COCO weights (heads, then 4+, then all)
    python samples/coco/coco.py train --dataset /data/coco --year 2017 --model coco
    # continue the newest run under --logs
    python samples/coco/coco.py train --dataset /data/coco --year 2017 --model last
    # COCO AP (segm and bbox) on the first 500 val images
    python samples/coco/coco.py evaluate --dataset /data/coco --year 2017 --model last --limit 500
    # any COCO-format dataset
    python samples/coco/coco.py train --annotations train.json --images imgs/ \\
        --val-annotations val.json --val-images val_imgs/ --model imagenet
    python samples/coco/coco.py evaluate --annotations val.json --images val_imgs/ --model PATH

COCO layout: DIR/annotations/instances_{subset}{year}.json with images in
DIR/{subset}{year}/ (subset "train" for training, "val" for validation and evaluation).
Training and evaluation run on the library's code only (MaskRCNN.train,
mrcnn.evaluation); masks are decoded by mrcnn.data.annotations. Each training run
writes coco_run.json (its config) beside its checkpoints so `evaluate --model last`
rebuilds the same model.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mrcnn import utils  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.config_io import (config_values, parse_overrides,  # noqa: E402
                                 size_settings, values_to_overrides)
from mrcnn.data.annotations import clean_polygons, segmentation_to_mask  # noqa: E402
from mrcnn.fileio import write_json  # noqa: E402

log = logging.getLogger("coco")

DEFAULT_YEAR = "2017"
RUN_FILE = "coco_run.json"
# Head layers whose shapes depend on the number of classes.
CLASS_SIZED_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# matterport's schedule: (layers, learning-rate factor, cumulative epochs).
MATTERPORT_STAGES = [("heads", 1.0, 40), ("4+", 1.0, 120), ("all", 0.1, 160)]


class CLIError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2."""


def parse_sets(items):
    """--set KEY=VALUE items -> Config overrides (values parsed as JSON)."""
    try:
        return parse_overrides(items, "--set")
    except ValueError as e:
        raise CLIError(str(e)) from None


class CocoConfig(Config):
    """matterport's COCO configuration (ResNet101, 80 classes + background)."""
    NAME = "coco"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 80
    BACKBONE = "resnet101"


############################################################
#  Dataset
############################################################

class CocoDataset(utils.Dataset):
    """COCO-format instances: polygons, RLE (compressed or not) and crowd regions.

    Crowd annotations are returned by load_mask with a negative class id (matterport's
    convention): training keeps anchors and ROIs that touch them out of the negatives.
    """

    def load_coco(self, dataset_dir=None, subset="train", year=DEFAULT_YEAR, class_ids=None,
                  class_map=None, return_coco=False, annotations=None, images=None,
                  limit=None):
        """Loads a COCO subset, or any COCO-format file given as annotations + images.

        dataset_dir/subset/year: the COCO layout (see the module docstring).
        annotations, images: a COCO-format JSON file and its image directory (instead).
        class_ids: load only these category ids (default: all). limit: first N images.
        return_coco: also return the pycocotools COCO object.
        """
        ann_path, image_dir = coco_paths(dataset_dir, subset, year, annotations, images)
        coco = _read_coco(ann_path)
        if class_ids:  # only images holding one of these categories
            image_ids = sorted({i for c in class_ids for i in coco.getImgIds(catIds=[c])})
        else:
            class_ids, image_ids = sorted(coco.getCatIds()), sorted(coco.imgs)
        for c in class_ids:
            self.add_class("coco", c, coco.loadCats(c)[0]["name"])
        for i in image_ids[:limit]:
            img = coco.imgs[i]
            self.add_image("coco", image_id=i, path=str(Path(image_dir) / img["file_name"]),
                           width=int(img["width"]), height=int(img["height"]),
                           annotations=coco.loadAnns(coco.getAnnIds(
                               imgIds=[i], catIds=class_ids, iscrowd=None)))
        self.annotation_file = str(ann_path)
        if return_coco:
            return coco
        return None

    def load_mask(self, image_id):
        """-> masks [H, W, N] bool, class_ids [N] int32 (negative for crowd regions)."""
        info = self.image_info[image_id]
        if info["source"] != "coco":
            return super().load_mask(image_id)
        h, w = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"coco.{ann['category_id']}")
            m = ann_to_mask(ann, h, w, f"{self.image_reference(image_id)} annotation "
                                       f"{ann.get('id')}")
            if m is None or not m.any():  # tiny or empty objects are skipped
                continue
            if ann.get("iscrowd"):
                class_id *= -1
                if m.shape != (h, w):  # crowd boxes can exceed the image: cover it all
                    m = np.ones([h, w], dtype=bool)
            masks.append(m)
            class_ids.append(class_id)
        if not masks:
            return np.zeros([h, w, 0], dtype=bool), np.zeros([0], np.int32)
        return np.stack(masks, axis=2), np.array(class_ids, dtype=np.int32)

    def category_ids(self):
        """Internal class id -> COCO category id (index 0, the background, is -1)."""
        return [-1] + [int(c["id"]) for c in self.class_info[1:]]


def coco_paths(dataset_dir, subset, year, annotations=None, images=None):
    """(annotation JSON path, image directory) of the COCO layout or explicit files."""
    if annotations:
        ann = Path(annotations)
        image_dir = Path(images) if images else ann.parent
    else:
        if not dataset_dir:
            raise ValueError("Pass --dataset DIR (COCO layout) or --annotations JSON "
                             "--images DIR (any COCO-format dataset).")
        ann = Path(dataset_dir) / "annotations" / f"instances_{subset}{year}.json"
        image_dir = Path(images) if images else Path(dataset_dir) / f"{subset}{year}"
    if not ann.is_file():
        raise FileNotFoundError(f"Annotation file {ann} does not exist; COCO keeps them in "
                                "DIR/annotations/instances_{subset}{year}.json (or pass "
                                "--annotations).")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Image directory {image_dir} does not exist; COCO keeps "
                                "images in DIR/{subset}{year}/ (or pass --images).")
    return ann, image_dir


def _read_coco(path):
    """pycocotools COCO of a file, with one clear error for files that are not COCO."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); pass a COCO-format file.") from None
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(f"{path} lacks the key(s) {missing}; a COCO-format file needs "
                         "'images', 'annotations' and 'categories'.")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def ann_to_mask(ann, height, width, where=""):
    """A COCO annotation's segmentation -> [height, width] bool mask (an RLE keeps its
    own size; a crowd region may differ), or None when it has no usable polygon."""
    try:
        return segmentation_to_mask(ann.get("segmentation"), height, width)
    except ValueError as e:
        log.warning("%s: %s; the annotation is skipped.", where, e)
        return None


############################################################
#  Configuration and weights
############################################################

def make_coco_config(num_classes, backbone=None, image_size=None, inference=False,
                     overrides=None):
    """CocoConfig with the dataset's class count; image_size (a multiple of 64) scales
    anchors, ROI counts and mask sizes (mrcnn.config_io.size_settings)."""
    values = {"NUM_CLASSES": int(num_classes)}
    if backbone:
        values["BACKBONE"] = backbone
    if image_size:
        values.update(size_settings(image_size, what="--image-size"))
    if inference:
        values.update(IMAGES_PER_GPU=1, GPU_COUNT=1, DETECTION_MIN_CONFIDENCE=0.0)
    values.update(overrides or {})
    unknown = [k for k in values if not hasattr(Config, k)]
    if unknown:
        raise ValueError(f"Unknown config attribute(s) {unknown}; use Config names such "
                         "as STEPS_PER_EPOCH or IMAGE_MAX_DIM.")
    return type("CocoRunConfig", (CocoConfig,), values)()


def resolve_model(model_arg, logs):
    """--model: coco | imagenet | last | none | PATH -> (weights path or None, kind)."""
    from mrcnn.weights.download import WeightsUnavailable, get_weights
    try:
        if model_arg == "coco":
            return get_weights("coco"), "coco"
        if model_arg == "imagenet":
            return get_weights("resnet50-imagenet"), "imagenet"
    except WeightsUnavailable as e:
        raise CLIError(str(e)) from None
    if model_arg == "none":
        return None, "none"
    if model_arg == "last":
        from mrcnn.model import find_last
        return find_last(logs, "coco"), "last"
    if not os.path.isfile(model_arg):
        raise CLIError(f"--model {model_arg} is not coco, imagenet, last, none or an "
                       "existing weights file; check the path.")
    return model_arg, "path"


def read_run_config(weights):
    """Config values saved by `train` beside a checkpoint (coco_run.json), or {}."""
    if not weights:
        return {}
    path = Path(weights).resolve().parent / RUN_FILE
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))["config"]
    except (ValueError, KeyError) as e:
        raise CLIError(f"{path} is unreadable ({e}); delete it and pass --backbone, "
                       "--image-size and --set instead.") from None
    values = values_to_overrides(values)
    values.pop("NAME", None)
    return values


def load_model_weights(model, weights, kind):
    """Loads starting weights by name; class-sized heads are left out when they differ."""
    if weights is None:
        return
    # matterport's COCO heads only fit 81 classes; our own checkpoints load whole.
    exclude = CLASS_SIZED_LAYERS if kind == "coco" and model.config.NUM_CLASSES != 81 \
        else None
    try:
        report = model.load_weights(weights, by_name=True, exclude=exclude)
    except ValueError as e:
        raise CLIError(f"{weights} does not fit a {model.config.BACKBONE} model with "
                       f"{model.config.NUM_CLASSES} classes ({str(e).split(';')[0]}); "
                       "pass the --backbone and --set values it was trained with.") from None
    if not report["loaded"]:
        raise CLIError(f"{weights} holds no layer of a {model.config.BACKBONE} model; "
                       "pass weights of this backbone.")
    print(f"Loaded {len(report['loaded'])} layers from {weights}")


############################################################
#  Commands
############################################################

def load_dataset(args, subset, annotations=None, images=None, limit=None):
    """A prepared CocoDataset of one subset (COCO layout) or of explicit files."""
    ds = CocoDataset()
    try:
        ds.load_coco(args.dataset, subset, args.year, annotations=annotations,
                     images=images, limit=limit)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    ds.prepare()
    if not len(ds.image_ids):
        raise CLIError(f"{ds.annotation_file} has no images to use; check --limit and the "
                       "file's 'images' list.")
    return ds


def train(args):
    """matterport's three stages (heads, 4+, all) or --schedule, via MaskRCNN.train."""
    from mrcnn.model import MaskRCNN
    from mrcnn.training.trainer import parse_schedule
    train_ds = load_dataset(args, "train", args.annotations, args.images, args.limit)
    val_ds = None
    if args.val_annotations or not args.annotations:
        val_ds = load_dataset(args, "val", args.val_annotations, args.val_images,
                              args.val_limit)
    weights, kind = resolve_model(args.model, args.logs)
    saved = read_run_config(weights) if kind == "last" else {}
    saved.update(parse_sets(args.set))
    config = make_coco_config(train_ds.num_classes, args.backbone or saved.pop(
        "BACKBONE", None), args.image_size, overrides=saved)
    model = MaskRCNN("training", config, args.logs)
    load_model_weights(model, weights, kind)
    model.create_log_dir()
    write_json(os.path.join(model.log_dir, RUN_FILE),
               {"config": config_values(config), "annotations": train_ds.annotation_file,
                "class_names": list(train_ds.class_names),
                "category_ids": train_ds.category_ids()})
    lr = config.LEARNING_RATE
    stages = parse_schedule(args.schedule, lr) if args.schedule else \
        [(layers, lr * f, epochs) for layers, f, epochs in MATTERPORT_STAGES]
    augmentation = None
    if not args.no_augment:  # matterport: flip half of the images left-right
        from mrcnn.data.imgaug_compat import import_imgaug
        augmentation = import_imgaug().Fliplr(0.5)
    t0 = time.time()
    for layers, stage_lr, epochs in stages:
        print(f"Training {layers} up to epoch {epochs} at learning rate {stage_lr:g}")
        model.train(train_ds, val_ds, learning_rate=stage_lr, epochs=epochs,
                    layers=layers, augmentation=augmentation,
                    verbose=2 if args.quiet else 1)
    checkpoint = model.checkpoint_path.format(epoch=model.epoch)
    print(f"Trained to epoch {model.epoch} in {(time.time() - t0) / 60:.1f} min; "
          f"checkpoint {checkpoint}")
    return {"checkpoint": checkpoint, "log_dir": model.log_dir}


def detect_records(model, dataset, progress=True):
    """Detections of every image as COCO prediction dicts (image and category ids of the
    annotation file); returns (records, seconds per image)."""
    from tqdm import tqdm

    from mrcnn.evaluation.predictions import detection_to_records
    category_of = dataset.category_ids()
    records, t0 = [], time.time()
    for image_id in tqdm(dataset.image_ids, desc="detect", disable=not progress):
        info = dataset.image_info[image_id]
        result = model.detect([dataset.load_image(image_id)])[0]
        records += detection_to_records(info["id"], os.path.basename(info["path"]), result,
                                        class_id_to_category_id=category_of,
                                        first_id=len(records) + 1)
    return records, (time.time() - t0) / max(len(dataset.image_ids), 1)


def evaluate(args):
    """COCO segm and bbox AP (mrcnn.evaluation.evaluate_coco) on the first --limit images."""
    from mrcnn.evaluation import evaluate_coco
    from mrcnn.evaluation.plots import write_per_class_table
    from mrcnn.evaluation.predictions import PredictionWriter
    from mrcnn.model import MaskRCNN
    dataset = load_dataset(args, "val", args.annotations, args.images, args.limit)
    weights, kind = resolve_model(args.model, args.logs)
    if kind == "none":
        raise CLIError("--model none has no trained heads to evaluate; pass coco, last "
                       "or a checkpoint path.")
    saved = read_run_config(weights)
    saved.update(parse_sets(args.set))
    config = make_coco_config(dataset.num_classes, args.backbone or saved.pop(
        "BACKBONE", None), args.image_size, inference=True, overrides=saved)
    model = MaskRCNN("inference", config, args.logs)
    load_model_weights(model, weights, kind)
    records, per_image = detect_records(model, dataset, progress=not args.quiet)
    image_ids = [int(info["id"]) for info in dataset.image_info]
    gt = evaluation_gt(dataset.annotation_file, image_ids)
    result = evaluate_coco(gt, records, iou_types=("segm", "bbox"), image_ids=image_ids)
    print(f"\n{len(records)} detections on {len(image_ids)} images "
          f"({per_image:.2f} s per image)")
    print("metric  " + "".join(k.rjust(9) for k in ("AP", "AP50", "AP75", "APs", "APm",
                                                   "APl")))
    for t in ("segm", "bbox"):
        print(t.ljust(8) + "".join(f"{result[t][k]:9.4f}" for k in
                                   ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    print("\nPer class (segm):")
    write_per_class_table([r for r in result["per_class"]["segm"] if r["num_gt"] > 0],
                          columns=["name", "category_id", "num_gt", "AP", "AP50"])
    metrics = {t: result[t] for t in ("segm", "bbox")}
    if args.out:
        with PredictionWriter(os.path.join(args.out, "predictions.jsonl")) as writer:
            writer.write_all(records)
        write_json(os.path.join(args.out, "metrics.json"),
                   {"weights": os.path.abspath(weights), "images": len(image_ids),
                    "detections": len(records), **metrics})
        print(f"Predictions and metrics.json in {args.out}")
    return metrics


def evaluation_gt(annotation_file, image_ids):
    """The annotation file cut to the evaluated images, polygons with fewer than 3
    points removed (pycocotools reads 4 numbers as a box and fails)."""
    data = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    keep, anns, dropped = set(image_ids), [], 0
    for ann in data["annotations"]:
        if int(ann["image_id"]) not in keep:
            continue
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            try:
                ann = dict(ann, segmentation=clean_polygons(seg))
            except ValueError:
                dropped += 1
                continue
        anns.append(ann)
    if dropped:
        log.warning("%s: %d annotation(s) without a polygon of 3 or more points are left "
                    "out of the ground truth.", annotation_file, dropped)
    return {"images": [i for i in data["images"] if int(i["id"]) in keep],
            "annotations": anns, "categories": data["categories"]}


def build_parser():
    p = argparse.ArgumentParser(prog="coco.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "evaluate"])
    p.add_argument("--dataset", metavar="DIR", help="COCO root (annotations/, train2017/...)")
    p.add_argument("--year", default=DEFAULT_YEAR, help="COCO year (default 2017)")
    p.add_argument("--annotations", metavar="JSON",
                   help="a COCO-format file instead of the COCO layout (train or evaluate)")
    p.add_argument("--images", metavar="DIR", help="images of --annotations")
    p.add_argument("--val-annotations", metavar="JSON", help="validation file for train")
    p.add_argument("--val-images", metavar="DIR", help="images of --val-annotations")
    p.add_argument("--model", required=True, metavar="coco|imagenet|last|none|PATH",
                   help="starting or evaluated weights")
    p.add_argument("--logs", default=str(ROOT / "logs"), metavar="DIR",
                   help="run directories and checkpoints (default logs/)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N images (evaluate default 500)")
    p.add_argument("--val-limit", type=int, default=None, help="validation images in train")
    p.add_argument("--backbone", default=None, help="default resnet101 (matterport)")
    p.add_argument("--image-size", type=int, default=None,
                   help="square side, a multiple of 64 (default: matterport's 1024)")
    p.add_argument("--schedule", default=None, help="LAYERS:EPOCHS stages, e.g. heads:2,all:4 "
                   "(default: matterport's heads:40, 4+:120, all:160 at LR/10)")
    p.add_argument("--no-augment", action="store_true", help="no left-right flips")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any Config attribute, e.g. --set STEPS_PER_EPOCH=100")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="evaluate: write predictions.jsonl and metrics.json here")
    p.add_argument("--quiet", action="store_true", help="less output")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s")
    if not args.dataset and not args.annotations:
        print("error: pass --dataset DIR (COCO layout) or --annotations JSON --images DIR.",
              file=sys.stderr)
        return 2
    if args.command == "evaluate" and args.limit is None:
        args.limit = 500  # matterport's default
    try:
        result = train(args) if args.command == "train" else evaluate(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if result is not None else 1


if __name__ == "__main__":
    sys.exit(main())

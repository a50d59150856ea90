"""Synthetic shapes (squares, circles, triangles): Mask R-CNN trained from scratch on a CPU.

    python samples/shapes/shapes.py train --minutes 15      # train, then evaluate
    python samples/shapes/shapes.py evaluate --weights last  # mAP@0.5 on held-out images

Training uses the ResNet18 backbone with trained batch norm, a warm-up and small anchors
for 128 px images; evaluation reports mAP@0.5 (utils.compute_ap) on images never seen in
training and draws detections to PNG files.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mrcnn import utils  # noqa: E402
from mrcnn.config import Config  # noqa: E402

SHAPES = ["square", "circle", "triangle"]


class ShapesConfig(Config):
    """A small configuration for 128 px shapes images, trained from scratch."""
    NAME = "shapes"
    IMAGES_PER_GPU = 4
    NUM_CLASSES = 1 + 3
    BACKBONE = "resnet18"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 128
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    TRAIN_ROIS_PER_IMAGE = 32
    POST_NMS_ROIS_TRAINING = 300
    POST_NMS_ROIS_INFERENCE = 200
    PRE_NMS_LIMIT = 1000
    MAX_GT_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)
    DETECTION_MIN_CONFIDENCE = 0.7
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 5
    TRAIN_BN = None
    BN_MOMENTUM = 0.9
    ADD_GT_TO_PROPOSALS = True
    OPTIMIZER = "adamw"
    LEARNING_RATE = 1e-3
    WEIGHT_DECAY = 1e-4
    WARMUP_STEPS = 50


class ShapesDataset(utils.Dataset):
    """Images of random shapes on random backgrounds, drawn on the fly from a seed."""

    def load_shapes(self, count, height, width, seed=0):
        for i, name in enumerate(SHAPES, start=1):
            self.add_class("shapes", i, name)
        rng = np.random.RandomState(seed)
        for i in range(count):
            bg_color, shapes = self.random_image(height, width, rng)
            self.add_image("shapes", image_id=i, path=None, width=width, height=height,
                           bg_color=bg_color, shapes=shapes)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.ones([info["height"], info["width"], 3], dtype=np.uint8)
        image[:] = np.array(info["bg_color"], dtype=np.uint8)
        for shape, color, dims in info["shapes"]:
            image[self._shape_mask(shape, dims, info["height"], info["width"])] = color
        return image

    def image_reference(self, image_id):
        return f"shapes:{image_id}"

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        masks = np.zeros([h, w, len(info["shapes"])], dtype=bool)
        for i, (shape, _, dims) in enumerate(info["shapes"]):
            masks[:, :, i] = self._shape_mask(shape, dims, h, w)
        # Later shapes are drawn on top: remove what they cover from earlier ones.
        occlusion = np.zeros([h, w], dtype=bool)
        for i in range(masks.shape[-1] - 1, -1, -1):
            masks[:, :, i] &= ~occlusion
            occlusion |= masks[:, :, i]
        class_ids = np.array([self.class_names.index(s[0]) for s in info["shapes"]],
                             dtype=np.int32)
        return masks, class_ids

    @staticmethod
    def _shape_mask(shape, dims, h, w):
        x, y, s = dims
        yy, xx = np.mgrid[:h, :w]
        if shape == "square":
            return (np.abs(yy - y) <= s) & (np.abs(xx - x) <= s)
        if shape == "circle":
            return (yy - y) ** 2 + (xx - x) ** 2 <= s * s
        # upward equilateral triangle with centre (x, y) and "radius" s
        top = y - s
        base = y + s * math.sin(math.radians(30))
        half_width = (yy - top) / max(base - top, 1e-6) * s * math.cos(math.radians(30))
        return (yy >= top) & (yy <= base) & (np.abs(xx - x) <= half_width)

    @staticmethod
    def random_shape(height, width, rng):
        shape = SHAPES[rng.randint(len(SHAPES))]
        color = tuple(int(c) for c in rng.randint(0, 255, 3))
        buffer = 20
        y = rng.randint(buffer, height - buffer - 1)
        x = rng.randint(buffer, width - buffer - 1)
        s = rng.randint(buffer // 2, height // 4)
        return shape, color, (x, y, s)

    def random_image(self, height, width, rng):
        bg_color = np.array([rng.randint(0, 255) for _ in range(3)])
        shapes, boxes = [], []
        for _ in range(rng.randint(1, 5)):
            shape, color, dims = self.random_shape(height, width, rng)
            shapes.append((shape, color, dims))
            x, y, s = dims
            boxes.append([y - s, x - s, y + s, x + s])
        # Drop heavily overlapping shapes so every instance stays visible.
        keep = utils.non_max_suppression(np.array(boxes), np.arange(len(boxes)), 0.3)
        return bg_color, [s for i, s in enumerate(shapes) if i in keep]


def evaluate_map(model, dataset, config, limit=None, draw_dir=None, iou=0.5):
    """mAP at an IoU threshold over a dataset, drawing a few detections to PNG."""
    from mrcnn import visualize
    aps = []
    ids = dataset.image_ids[:limit] if limit else dataset.image_ids
    for n, image_id in enumerate(ids):
        image = dataset.load_image(image_id)
        gt_masks, gt_class_ids = dataset.load_mask(image_id)
        gt_boxes = utils.extract_bboxes(gt_masks)
        r = model.detect([image])[0]
        ap, *_ = utils.compute_ap(gt_boxes, gt_class_ids, gt_masks, r["rois"],
                                  r["class_ids"], r["scores"], r["masks"], iou_threshold=iou)
        aps.append(ap)
        if draw_dir and n < 6:
            os.makedirs(draw_dir, exist_ok=True)
            visualize.display_instances(
                image, r["rois"], r["masks"], r["class_ids"], dataset.class_names,
                r["scores"], figsize=(4, 4), title=f"AP50 {ap:.2f}",
                save_path=os.path.join(draw_dir, f"shapes_{n}.png"))
    return float(np.mean(aps)) if aps else 0.0


def make_datasets(config, train_count=500, val_count=50):
    size = config.IMAGE_SHAPE[0]
    train = ShapesDataset()
    train.load_shapes(train_count, size, size, seed=1)
    train.prepare()
    val = ShapesDataset()
    val.load_shapes(val_count, size, size, seed=2)
    val.prepare()
    return train, val


def main(argv=None):
    from mrcnn.model import MaskRCNN
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "evaluate"])
    p.add_argument("--logs", default=os.path.join(ROOT, "logs"))
    p.add_argument("--weights", default="last", help="'last' or a checkpoint path")
    p.add_argument("--minutes", type=float, default=15, help="training time budget")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--limit", type=int, default=50, help="validation images to score")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "shapes"))
    args = p.parse_args(argv)
    config = ShapesConfig()
    train, val = make_datasets(config)
    if args.command == "train":
        model = MaskRCNN("training", config, args.logs)
        t = time.time()
        model.train(train, val, config.LEARNING_RATE, args.epochs, "all",
                    augmentation="flip", time_budget=args.minutes, verbose=2)
        print(f"trained {model.epoch} epochs in {(time.time() - t) / 60:.1f} min")
        weights = model.find_last()
    else:
        weights = args.weights
    infer = MaskRCNN("inference", config, args.logs)
    infer.load_weights(infer.find_last() if weights == "last" else weights)
    mAP = evaluate_map(infer, val, config, limit=args.limit, draw_dir=args.out)
    print(f"shapes mAP@0.5 on {args.limit} held-out images: {mAP:.3f} "
          f"(detections drawn to {args.out})")
    return mAP


if __name__ == "__main__":
    main()

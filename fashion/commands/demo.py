"""`demo`: the whole pipeline on the synthetic demo set, sized for a 2-core CPU.

generate data/demo -> train from scratch for a time budget -> evaluate on the held-out
split -> detect on a few held-out images with overlays -> print every number.
Paths default to data/demo, logs/ and results/demo under the current directory.
"""
import argparse
import os
import shutil
import time

from fashion.cli_args import DEMO_DIR, command_args
from fashion.commands import detect, evaluate, train

EXAMPLES = """examples:
  python fashion/fashion.py demo                      # about 15 minutes on a 2-core CPU
  python fashion/fashion.py demo --minutes 3 --demo-images 60   # a quick look
"""
# The model's sizes are the from-scratch table's (mrcnn/layout.py), as for any
# `train --weights none`; the demo only shortens the warm-up and the val loss.
DEMO_SETTINGS = ["WARMUP_STEPS=100", "VALIDATION_STEPS=5"]


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "demo", parents=parents, help="generate, train, evaluate and draw the demo set",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0,
                   help="training time budget in minutes (default 10)")
    p.add_argument("--demo-images", type=int, default=300)
    p.add_argument("--demo-dir", default=DEMO_DIR)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--images-per-gpu", type=int, default=4)
    p.add_argument("--out", default="results/demo", metavar="DIR",
                   help="evaluation results, predictions and overlays")
    p.add_argument("--overlays", type=int, default=6,
                   help="how many held-out images to draw (default 6)")
    p.set_defaults(func=run)
    return p


def _steps(args):
    """The train, evaluate and detect arguments of the demo (the same as the command
    lines `fashion.py train|evaluate|detect --dataset demo ...` would give), as
    functions of what the earlier steps produced."""
    common = {"logs": args.logs, "quiet": args.quiet}
    data = {"dataset": "demo", "demo_dir": args.demo_dir, "demo_images": args.demo_images,
            "image_size": args.image_size}
    train_args = command_args(
        train, **common, **data, weights="none", backbone=args.backbone,
        schedule="all:1000", steps_per_epoch=args.steps_per_epoch,
        images_per_gpu=args.images_per_gpu, time_budget=args.minutes,
        keep_last=1, set=list(DEMO_SETTINGS),  # the last and the best checkpoint
        eval_every=1)  # an AP point per epoch on the demo's curve, budget or not

    def evaluate_args(checkpoint):
        return command_args(evaluate, **common, **data, out=args.out, weights=checkpoint)

    def detect_args(checkpoint, images):
        return command_args(detect, **common, weights=checkpoint, images=images,
                            overlays=os.path.join(args.out, "overlays"),
                            out=os.path.join(args.out, "detections.jsonl"))
    return train_args, evaluate_args, detect_args


def run(args):
    t0 = time.time()
    train_args, evaluate_args, detect_args = _steps(args)
    trained = train.run(train_args)
    ev = evaluate.run(evaluate_args(trained["checkpoint"]))
    detecting = detect_args(trained["checkpoint"], _held_out_images(
        ev["ground_truth"], args.demo_dir, args.overlays))
    det = detect.run(detecting)
    m = ev["metrics"]
    print("\n===== demo summary =====")
    print(f"training:   {trained['steps']} steps to epoch {trained['epoch']}, "
          f"{trained['images_per_second']:.2f} images/s; checkpoint {trained['checkpoint']}")
    print(f"evaluation: segm AP {m['segm']['AP']:.4f}  AP50 {m['segm']['AP50']:.4f}  "
          f"AP75 {m['segm']['AP75']:.4f} | boundary AP {m['boundary']['AP']:.4f}  "
          f"AP75 {m['boundary']['AP75']:.4f} | bbox AP {m['bbox']['AP']:.4f}  "
          f"AP50 {m['bbox']['AP50']:.4f} | iMat2019 {m['segm']['iMat2019']:.4f}"
          + (f" | AP_iou_f1 {m['segm']['AP_iou_f1']:.4f}" if "AP_iou_f1" in m["segm"] else ""))
    print(f"detections: {det['detections']} on {det['images']} held-out images; "
          f"overlays in {detecting.overlays}")
    print(f"total time: {(time.time() - t0) / 60:.1f} min")
    return {"train": trained, "evaluate": ev, "detect": det}


def _held_out_images(gt_path, demo_dir, count):
    """A glob-free image spec: a directory holding copies of the first held-out images."""
    import json

    from mrcnn.fileio import atomic_path
    with open(gt_path, encoding="utf-8") as f:
        files = [i["file_name"] for i in json.load(f)["images"]][:count]
    out = os.path.join(os.path.dirname(gt_path), "held_out_images")
    os.makedirs(out, exist_ok=True)
    for name in files:
        with atomic_path(os.path.join(out, name)) as tmp:
            shutil.copyfile(os.path.join(demo_dir, "train", name), tmp)
    return out

"""`demo`: the whole pipeline on the synthetic demo set, sized for a 2-core CPU.

generate data/demo -> train from scratch for a time budget -> evaluate on the held-out
split -> detect on a few held-out images with overlays -> print every number.
"""
import argparse
import os
import time

from fashion.commands.common import DEMO_DIR

EXAMPLES = """examples:
  python fashion/fashion.py demo                      # about 15 minutes on a 2-core CPU
  python fashion/fashion.py demo --minutes 3 --demo-images 60   # a quick look
"""
# Small heads: the demo trains from scratch on a CPU.
DEMO_SETTINGS = ["TOP_DOWN_PYRAMID_SIZE=128", "FPN_CLASSIF_FC_LAYERS_SIZE=512",
                 "ATTRIBUTE_FC_SIZE=256", "WARMUP_STEPS=100", "VALIDATION_STEPS=5"]


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "demo", parents=parents, help="generate, train, evaluate and draw the demo set",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0,
                   help="training time budget in minutes (default 10)")
    p.add_argument("--demo-images", type=int, default=300)
    p.add_argument("--demo-dir", default=str(DEMO_DIR))
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


def run(args):
    from fashion.fashion import run_command
    t0 = time.time()
    common = ["--logs", args.logs] + (["--quiet"] if args.quiet else [])
    data = ["--dataset", "demo", "--demo-dir", args.demo_dir, "--demo-images",
            str(args.demo_images), "--image-size", str(args.image_size)]
    train = run_command(["train"] + common + data + [
        "--weights", "none", "--backbone", args.backbone, "--schedule", "all:1000",
        "--steps-per-epoch", str(args.steps_per_epoch),
        "--images-per-gpu", str(args.images_per_gpu),
        "--time-budget", str(args.minutes)] + sum((["--set", s] for s in DEMO_SETTINGS), []))
    ev = run_command(["evaluate"] + common + data + [
        "--weights", train["checkpoint"], "--out", args.out])
    overlay_dir = os.path.join(args.out, "overlays")
    names = _held_out_images(ev["ground_truth"], args.demo_dir, args.overlays)
    det = run_command(["detect"] + common + [
        "--weights", train["checkpoint"], "--images", names,
        "--out", os.path.join(args.out, "detections.jsonl"), "--overlays", overlay_dir])
    m = ev["metrics"]
    print("\n===== demo summary =====")
    print(f"training:   {train['steps']} steps to epoch {train['epoch']}, "
          f"{train['images_per_second']:.2f} images/s; checkpoint {train['checkpoint']}")
    print(f"evaluation: segm AP {m['segm']['AP']:.4f}  AP50 {m['segm']['AP50']:.4f}  "
          f"AP75 {m['segm']['AP75']:.4f} | bbox AP {m['bbox']['AP']:.4f}  "
          f"AP50 {m['bbox']['AP50']:.4f} | iMat2019 {m['segm']['iMat2019']:.4f}"
          + (f" | AP_iou_f1 {m['segm']['AP_iou_f1']:.4f}" if "AP_iou_f1" in m["segm"] else ""))
    print(f"detections: {det['detections']} on {det['images']} held-out images; "
          f"overlays in {overlay_dir}")
    print(f"total time: {(time.time() - t0) / 60:.1f} min")
    return {"train": train, "evaluate": ev, "detect": det}


def _held_out_images(gt_path, demo_dir, count):
    """A glob-free image spec: a directory holding links to the first held-out images."""
    import json
    import shutil
    with open(gt_path, encoding="utf-8") as f:
        files = [i["file_name"] for i in json.load(f)["images"]][:count]
    out = os.path.join(os.path.dirname(gt_path), "held_out_images")
    os.makedirs(out, exist_ok=True)
    for name in files:
        shutil.copyfile(os.path.join(demo_dir, "train", name), os.path.join(out, name))
    return out

"""Mask heads where the edge shows: each head trained from scratch for the same time on
512 px figures with zigzag and scalloped hems, straps and cut-outs
(benchmarks/edge_figures.py), then scored on held-out figures.

    python benchmarks/bench_edges.py --minutes 8 --out /tmp/edges
    python benchmarks/bench_edges.py --minutes 1 --train-images 40 --val-images 8  # smoke
    python benchmarks/bench_edges.py --hard-set --emulate-avx2 --minutes 20

--hard-set: instead of the edge figures, `fashion.py train --weights none --backbone
resnet18 --image-size 256 --time-budget MINUTES` exactly as a user types it on the hard
demo set (600 train + 150 val images at 256 px: crowds of small, overlapping garments),
then `fashion.py evaluate`: segm AP, AP75, boundary AP, AP75 of each head in
--hard-heads ("default": the command as typed; a MASK_HEAD value: with `--set
MASK_HEAD=...`), one after the other.
--figures-set: the same on the demo set of one or two large dressed figures per image
(600 train + 150 val images at 256 px, the kind the Quick start trains on).
--emulate-avx2 sets ONEDNN_MAX_CPU_ISA=AVX2 (no AVX-512 or bfloat16 kernels, so float32,
as on an AVX2-only CPU).

Prints the CPU (`lscpu` model name and flags) and one table: head, steps, train
images/s, segm AP, AP75, boundary AP, boundary AP75, inference ms per image; writes
edges.csv and edges.png (the same crops under each head, ground-truth outline in white).

Heads: "matterport" (28x28 per box) and "pointrend" (the 28x28 mask refined at the
most uncertain points to MASK_OUTPUT_SIZE). Both get the same layout (ResNet18, the
scaled sizes, the from-scratch settings of `fashion.py train --weights none`) and the
same 112x112 mini-masks; warm-up is 50 steps (the default 200 would take half of a
short budget).
"""
import argparse
import csv
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks.bench_scratch import cpu_line  # noqa: E402
from benchmarks.edge_figures import CLASSES, EdgeFigures  # noqa: E402

HEADS = {"matterport": {"MASK_HEAD": "matterport"},
         "pointrend": {"MASK_HEAD": "pointrend", "MASK_OUTPUT_SIZE": 112}}


# ---------------------------------------------------------------- training / scoring
def make_config(head, images_per_step):
    from fashion.config import make_config as fashion_config
    return fashion_config(512, 1 + len(CLASSES), backbone="resnet18", pretrained=False,
                          NAME=f"edges_{head}", MINI_MASK_SHAPE=(112, 112),
                          STEPS_PER_EPOCH=25, VALIDATION_STEPS=1, MAX_GT_INSTANCES=12,
                          DETECTION_MIN_CONFIDENCE=0.05, DETECTION_MAX_INSTANCES=30,
                          IMAGES_PER_GPU=images_per_step, WARMUP_STEPS=50,
                          **HEADS[head])


class _Steps:
    """Counts training steps and times them (the first, graph-building step apart)."""

    def __init__(self):
        import keras
        outer = self

        class CB(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                now = time.time()
                if outer.first is None:
                    outer.first = now
                outer.last, outer.steps = now, outer.steps + 1
        self.callback, self.first, self.last, self.steps = CB(), None, None, 0

    def rate(self, batch):
        if self.steps < 2:
            return float("nan")
        return (self.steps - 1) * batch / (self.last - self.first)


def train_head(head, train, minutes, out, images_per_step):
    from mrcnn.model import MaskRCNN
    config = make_config(head, images_per_step)
    model = MaskRCNN("training", config, os.path.join(out, head))
    steps = _Steps()
    model.train(train, None, config.LEARNING_RATE, 10_000, "all", time_budget=minutes,
                custom_callbacks=[steps.callback], verbose=0)
    return config, model.find_last(), steps.steps, steps.rate(config.BATCH_SIZE)


def score(head, config, checkpoint, val):
    """(row of figures, detections per val image)."""
    from mrcnn.evaluation.coco import evaluate_coco
    from mrcnn.model import MaskRCNN
    from pycocotools import mask as mask_utils

    class Infer(type(config)):
        IMAGES_PER_GPU = 1
        GPU_COUNT = 1
        MIXED_PRECISION = "float32"
    infer = Infer()
    model = MaskRCNN("inference", infer, os.path.dirname(os.path.dirname(checkpoint)))
    model.load_weights(checkpoint, by_name=True)
    model.detect([val.load_image(0)])                           # build / warm up
    gt = {"images": [], "annotations": [],
          "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES, 1)]}
    preds, results, seconds = [], [], 0.0
    for image_id in val.image_ids:
        image = val.load_image(image_id)
        masks, class_ids = val.load_mask(image_id)
        gt["images"].append({"id": int(image_id), "height": 512, "width": 512})
        for k in range(masks.shape[-1]):
            rle = mask_utils.encode(np.asfortranarray(masks[..., k].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            ys, xs = np.nonzero(masks[..., k])
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": int(image_id),
                "category_id": int(class_ids[k]), "segmentation": rle, "iscrowd": 0,
                "area": int(masks[..., k].sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                         int(ys.max() - ys.min() + 1)]})
        t0 = time.perf_counter()
        r = model.detect([image])[0]
        seconds += time.perf_counter() - t0
        results.append(r)
        for k in range(len(r["class_ids"])):
            rle = mask_utils.encode(np.asfortranarray(r["masks"][..., k].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            y1, x1, y2, x2 = (int(v) for v in r["rois"][k])
            preds.append({"image_id": int(image_id), "category_id": int(r["class_ids"][k]),
                          "score": float(r["scores"][k]), "segmentation": rle,
                          "bbox": [x1, y1, x2 - x1, y2 - y1]})
    # boundary AP: COCO AP on min(mask IoU, Boundary IoU), mrcnn.evaluation.boundary
    coco = evaluate_coco(gt, preds, iou_types=("bbox", "segm", "boundary"), per_class=False)
    boundary = coco["boundary"]
    row = {"segm AP": coco["segm"]["AP"], "AP75": coco["segm"]["AP75"],
           "boundary AP": boundary["AP"], "boundary AP75": boundary["AP75"],
           "ms/image": 1000 * seconds / len(val.image_ids)}
    return row, results


def crops_picture(val, all_results, path, count=4):
    """The largest ground-truth garment of the first val images, cropped, under each head."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    heads = list(all_results)
    fig, axes = plt.subplots(count, len(heads), figsize=(3.2 * len(heads), 3.2 * count),
                             squeeze=False)
    for row, image_id in enumerate(val.image_ids[:count]):
        image = val.load_image(image_id)
        masks, _ = val.load_mask(image_id)
        k = int(np.argmax(masks.sum((0, 1))))
        ys, xs = np.nonzero(masks[..., k])
        y1, y2 = max(0, ys.min() - 8), min(512, ys.max() + 9)
        x1, x2 = max(0, xs.min() - 8), min(512, xs.max() + 9)
        for col, head in enumerate(heads):
            r = all_results[head][row]
            over = image.astype(np.float32)
            if len(r["class_ids"]):
                inter = (r["masks"] & masks[..., k:k + 1]).sum((0, 1))
                best = r["masks"][..., int(np.argmax(inter))]
                over[best] = 0.45 * over[best] + 0.55 * np.array([255, 40, 40])
            edge = masks[..., k] & ~_erode1(masks[..., k])
            over[edge] = 255
            ax = axes[row, col]
            ax.imshow(over[y1:y2, x1:x2].astype(np.uint8))
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(head)
    fig.suptitle("predicted mask (red) and ground-truth edge (white)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _erode1(mask):
    import cv2
    return cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _print_table(rows):
    cols = ["head", "steps", "train img/s", "segm AP", "AP75", "boundary AP",
            "boundary AP75", "ms/image"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] if isinstance(r[c], str) else
                                (str(r[c]) if isinstance(r[c], int) else f"{r[c]:.3g}")
                                for c in cols) + " |")
    return cols


def _parallel(a):
    """One process per head, started together, so both heads train under the same
    machine load; returns (rows, results of the first val images per head)."""
    import pickle
    import subprocess
    procs = {}
    for head in a.heads.split(","):
        out = os.path.join(a.out, head)
        cmd = [sys.executable, os.path.abspath(__file__), "--heads", head, "--out", out,
               "--minutes", str(a.minutes), "--train-images", str(a.train_images),
               "--val-images", str(a.val_images), "--images-per-step",
               str(a.images_per_step), "--save-results"]
        log = open(os.path.join(a.out, f"{head}.log"), "w")
        procs[head] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), out)
    rows, all_results = [], {}
    for head, (proc, out) in procs.items():
        if proc.wait():
            raise SystemExit(f"the {head} run failed; see {a.out}/{head}.log")
        with open(os.path.join(out, "results.pkl"), "rb") as f:
            row, results = pickle.load(f)
        rows.append(row)
        all_results[head] = results
        print(row, flush=True)
    return rows, all_results


def hard_set(a):
    """The 256 px hard demo set (or with --figures-set the demo set of large figures),
    trained as a user types it; prints one row per head."""
    from benchmarks.fixed_time import hard_demo, run_variants
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if a.emulate_avx2:
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    hard = not a.figures_set
    name = "demo_hard_256" if hard else "demo_figures_256"
    data = hard_demo(os.path.join(a.out, name), num_images=750, size=256, hard=hard)
    variants = {head: ([] if head == "default" else ["--set", f"MASK_HEAD={head}"], [])
                for head in filter(None, a.hard_heads.split(","))}
    results = run_variants(variants, data, os.path.join(a.out, "hard" if hard else "figures"),
                           a.minutes, 256, "resnet18", concurrent=False, exact=True, env=env)
    print(f"\n{'Hard demo set' if hard else 'Demo set of large figures'}, 256 px, ResNet18 "
          f"from scratch, --time-budget {a.minutes:g}"
          f"{' (AVX2 emulated)' if a.emulate_avx2 else ''}, one after the other")
    cols = ["variant", "steps", "img/s", "segm AP", "AP75", "boundary AP", "boundary AP75",
            "minutes"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | {r['error']} |")
            continue
        print(f"| {name} | {r['steps']} | {r['images_per_second']:.2f} | "
              f"{r['segm_ap']:.3f} | {r['segm_ap75']:.3f} | {r.get('boundary_ap', float('nan')):.3f}"
              f" | {r.get('boundary_ap75', float('nan')):.3f} | {r['train_minutes']} |")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per head")
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--val-images", type=int, default=40)
    p.add_argument("--images-per-step", type=int, default=2)
    p.add_argument("--heads", default="matterport,pointrend")
    p.add_argument("--out", default="bench_edges_out")
    p.add_argument("--label", default="", help="e.g. 'under load'")
    p.add_argument("--parallel", action="store_true",
                   help="train the heads at the same time, one process each (on a shared "
                        "machine both then see the same load)")
    p.add_argument("--save-results", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--hard-set", action="store_true",
                   help="the 256 px hard demo set through the CLI (see above)")
    p.add_argument("--figures-set", action="store_true",
                   help="as --hard-set, on the demo set of one or two large dressed "
                        "figures per image (the Quick start's kind) instead of crowds")
    p.add_argument("--hard-heads", default="default",
                   help="with --hard-set or --figures-set, the heads to run one after the "
                        "other: 'default' (no --set) and MASK_HEAD values, e.g. "
                        "default,matterport")
    p.add_argument("--emulate-avx2", action="store_true",
                   help="ONEDNN_MAX_CPU_ISA=AVX2: float32 kernels without AVX-512")
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    print(f"{cpu_line()}{' (' + a.label + ')' if a.label else ''}"
          f"{'  [AVX2 emulated: ONEDNN_MAX_CPU_ISA=AVX2]' if a.emulate_avx2 else ''}",
          flush=True)
    if a.hard_set or a.figures_set:
        hard_set(a)
        return
    train, val = EdgeFigures(), EdgeFigures()
    train.load(a.train_images, seed=1)
    val.load(a.val_images, seed=2)
    train.prepare()
    val.prepare()
    if a.parallel:
        rows, all_results = _parallel(a)
    else:
        rows, all_results = [], {}
        for head in a.heads.split(","):
            import keras
            keras.utils.set_random_seed(0)
            print(f"training {head} for {a.minutes:g} min ...", flush=True)
            config, ckpt, steps, rate = train_head(head, train, a.minutes, a.out,
                                                   a.images_per_step)
            row, results = score(head, config, ckpt, val)
            all_results[head] = results
            rows.append({"head": head, "steps": steps, "train img/s": rate, **row})
            print(rows[-1], flush=True)
    if a.save_results:
        import pickle
        with open(os.path.join(a.out, "results.pkl"), "wb") as f:
            pickle.dump((rows[0], all_results[rows[0]["head"]][:4]), f)
        return
    cols = _print_table(rows)
    with open(os.path.join(a.out, "edges.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    crops_picture(val, all_results, os.path.join(a.out, "edges.png"))
    print(f"wrote {os.path.join(a.out, 'edges.csv')} and edges.png")


if __name__ == "__main__":
    main()

"""A deterministic synthetic fashion dataset in the iMaterialist 2019 on-disk format.

People-like figures (head, torso, arms, legs) wear tops, trousers or skirts, shoes and
sometimes a bag, over noisy gradient backgrounds; garments carry a pattern (plain,
stripes, dots, check) and skirts a length, as iMaterialist 2019 attributes. Category and
attribute ids are looked up by name in fashion/data/labels/imat2019_label_descriptions.json,
so the demo runs the real loading path (``FashionDataset.load_imat2019``).

Output: ``train.csv`` (Kaggle RLE), ``label_descriptions.json``, JPEGs under ``train/``
and ``manifest.json`` (generator version and parameters; a rerun with the same
parameters is skipped).

Example:
    python fashion/data/demo_data.py /tmp/fashion_demo --num-images 300 --size 256
"""
import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fashion.data import rle  # noqa: E402
from fashion.data.demo_figures import (CATEGORIES, PATTERNS, SKIRT_LENGTHS, finish,  # noqa: E402,E501
                                  _background, _Canvas, _figure)
from fashion.data.labels import label_file, load_labels  # noqa: E402
from mrcnn.fileio import atomic_path, write_json  # noqa: E402

log = logging.getLogger("fashion")

GENERATOR_VERSION = 1


def make_image(index, size, seed, ids):
    """One synthetic image -> (uint8 [H, W, 3], [(mask [H, W] bool, category, attrs)])."""
    rng = np.random.default_rng([seed, index])
    h = size
    w = int(round(size * rng.uniform(0.75, 1.0) / 2)) * 2
    canvas = _Canvas(h, w, rng)
    _background(canvas, rng)
    n_figures = 2 if rng.random() < 0.35 else 1
    for k in range(n_figures):
        fh = h * (rng.uniform(0.5, 0.8) if n_figures == 2 else rng.uniform(0.55, 0.95))
        half = 0.22 * fh
        lo, hi = (half, w - half) if n_figures == 1 else \
            ((half, w / 2) if k == 0 else (w / 2, w - half))
        cx = rng.uniform(lo, max(lo, hi))
        _figure(canvas, rng, ids, rng.uniform(0, h - fh), cx, fh)
    return finish(canvas, rng, 4.0, min_area=max(8, int(16 * (size / 256) ** 2)))


def _manifest(num_images, size, seed, hard=False):
    return {"generator": "fashion.data.demo_data", "version": GENERATOR_VERSION,
            "format": "imat2019", "num_images": int(num_images), "size": int(size),
            "seed": int(seed), "hard": bool(hard)}


def generate_demo(out_dir, num_images=300, size=256, seed=0, hard=False):
    """Writes the demo dataset to out_dir (skipped when out_dir/manifest.json already
    records the same generator version and parameters) and returns out_dir.

    hard=True draws crowds of small, overlapping figures with accessories (hats,
    belts, glasses, ...; fashion/data/demo_hard.py) instead of one or two large figures."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    wanted = _manifest(num_images, size, seed, hard)
    if manifest_path.is_file() and (out_dir / "train.csv").is_file():
        try:
            done = json.loads(manifest_path.read_text())
        except ValueError:
            done = {}
        if {k: done.get(k) for k in wanted} == wanted:
            log.info("%s already holds this demo set; skipping generation.", out_dir)
            return out_dir
    if size < 64:
        raise ValueError(f"size {size} is too small for the figures; use 64 or more.")
    if manifest_path.exists():
        manifest_path.unlink()  # the old set is no longer complete
    image_dir = out_dir / "train"
    if image_dir.is_dir():
        for old in image_dir.glob("demo_*.jpg"):
            old.unlink()
    image_dir.mkdir(parents=True, exist_ok=True)
    labels = load_labels("imat2019")
    ids = {k: labels.category_id(v) for k, v in CATEGORIES.items()}
    ids.update({k: labels.attribute_id(v) for k, v in PATTERNS.items()})
    ids.update({k: labels.attribute_id(k) for k in SKIRT_LENGTHS})
    draw = make_image
    if hard:
        from fashion.data.demo_hard import HARD_CATEGORIES, make_hard_image
        ids.update({k: labels.category_id(v) for k, v in HARD_CATEGORIES.items()})
        draw = make_hard_image
    rows = []
    for i in range(num_images):
        image, instances = draw(i, size, seed, ids)
        name = f"demo_{i:05d}.jpg"
        with atomic_path(image_dir / name) as tmp:
            Image.fromarray(image).save(tmp, format="JPEG", quality=92)
        for mask, category, attrs in instances:
            class_id = "_".join(str(v) for v in (category,) + tuple(sorted(attrs)))
            rows.append((name, rle.encode(mask), image.shape[0], image.shape[1], class_id))
    df = pd.DataFrame(rows, columns=["ImageId", "EncodedPixels", "Height", "Width",
                                     "ClassId"])
    with atomic_path(out_dir / "train.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out_dir / "label_descriptions.json") as tmp:
        shutil.copyfile(label_file("imat2019"), tmp)
    wanted.update(num_instances=len(rows), label_ids=ids)
    write_json(manifest_path, wanted)  # last: its presence marks a complete set
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the synthetic fashion demo set "
                                     "in the iMaterialist 2019 format.")
    parser.add_argument("out_dir")
    parser.add_argument("--num-images", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hard", action="store_true", help="crowds of small, "
                        "overlapping figures with hats, belts, glasses and more")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = generate_demo(args.out_dir, args.num_images, args.size, args.seed, args.hard)
    print(f"Demo dataset in {out}")


if __name__ == "__main__":
    main()

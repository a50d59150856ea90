"""A deterministic synthetic fashion dataset in the iMaterialist 2019 on-disk format.

People-like figures (head, torso, arms, legs) wear tops, trousers or skirts, shoes and
sometimes a bag, over noisy gradient backgrounds; garments carry a pattern (plain,
stripes, dots, check) and skirts a length, as iMaterialist 2019 attributes. Category and
attribute ids are looked up by name in fashion/labels/imat2019_label_descriptions.json,
so the demo runs the real loading path (``FashionDataset.load_imat2019``).

Output: ``train.csv`` (Kaggle RLE), ``label_descriptions.json``, JPEGs under ``train/``
and ``manifest.json`` (generator version and parameters; a rerun with the same
parameters is skipped).

Example:
    python fashion/demo_data.py /tmp/fashion_demo --num-images 300 --size 256
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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fashion import rle  # noqa: E402
from fashion.labels import label_file, load_labels  # noqa: E402
from mrcnn.fileio import atomic_path, write_json  # noqa: E402

log = logging.getLogger("fashion")

GENERATOR_VERSION = 1
CATEGORIES = {"top": "top, t-shirt, sweatshirt", "pants": "pants", "skirt": "skirt",
              "shoe": "shoe", "bag": "bag, wallet"}
PATTERNS = {"plain": "plain (pattern)", "stripe": "stripe", "dot": "dot", "check": "check"}
SKIN_TONES = [(255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66),
              (141, 85, 36), (92, 58, 33)]
SKIRT_LENGTHS = {"mini (length)": 0.60, "knee (length)": 0.72, "maxi (length)": 0.90}


class _Canvas:
    """An image [H, W, 3] float32 and an owner map [H, W] (instance index, -1 = none)."""

    def __init__(self, h, w, rng):
        self.h, self.w, self.rng = h, w, rng
        self.image = np.zeros([h, w, 3], np.float32)          # [H, W, 3]
        self.owner = np.full([h, w], -1, np.int16)            # [H, W]
        self.instances = []                                   # (category, attribute ids)

    def band(self, y_top, y_bot, cx_top, hw_top, cx_bot, hw_bot):
        """Rows y_top..y_bot whose centre and half-width vary linearly -> [H, W] bool."""
        y0, y1 = max(int(np.floor(y_top)), 0), min(int(np.ceil(y_bot)), self.h)
        out = np.zeros([self.h, self.w], bool)
        if y1 <= y0:
            return out
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]       # [h, 1]
        t = (yy - y_top) / max(y_bot - y_top, 1e-3)
        cx, hw = cx_top + t * (cx_bot - cx_top), hw_top + t * (hw_bot - hw_top)
        xx = np.arange(self.w, dtype=np.float32)[None, :]       # [1, W]
        out[y0:y1] = np.abs(xx - cx) <= hw
        return out

    def ellipse(self, cy, cx, ry, rx):
        y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 1, self.h)
        x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 1, self.w)
        out = np.zeros([self.h, self.w], bool)
        if y1 > y0 and x1 > x0:
            yy, xx = np.ogrid[y0:y1, x0:x1]
            out[y0:y1, x0:x1] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        return out

    def paint(self, mask, colour, pattern="plain", colour2=None, period=8.0, owner=-1):
        """Fills a mask with a (patterned, shaded) colour and sets its owner."""
        ys, xs = np.nonzero(mask)                               # [P]
        if not len(ys):
            return
        ys32, xs32 = ys.astype(np.float32), xs.astype(np.float32)
        if pattern == "stripe":
            second = (ys32 // (period / 2)) % 2 == 1
        elif pattern == "dot":
            dy, dx = ys32 % period - period / 2, xs32 % period - period / 2
            second = dy * dy + dx * dx <= (period * 0.28) ** 2
        elif pattern == "check":
            second = ((ys32 // period) + (xs32 // period)) % 2 == 1
        else:
            second = np.zeros(len(ys), bool)
        c1, c2 = np.asarray(colour, np.float32), np.asarray(colour2 or colour, np.float32)
        pixels = np.where(second[:, None], c2, c1)              # [P, 3]
        shade = 1.0 - 0.12 * np.sin(xs32 * 0.9 / max(period, 1.0))[:, None] ** 2
        self.image[ys, xs] = pixels * shade
        self.owner[ys, xs] = owner

    def garment(self, mask, category, attributes=(), **paint_kw):
        self.paint(mask, owner=len(self.instances), **paint_kw)
        self.instances.append((category, tuple(attributes)))


def _colour(rng, lo=20, hi=235):
    return tuple(float(v) for v in rng.uniform(lo, hi, 3))


def _background(canvas, rng):
    h, w = canvas.h, canvas.w
    c1, c2 = np.array(_colour(rng, 90, 250)), np.array(_colour(rng, 90, 250))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)              # [H, W] each
    t = (np.cos(angle) * yy / h + np.sin(angle) * xx / w)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    canvas.image[:] = c1 + t[..., None] * (c2 - c1)             # [H, W, 3]
    floor = int(h * rng.uniform(0.7, 0.95))                     # a darker floor band
    canvas.image[floor:] *= rng.uniform(0.6, 0.9)


def _figure(canvas, rng, ids, top, cx, fh):
    """Draws one figure of height fh (pixels) with its top at row ``top``."""
    y = lambda f: top + f * fh  # noqa: E731  (fraction of figure height -> row)
    u = fh  # unit for widths
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    skin = tuple(float(v) for v in np.clip(np.array(tone) + rng.normal(0, 8, 3), 0, 255))
    hair = _colour(rng, 10, 90)
    walk = rng.uniform(-0.03, 0.03) * u                           # leg spread
    # Skin and hair (not annotated).
    canvas.paint(canvas.ellipse(y(0.075), cx, 0.07 * u, 0.055 * u), skin)
    canvas.paint(canvas.ellipse(y(0.045), cx, 0.045 * u, 0.058 * u), hair)
    canvas.paint(canvas.band(y(0.13), y(0.17), cx, 0.025 * u, cx, 0.03 * u), skin)
    for s in (-1, 1):
        canvas.paint(canvas.band(y(0.16), y(0.5), cx + s * 0.125 * u, 0.025 * u,
                                 cx + s * 0.16 * u, 0.02 * u), skin)
        canvas.paint(canvas.ellipse(y(0.52), cx + s * 0.16 * u, 0.028 * u, 0.02 * u), skin)
        canvas.paint(canvas.band(y(0.48), y(0.95), cx + s * 0.05 * u, 0.045 * u,
                                 cx + s * (0.06 * u + walk), 0.028 * u), skin)
    # Shoes, then the lower garment over their tops, then the top over its waist.
    shoe_colour = _colour(rng, 10, 120)
    for s in (-1, 1):
        shoe = canvas.ellipse(y(0.965), cx + s * (0.075 * u + walk), 0.03 * u, 0.05 * u)
        canvas.garment(shoe, ids["shoe"], colour=shoe_colour)
    period = max(3.0, rng.uniform(0.025, 0.05) * u)
    if rng.random() < 0.55:
        pattern = rng.choice(list(PATTERNS))
        hem = rng.uniform(0.93, 0.955)
        pants = canvas.band(y(0.44), y(0.52), cx, 0.1 * u, cx, 0.105 * u)
        for s in (-1, 1):
            pants |= canvas.band(y(0.5), y(hem), cx + s * 0.05 * u, 0.055 * u,
                                 cx + s * (0.06 * u + walk), 0.04 * u)
        canvas.garment(pants, ids["pants"], [ids[pattern]], colour=_colour(rng),
                       pattern=pattern, colour2=_colour(rng), period=period)
    else:
        pattern = rng.choice(list(PATTERNS))
        length = rng.choice(list(SKIRT_LENGTHS))
        flare = rng.uniform(0.13, 0.2) * u
        skirt = canvas.band(y(0.44), y(SKIRT_LENGTHS[length]), cx, 0.095 * u, cx, flare)
        canvas.garment(skirt, ids["skirt"], [ids[pattern], ids[length]],
                       colour=_colour(rng), pattern=pattern, colour2=_colour(rng),
                       period=period)
    pattern = rng.choice(list(PATTERNS))
    sleeve = rng.uniform(0.27, 0.5)
    top_mask = canvas.band(y(0.15), y(rng.uniform(0.46, 0.54)), cx, 0.12 * u, cx, 0.105 * u)
    for s in (-1, 1):
        top_mask |= canvas.band(y(0.155), y(sleeve), cx + s * 0.125 * u, 0.035 * u,
                                cx + s * (0.125 + 0.035 * (sleeve - 0.155) / 0.345) * u,
                                0.03 * u)
    canvas.garment(top_mask, ids["top"], [ids[pattern]], colour=_colour(rng),
                   pattern=pattern, colour2=_colour(rng), period=period)
    if rng.random() < 0.45:  # a bag in one hand, its strap over the shoulder
        s = rng.choice([-1, 1])
        bx, by = cx + s * 0.2 * u, y(rng.uniform(0.5, 0.6))
        bag = canvas.band(by - 0.06 * u, by + 0.06 * u, bx, 0.06 * u, bx, 0.075 * u)
        bag |= canvas.band(y(0.16), by - 0.06 * u, cx + s * 0.1 * u, 0.008 * u, bx,
                           0.008 * u)
        canvas.garment(bag, ids["bag"], colour=_colour(rng, 20, 200))


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
    image = canvas.image + rng.normal(0, 4.0, canvas.image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)             # [H, W, 3]
    min_area = max(8, int(16 * (size / 256) ** 2))
    instances = []
    for k, (category, attrs) in enumerate(canvas.instances):
        mask = canvas.owner == k                                # [H, W]
        if mask.sum() >= min_area:
            instances.append((mask, category, attrs))
    return image, instances


def _manifest(num_images, size, seed, hard=False):
    return {"generator": "fashion.demo_data", "version": GENERATOR_VERSION,
            "format": "imat2019", "num_images": int(num_images), "size": int(size),
            "seed": int(seed), "hard": bool(hard)}


def generate_demo(out_dir, num_images=300, size=256, seed=0, hard=False):
    """Writes the demo dataset to out_dir (skipped when out_dir/manifest.json already
    records the same generator version and parameters) and returns out_dir.

    hard=True draws crowds of small, overlapping figures with accessories (hats,
    belts, glasses, ...; fashion/demo_hard.py) instead of one or two large figures."""
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
        from fashion.demo_hard import HARD_CATEGORIES, make_hard_image
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

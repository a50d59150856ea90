"""The harder demo set: crowds of small, overlapping figures with small accessories.

Each image holds 2-5 figures of 25-60% of the image height, placed so that they overlap
and may be cut by the frame, and besides the base garments (top, pants or skirt, shoes,
bag) they wear hats, belts, glasses, scarves, watches, jackets and dresses. At 256 px
most garments are 8-32 px across and many are partly hidden, as in street photos.
Category ids are iMaterialist 2019's, looked up by name.

Used through ``generate_demo(out_dir, ..., hard=True)`` (``python fashion/data/demo_data.py
OUT --hard``).
"""
import numpy as np

from fashion.data.demo_figures import _Canvas, _background, _colour, _figure, finish

HARD_CATEGORIES = {"hat": "hat", "belt": "belt", "glasses": "glasses", "scarf": "scarf",
                   "watch": "watch", "jacket": "jacket", "dress": "dress"}


def _accessories(canvas, rng, ids, top, cx, fh):
    """Hat, glasses, scarf, jacket, dress, belt and watch over a figure (some of them)."""
    y = lambda f: top + f * fh  # noqa: E731  (fraction of figure height -> row)
    u = fh
    if rng.random() < 0.35:  # a dress over the top and the lower garment
        hem = rng.uniform(0.6, 0.85)
        dress = canvas.band(y(0.15), y(0.46), cx, 0.11 * u, cx, 0.095 * u)
        dress |= canvas.band(y(0.45), y(hem), cx, 0.095 * u, cx, rng.uniform(0.13, 0.2) * u)
        canvas.garment(dress, ids["dress"], colour=_colour(rng))
    if rng.random() < 0.35:  # an open jacket: two panels and sleeves
        jacket = np.zeros([canvas.h, canvas.w], bool)
        for s in (-1, 1):
            jacket |= canvas.band(y(0.15), y(0.5), cx + s * 0.085 * u, 0.04 * u,
                                  cx + s * 0.09 * u, 0.04 * u)
            jacket |= canvas.band(y(0.155), y(0.48), cx + s * 0.13 * u, 0.035 * u,
                                  cx + s * 0.16 * u, 0.028 * u)
        canvas.garment(jacket, ids["jacket"], colour=_colour(rng, 10, 150))
    if rng.random() < 0.5:  # a belt across the waist
        wy = y(rng.uniform(0.43, 0.47))
        belt = canvas.band(wy, wy + 0.025 * u, cx, 0.105 * u, cx, 0.105 * u)
        canvas.garment(belt, ids["belt"], colour=_colour(rng, 10, 90))
    if rng.random() < 0.3:  # a scarf around the neck
        scarf = canvas.band(y(0.125), y(0.16), cx, 0.06 * u, cx, 0.07 * u)
        scarf |= canvas.band(y(0.15), y(0.3), cx + 0.04 * u, 0.02 * u, cx + 0.05 * u,
                             0.025 * u)
        canvas.garment(scarf, ids["scarf"], colour=_colour(rng))
    if rng.random() < 0.45:  # a hat: crown and brim
        hat = canvas.ellipse(y(0.025), cx, 0.035 * u, 0.055 * u)
        hat |= canvas.band(y(0.04), y(0.055), cx, 0.09 * u, cx, 0.09 * u)
        canvas.garment(hat, ids["hat"], colour=_colour(rng, 10, 200))
    if rng.random() < 0.3:  # glasses: two lenses and a bridge
        glasses = canvas.ellipse(y(0.075), cx - 0.022 * u, 0.012 * u, 0.018 * u)
        glasses |= canvas.ellipse(y(0.075), cx + 0.022 * u, 0.012 * u, 0.018 * u)
        glasses |= canvas.band(y(0.072), y(0.078), cx, 0.01 * u, cx, 0.01 * u)
        canvas.garment(glasses, ids["glasses"], colour=_colour(rng, 5, 60))
    if rng.random() < 0.3:  # a watch on one wrist
        s = rng.choice([-1, 1])
        watch = canvas.band(y(0.47), y(0.49), cx + s * 0.158 * u, 0.024 * u,
                            cx + s * 0.16 * u, 0.024 * u)
        canvas.garment(watch, ids["watch"], colour=_colour(rng, 150, 250))


def make_hard_image(index, size, seed, ids):
    """One crowded image -> (uint8 [H, W, 3], [(mask [H, W] bool, category, attrs)])."""
    rng = np.random.default_rng([seed, index, 7])
    h = size
    w = int(round(size * rng.uniform(0.85, 1.0) / 2)) * 2
    canvas = _Canvas(h, w, rng)
    _background(canvas, rng)
    n = int(rng.integers(2, 6))
    # far figures first (smaller, higher), near ones last (larger, lower): occlusion
    heights = np.sort(rng.uniform(0.25, 0.6, n)) * h
    for fh in heights:
        cx = rng.uniform(-0.05 * w, 1.05 * w)
        top = rng.uniform(-0.1 * fh, h - 0.8 * fh)
        _figure(canvas, rng, ids, top, cx, fh)
        _accessories(canvas, rng, ids, top, cx, fh)
    return finish(canvas, rng, 5.0, min_area=max(6, int(10 * (size / 256) ** 2)))

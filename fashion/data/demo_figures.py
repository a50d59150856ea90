"""Drawing primitives of the synthetic demo sets: a canvas that records instance masks,
backgrounds, colours and people-like figures wearing garments (fashion/data/demo_data.py
draws one or two large figures per image, fashion/data/demo_hard.py crowds of small ones).
"""
import numpy as np

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


def finish(canvas, rng, noise, min_area):
    """(uint8 image [H, W, 3] with Gaussian noise, [(mask [H, W], category, attribute
    ids)]) of a drawn canvas; instances smaller than min_area pixels once occluded are
    dropped."""
    image = canvas.image + rng.normal(0, noise, canvas.image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)             # [H, W, 3]
    instances = []
    for k, (category, attrs) in enumerate(canvas.instances):
        mask = canvas.owner == k                                # [H, W]
        if mask.sum() >= min_area:
            instances.append((mask, category, attrs))
    return image, instances

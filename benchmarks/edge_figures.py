"""Figures whose garments have edges a 28x28 mask cannot follow: zigzag and scalloped
hems, thin straps and cut-outs, drawn at 512 px (benchmarks/bench_edges.py).

Each image holds 1-3 standing figures (skin-coloured head, arms and legs, which are not
instances) on a noisy gradient background. Each figure wears either a dress (class 1:
straps, a bodice with a diamond or round cut-out, a flared skirt ending in a zigzag or
scalloped hem) or a strappy top (class 2, scalloped or straight hem) and a skirt
(class 3, zigzag or scalloped hem). Garments carry a faint texture. Masks are exact
polygons, so the edge is known to the pixel.

    ds = EdgeFigures(); ds.load(300, seed=1); ds.prepare()
    image = ds.load_image(0); masks, class_ids = ds.load_mask(0)
"""
import cv2
import numpy as np

from mrcnn import utils

CLASSES = ("dress", "top", "skirt")


def _hem(x_left, x_right, y, kind, teeth, amp):
    """Points of a hem from right to left at height y: 'zigzag', 'scallop' or 'straight'."""
    xs = np.linspace(x_right, x_left, 8 * teeth + 1)
    t = np.linspace(0, teeth, xs.size)
    frac = t - np.floor(t)
    if kind == "zigzag":
        dy = amp * (1 - 2 * np.abs(frac - 0.5))          # triangle teeth
    elif kind == "scallop":
        dy = amp * np.sqrt(np.clip(1 - (2 * frac - 1) ** 2, 0, 1))  # half discs
    else:
        dy = np.zeros_like(xs)
    return np.stack([xs, y + dy], -1)


def _fill(shape, polygons):
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(p * 8).astype(np.int32) for p in polygons], 1,
                 lineType=cv2.LINE_8, shift=3)
    return mask.astype(bool)


def _strap(shape, x0, y0, x1, y1, width):
    mask = np.zeros(shape, np.uint8)
    cv2.line(mask, (int(x0 * 8), int(y0 * 8)), (int(x1 * 8), int(y1 * 8)), 1,
             max(1, int(round(width))), lineType=cv2.LINE_8, shift=3)
    return mask.astype(bool)


def _figure(shape, rng, cx, top, h):
    """(body mask, [(class id, garment mask)]) of one figure of height h."""
    u = h
    body = np.zeros(shape, np.uint8)
    cv2.ellipse(body, (int(cx), int(top + 0.06 * u)), (int(0.045 * u), int(0.06 * u)),
                0, 0, 360, 1, -1)
    body |= _fill(shape, [np.array([[cx - 0.1 * u, top + 0.13 * u], [cx + 0.1 * u, top + 0.13 * u],
                                    [cx + 0.08 * u, top + 0.55 * u],
                                    [cx - 0.08 * u, top + 0.55 * u]])]).astype(np.uint8)
    for s in (-1, 1):
        body |= _strap(shape, cx + s * 0.1 * u, top + 0.15 * u, cx + s * 0.17 * u,
                       top + 0.5 * u, 0.035 * u).astype(np.uint8)
        body |= _strap(shape, cx + s * 0.04 * u, top + 0.55 * u, cx + s * 0.05 * u,
                       top + 0.98 * u, 0.05 * u).astype(np.uint8)
    garments = []
    y = lambda f: top + f * u  # noqa: E731
    hem_kind = lambda: rng.choice(["zigzag", "scallop"])  # noqa: E731
    if rng.random() < 0.55:                                   # a dress
        hem = y(rng.uniform(0.68, 0.85))
        flare = rng.uniform(0.16, 0.24) * u
        teeth = int(rng.integers(5, 11))
        outline = np.concatenate([
            [[cx - 0.09 * u, y(0.2)], [cx + 0.09 * u, y(0.2)], [cx + 0.085 * u, y(0.45)]],
            [[cx + flare, hem]],
            _hem(cx - flare, cx + flare, hem, hem_kind(), teeth, rng.uniform(0.02, 0.045) * u),
            [[cx - 0.085 * u, y(0.45)]]])
        dress = _fill(shape, [outline])
        for s in (-1, 1):                                     # straps
            dress |= _strap(shape, cx + s * 0.06 * u, y(0.205), cx + s * 0.055 * u,
                            y(0.13), rng.uniform(0.008, 0.016) * u)
        if rng.random() < 0.7:                                # a cut-out
            cy, r = y(rng.uniform(0.28, 0.36)), rng.uniform(0.025, 0.04) * u
            hole = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]])
            if rng.random() < 0.5:
                dress &= ~_fill(shape, [hole])
            else:
                ring = np.zeros(shape, np.uint8)
                cv2.circle(ring, (int(cx), int(cy)), int(r), 1, -1)
                dress &= ~ring.astype(bool)
        garments.append((1, dress))
    else:                                                     # a top and a skirt
        waist = y(0.45)
        top_outline = np.concatenate([
            [[cx - 0.095 * u, y(0.2)], [cx + 0.095 * u, y(0.2)]],
            [[cx + 0.09 * u, waist]],
            _hem(cx - 0.09 * u, cx + 0.09 * u, waist,
                 rng.choice(["scallop", "straight"]), int(rng.integers(3, 6)), 0.02 * u)])
        top_mask = _fill(shape, [top_outline])
        for s in (-1, 1):
            top_mask |= _strap(shape, cx + s * 0.06 * u, y(0.205), cx + s * 0.05 * u,
                               y(0.13), rng.uniform(0.008, 0.014) * u)
        hem = y(rng.uniform(0.65, 0.8))
        flare = rng.uniform(0.14, 0.22) * u
        skirt_outline = np.concatenate([
            [[cx - 0.085 * u, waist + 0.015 * u], [cx + 0.085 * u, waist + 0.015 * u]],
            [[cx + flare, hem]],
            _hem(cx - flare, cx + flare, hem, hem_kind(), int(rng.integers(4, 10)),
                 rng.uniform(0.02, 0.045) * u)])
        skirt = _fill(shape, [skirt_outline]) & ~top_mask
        garments += [(2, top_mask), (3, skirt)]
    return body.astype(bool), garments


def _texture(rng, shape, colour):
    noise = cv2.GaussianBlur(rng.normal(0, 1, shape[:2]).astype(np.float32), (0, 0), 2)
    return np.clip(colour[None, None] + 14 * noise[..., None], 0, 255)


def edge_image(seed, side=512):
    """(image uint8 [side, side, 3], masks bool [side, side, N], class ids [N])."""
    rng = np.random.default_rng(seed)
    shape = (side, side)
    grad = np.linspace(0, 1, side)[:, None, None] * rng.uniform(-60, 60, 3)
    image = np.clip(rng.uniform(90, 200, 3) + grad + rng.normal(0, 6, (side, side, 3)),
                    0, 255)
    owner = np.zeros(shape, np.int32)                         # visible instance + 1
    instances = []
    n = int(rng.integers(1, 4))
    centres = np.sort(rng.uniform(0.18, 0.82, n)) * side
    for cx in centres:
        h = rng.uniform(0.55, 0.95) * side
        top = rng.uniform(0, side - h * 0.9)
        body, garments = _figure(shape, rng, cx, top, h)
        skin = np.array([rng.uniform(150, 230), rng.uniform(110, 180), rng.uniform(90, 150)])
        image[body] = _texture(rng, (side, side, 3), skin)[body]
        owner[body] = 0
        for cls, mask in garments:
            image[mask] = _texture(rng, (side, side, 3), rng.uniform(20, 235, 3))[mask]
            instances.append(cls)
            owner[mask] = len(instances)
    masks = np.stack([owner == i + 1 for i in range(len(instances))], -1) if instances \
        else np.zeros(shape + (0,), bool)
    keep = masks.sum((0, 1)) >= 20                            # hidden almost entirely
    return (image.astype(np.uint8), masks[..., keep],
            np.array(instances, np.int32)[keep])


class EdgeFigures(utils.Dataset):
    """matterport Dataset of generated edge figures (drawn again on each load)."""

    def load(self, count, seed=0, side=512):
        for i, name in enumerate(CLASSES, 1):
            self.add_class("edges", i, name)
        for k in range(count):
            self.add_image("edges", image_id=k, path=None, seed=seed * 100003 + k, side=side)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        return edge_image(info["seed"], info["side"])[0]

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        _, masks, class_ids = edge_image(info["seed"], info["side"])
        return masks, class_ids

"""Display helpers with matterport's names and argument orders, safe without a display.

Every plotting function takes ``save_path=`` (a PNG written atomically: temp file then
rename) and returns the matplotlib Figure it drew on; ``draw_box`` and
``draw_instances_on_image`` return the drawn uint8 image. On a machine without a display
(and outside Jupyter) matplotlib's Agg backend is selected; in Jupyter the notebook's
backend is left alone. Figures are shown with ``plt.show()`` only on interactive backends.
Default instance colours come from ``class_colors``: one stable colour per category name.
"""
import colorsys
import functools
import hashlib
import html
import itertools
import os
import random
import sys

import numpy as np
import matplotlib

_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _use_agg_if_headless():
    """Select Agg when there is no display, unless in Jupyter or a backend was chosen."""
    if not sys.platform.startswith("linux") or os.environ.get("DISPLAY") \
            or os.environ.get("WAYLAND_DISPLAY") or "ipykernel" in sys.modules:
        return
    chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: None)()
    if chosen is None or chosen.lower() not in _NON_INTERACTIVE:
        matplotlib.use("Agg", force=True)


_use_agg_if_headless()

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import lines, patches  # noqa: E402

from mrcnn.fileio import atomic_open  # noqa: E402


############################################################
#  Colours and saving
############################################################

def random_colors(N, bright=True):
    """N distinct RGB colours in [0, 1] (evenly spaced hues, shuffled)."""
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1.0, value) for i in range(N)]
    random.shuffle(colors)
    return colors


def _name_color(name):
    """A stable, bright RGB colour in [0, 1] derived from md5(name)."""
    d = hashlib.md5(str(name).encode("utf-8")).digest()
    hue = (d[0] * 256 + d[1]) / 65536.0
    return colorsys.hsv_to_rgb(hue, 0.55 + 0.45 * d[2] / 255, 0.8 + 0.2 * d[3] / 255)


def class_colors(class_names):
    """One colour per entry of class_names (index = class id), the same in every run."""
    return [_name_color(name) for name in class_names]


def apply_mask(image, mask, color, alpha=0.5):
    """Blend `color` (RGB in [0, 1]) into image [H, W, 3] where mask [H, W] is set.

    Modifies `image` in place (as matterport does) and returns it.
    """
    sel = mask.astype(bool)  # [H, W]
    for c in range(3):
        image[:, :, c] = np.where(sel, image[:, :, c] * (1 - alpha) + alpha * color[c] * 255,
                                  image[:, :, c])
    return image


def _atomic_write(path, write):
    """Call write(file_object) on a temp file beside `path`, then rename it to `path`."""
    with atomic_open(path, "wb") as f:
        write(f)
    return str(path)


def save_figure(fig, path):
    """Write fig as a PNG of figsize * dpi pixels, atomically."""
    return _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))


def save_image(image, path):
    """Write a uint8 image [H, W, 3] (or [H, W]) as a PNG, atomically."""
    from PIL import Image
    return _atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))


def _can_show():
    return matplotlib.get_backend().lower() not in _NON_INTERACTIVE


def _finish(fig, save_path, owns_figure):
    """Save if asked; show (interactive backends) or release (headless) own figures."""
    if save_path:
        save_figure(fig, save_path)
    if owns_figure:
        if _can_show():
            plt.show()
        else:
            plt.close(fig)  # drop pyplot's reference; fig stays usable for savefig
    return fig


def _axes(ax, figsize, dpi):
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(1, figsize=figsize, dpi=dpi)
    return fig, ax, True


############################################################
#  Instances
############################################################

def _caption(i, class_ids, class_names, scores, attribute_names, attributes):
    label = class_names[class_ids[i]]
    text = f"{label} {scores[i]:.3f}" if scores is not None else label
    if attribute_names is not None and attributes is not None:
        row = np.asarray(attributes[i])
        ids = np.flatnonzero(row) if row.dtype == bool or row.size == len(attribute_names) \
            else row  # multi-hot [NUM_ATTRIBUTES] or a list of attribute ids
        names = [str(attribute_names[int(a)]) for a in ids]
        if names:
            text += "\n" + ", ".join(names)
    return text


def _draw_mask_outline(ax, mask, color):
    from skimage.measure import find_contours
    padded = np.pad(mask.astype(np.uint8), 1)  # [H+2, W+2] so edge masks close
    for verts in find_contours(padded, 0.5):
        verts = np.fliplr(verts) - 1  # (y, x) -> (x, y), undo the padding
        ax.add_patch(patches.Polygon(verts, facecolor="none", edgecolor=color))


def _draw_instances_ax(ax, image, boxes, masks, captions, colors, show_mask, show_bbox,
                       title, styles=None):
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)
    masked = image.astype(np.float64).copy()  # [H, W, 3]
    for i, color in enumerate(colors):
        style = (styles or {}).get(i, "dashed")
        if show_bbox and np.any(boxes[i]):
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=0.7, linestyle=style, edgecolor=color,
                                           facecolor="none"))
        if captions[i] and np.any(boxes[i]):
            ax.text(boxes[i][1] + 1, boxes[i][0] + 1, captions[i], color="w", size=11,
                    verticalalignment="top", backgroundcolor="none")
        if masks is not None:
            if show_mask:
                masked = apply_mask(masked, masks[:, :, i], color)
            _draw_mask_outline(ax, masks[:, :, i], color)
    ax.imshow(masked.astype(np.uint8))


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True,
                      colors=None, captions=None, attribute_names=None, attributes=None,
                      save_path=None, dpi=100):
    """Draw boxes [N, (y1, x1, y2, x2)], masks [H, W, N] and captions over the image.

    Colours default to class_colors(class_names) by class id. With attribute_names
    (list indexed by attribute id) and attributes ([N, NUM_ATTRIBUTES] multi-hot, or N
    lists of ids), each caption gains a line with the instance's attribute names.
    """
    boxes = np.asarray(boxes)
    n = boxes.shape[0]
    if masks is not None and masks.shape[-1] != n:
        raise ValueError(f"display_instances: {n} boxes but masks has {masks.shape[-1]} "
                         "instances on its last axis; pass masks as [H, W, N].")
    if len(class_ids) != n:
        raise ValueError(f"display_instances: {n} boxes but {len(class_ids)} class_ids.")
    fig, ax, own = _axes(ax, figsize, dpi)
    if colors is None:
        palette = class_colors(class_names)
        colors = [palette[int(c)] for c in class_ids]
    if captions is None:
        captions = [_caption(i, class_ids, class_names, scores, attribute_names, attributes)
                    for i in range(n)]
    _draw_instances_ax(ax, image, boxes, masks, captions, colors, show_mask, show_bbox,
                       title if n else (title or "*** No instances to display ***"))
    return _finish(fig, save_path, own)


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                        pred_score, pred_mask, class_names, title="", ax=None,
                        show_mask=True, show_box=True, iou_threshold=0.5,
                        score_threshold=0.5, figsize=(16, 16), save_path=None, dpi=100):
    """Ground truth (green) and predictions (red, captioned "score / IoU") on one image."""
    from mrcnn import utils  # compute_matches; imported here to keep this module light
    order = np.argsort(pred_score)[::-1]  # compute_matches works in score order
    pred_box, pred_class_id = pred_box[order], pred_class_id[order]
    pred_score, pred_mask = pred_score[order], pred_mask[..., order]
    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    n_gt, n_pred = len(gt_match), len(pred_match)
    colors = [(0, 1, 0, 0.8)] * n_gt + [(1, 0, 0, 1)] * n_pred
    ious = [0.0 if not overlaps.size else overlaps[i, int(pred_match[i])]
            if pred_match[i] > -1 else overlaps[i].max() for i in range(n_pred)]
    captions = [""] * n_gt + [f"{pred_score[i]:.2f} / {ious[i]:.2f}" for i in range(n_pred)]
    boxes = np.concatenate([gt_box[:n_gt], pred_box[:n_pred]])
    masks = np.concatenate([gt_mask[..., :n_gt], pred_mask[..., :n_pred]], axis=-1)
    fig, ax, own = _axes(ax, figsize, dpi)
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    _draw_instances_ax(ax, image, boxes, masks, captions, colors, show_mask, show_box,
                       title, styles={i: "solid" for i in range(n_gt)})
    return _finish(fig, save_path, own)


def draw_instances_on_image(image, boxes, masks, class_ids, class_names, scores=None,
                            colors=None, alpha=0.5, show_bbox=True, show_labels=True,
                            save_path=None, min_side=0, captions=None):
    """Overlay masks, outlines, boxes and labels on a copy of image; returns uint8 [H, W, 3].

    numpy/scikit-image only (labels use Pillow with DejaVu Sans sized to the image),
    meant for fast batch overlays. min_side: images whose long side is shorter are first
    upscaled by a whole factor (bilinear image, nearest masks and boxes) so labels stay
    legible; captions: one label per instance instead of "class score".
    """
    from skimage.segmentation import find_boundaries
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)  # [H, W] -> [H, W, 3]
    if min_side and max(image.shape[:2]) < min_side:
        image, boxes, masks = _upscale(image, boxes, masks,
                                       -(-int(min_side) // max(image.shape[:2])))
    out = image[..., :3].astype(np.float32)  # [H, W, 3]
    h, w = out.shape[:2]
    if colors is None:
        palette = class_colors(class_names)
        colors = [palette[int(c)] for c in class_ids]
    rgb = [np.array(c[:3], np.float32) * 255 for c in colors]
    boxes = np.asarray(boxes).reshape(-1, 4).astype(np.int64)  # [N, (y1, x1, y2, x2)]
    for i in range(boxes.shape[0]):
        if masks is not None:
            y1, x1 = max(boxes[i][0] - 1, 0), max(boxes[i][1] - 1, 0)
            m = masks[y1:boxes[i][2] + 1, x1:boxes[i][3] + 1, i].astype(bool)  # crop
            region = out[y1:y1 + m.shape[0], x1:x1 + m.shape[1]]
            region[m] = region[m] * (1 - alpha) + alpha * rgb[i]
            region[find_boundaries(m, mode="inner")] = rgb[i]
        if show_bbox:
            draw_box(out, boxes[i], rgb[i], thickness=max(2, round(max(h, w) / 300)))
    out = np.clip(out, 0, 255).astype(np.uint8)
    if show_labels and boxes.shape[0]:
        out = _draw_labels(out, boxes, class_ids, class_names, scores, rgb, captions)
    if save_path:
        save_image(out, save_path)
    return out


def _upscale(image, boxes, masks, factor):
    """image [H, W, 3] (bilinear), boxes and masks [H, W, N] (nearest) x factor."""
    from PIL import Image
    h, w = image.shape[:2]
    big = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
                     .resize((w * factor, h * factor), Image.BILINEAR))
    boxes = np.asarray(boxes).reshape(-1, 4) * factor
    if masks is not None:
        masks = np.repeat(np.repeat(np.asarray(masks), factor, axis=0), factor, axis=1)
    return big, boxes, masks


@functools.lru_cache(maxsize=16)
def label_font(size):
    """DejaVu Sans (matplotlib's bundled TrueType font) at `size` px, else Pillow's."""
    from PIL import ImageFont
    try:
        from matplotlib import font_manager
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (OSError, ValueError, ImportError):
        return ImageFont.load_default(size=size)


def _draw_labels(image, boxes, class_ids, class_names, scores, rgb, captions=None):
    from PIL import Image, ImageDraw
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    h, w = image.shape[:2]
    font = label_font(max(11, round(max(h, w) / 36)))
    texts, sizes = [], []
    for i in range(len(boxes)):
        if captions is not None:
            text = str(captions[i])
        else:
            text = str(class_names[class_ids[i]])
            if scores is not None:
                text += f" {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        texts.append((text, top))
        sizes.append((right + 4, bottom - top + 2))  # the label's background box
    for i, (x, y) in enumerate(label_positions(boxes, sizes, (h, w))):
        text, top = texts[i]
        bw, bh = sizes[i]
        draw.rectangle((x, y, x + bw, y + bh), fill=tuple(int(v) for v in rgb[i]))
        draw.text((x + 2, y + 1 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def label_positions(boxes, sizes, shape):
    """Top-left corners (x, y) for label boxes of `sizes` [(width, height)], one per box
    [N, (y1, x1, y2, x2)], inside an image of `shape` (h, w), that do not overlap.

    Each label tries the inside top-left of its box, then just above it, then below its
    bottom edge, then slides down from its top edge; the first place free of the labels
    already placed wins (labels whose boxes are all taken stay at their box's corner).
    """
    h, w = shape[:2]
    placed, out = [], []

    def clamp(x, y, bw, bh):
        return (int(min(max(x, 0), max(w - bw - 1, 0))),
                int(min(max(y, 0), max(h - bh - 1, 0))))

    def free(x, y, bw, bh):
        return all(x + bw < px or px + pw < x or y + bh < py or py + ph < y
                   for px, py, pw, ph in placed)

    for (y1, x1, y2, _), (bw, bh) in zip(np.asarray(boxes, float).tolist(), sizes):
        candidates = [(x1 + 1, y1 + 1), (x1, y1 - bh - 1), (x1, y2 + 1)]
        candidates += [(x1 + 1, y1 + 1 + k * (bh + 1)) for k in range(1, max(1, h // bh))]
        spots = [clamp(x, y, bw, bh) for x, y in candidates]
        spot = next((s for s in spots if free(*s, bw, bh)), spots[0])
        placed.append((*spot, bw, bh))
        out.append(spot)
    return out


def draw_box(image, box, color, thickness=2):
    """Draw the outline of box (y1, x1, y2, x2) into image [H, W, C] in place; return it."""
    h, w = image.shape[:2]
    y1, x1, y2, x2 = [int(v) for v in box]
    y1, y2 = np.clip([y1, y2], 0, h - 1)
    x1, x2 = np.clip([x1, x2], 0, w - 1)
    image[y1:y1 + thickness, x1:x2 + 1] = color
    image[max(y2 - thickness + 1, 0):y2 + 1, x1:x2 + 1] = color
    image[y1:y2 + 1, x1:x1 + thickness] = color
    image[y1:y2 + 1, max(x2 - thickness + 1, 0):x2 + 1] = color
    return image


############################################################
#  Grids, curves, matrices, boxes
############################################################

def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None,
                   figsize=None, save_path=None, dpi=100):
    """Show images in a grid of `cols` columns with optional titles."""
    titles = titles if titles is not None else [""] * len(images)
    rows = max(1, -(-len(images) // cols))
    fig = plt.figure(figsize=figsize or (14, 14 * rows // cols), dpi=dpi)
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm,
                  interpolation=interpolation)
    return _finish(fig, save_path, True)


def display_top_masks(image, mask, class_ids, class_names, limit=4, figsize=None,
                      save_path=None, dpi=100):
    """The image and the masks of its `limit` largest classes (by total mask area)."""
    to_display = [image]
    titles = ["H x W={}x{}".format(*image.shape[:2])]
    class_ids = np.asarray(class_ids)
    unique = np.unique(class_ids)
    area = [np.sum(mask[:, :, class_ids == c]) for c in unique]
    top = [c for _, c in sorted(zip(area, unique), key=lambda t: -t[0]) if _ > 0]
    for i in range(limit):
        class_id = top[i] if i < len(top) else -1
        m = mask[:, :, class_ids == class_id]  # [H, W, k]
        to_display.append(np.sum(m * np.arange(1, m.shape[-1] + 1), -1))  # [H, W]
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r",
                          figsize=figsize, save_path=save_path, dpi=dpi)


def plot_precision_recall(AP, precisions, recalls, figsize=(8, 8), save_path=None,
                          dpi=100):
    """Precision-recall curve titled with the AP."""
    fig, ax = plt.subplots(1, figsize=figsize, dpi=dpi)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {AP:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.plot(recalls, precisions)
    return _finish(fig, save_path, True)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names,
                  threshold=0.5, figsize=(12, 10), save_path=None, dpi=100):
    """IoU matrix of predictions (rows) against ground truth (columns)."""
    gt_class_ids = np.asarray(gt_class_ids)[np.asarray(gt_class_ids) != 0]
    pred_class_ids = np.asarray(pred_class_ids)[np.asarray(pred_class_ids) != 0]
    fig, ax = plt.subplots(1, figsize=figsize, dpi=dpi)
    ax.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues, vmin=0, vmax=1)
    ax.set_yticks(np.arange(len(pred_class_ids)))
    ax.set_yticklabels([f"{class_names[int(c)]} ({pred_scores[i]:.2f})"
                        for i, c in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)))
    ax.set_xticklabels([class_names[int(c)] for c in gt_class_ids], rotation=90)
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        text = ""
        if overlaps[i, j] > threshold:
            text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = "white" if overlaps[i, j] > threshold else (
            "black" if overlaps[i, j] > 0 else "grey")
        ax.text(j, i, f"{overlaps[i, j]:.3f}\n{text}", ha="center", va="center",
                fontsize=9, color=color)
    ax.set_ylabel("Predictions")
    ax.set_xlabel("Ground Truth")
    fig.tight_layout()
    return _finish(fig, save_path, True)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10,
              figsize=(12, 12), save_path=None, dpi=100):
    """A random sample of ROIs (dashed), their refinements (solid) and mini-masks.

    rois, refined_rois: [N, (y1, x1, y2, x2)] pixels; mask: [N, h, w] mini-masks.
    """
    from mrcnn import utils  # unmold_mask
    ids = np.arange(rois.shape[0], dtype=np.int32)
    if ids.size > limit:
        ids = np.random.choice(ids, limit, replace=False)
    fig, ax = plt.subplots(1, figsize=figsize, dpi=dpi)
    colors = random_colors(len(ids))
    masked = image.astype(np.float64).copy()  # [H, W, 3]
    for color, i in zip(colors, ids):
        if not class_ids[i]:
            continue
        y1, x1, y2, x2 = rois[i]
        ry1, rx1, ry2, rx2 = refined_rois[i]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                       edgecolor=color, facecolor="none", linestyle="dashed"))
        ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                       edgecolor=color, facecolor="none"))
        ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        ax.text(rx1, ry1 + 8, class_names[class_ids[i]], color="w", size=11)
        m = utils.unmold_mask(mask[i], rois[i][:4].astype(np.int32), image.shape)
        masked = apply_mask(masked, m, color)
    ax.imshow(masked.astype(np.uint8))
    positive = int(np.sum(np.asarray(class_ids) > 0))
    ax.set_title(f"ROIs: {len(rois)}, positive: {positive}, negative: {len(rois) - positive}")
    ax.axis("off")
    return _finish(fig, save_path, True)


def _box_style(visibility, color):
    if visibility == 0:
        return "gray", "dotted", 0.5
    return color, ("dotted" if visibility == 1 else "solid"), 1.0


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None,
               visibilities=None, title="", ax=None, figsize=(12, 12), save_path=None,
               dpi=100):
    """Boxes (dotted), refined boxes (solid), captions and masks [H, W, N].

    visibilities: per box 0 (grey, faint), 1 (dotted) or 2 (solid, the default is 1).
    """
    n = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    fig, ax, own = _axes(ax, figsize, dpi)
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-50, image.shape[1] + 50)
    ax.axis("off")
    ax.set_title(title)
    masked = image.astype(np.float64).copy()  # [H, W, 3]
    for i in range(n):
        color, style, alpha = _box_style(visibilities[i] if visibilities is not None
                                         else 1, colors[i])
        if boxes is not None and np.any(boxes[i]):
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=alpha, linestyle=style, edgecolor=color,
                                           facecolor="none"))
        if refined_boxes is not None and color != "gray":
            ry1, rx1, ry2, rx2 = refined_boxes[i]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([boxes[i][1], rx1], [boxes[i][0], ry1],
                                         color=color))
        if captions is not None:
            y1, x1 = (refined_boxes if refined_boxes is not None else boxes)[i][:2]
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            masked = apply_mask(masked, masks[:, :, i], color if color != "gray"
                                else (0.5, 0.5, 0.5))
            _draw_mask_outline(ax, masks[:, :, i], color)
    ax.imshow(masked.astype(np.uint8))
    return _finish(fig, save_path, own)


############################################################
#  Tables
############################################################

def _in_kernel():
    """True inside a running Jupyter/IPython kernel (not merely with ipykernel imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def display_table(table, save_path=None, dpi=100, show=True):
    """Show rows of cells (first row = header) as HTML in Jupyter, as text elsewhere.

    Returns the HTML string. save_path writes the table rendered as a PNG.
    """
    rows = [[str(c) for c in row] for row in table]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    markup = f"<table>{body}</table>"
    if show and _in_kernel():
        from IPython.display import HTML, display
        display(HTML(markup))
    elif show and rows:
        widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if save_path:
        fig = plt.figure(figsize=(12, 0.3 * len(rows) + 0.5), dpi=dpi)
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        if rows:
            ax.table(cellText=rows[1:] or None, colLabels=rows[0], loc="upper center")
        save_figure(fig, save_path)
        plt.close(fig)
    return markup


def display_weight_stats(model, save_path=None, display=True):
    """Min, max and std of every weight of a Keras model; flags suspicious weights.

    Returns the table: a header row then [name, shape, min, max, std, note] per weight.
    A note flags NaN/Inf values, constant kernels (std 0 in a weight with 2+ dims, e.g.
    never trained or collapsed) and values beyond +-1000.
    """
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD", "NOTE"]]
    for w in model.weights:
        name = getattr(w, "path", None) or w.name
        v = np.asarray(w.numpy() if hasattr(w, "numpy") else w, dtype=np.float64)
        note = []
        if v.size and not np.all(np.isfinite(v)):
            note.append("NaN/Inf")
        elif v.size:
            if v.ndim >= 2 and v.std() == 0:
                note.append("constant (std 0)")
            if np.abs(v).max() > 1000:
                note.append("|w| > 1000")
        stats = [f"{f(v):+9.4f}" if v.size else "-" for f in (np.min, np.max, np.std)]
        table.append([name, str(tuple(v.shape))] + stats + ["; ".join(note)])
    if display or save_path:
        display_table(table, save_path=save_path, show=display)
    return table

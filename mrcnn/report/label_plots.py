"""labels.png: what the training labels look like before a run starts.

Panels: instances per class (classes with fewer than 10 named), mask area and box
aspect split at COCO's small / medium / large (32^2 and 96^2 pixels of the original
image), instances per image, box centres, and attribute frequencies when the data has
attributes.

Class counts, instances per image and attributes cover every image when the caller
can give an image's class ids without decoding its masks (``class_ids_of``);
otherwise, and always for mask areas and boxes, they come from at most
``MASK_SAMPLE`` evenly spaced images (masks are decoded; the figure says how many).

Example:
    stats = label_statistics(dataset_train)
    plot_labels(stats, "logs/run/labels.png")
"""
import logging

import numpy as np

from mrcnn.report.plots import BLUE, figure, save, text_inches

log = logging.getLogger("mrcnn")

SMALL, MEDIUM = 32 ** 2, 96 ** 2   # COCO's area ranges (pixels)
FEW = 10                           # classes with fewer instances are named
MASK_SAMPLE = 200                  # images whose masks are decoded for sizes
TOP_ATTRIBUTES = 30


def _spread(ids, limit):
    ids = list(ids)
    if not limit or len(ids) <= limit:
        return ids
    picks = np.unique(np.linspace(0, len(ids) - 1, int(limit)).round().astype(int))
    return [ids[i] for i in picks]


def label_statistics(dataset, class_ids_of=None, attributes_of=None, mask_sample=MASK_SAMPLE,
                     progress=None):
    """Statistics of a prepared utils.Dataset's labels.

    Args:
        class_ids_of: fn(image_id) -> class ids of its instances, without decoding
            masks (None: counts come from the decoded sample).
        attributes_of: fn(image_id) -> multi-hot [N, A] in load_mask's order (default:
            dataset.load_attributes when the dataset has attributes).
        mask_sample: images whose masks are decoded (evenly spaced; None: all).
        progress: fn(iterable, description) -> iterable, e.g. a progress bar.
    Returns {"class_names", "counts" [C] (instances per class id), "per_image" [I],
    "areas" [M], "aspects" [M] (box width / height), "centres" [M, 2] (x, y in 0..1),
    "attributes" [A] counts or None, "attribute_names", "images", "counted_images",
    "mask_images"}.
    """
    ids = list(dataset.image_ids)
    names = list(dataset.class_names)
    if attributes_of is None and getattr(dataset, "num_attributes", 0):
        attributes_of = getattr(dataset, "load_attributes", None)
    sample = _spread(ids, mask_sample)
    steps = progress or (lambda items, what: items)
    counts = np.zeros(len(names), dtype=np.int64)
    per_image, attrs = [], None
    areas, aspects, centres = [], [], []
    for image_id in steps(sample, "label statistics"):
        masks, class_ids = dataset.load_mask(image_id)                   # [H, W, N], [N]
        h, w = masks.shape[:2]
        for i in range(masks.shape[-1]):
            rows = np.flatnonzero(masks[:, :, i].any(axis=1))
            cols = np.flatnonzero(masks[:, :, i].any(axis=0))
            if not rows.size:
                continue
            bh, bw = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
            areas.append(int(masks[:, :, i].sum()))
            aspects.append(bw / bh)
            centres.append(((cols[0] + cols[-1] + 1) / 2 / w, (rows[0] + rows[-1] + 1) / 2 / h))
        if class_ids_of is None:
            per_image.append(len(class_ids))
            counts += np.bincount(class_ids, minlength=len(names))[:len(names)]
            attrs = _add_attributes(attrs, attributes_of, image_id)
    counted = sample
    if class_ids_of is not None:
        counted = ids
        for image_id in ids:
            class_ids = np.asarray(class_ids_of(image_id), dtype=np.int64)
            per_image.append(len(class_ids))
            counts += np.bincount(class_ids, minlength=len(names))[:len(names)]
            attrs = _add_attributes(attrs, attributes_of, image_id)
    return {"class_names": names, "counts": counts, "per_image": np.asarray(per_image),
            "areas": np.asarray(areas, np.float64), "aspects": np.asarray(aspects),
            "centres": np.asarray(centres).reshape(-1, 2), "attributes": attrs,
            "attribute_names": list(getattr(dataset, "attribute_names", None) or []),
            "images": len(ids), "counted_images": len(counted), "mask_images": len(sample)}


def _add_attributes(total, attributes_of, image_id):
    if attributes_of is None:
        return total
    multi_hot = np.asarray(attributes_of(image_id))                       # [N, A]
    if multi_hot.ndim != 2:
        return total
    found = (multi_hot > 0).sum(axis=0)
    return found if total is None else total + found


def few_instances(stats, few=FEW):
    """Names of the classes (background left out) with fewer than `few` instances."""
    return [n for n, c in zip(stats["class_names"][1:], stats["counts"][1:]) if c < few]


def size_groups(areas):
    """(small, medium, large) boolean masks of areas at COCO's 32^2 / 96^2 pixels."""
    areas = np.asarray(areas)
    return areas < SMALL, (areas >= SMALL) & (areas < MEDIUM), areas >= MEDIUM


def _per_class(ax, stats):
    names, counts = stats["class_names"][1:], np.asarray(stats["counts"][1:])
    order = np.argsort(-counts, kind="mergesort")
    colors = ["#c92a2a" if counts[i] < FEW else BLUE for i in order]
    ax.bar(range(len(order)), counts[order], color=colors)
    ax.set_xticks(range(len(order)), [str(names[i])[:24] for i in order], rotation=90,
                  fontsize=7 if len(order) > 20 else 9)
    for tick, i in zip(ax.get_xticklabels(), order):
        if counts[i] < FEW:
            tick.set_color("#c92a2a")
    ax.set_ylabel("instances")
    ax.set_title(f"Instances per class ({int(counts.sum())} in "
                 f"{stats['counted_images']} images; red: fewer than {FEW})", fontsize=10)


def _sizes(ax_area, ax_aspect, stats):
    areas, aspects = stats["areas"], stats["aspects"]
    groups = size_groups(areas)
    labels = [f"{n} ({int(g.sum())})" for n, g in zip(("small", "medium", "large"), groups)]
    colors = ["#e8590c", "#2b8a3e", BLUE]
    if areas.size:
        bins = np.logspace(0, np.log10(max(areas.max(), 10.0)) + 0.01, 40)
        ax_area.hist([areas[g] for g in groups], bins=bins, stacked=True, color=colors,
                     label=labels)
        ax_area.set_xscale("log")
        for edge in (SMALL, MEDIUM):
            ax_area.axvline(edge, color="black", linestyle=":", linewidth=1)
        ratios = np.clip(aspects, 1 / 20, 20)
        bins = np.logspace(np.log10(ratios.min()) - 0.01, np.log10(ratios.max()) + 0.01, 30)
        ax_aspect.hist([ratios[g] for g in groups], bins=bins, stacked=True, color=colors,
                       label=labels)
        ax_aspect.set_xscale("log")
        ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 4, 10) if bins[0] <= t <= bins[-1]]
        ax_aspect.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax_aspect.minorticks_off()
        ax_area.legend(fontsize=8)
        ax_aspect.legend(fontsize=8)
    sampled = f"{stats['mask_images']} images" if stats["mask_images"] < stats["images"] \
        else "all images"
    ax_area.set_title(f"Mask area, pixels (COCO split at 32², 96²; {sampled})", fontsize=10)
    ax_area.set_ylabel("instances")
    ax_aspect.set_title("Box aspect (width / height) by size", fontsize=10)


def _per_image(ax, stats):
    per_image = stats["per_image"]
    if per_image.size:
        ax.hist(per_image, bins=np.arange(per_image.max() + 2) - 0.5, color=BLUE)
    ax.set_title(f"Instances per image (mean {per_image.mean() if per_image.size else 0:.1f})",
                 fontsize=10)
    ax.set_xlabel("instances")
    ax.set_ylabel("images")


def _centres(ax, stats):
    c = stats["centres"]
    if c.size:
        ax.hist2d(c[:, 0], c[:, 1], bins=20, range=[[0, 1], [0, 1]], cmap="Blues")
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_title("Box centres (x, y as a fraction of the image)", fontsize=10)


def _attributes(ax, stats):
    counts, names = stats["attributes"], stats["attribute_names"]
    if counts is None or not len(counts):
        ax.axis("off")
        ax.text(0.5, 0.5, "no attributes in this data", ha="center", va="center")
        return
    order = [i for i in np.argsort(-counts, kind="mergesort") if counts[i] > 0][:TOP_ATTRIBUTES]
    ax.barh(range(len(order)), counts[order], color=BLUE)
    ax.set_yticks(range(len(order)),
                  [str(names[i])[:24] if i < len(names) else str(i) for i in order], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("instances")
    ax.set_title(f"Attributes (the {len(order)} most frequent of {len(counts)})", fontsize=10)


def plot_labels(stats, path):
    """label_statistics(...) -> labels.png (1600 px wide); returns the names of the
    classes with fewer than 10 instances."""
    class_names = [str(n)[:24] for n in stats["class_names"][1:]]
    attr_names = [str(n)[:24] for n in stats["attribute_names"]]
    below = text_inches(class_names, 7) + 0.5            # room for rotated class names
    left_attr = text_inches(attr_names or ["x"], 7) + 0.2
    width, height = 20.0, 8.0 + below
    fig = figure(width, height, dpi=80)
    grid = fig.add_gridspec(2, 4, left=0.7 / width, right=1 - 0.3 / width,
                            top=1 - 0.4 / height, bottom=1.2 / height,
                            height_ratios=[3.4 + below, 3.6], hspace=(below + 0.9) / 3.6,
                            wspace=max(0.25, left_attr / 4.0))
    _per_class(fig.add_subplot(grid[0, 0:3]), stats)
    _attributes(fig.add_subplot(grid[0, 3]), stats)
    _sizes(fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), stats)
    _per_image(fig.add_subplot(grid[1, 2]), stats)
    _centres(fig.add_subplot(grid[1, 3]), stats)
    few = few_instances(stats)
    text = _wrap(f"Classes with fewer than {FEW} instances ({len(few)}): " + ", ".join(few)
                 if few else f"Every class has at least {FEW} instances.", 230)
    fig.text(0.01, 0.005, text, fontsize=9, color="#c92a2a" if few else "black",
             va="bottom")
    save(fig, path)
    return few


def _wrap(text, width):
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:4])

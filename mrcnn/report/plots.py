"""Drawing of the run report's evaluation pictures: confusion matrices, mask P/R/F1
against the confidence threshold, attribute precision / recall and labels next to
predictions.

Figures are drawn on matplotlib's Agg canvas without pyplot (notebooks keep their
backend) and written to a temporary file, then renamed.
"""
import numpy as np

from mrcnn.fileio import atomic_open

DPI = 100
MAX_ANNOTATED = 30    # confusion matrices with more rows show colours, not numbers
GREY = "#9aa0a6"
BLUE = "#1f5fbf"


def figure(width, height, dpi=DPI):
    """A Figure of width x height inches on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def text_inches(labels, fontsize):
    """Rough width in inches of the longest label at fontsize points (DejaVu Sans)."""
    return 0.55 * fontsize / 72.0 * max([len(str(t)) for t in labels] + [1])


def margins(fig, left=0.8, right=0.3, top=0.5, bottom=0.6, **spacing):
    """Fixed margins in inches (tight_layout draws the figure twice; this does not)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(left / w, 0.6), right=1 - right / w, top=1 - top / h,
                        bottom=min(bottom / h, 0.6), **spacing)


def save(fig, path):
    """fig -> PNG at path (temp file, then rename); returns path."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return path


def plot_confusion_matrix(matrix, names, path, normalized=False, iou_threshold=0.5,
                          conf_threshold=0.25, shown=None):
    """matrix [K + 1, K + 1] = [predicted, true] (last: background) -> PNG.

    names: the K category names. normalized: matrix holds column fractions.
    shown: [K] bool, the classes drawn (default: those with a count in their row or
    column, so data using a few of many labels stays legible); background always."""
    matrix = np.asarray(matrix, dtype=np.float64)
    k = len(names)
    if shown is None:
        shown = (matrix[:k].sum(axis=1) + matrix[:, :k].sum(axis=0)) > 0
    keep = list(np.flatnonzero(shown)) + [k]
    left_out = k + 1 - len(keep)
    matrix = matrix[np.ix_(keep, keep)]
    labels = [names[i] for i in keep[:-1]] + ["background"]
    n = len(labels)
    font = 9 if n <= MAX_ANNOTATED else 6
    room = text_inches(labels, font) + 0.5
    side = min(40.0, max(5.0, 0.3 * n))
    fig = figure(side + room + 1.4, side + room + 0.9)
    margins(fig, left=room, right=1.4, top=0.8, bottom=room)
    ax = fig.add_subplot(1, 1, 1)
    cells = np.where(matrix > 0, matrix, np.nan)            # empty cells stay white
    image = ax.imshow(cells, cmap="Blues", vmin=0.0,
                      vmax=1.0 if normalized else max(1.0, float(matrix.max())))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= MAX_ANNOTATED:
        top = 1.0 if normalized else max(1.0, float(matrix.max()))
        for (i, j), v in np.ndenumerate(matrix):
            if v > 0:
                text = f"{v:.2f}" if normalized else str(int(v))
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * top else "black")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("true (background: false positives)")
    ax.set_ylabel("predicted (background: missed)")
    what = "normalized by true class" if normalized else "instances"
    note = (f"; {left_out} classes with no instance and no prediction left out"
            if left_out else "")
    import textwrap
    detail = textwrap.fill(f"mask IoU >= {iou_threshold:g}, confidence >= "
                           f"{conf_threshold:g}{note}", int((side + 1.0) * 72 / 0.55 / 9))
    ax.set_title(f"Confusion matrix, {what}\n{detail}", fontsize=9, loc="left")
    return save(fig, path)


def _class_lines(ax, x, per_class, names, instances, limit=20):
    """Thin grey lines of the classes with instances (the most frequent `limit`)."""
    order = [c for c in np.argsort(-np.asarray(instances), kind="mergesort")
             if instances[c] > 0][:limit]
    for c in order:
        ax.plot(x, per_class[c], color=GREY, linewidth=0.8, alpha=0.6)
    if order:
        ax.plot([], [], color=GREY, linewidth=0.8, label=f"{len(order)} classes")


def _axes_style(ax, xlabel, ylabel):
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def plot_mask_pr(curves, names, path):
    """Left: mask precision-recall at IoU 0.5 (per class, mean with its AP50);
    right: mean mask precision and recall against the confidence threshold."""
    fig = figure(12.0, 5.0)
    ax_pr, ax_conf = fig.subplots(1, 2)
    _class_lines(ax_pr, curves["pr_recall"], curves["pr_precision"], names,
                 curves["instances"])
    has = curves["instances"] > 0
    if has.any():
        ax_pr.plot(curves["pr_recall"], curves["pr_precision"][has].mean(axis=0),
                   color=BLUE, linewidth=2.5,
                   label=f"all classes, AP50 {curves['map50']:.3f}")
    _axes_style(ax_pr, "recall", "precision")
    ax_pr.set_title("Mask precision-recall (IoU 0.5)")
    x = curves["confidence"]
    ax_conf.plot(x, curves["mean_precision"], color=BLUE, linewidth=2.5, label="precision")
    ax_conf.plot(x, curves["mean_recall"], color="#d9480f", linewidth=2.5, label="recall")
    ax_conf.axvline(curves["best_confidence"], color="black", linestyle=":",
                    label=f"best F1 at {curves['best_confidence']:.2f}")
    _axes_style(ax_conf, "confidence threshold", "mean over classes")
    ax_conf.set_title("Mask precision and recall vs confidence")
    margins(fig, left=0.7, right=0.2, top=0.4, bottom=0.6, wspace=0.2)
    return save(fig, path)


def plot_mask_f1(curves, names, path):
    """Mask F1 against the confidence threshold, per class and the mean; the best
    mean F1 is marked (a good minimum confidence for detection)."""
    fig = figure(8.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    x = curves["confidence"]
    _class_lines(ax, x, curves["f1"], names, curves["instances"])
    best, at = curves["best_f1"], curves["best_confidence"]
    ax.plot(x, curves["mean_f1"], color=BLUE, linewidth=2.5,
            label=f"all classes, best {best:.3f} at {at:.2f}")
    ax.plot([at], [best], "o", color="black")
    _axes_style(ax, "confidence threshold", "F1")
    ax.set_title("Mask F1 (IoU 0.5) vs confidence")
    margins(fig, left=0.7, right=0.2, top=0.4, bottom=0.6)
    return save(fig, path)


def plot_attributes(rows, path, top=20):
    """Precision and recall of the `top` most frequent attributes (rows from
    mrcnn.evaluation.thresholds.attribute_precision_recall, most frequent first)."""
    rows = [r for r in rows if r["instances"] > 0][:top] or list(rows)[:top]
    names = [f"{r['name']} ({r['instances']})" for r in rows]
    room = text_inches(names, 8) + 0.3
    fig = figure(8.0 + room, max(3.0, 0.3 * len(rows) + 1.3))
    margins(fig, left=room, right=0.3, top=0.4, bottom=0.6)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    values = lambda key: [0.0 if np.isnan(r[key]) else r[key] for r in rows]  # noqa: E731
    ax.barh(y - 0.2, values("precision"), height=0.4, color=BLUE, label="precision")
    ax.barh(y + 0.2, values("recall"), height=0.4, color="#d9480f", label="recall")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("on instances matched at mask IoU 0.5")
    ax.set_title(f"Attributes: the {len(rows)} most frequent (ground-truth instances)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return save(fig, path)


TILE_SIDE = 640   # tiles of picture grids are at most this many pixels on a side


def _fit(picture, side=TILE_SIDE):
    """uint8 [H, W, 3] scaled down (never up) so its long side is at most `side`."""
    from PIL import Image
    h, w = picture.shape[:2]
    if max(h, w) <= side:
        return picture
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.BILINEAR))


def tile(pictures, captions, columns, header, pad=10):
    """A white grid of pictures (uint8 [h, w, 3] each, at most TILE_SIDE on a side),
    each under its caption, below a header line -> uint8 [H, W, 3]. Drawn with Pillow:
    a picture grid needs no axes."""
    from PIL import Image, ImageDraw

    from mrcnn.visualize import label_font
    pictures = [_fit(np.asarray(p)) for p in pictures]
    columns = max(1, min(int(columns), len(pictures)))
    rows = -(-len(pictures) // columns)
    cell_w = max(p.shape[1] for p in pictures)
    cell_h = max(p.shape[0] for p in pictures)
    font, head_font = label_font(14), label_font(18)
    cap_h, head_h = 22, 36
    canvas = Image.new("RGB", (pad + columns * (cell_w + pad),
                               head_h + rows * (cap_h + cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 8), header, fill=(0, 0, 0), font=head_font)
    for i, (picture, caption) in enumerate(zip(pictures, captions)):
        r, c = divmod(i, columns)
        x, y = pad + c * (cell_w + pad), head_h + r * (cap_h + cell_h + pad)
        draw.text((x, y + 2), caption, fill=(40, 40, 40), font=font)
        canvas.paste(Image.fromarray(np.ascontiguousarray(picture[..., :3])),
                     (x, y + cap_h))
    return np.asarray(canvas)


def save_picture(picture, path):
    """uint8 [H, W, 3] -> PNG at path (temp file, then rename); returns path. zlib
    level 3: a third of level 6's time for pictures a few percent larger."""
    from PIL import Image
    with atomic_open(path, "wb") as f:
        Image.fromarray(np.ascontiguousarray(picture)).save(f, format="PNG",
                                                            compress_level=3)
    return path


def plot_side_by_side(samples, class_names, path, title=None, min_score=0.25):
    """Rows of (labels, predictions) images -> PNG; predictions below min_score are
    not drawn.

    samples: [{"image" [H, W, 3] uint8, "gt_masks" [H, W, G], "gt_class_ids" [G],
    "result": detect()'s dict, "name"}]."""
    from mrcnn.utils import extract_bboxes
    from mrcnn.visualize import draw_instances_on_image
    pictures, captions = [], []
    for s in samples:
        gt_masks = np.asarray(s["gt_masks"], dtype=bool)
        pictures.append(draw_instances_on_image(s["image"], extract_bboxes(gt_masks),
                                                gt_masks, s["gt_class_ids"], class_names,
                                                min_side=384))
        r = s["result"]
        sel = np.flatnonzero(np.asarray(r["scores"]) >= min_score)         # [N']
        pictures.append(draw_instances_on_image(
            s["image"], np.asarray(r["rois"])[sel], np.asarray(r["masks"])[..., sel],
            np.asarray(r["class_ids"])[sel], class_names, np.asarray(r["scores"])[sel],
            min_side=384))
        captions += [f"{s.get('name', '')}: labels ({len(s['gt_class_ids'])})",
                     f"predictions with score >= {min_score:g} ({len(sel)})"]
    return save_picture(tile(pictures, captions, 2, title or "labels | predictions"), path)

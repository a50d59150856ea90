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


def save(fig, path):
    """fig -> PNG at path (temp file, then rename); returns path."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return path


def plot_confusion_matrix(matrix, names, path, normalized=False, iou_threshold=0.5,
                          conf_threshold=0.25):
    """matrix [K + 1, K + 1] = [predicted, true] (last: background) -> PNG.

    names: the K category names. normalized: matrix holds column fractions."""
    matrix = np.asarray(matrix, dtype=np.float64)
    labels = list(names) + ["background"]
    n = len(labels)
    side = min(40.0, max(6.0, 0.32 * n + 3.0))
    fig = figure(side + 1.5, side)
    ax = fig.add_subplot(1, 1, 1)
    shown = np.where(matrix > 0, matrix, np.nan)            # empty cells stay white
    image = ax.imshow(shown, cmap="Blues", vmin=0.0,
                      vmax=1.0 if normalized else max(1.0, float(np.nanmax(
                          np.append(shown.ravel(), 1.0)))))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= MAX_ANNOTATED:
        top = np.nanmax(np.append(shown.ravel(), 1e-9))
        for (i, j), v in np.ndenumerate(matrix):
            if v > 0:
                text = f"{v:.2f}" if normalized else str(int(v))
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * top else "black")
    font = 9 if n <= MAX_ANNOTATED else 6
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("true (background: false positives)")
    ax.set_ylabel("predicted (background: missed)")
    what = "normalized by true class" if normalized else "instances"
    ax.set_title(f"Confusion matrix, {what} (mask IoU >= {iou_threshold:g}, "
                 f"confidence >= {conf_threshold:g})", fontsize=10)
    fig.tight_layout()
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
    ax.legend(loc="lower left", fontsize=8)


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
    fig.tight_layout()
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
    fig.tight_layout()
    return save(fig, path)


def plot_attributes(rows, path, top=20):
    """Precision and recall of the `top` most frequent attributes (rows from
    mrcnn.evaluation.thresholds.attribute_precision_recall, most frequent first)."""
    rows = [r for r in rows if r["instances"] > 0][:top] or list(rows)[:top]
    fig = figure(10.0, max(3.0, 0.32 * len(rows) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    values = lambda key: [0.0 if np.isnan(r[key]) else r[key] for r in rows]  # noqa: E731
    ax.barh(y - 0.2, values("precision"), height=0.4, color=BLUE, label="precision")
    ax.barh(y + 0.2, values("recall"), height=0.4, color="#d9480f", label="recall")
    ax.set_yticks(y, [f"{r['name']} ({r['instances']})" for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("on instances matched at mask IoU 0.5")
    ax.set_title(f"Attributes: the {len(rows)} most frequent (ground-truth instances)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_side_by_side(samples, class_names, path, title=None):
    """Rows of (labels, predictions) images -> PNG.

    samples: [{"image" [H, W, 3] uint8, "gt_masks" [H, W, G], "gt_class_ids" [G],
    "result": detect()'s dict, "name"}]."""
    from mrcnn.utils import extract_bboxes
    from mrcnn.visualize import draw_instances_on_image
    fig = figure(10.0, 4.6 * max(1, len(samples)) + 0.4)
    axes = np.asarray(fig.subplots(max(1, len(samples)), 2, squeeze=False))
    for row, s in zip(axes, samples):
        gt_masks = np.asarray(s["gt_masks"], dtype=bool)
        left = draw_instances_on_image(s["image"], extract_bboxes(gt_masks), gt_masks,
                                       s["gt_class_ids"], class_names, min_side=384)
        r = s["result"]
        right = draw_instances_on_image(s["image"], r["rois"], r["masks"], r["class_ids"],
                                        class_names, r["scores"], min_side=384)
        for ax, picture, what in ((row[0], left, "labels"), (row[1], right, "predictions")):
            ax.imshow(picture)
            ax.set_title(f"{s.get('name', '')}: {what} ({_count(s, what)})", fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def _count(sample, what):
    return (len(sample["gt_class_ids"]) if what == "labels"
            else len(sample["result"]["class_ids"]))

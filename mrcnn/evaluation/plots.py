"""Evaluation plots and tables: precision-recall curves and per-class AP.

Headless: figures are drawn with matplotlib's Agg canvas (pyplot's backend is
left alone, so notebooks keep theirs), files written to a temporary name and then
renamed, so a crash never leaves a half-written PNG or CSV.
"""

import csv
import io
import sys

import numpy as np

from mrcnn.fileio import atomic_path, atomic_write_text

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # pycocotools' recall thresholds
FIGURE_SIZE = (12.0, 5.0)  # inches
DPI = 100  # -> 1200 x 500 pixels


def _figure():
    """A Figure drawn by the Agg canvas directly: no pyplot, no global backend change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _mean_curve(precision, iou_index):
    """Mean over categories with ground truth of precision [R] at one IoU."""
    curves = precision[iou_index, :, :, 0, -1]  # [R, K] area all, maxDets 100
    defined = (curves > -1).all(axis=0)  # [K] categories with ground truth
    if not defined.any():
        return None
    return curves[:, defined].mean(axis=1)  # [R]


def plot_pr_curves(precision, category_names, path, top_k=8, iou_thresholds=(0.5, 0.75)):
    """Save precision-recall curves from COCOeval's `eval["precision"]`.

    Left panel: the mean curve over categories at IoU 0.50 and 0.75. Right panel:
    curves at IoU 0.50 of the `top_k` categories with the most area under them.

    Args:
        precision: [T=10, R=101, K, A=4, M=3] array (-1 where a category has no
            ground truth), as in `evaluate_coco(...)["precision"][iou_type]`.
        category_names: K names in the array's category order.
        path: the PNG file to write (1200 x 500 pixels).
    Returns:
        path.
    """
    precision = np.asarray(precision)
    if precision.ndim != 5 or precision.shape[1] != len(RECALL_POINTS):
        raise ValueError(f"precision must be COCOeval's [T, 101, K, A, M] array, "
                         f"got shape {precision.shape}")
    if len(category_names) != precision.shape[2]:
        raise ValueError(f"{len(category_names)} category names for "
                         f"{precision.shape[2]} categories in the precision array")
    fig = _figure()
    ax_mean, ax_cls = fig.subplots(1, 2)
    iou_values = np.linspace(0.5, 0.95, precision.shape[0])  # [T]
    for thr in iou_thresholds:
        t = int(np.argmin(np.abs(iou_values - thr)))
        curve = _mean_curve(precision, t)
        if curve is not None:
            ax_mean.plot(RECALL_POINTS, curve, label=f"IoU={thr:.2f} (AP {curve.mean():.3f})")
    ax_mean.set_title("all categories (mean)")
    at_50 = precision[0, :, :, 0, -1]  # [R, K]
    areas = np.where((at_50 > -1).all(axis=0), at_50.mean(axis=0), -1.0)  # [K]
    for k in np.argsort(-areas, kind="mergesort")[:top_k]:
        if areas[k] > -1:
            ax_cls.plot(RECALL_POINTS, at_50[:, k], label=f"{category_names[k]} ({areas[k]:.3f})")
    ax_cls.set_title(f"top {top_k} categories at IoU=0.50")
    for ax in (ax_mean, ax_cls):
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.05)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def format_table(rows, columns):
    """Plain aligned text table of dict rows."""
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    text = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in text]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(t, widths)))
              for t in text]
    return "\n".join(lines)


def write_per_class_table(rows, csv_path=None, columns=None, stream=sys.stdout, sort_by="AP"):
    """Write per-class rows to CSV (atomically) and print them as a table.

    Args:
        rows: list of dicts, e.g. `evaluate_coco(...)["per_class"]["segm"]`.
        csv_path: CSV file to write, or None to only print.
        columns: column order (default: the first row's keys).
        stream: where to print (None: do not print).
        sort_by: column sorted descending (None keeps the order).
    Returns:
        the printed table text.
    """
    rows = list(rows)
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    if sort_by is not None and sort_by in columns:
        rows = sorted(rows, key=lambda r: -float(r.get(sort_by, -1.0)))
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(csv_path, buffer.getvalue())
    table = format_table(rows, columns)
    if stream is not None:
        print(table, file=stream)
    return table

"""report.html: one static page per run directory linking every picture and table of
the run report, the training curve, the config, the best epoch and the final metrics.

The page uses relative links only, so it works opened from the file system (file://)
and inside a copied or fetched run directory. ``ReportPage`` rewrites it after every
epoch and at the end of training; ``write_report_html`` after anything else (evaluate).

Example:
    write_report_html("logs/fashion20250101T120000")   # -> .../report.html
"""
import csv
import glob
import html
import json
import math
import os
import re
import time

import keras

from mrcnn.fileio import atomic_write_text

REPORT_FILE = "report.html"

# (section, [(file, caption)]) in page order; files that do not exist are left out.
SECTIONS = [
    ("Training", [("training_curve.png", "Training curve: losses per step, val losses "
                   "and AP per epoch")]),
    ("Data", [("labels.png", "Labels of the training data"),
              ("train_batches.png", "The first training batches as the model receives "
               "them (after resizing and augmentation)")]),
    ("Evaluation", [("confusion_matrix.png", "Confusion matrix"),
                    ("confusion_matrix_normalized.png", "Confusion matrix, normalized"),
                    ("mask_PR.png", "Mask precision-recall"),
                    ("mask_F1.png", "Mask F1 vs confidence"),
                    ("attribute_precision_recall.png", "Attributes: precision and recall"),
                    ("precision_recall_segm.png", "COCO precision-recall (segm)"),
                    ("precision_recall_boundary.png", "COCO precision-recall (boundary: "
                     "min of mask IoU and Boundary IoU)"),
                    ("precision_recall_bbox.png", "COCO precision-recall (bbox)")]),
]
TABLES = ["epochs.csv", "training_curve.csv", "confusion_matrix.csv", "mask_curves.csv",
          "attribute_precision_recall.csv", "per_class_segm.csv", "per_class_boundary.csv",
          "per_class_bbox.csv"]
OTHER_FILES = ["best.json", "metrics.json", "evaluation_report.json",
               "predictions_val.jsonl", "ground_truth_val.json"]
_VAL_PRED = re.compile(r"^val_pred(?:_(\d+))?\.png$")

STYLE = """body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px}
figure{display:inline-block;margin:0 16px 16px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #ccc}figcaption{font-size:13px;color:#555}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f3f3;text-align:left}.note{color:#555;font-size:13px}
.tables{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}"""


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _finite(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def final_metrics(run_dir):
    """(epoch, {key: value}) of epochs.csv's last row with evaluation metrics (else its
    last row), or (None, {}) without epochs.csv."""
    try:
        with open(os.path.join(run_dir, "epochs.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return None, {}
    if not rows:
        return None, {}
    evaluated = [r for r in rows if any(_finite(v) is not None
                                        for k, v in r.items() if k and "_AP" in k)]
    row = (evaluated or rows)[-1]
    values = {k: _finite(v) for k, v in row.items() if k and k != "epoch"}
    epoch = _finite(row.get("epoch"))
    return (None if epoch is None else int(epoch) + 1,
            {k: v for k, v in values.items() if v is not None})


def _table(rows, header=None):
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                   + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(
            f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in row) + "</tr>")
    return "\n".join(out + ["</table>"])


def _figure(name, caption, element_id=None):
    ref = html.escape(name)
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    return (f'<figure><a href="{ref}"><img{ident} src="{ref}" alt="{html.escape(caption)}">'
            f"</a><figcaption>{html.escape(caption)} ({ref})</figcaption></figure>")


def _link(name):
    ref = html.escape(name)
    return f'<a href="{ref}">{ref}</a>'


def _ordered(metrics):
    """Evaluation numbers first (AP, iMat, ...), then losses, then the rest."""
    def rank(key):
        return (0 if "AP" in key or "iMat" in key else 1 if "loss" in key else 2)
    return sorted(metrics.items(), key=lambda kv: rank(kv[0]))


def _summary(run_dir):
    parts, tables = [], []
    best = _read_json(os.path.join(run_dir, "best.json"))
    if isinstance(best, dict) and "epoch" in best:
        metric = html.escape(str(best.get("metric")))
        parts.append(f"<p>Best epoch: <b>{int(best['epoch'])}</b> by {metric} = "
                     f"{float(best.get('value', float('nan'))):.4f} "
                     f"({_link(str(best.get('path', '')))})</p>")
    epoch, metrics = final_metrics(run_dir)
    if metrics:
        tables.append(_table(_ordered(metrics), [f"final metric (epoch {epoch})", "value"]))
    evaluated = _read_json(os.path.join(run_dir, "metrics.json"))
    if isinstance(evaluated, dict):
        rows = [(f"{t} {k}", float(v)) for t in ("segm", "boundary", "bbox")
                for k, v in (evaluated.get(t) or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if rows:
            weights = os.path.basename(str(evaluated.get("weights", "")))
            tables.append(_table(rows, [f"evaluate: {weights}, "
                                        f"{evaluated.get('images', '?')} images", "value"]))
    report = _read_json(os.path.join(run_dir, "evaluation_report.json"))
    if isinstance(report, dict) and "best_confidence" in report:
        when = "" if report.get("epoch") is None else f" after epoch {report['epoch']}"
        parts.append(
            f"<p>Mask F1{when} is best ({report['best_f1']:.3f}) at confidence "
            f"<b>{report['best_confidence']:.2f}</b>: a good minimum confidence for "
            f"detection. At confidence {report['conf_threshold']:g}, "
            f"{report['missed']} of {report['instances']} instances were missed and "
            f"{report['false_positives']} predictions were false positives.</p>")
    if tables:
        parts.append('<div class="tables">' + "\n".join(tables) + "</div>")
    return parts


def _val_preds(run_dir):
    """val_pred PNG names, the newest epoch first."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "val_pred*.png")):
        m = _VAL_PRED.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)) if m.group(1) else -1, os.path.basename(path)))
    return [name for _, name in sorted(found, reverse=True)]


def _config(run_dir):
    runs = sorted(glob.glob(os.path.join(run_dir, "*_run.json")))
    if not runs:
        return []
    name = os.path.basename(runs[0])
    parts = [f"<p>The run's config and labels: {_link(name)}</p>"]
    config = (_read_json(runs[0]) or {}).get("config")
    if isinstance(config, dict):
        rows = [(k, json.dumps(v)) for k, v in sorted(config.items())]
        parts.append("<details><summary>Config values</summary>" + _table(rows) +
                     "</details>")
    return parts


def report_html(run_dir):
    """The page's HTML text for the files now in run_dir."""
    title = f"Run report: {os.path.basename(os.path.abspath(run_dir))}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">Written {time.strftime("%Y-%m-%d %H:%M:%S")}; every '
            "picture links to its file.</p>"]
    body += _summary(run_dir)
    for section, items in SECTIONS:
        figures = [_figure(name, caption, os.path.splitext(name)[0])
                   for name, caption in items
                   if os.path.isfile(os.path.join(run_dir, name))]
        if section == "Evaluation":
            preds = _val_preds(run_dir)
            if preds:
                figures.append(_figure(preds[0], "Val images: labels | predictions",
                                       "val_pred"))
                if len(preds) > 1:
                    figures.append("<p>Earlier epochs: " +
                                   ", ".join(_link(p) for p in preds[1:]) + "</p>")
        if figures:
            body += [f"<h2>{section}</h2>"] + figures
    tables = [_link(t) for t in TABLES if os.path.isfile(os.path.join(run_dir, t))]
    files = [_link(t) for t in OTHER_FILES if os.path.isfile(os.path.join(run_dir, t))]
    config = _config(run_dir)
    if config:
        body += ["<h2>Config</h2>"] + config
    if tables or files:
        body += ["<h2>Tables and files</h2>", "<p>" + " · ".join(tables + files) + "</p>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report_html(run_dir):
    """Writes run_dir/report.html (temp file, then rename); returns its path."""
    path = os.path.join(run_dir, REPORT_FILE)
    atomic_write_text(path, report_html(run_dir))
    return path


class ReportPage(keras.callbacks.Callback):
    """Rewrites <log_dir>/report.html after every epoch (the curve, the metrics and
    any evaluation are new) and at the end of training. Place it last."""

    def __init__(self, log_dir, is_chief=True):
        super().__init__()
        self.log_dir = log_dir
        self.is_chief = is_chief

    def on_epoch_end(self, epoch, logs=None):
        if self.is_chief and os.path.isdir(self.log_dir):
            write_report_html(self.log_dir)

    def on_train_end(self, logs=None):
        self.on_epoch_end(-1)

"""The training curve: per-step losses smoothed across epochs, validation losses and
evaluation AP per epoch, and markers where the trained layers change.

Keras reports batch losses as running means that restart every epoch; ``StepValues``
turns them back into each step's own value (x_t = t m_t - (t-1) m_{t-1}), which
LossCurve (mrcnn/training/callbacks.py) writes to training_curve.csv. ``plot_training_curve``
draws that CSV (an exponential moving average over all steps, never reset at an epoch)
above the epoch CSV (epochs.csv: val_* losses, AP) to one PNG.
"""
import csv
import math
import os

from mrcnn.fileio import atomic_path


class StepValues:
    """Per-step values from Keras' within-epoch running means.

    Call reset() at each epoch's start and update(batch, logs) after each batch (batch
    is the 0-based index of the batch's last step, as Keras passes it, so several steps
    per execution work too).
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._count, self._means = 0, {}

    def update(self, batch, logs):
        count = int(batch) + 1
        steps = max(count - self._count, 1)
        out = {}
        for key, mean in logs.items():
            try:
                mean = float(mean)
            except (TypeError, ValueError):
                continue
            previous = self._means.get(key)
            if previous is None or self._count == 0:
                out[key] = mean
            else:
                out[key] = (count * mean - self._count * previous) / steps
            self._means[key] = mean
        self._count = count
        return out


def ema(values, smoothing=0.9):
    """Debiased exponential moving average (TensorBoard's); NaNs are carried over."""
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(out[-1] if out else math.nan)
            continue
        avg = smoothing * avg + (1 - smoothing) * v
        weight = smoothing * weight + (1 - smoothing)
        out.append(avg / weight)
    return out


def _float(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def read_rows(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stage_changes(rows):
    """[(step, stage)] where the "stage" column takes a new value (the first too)."""
    changes, last = [], None
    for r in rows:
        stage = r.get("stage") or None
        if stage and stage != last:
            changes.append((int(r["step"]), stage))
            last = stage
    return changes


def _epoch_end_steps(rows):
    """{epoch (1-based): last step of that epoch} from the step CSV's epoch column."""
    ends = {}
    for r in rows:
        if r.get("epoch"):
            ends[int(float(r["epoch"]))] = int(r["step"])
    return ends


def _draw_losses(ax, rows, smoothing):
    steps = [int(r["step"]) for r in rows]
    for key in rows[0]:
        if not key.endswith("loss"):
            continue
        values = [_float(r[key]) for r in rows]
        line, = ax.plot(steps, ema(values, smoothing), label=key,
                        linewidth=2 if key == "loss" else 1)
        if key == "loss":
            ax.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.5)
    ax.set_ylabel(f"loss per step (EMA {smoothing})")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)


def _draw_epochs(ax, epoch_rows, ends):
    """val losses (left axis, log) and AP-like values (right axis) per epoch."""
    xs = [ends.get(int(float(r["epoch"])) + 1) for r in epoch_rows]  # epochs.csv: 0-based
    keys = list(epoch_rows[0])
    val_keys = [k for k in keys if k.startswith("val_") and k.endswith("loss")]
    ap_keys = [k for k in keys if "_AP" in k or k.endswith("iMat2019")]
    for key in val_keys:
        pts = [(x, _float(r[key])) for x, r in zip(xs, epoch_rows) if x is not None]
        pts = [(x, v) for x, v in pts if math.isfinite(v) and v > 0]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, label=key,
                    linewidth=2 if key == "val_loss" else 0.8)
    if val_keys:
        ax.set_yscale("log")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=7, loc="upper left")
    if not ap_keys:
        return
    ax2 = ax.twinx()
    for key in ap_keys:
        pts = [(x, _float(r[key])) for x, r in zip(xs, epoch_rows) if x is not None]
        pts = [(x, v) for x, v in pts if math.isfinite(v)]
        if pts:
            ax2.plot(*zip(*pts), marker="s", markersize=3, linestyle="--", label=key)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("AP (val)")
    ax2.legend(fontsize=7, loc="upper right")


def plot_training_curve(csv_path, png_path, epochs_csv=None, smoothing=0.9):
    """Draws training_curve.csv (and epochs.csv when given) to png_path; returns it,
    or None when there is nothing to draw yet."""
    # A bare Figure with the Agg canvas: never touches pyplot or a notebook's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    rows = read_rows(csv_path)
    if not rows:
        return None
    epoch_rows = read_rows(epochs_csv)
    ends = _epoch_end_steps(rows)
    second = bool(epoch_rows and ends)
    fig = Figure(figsize=(9, 7.5 if second else 5), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(2 if second else 1, 1, 1)]
    if second:
        axes.append(fig.add_subplot(2, 1, 2, sharex=axes[0]))
    _draw_losses(axes[0], rows, smoothing)
    if second:
        _draw_epochs(axes[1], epoch_rows, ends)
    for i, (step, stage) in enumerate(stage_changes(rows)):
        for ax in axes if i else []:  # a line where the layers change, a label for all
            ax.axvline(step - 0.5, color="grey", linestyle=":", linewidth=1)
        axes[0].annotate(stage, (step, 1), xycoords=("data", "axes fraction"),
                         fontsize=8, va="top", color="grey")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp)
    return png_path

"""`benchmark`: every way to run a model, side by side on the val split (like
Ultralytics' `yolo benchmark`, for masks).

Per format: whether it exported, its parity with detect() (int8: its segm AP
difference), median and p90 latency per image (the image in, detect()-like results out,
masks pasted) at the run's image size, images/s, segm AP and boundary AP (how well the
masks follow the edges) on the same val images.
A format that cannot run here gets a row saying why and the others go on. Writes
benchmark.csv and benchmark.png (latency against AP) to --out.
"""
import argparse
import json
import os
import shutil
import time

from fashion.cli_args import FORMATS, add_model_args
from fashion.run import add_precision_arg
from fashion.errors import CLIError

BENCH_FORMATS = ("tf", "saved_model", "onnx", "openvino", "openvino-int8", "onnx-int8")
EXTRA_FORMATS = ("tf-bf16", "openvino-bf16")
COLUMNS = ["format", "exported", "parity", "median_ms", "p90_ms", "images_per_s",
           "segm_AP", "boundary_AP", "runtime"]

EXAMPLES = """examples:
  python fashion/fashion.py benchmark --weights last --limit 50
  python fashion/fashion.py benchmark --weights best --formats tf,onnx,openvino,openvino-int8 \\
      --dataset /data/imat2019 --format imat2019 --limit 200 --out results/benchmark
"""


def add_parser(subparsers, parents):
    from fashion.commands.export_eval import add_val_data_args
    p = subparsers.add_parser(
        "benchmark", parents=parents, help="speed and accuracy of every export format",
        description=__doc__.split("\n\n")[0] + " Formats: " + ", ".join(BENCH_FORMATS)
        + " (default: all); also " + ", ".join(EXTRA_FORMATS) + " (bfloat16 on CPUs "
        "with avx512_bf16 or AMX).", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_precision_arg(p)
    p.add_argument("--formats", default=",".join(BENCH_FORMATS),
                   help="comma-separated formats (default: %(default)s)")
    add_val_data_args(p)
    p.add_argument("--calibration-images", type=int, default=32, metavar="N",
                   help="val images the int8 formats calibrate on (default 32)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where exports, benchmark.csv and benchmark.png go (default: "
                   "<run dir>/benchmark, else results/benchmark)")
    p.set_defaults(func=run)
    return p


def parse_formats(spec):
    formats = [f.strip() for f in spec.split(",") if f.strip()]
    unknown = [f for f in formats if f not in BENCH_FORMATS + EXTRA_FORMATS]
    if unknown or not formats:
        raise CLIError(f"--formats {spec!r}: {', '.join(unknown) or 'nothing'} is not a "
                       f"format; use any of {', '.join(BENCH_FORMATS + EXTRA_FORMATS)}.")
    return formats


def _reason(error):
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."


class Bench:
    """One benchmark run: the model, its val images and the detect() reference."""

    def __init__(self, args, model, meta, dataset, ids, out, run=None):
        self.args, self.model, self.meta, self.run = args, model, meta, run
        self.dataset, self.ids, self.out = dataset, ids, out
        self.reference = None                 # detect() results, for parity
        self.exported = set()                 # float32 exports written by this run

    def names(self):
        extra = {k: v for k, v in self.meta.items()
                 if k not in ("class_names", "attribute_names")}
        return {"class_names": self.meta["class_names"],
                "attribute_names": self.meta.get("attribute_names"), "metadata": extra}

    def export(self, fmt):
        """(detect(image) -> result, runtime, exported note) of one format."""
        from fashion.commands.export_eval import export_detector
        from mrcnn.export.runtime import open_export
        if fmt in ("tf", "tf-bf16"):
            return self._tf(fmt)
        from mrcnn.export.extras import require_format
        require_format(fmt.split("-")[0], fmt.endswith("-int8"))
        start = time.perf_counter()
        if fmt.endswith("-int8"):
            path = os.path.join(self.out, "exports", fmt)
            info = self._int8(fmt[:-len("-int8")], path)
            guard = "passes" if info["difference"] >= -info["max_drop"] else "fails"
            note = f"yes ({time.perf_counter() - start:.0f} s; int8 guard {guard})"
        else:
            base = "openvino" if fmt == "openvino-bf16" else fmt
            path = os.path.join(self.out, "exports", base)
            note = "yes (the openvino export)"
            if path not in self.exported:     # never an older run's export in --out
                self.model.export(path, base, **self.names())
                self.exported.add(path)
                note = f"yes ({time.perf_counter() - start:.0f} s, checked against TF)"
        loaded = open_export(path, "bf16" if fmt == "openvino-bf16" else None)
        return export_detector(loaded.run), loaded.runtime, note

    def _tf(self, fmt):
        import tensorflow as tf
        model = self.model
        if fmt == "tf-bf16":
            from mrcnn.training.precision import host_cpu_flags
            flags = host_cpu_flags()
            if not {"avx512_bf16", "amx_bf16"} & set(flags):
                raise RuntimeError("this CPU has no bfloat16 (avx512_bf16 or AMX)")
            model = _bf16_model(self.run)
        return (lambda image: model.detect([image])[0]), \
            f"TensorFlow {tf.__version__} detect() {model.precision}", "-"

    def _int8(self, base, target):
        from fashion.commands.export_eval import evaluate, export_detector
        from mrcnn.export.quantize import export_int8
        calibration = [self.dataset.load_image(i)
                       for i in self.ids[:self.args.calibration_images]]

        def segm_ap(run):
            return evaluate(export_detector(run), self.dataset, self.ids, self.meta,
                            "int8 guard")["segm_AP"]
        done = os.path.join(self.out, "exports", base)     # the float32 row's export
        return export_int8(self.model, target, base, calibration, segm_ap, force=True,
                           report=lambda *a: None,
                           float_export=done if done in self.exported else None,
                           **self.names())


def _bf16_model(run):
    """The run's model in bfloat16 (the tf-bf16 row)."""
    from fashion.run import Run
    return Run(run.checkpoint, run.logs, backbone=run.flags["backbone"],
               image_size=run.flags["image_size"],
               min_confidence=run.flags["min_confidence"],
               sets=[f"{k}={json.dumps(v)}" for k, v in run.sets.items()
                     if k != "MIXED_PRECISION"],
               precision="bf16").model()


def measure(bench, fmt):
    """One row of the table (a failure becomes a row with its reason)."""
    from fashion.commands.export_eval import evaluate, latency, parity
    row = {"format": fmt}
    try:
        detect, runtime, note = bench.export(fmt)
        row.update(exported=note, runtime=runtime)
        results = []

        def recorded(image):
            result = detect(image)
            results.append(result)
            return result
        metrics = evaluate(recorded, bench.dataset, bench.ids, bench.meta, fmt)
        results = results[1:]                         # the untimed warm-up call first
    except Exception as e:  # a format that cannot run here: say why and go on
        row.update(exported=f"no: {_reason(e)}", parity="-", runtime=row.get("runtime", "-"))
        return row, None
    median, p90 = latency(metrics["seconds"])
    row.update(median_ms=round(median * 1e3, 1), p90_ms=round(p90 * 1e3, 1),
               images_per_s=round(len(metrics["seconds"]) / sum(metrics["seconds"]), 2),
               segm_AP=round(metrics["segm_AP"], 4),
               boundary_AP=round(metrics["boundary_AP"], 4))
    if fmt == "tf":
        bench.reference = (results, metrics["segm_AP"])
        row["parity"] = "reference"
    elif bench.reference is None:
        row["parity"] = "-"
    elif fmt.endswith("-int8") or fmt.endswith("-bf16"):
        row["parity"] = f"segm AP {metrics['segm_AP'] - bench.reference[1]:+.4f}"
    else:
        row["parity"] = parity(bench.reference[0], results)
    return row, metrics


def run(args):
    from fashion.commands.export_eval import val_split
    from fashion.run import Run
    from mrcnn.evaluation.plots import format_table, write_per_class_table
    formats = parse_formats(args.formats)
    if "tf" in formats:                       # the reference first
        formats = ["tf"] + [f for f in formats if f != "tf"]
    run = Run.from_args(args)
    model, meta, weights = run.model(), run.meta, run.checkpoint
    size = int(model.config.IMAGE_MAX_DIM)
    dataset, ids = val_split(args.dataset, meta, args, size, label_set=args.format)
    out = args.out or _default_out(weights)
    shutil.rmtree(os.path.join(out, "exports"), ignore_errors=True)   # this run's only
    os.makedirs(out, exist_ok=True)
    print(f"benchmark of {run.describe(model.config)}: {len(ids)} val images, formats "
          f"{', '.join(formats)}")
    bench = Bench(args, model, meta, dataset, ids, out, run)
    rows = [measure(bench, fmt)[0] for fmt in formats]
    print()
    write_per_class_table(rows, os.path.join(out, "benchmark.csv"), COLUMNS, sort_by=None,
                          stream=None)
    print(format_table([{k: _cell(v) for k, v in r.items()} for r in rows], COLUMNS))
    png = plot_benchmark(rows, os.path.join(out, "benchmark.png"),
                         f"{model.config.BACKBONE} at {size} px, {len(ids)} val images")
    print(f"\nbenchmark.csv and {os.path.basename(png)} in {out}")
    return {"rows": rows, "csv": os.path.join(out, "benchmark.csv"), "png": png}


def _cell(value):
    return f"{value:g}" if isinstance(value, float) else value


def _default_out(weights):
    run_dir = os.path.dirname(os.path.abspath(weights))
    if os.path.basename(run_dir).startswith("fashion"):
        return os.path.join(run_dir, "benchmark")
    return os.path.join("results", "benchmark")


def plot_benchmark(rows, path, title):
    """Median latency (ms, x) against segm AP (y), one labelled point per format."""
    from mrcnn.evaluation.plots import DPI, _figure
    from mrcnn.fileio import atomic_path
    fig = _figure()
    fig.set_size_inches(8, 5)
    ax = fig.add_subplot(1, 1, 1)
    done = [r for r in rows if "median_ms" in r]
    for r in done:
        ax.scatter(r["median_ms"], r["segm_AP"], s=40)
        ax.annotate(r["format"], (r["median_ms"], r["segm_AP"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=9)
    failed = [r["format"] for r in rows if "median_ms" not in r]
    ax.set_xlabel("median latency per image (ms, image in, masks out)")
    ax.set_ylabel("segm AP")
    ax.set_title(title + (f"; not run: {', '.join(failed)}" if failed else ""), fontsize=10)
    ax.grid(alpha=0.3)
    if done:
        ax.set_xlim(0, max(r["median_ms"] for r in done) * 1.25)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path

"""Runtimes side by side, in one run: ResNet50-FPN at 512 and 1024 px in TensorFlow
(float32 and bfloat16), onnxruntime, OpenVINO (f32 and bf16) and int8 (onnxruntime and
OpenVINO), against torchvision's Mask R-CNN in float32 timed in the same run; the
default EfficientNet-B0-BiFPN model in every format; segm AP of every format from a
briefly trained checkpoint (random weights have no AP to lose).

    python benchmarks/bench_runtimes.py --sizes 512 1024 --reps 5 \\
        --torch-python /work/venvs/tv/bin/python \\
        --checkpoint logs/<demo run>/mask_rcnn_fashion_best.h5 --limit 60

Speed: bench_core.py's models (random weights with batch-norm statistics calibrated on
two images, tests/export_model.py; 47 classes, 1000 proposals, at most 100 detections,
no score threshold and the background logit lowered, so every format returns 100
detections and runs the whole graph), one random image at the model's size, median of
--reps after a warm-up; a time is image in, detect()-like results out (masks pasted).
Every runtime uses its defaults and all cores (onnxruntime: default SessionOptions;
OpenVINO: CPU, f32 unless bf16). Random weights tie (saturated scores), so these
exports are converted without the export's self-check and their int8 models are
calibrated on synthetic images: speed only. Accuracy and parity come from --checkpoint
through `fashion.py benchmark` (its val split, --limit images), which says which model
each AP belongs to.
"""
import argparse
import json
import os
import shutil
import tempfile

from common import cpu_line, timed  # the repo root on sys.path too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

FORMATS = ("tf", "tf-bf16", "saved_model", "onnx", "openvino", "openvino-bf16",
           "onnx-int8", "openvino-int8")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def prepare(model, tmp, formats, calibration):
    """Export directories {format: path or the reason it could not be written}
    (converted, not self-checked: speed only)."""
    paths = {}
    for fmt in formats:
        if fmt in ("tf", "tf-bf16") or fmt in paths:
            continue
        try:
            paths.update(_prepare(model, tmp, fmt, calibration, paths))
        except Exception as e:  # a format that cannot be written here: its reason
            paths[fmt] = RuntimeError(" ".join(str(e).split())[:160])
    return paths


def _prepare(model, tmp, fmt, calibration, done):
    """{format: directory} for fmt (and the float model it needs, when not in done)."""
    from mrcnn.export import onnx as onnx_export, openvino as ov_export
    from mrcnn.export.metadata import labels_metadata
    from mrcnn.export.quantize import quantize_onnx, quantize_openvino
    from mrcnn.fileio import write_json
    labels = labels_metadata(model.config, fmt="bench")
    paths = {}

    def directory(name, precision="float32"):
        path = os.path.join(tmp, name)
        os.makedirs(path, exist_ok=True)
        write_json(os.path.join(path, "labels.json"), dict(labels, precision=precision))
        return path

    def base(name):
        if isinstance(done.get(name), Exception):   # its float model failed already
            raise done[name]
        if isinstance(done.get(name), str):
            return done[name]
        if name == "onnx":
            path = directory("onnx")
            onnx_export.convert(model, output_path=os.path.join(path, "model.onnx"))
        else:
            path = directory("openvino")
            ov_export.save(ov_export.to_openvino(model, tmp), path)
        paths[name] = path
        return path
    if fmt == "saved_model":
        paths[fmt] = model.export(os.path.join(tmp, "saved_model"), "saved_model")
    elif fmt == "onnx":
        base("onnx")
    elif fmt in ("openvino", "openvino-bf16"):
        paths[fmt] = base("openvino")
    elif fmt == "onnx-int8":
        paths[fmt] = directory("onnx-int8", "int8")
        quantize_onnx(os.path.join(base("onnx"), "model.onnx"),
                      os.path.join(paths[fmt], "model.onnx"), calibration)
    elif fmt == "openvino-int8":
        paths[fmt] = directory("openvino-int8", "int8")
        quantize_openvino(os.path.join(base("openvino"), "model.xml"), paths[fmt],
                          calibration, model.config)
    return paths


def busy_config(size, backbone, precision="float32"):
    """bench_core's config with no score threshold (see no_background)."""
    from bench_core import make_config
    config = make_config(size, backbone, precision=precision)
    config.DETECTION_MIN_CONFIDENCE = 0.0
    return config


def no_background(model, margin=30.0):
    """Lowers the background logit of the class head by margin: a random model then
    calls every ROI a garment (of a random class; its config keeps any score), so every
    format runs the whole graph with its
    DETECTION_MAX_INSTANCES detections, the mask head included, as a trained model
    does on a busy photo. Without it the random head may call everything background
    and some formats time an empty mask head."""
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    bias = bias.copy()
    bias[0] -= margin
    layer.set_weights([kernel, bias])
    model._infer_fn = None


def time_detect(detect, image, reps):
    """(median seconds, detections) of detect(image)."""
    timing = timed(lambda: detect(image), reps)
    return timing.median, len(timing.result["class_ids"])


def speed(backbone, size, formats, reps):
    """{format: (median seconds, detections) or an error string} for one model."""
    from mrcnn.export.results import to_results
    from mrcnn.export.runtime import open_export
    from mrcnn.model import MaskRCNN
    from mrcnn.training.precision import host_cpu_flags
    from tests.export_model import smooth_images
    from tests.export_model import calibrate_batch_norm
    model = MaskRCNN("inference", busy_config(size, backbone), "/tmp/bench_logs")
    # Batch-norm statistics of the data: without them random weights blow activations up
    # to infinities and denormals, which onnxruntime and OpenVINO (no flush-to-zero by
    # default) run 10x slower than TensorFlow, or turn into NaN; real models have no
    # such values. A pass fixes one more layer in depth, so ResNet50's chain of about
    # 50 batch norms needs about 50 passes (it stops early once nothing changes).
    calibrate_batch_norm(model, smooth_images(0, [(size, size)] * 2), passes=80)
    no_background(model)
    image = np.random.RandomState(0).randint(0, 255, (size, size, 3)).astype(np.uint8)
    # Calibration: two images like the timed one (random weights detect on them) and
    # two smooth ones; every layer then sees data, the mask head included.
    calibration = [np.random.RandomState(k).randint(0, 255, (size, size, 3)).astype(np.uint8)
                   for k in (1, 2)] + smooth_images(1, [(size, size)] * 2)
    tmp = tempfile.mkdtemp(prefix="bench_runtimes.")
    out = {}
    try:
        paths = prepare(model, tmp, formats, calibration)
        for fmt in formats:
            try:
                if fmt == "tf":
                    detect = lambda im: model.detect([im])[0]  # noqa: E731
                elif fmt == "tf-bf16":
                    if not {"avx512_bf16", "amx_bf16"} & set(host_cpu_flags()):
                        raise RuntimeError("no bfloat16 on this CPU")
                    bf16 = MaskRCNN("inference", busy_config(size, backbone,
                                                             "mixed_bfloat16"),
                                    "/tmp/bench_logs")
                    bf16.keras_model.set_weights(model.keras_model.get_weights())
                    detect = lambda im, m=bf16: m.detect([im])[0]  # noqa: E731
                elif isinstance(paths.get(fmt), Exception):
                    raise paths[fmt]
                else:
                    loaded = open_export(paths[fmt], "bf16" if fmt.endswith("bf16") else None)
                    detect = lambda im, r=loaded.run: to_results(r(im), [im.shape])[0]  # noqa
                out[fmt] = time_detect(detect, image, reps)
            except Exception as e:  # a runtime that cannot run here: its reason
                out[fmt] = " ".join(str(e).split())[:120]
            print(f"  {backbone} {size} {fmt}: {out[fmt]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def accuracy(checkpoint, limit, formats):
    """`fashion.py benchmark` on the checkpoint -> (rows by format, description)."""
    from fashion.fashion import main
    out = tempfile.mkdtemp(prefix="bench_runtimes_ap.")
    code = main(["benchmark", "--weights", checkpoint, "--limit", str(limit), "--formats",
                 ",".join(f for f in formats if f != "saved_model"), "--out", out])
    if code != 0:
        return {}, f"fashion.py benchmark failed (exit {code})"
    import csv
    with open(os.path.join(out, "benchmark.csv")) as f:
        rows = {r["format"]: r for r in csv.DictReader(f)}
    with open(os.path.join(os.path.dirname(os.path.abspath(checkpoint)),
                           "fashion_run.json")) as f:
        config = json.load(f)["config"]
    return rows, (f"{checkpoint} ({config['BACKBONE']} at {config['IMAGE_MAX_DIM']} px, "
                  f"its dataset's first {limit} val images)")


def report(sizes, results, tv, ap_rows, ap_model):
    nan = float("nan")
    print(f"\n{'model':16}{'size':>5} {'format':15}{'s/image':>9}{'dets':>6}"
          f"{'x TF fp32':>10}{'/ tv fp32':>10}{'segm AP*':>10}{'AP diff*':>10}")
    ap32 = float(ap_rows.get("tf", {}).get("segm_AP") or nan)
    for (backbone, size), row in results.items():
        tf32 = row.get("tf", (nan,))[0] if isinstance(row.get("tf"), tuple) else nan
        for fmt, value in row.items():
            ap = float(ap_rows.get(fmt, {}).get("segm_AP") or nan)
            if isinstance(value, str):
                print(f"{backbone:16}{size:>5} {fmt:15} not run: {value}")
                continue
            ref = tv.get(size, nan) if backbone == "resnet50" else nan
            print(f"{backbone:16}{size:>5} {fmt:15}{value[0]:>9.3f}{value[1]:>6}"
                  f"{tf32 / value[0]:>10.2f}{value[0] / ref:>10.2f}{ap:>10.4f}"
                  f"{ap - ap32:>+10.4f}")
    for size in sizes:
        print(f"torchvision float32 at {size}: {tv.get(size, nan):.3f} s/image")
    print(f"* segm AP and its difference to TensorFlow float32: {ap_model}")
    targets(sizes, results, tv, ap_rows, ap32)


def targets(sizes, results, tv, ap_rows, ap32):
    """The targets this benchmark was written for, checked on these figures."""
    for size in sizes:
        row = results.get(("resnet50", size), {})
        ok = {f: v[0] for f, v in row.items() if isinstance(v, tuple) and f in ap_rows
              and ap_rows[f].get("segm_AP") not in (None, "")
              and float(ap_rows[f]["segm_AP"]) >= ap32 - 0.01}
        if ok and size in tv:
            best = min(ok, key=ok.get)
            print(f"target {size} px: fastest format with AP within 0.01 of float32 is "
                  f"{best} at {ok[best] / tv[size]:.2f} x torchvision's time (target <= 0.5)")
        if isinstance(row.get("onnx"), tuple) and isinstance(row.get("tf"), tuple):
            print(f"target {size} px: ONNX at {row['tf'][0] / row['onnx'][0]:.2f} x "
                  "TensorFlow float32's speed (target >= 1.0)")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--models", nargs="+", default=["resnet50", "efficientnet-b0"],
                   help="backbones (EfficientNet-B0-BiFPN at the first size only)")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="torchvision's threads (default: all cores, as the runtimes)")
    p.add_argument("--torch-python", help="python of a venv with torch + torchvision")
    p.add_argument("--checkpoint", help="a briefly trained checkpoint for the AP column")
    p.add_argument("--limit", type=int, default=60, help="val images for the AP column")
    a = p.parse_args()
    from bench_core import run_peer
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    print(cpu_line(CPU_FLAGS), flush=True)
    results, tv = {}, {}
    for backbone in a.models:
        for size in (a.sizes if backbone == "resnet50" else a.sizes[:1]):
            results[(backbone, size)] = speed(backbone, size, formats, a.reps)
    for size in a.sizes:
        figures = run_peer(a.torch_python, "torchvision_maskrcnn.py", size, a.threads,
                           a.reps)
        if "infer" in figures:
            tv[size] = figures["infer"]
    ap_rows, ap_model = ({}, "no --checkpoint given")
    if a.checkpoint:
        ap_rows, ap_model = accuracy(a.checkpoint, a.limit, formats)
    report(a.sizes, results, tv, ap_rows, ap_model)


if __name__ == "__main__":
    main()

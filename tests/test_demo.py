"""`fashion.py demo`, the Quick start's main job, end to end: generate, train, evaluate,
detect with overlays and the summary, at the smallest sizes (64 px, 16 images). The
budget counts from the process start, so inside the test process it is already spent
and training takes its one guaranteed step: what is tested is that every stage runs
and hands its results on, not what the model learns (docs/benchmarks.md has that)."""
import json
import os
import re

from tests.demo_runs import run


def test_demo_runs_every_stage_and_prints_its_summary(tmp_path):
    results = tmp_path / "results"
    code, out, err = run(["demo", "--minutes", "0.05", "--demo-images", "16",
                          "--demo-dir", str(tmp_path / "demo"), "--image-size", "64",
                          "--steps-per-epoch", "2", "--images-per-gpu", "2",
                          "--overlays", "2", "--out", str(results),
                          "--logs", str(tmp_path / "logs")])
    assert code == 0, err[-3000:]
    summary = out[out.index("===== demo summary ====="):]
    assert re.search(r"training: +\d+ steps to epoch \d+", summary), summary
    assert re.search(r"segm AP \d\.\d{4} .* boundary AP \d\.\d{4}", summary), summary
    assert f"overlays in {results / 'overlays'}" in summary, summary
    overlays = sorted(os.listdir(results / "overlays"))
    assert len(overlays) == 2 and all(n.endswith(".png") for n in overlays), overlays
    with open(results / "metrics.json") as f:
        metrics = json.load(f)
    assert {"segm", "boundary", "bbox"} <= set(metrics), list(metrics)
    # One line per detection (a model trained one step may find any number), each a
    # COCO result of one of the two pictured images.
    with open(results / "detections.jsonl") as f:
        rows = [json.loads(line) for line in f.read().splitlines()]
    for row in rows:
        assert {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(row), row
    assert {r["image_id"] for r in rows} <= {n[:-len(".png")] for n in overlays}, \
        ([r["image_id"] for r in rows], overlays)
    assert f"detections: {len(rows)} on 2 held-out images" in summary, summary

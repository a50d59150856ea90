"""Peak memory of `fashion.py evaluate` for N and 10N images, and detect images/s.

    python benchmarks/bench_eval_memory.py --weights logs/fashion.../mask_rcnn_fashion_0028.h5

Each evaluation runs in its own process on a demo set large enough for the larger count
(masks are kept as COCO RLE per image, so memory should stay flat as images grow).
Target: peak memory for 1,000 images within 10% of that for 100.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT  # the repo root on sys.path too

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from fashion.fashion import main
t = time.time()
code = main({argv!r})
print("RESULT", code, time.time() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
"""


def run_evaluate(weights, demo_dir, demo_images, limit, out):
    argv = ["evaluate", "--dataset", "demo", "--demo-dir", demo_dir, "--demo-images",
            str(demo_images), "--val-fraction", "0.9", "--weights", weights,
            "--limit", str(limit), "--out", out, "--quiet"]
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, argv=argv)],
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            _, code, seconds, peak = line.split()
            return int(code), float(seconds), float(peak)
    raise RuntimeError(proc.stderr[-2000:])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--counts", type=int, nargs=2, default=[100, 1000])
    p.add_argument("--demo-dir", default="/tmp/bench_eval_demo")
    p.add_argument("--out", default="/tmp/bench_eval_out")
    a = p.parse_args()
    demo_images = int(a.counts[1] / 0.9) + 20
    from fashion.data.demo_data import generate_demo
    size = json.load(open(os.path.join(os.path.dirname(a.weights), "fashion_run.json")))
    size = int(size.get("config", size).get("IMAGE_MAX_DIM", 128))
    t = time.time()
    generate_demo(a.demo_dir, num_images=demo_images, size=size, seed=0)
    print(f"demo set: {demo_images} images at {size} px in {time.time() - t:.0f} s")
    rows = []
    for n in a.counts:
        code, seconds, peak = run_evaluate(a.weights, a.demo_dir, demo_images, n,
                                           f"{a.out}_{n}")
        rows.append((n, peak, seconds))
        print(f"evaluate {n:5d} images: exit {code}, {seconds:6.1f} s "
              f"({n / seconds:.1f} images/s incl. metrics), peak memory {peak:.0f} MiB",
              flush=True)
    growth = rows[1][1] / rows[0][1] - 1
    print(f"peak memory growth {a.counts[0]} -> {a.counts[1]} images: {growth:+.1%} "
          "(target <= +10%)")
    print(json.dumps({"counts": a.counts, "peak_mib": [r[1] for r in rows],
                      "seconds": [r[2] for r in rows]}))


if __name__ == "__main__":
    main()

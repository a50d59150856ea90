"""What every benchmark script shares: the repository's paths (and the repo root on
sys.path, so `mrcnn`, `fashion` and `tests` import from this checkout), one timer and
the CPU line each script prints beside its figures.

A script in this folder starts with ``from common import ROOT, ...`` (the script's own
folder is first on sys.path). Standard library only, so the peer scripts that run in
another virtual environment (torchvision_autocast.py) can use it too.
"""
import collections
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BENCHMARKS = os.path.join(ROOT, "benchmarks")
SHARED_BENCH = os.path.join(ROOT, "..", "shared", "bench")   # the peers' scripts
DEMO_DIR = os.path.join(ROOT, "data", "demo")
# The SIMD flags that decide which kernels TensorFlow, oneDNN and OpenVINO run.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16",
              "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")

Timing = collections.namedtuple("Timing", "median best result")


def fashion_cli(root=None):
    """fashion/fashion.py of a checkout (this one by default)."""
    return os.path.join(root or ROOT, "fashion", "fashion.py")


def timed(fn, reps, warmup=1, clock=time.perf_counter):
    """Timing(median, best, result): seconds of `reps` calls of fn() after `warmup`
    untimed ones (`clock` may be time.process_time), and the last call's result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(reps):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return Timing(statistics.median(times), min(times), result)


def cpu_line(flags=SIMD_FLAGS):
    """'CPU: <lscpu model name>, N CPUs; flags: <those of `flags` it has> (of <flags>)'."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return f"CPU: unknown, {os.cpu_count()} CPUs (lscpu not available)"
    model = re.search(r"^Model name:\s*(.+)$", text, re.M)
    cpus = re.search(r"^CPU\(s\):\s*(\d+)", text, re.M)
    have = set((re.search(r"^Flags:\s*(.+)$", text, re.M) or [None, ""])[1].split())
    found = " ".join(f for f in flags if f in have) or "none"
    return (f"CPU: {model.group(1).strip() if model else 'unknown'}, "
            f"{cpus.group(1) if cpus else os.cpu_count()} CPUs; flags: {found} "
            f"(of {' '.join(flags)})")

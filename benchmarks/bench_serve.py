"""`fashion.py serve` under load on 127.0.0.1: requests/s, latency, status counts, RSS.

Starts `serve` on a small trained model (trained here on the demo set, or --weights /
--export), then drives POST /v1/detect with 1, 4 and 16 concurrent clients for a fixed
time each (threads, one keep-alive connection per client, demo photos as JPEG bodies),
with batching on (--max-batch B) and off (--max-batch 1). Prints per level: requests/s
(200 answers), p50/p95/p99 latency of the 200 answers, counts of 200/503/504/other,
connection errors, the server's RSS at the level's start and end, and from its /metrics
the images per model call, milliseconds per call, the share of the time the model
ran ("busy") and the server's CPU milliseconds per answered request (the figure least
moved by other processes on a shared machine); then the mean RSS of the first and the
last minute of each server's load, batching on vs off at the highest level, which
targets are met, and the CPU (lscpu). Nothing leaves loopback. Figures (PNG) and a
JSON summary go to --out. A client that gets 503 waits Retry-After (at most 1 s) before
its next request.

    python benchmarks/bench_serve.py                            # trains 5 min, 60 s/level
    python benchmarks/bench_serve.py --weights logs/run/mask_rcnn_fashion_0010.h5
    python benchmarks/bench_serve.py --train-minutes 1 --seconds 10 --soak-minutes 0
"""
import argparse
import glob
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from common import cpu_line, fashion_cli  # the repo root on sys.path too
FASHION = [sys.executable, fashion_cli()]
DEMO_SETTINGS = ["TOP_DOWN_PYRAMID_SIZE=128", "FPN_CLASSIF_FC_LAYERS_SIZE=512",
                 "ATTRIBUTE_FC_SIZE=256", "WARMUP_STEPS=100", "VALIDATION_STEPS=5"]


def model_flags(args):
    """serve's model flags; trains a small demo model into --out/logs when none given."""
    if args.export:
        return ["--export", args.export]
    if args.weights:
        return ["--weights", args.weights]
    logs = os.path.join(args.out, "logs")
    found = sorted(glob.glob(os.path.join(logs, "fashion*", "mask_rcnn_fashion_*.h5")))
    if not found:
        print(f"Training a ResNet18 128 px model on the demo set for {args.train_minutes:g} "
              f"min into {logs} ...", flush=True)
        subprocess.run(FASHION + [
            "train", "--dataset", "demo", "--demo-dir", os.path.join(args.out, "demo"),
            "--demo-images", "120", "--weights", "none", "--backbone", "resnet18",
            "--image-size", "128", "--schedule", "all:1000", "--steps-per-epoch", "25",
            "--images-per-gpu", "4", "--time-budget", str(args.train_minutes),
            "--eval-every", "0", "--keep-last", "1", "--logs", logs, "--quiet"]
            + [x for s in DEMO_SETTINGS for x in ("--set", s)], check=True)
    return ["--weights", "last", "--logs", logs]


def request_bodies(args, count=8):
    """JPEG bodies: demo photos (generated when missing), at their own sizes."""
    from PIL import Image
    files = sorted(glob.glob(os.path.join(args.out, "demo", "**", "*.jpg"), recursive=True))
    if not files:
        from fashion.data.demo_data import generate_demo
        generate_demo(os.path.join(args.out, "demo"), num_images=count, size=256)
        files = sorted(glob.glob(os.path.join(args.out, "demo", "**", "*.jpg"),
                                 recursive=True))
    bodies = []
    for path in files[:count]:
        with open(path, "rb") as f:
            bodies.append(f.read())
    sizes = {Image.open(path).size for path in files[:count]}
    print(f"Request bodies: {len(bodies)} demo JPEGs, {min(map(len, bodies))}-"
          f"{max(map(len, bodies))} bytes, sizes {sorted(sizes)}", flush=True)
    return bodies


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fashion.py serve` in a subprocess, with its RSS sampled once a second."""

    def __init__(self, flags, log_path):
        import psutil
        self.port = free_port()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(FASHION + ["serve", "--port", str(self.port)] + flags,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.samples = []                       # (time.time(), rss bytes)
        self._ps = psutil.Process(self.proc.pid)
        self._stop = threading.Event()
        deadline = time.time() + 600
        while not self.healthy():
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"serve did not start; see {log_path}")
            time.sleep(0.5)
        threading.Thread(target=self._sample, daemon=True).start()

    def healthy(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def rss(self):
        return self._ps.memory_info().rss

    def model_totals(self):
        """(model seconds, model calls, images, process CPU seconds) so far, from GET
        /metrics."""
        from prometheus_client.parser import text_string_to_metric_families
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/metrics")
        values = {s.name: s.value for f in text_string_to_metric_families(
            conn.getresponse().read().decode()) for s in f.samples}
        return (values.get("fashion_serve_model_seconds_sum", 0.0),
                values.get("fashion_serve_model_seconds_count", 0.0),
                values.get("fashion_serve_batch_size_sum", 0.0),
                values.get("process_cpu_seconds_total", 0.0))

    def _sample(self):
        while not self._stop.wait(1.0):
            try:
                self.samples.append((time.time(), self.rss()))
            except Exception:  # noqa: BLE001 - the process ended
                return

    def stop(self):
        """SIGTERM; returns the exit code (0 after a graceful shutdown)."""
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


def client(port, bodies, stop_at, offset, out):
    """One client: POST bodies in turn on a keep-alive connection until stop_at."""
    conn, i = None, offset
    while time.perf_counter() < stop_at:
        body = bodies[i % len(bodies)]
        i += 1
        started = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.request("POST", "/v1/detect", body, {"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            resp.read()
            status, retry = resp.status, resp.getheader("Retry-After")
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            out.append(("error", time.perf_counter() - started))
            if conn is not None:
                conn.close()
            conn = None
            continue
        out.append((status, time.perf_counter() - started))
        if status == 503:
            time.sleep(min(1.0, float(retry or 1)))
    if conn is not None:
        conn.close()


def drive(server, bodies, clients, seconds):
    """Runs `clients` clients for `seconds`; returns the level's figures."""
    out, rss_start, before = [], server.rss(), server.model_totals()
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(server.port, bodies, started + seconds,
                                                     k, out)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    model_s, calls, images, cpu = (a - b for a, b in zip(server.model_totals(), before))
    ok = np.array([s for code, s in out if code == 200])
    counts = {k: sum(1 for code, _ in out if code == k) for k in (200, 503, 504)}
    counts["other"] = sum(1 for code, _ in out if code not in (200, 503, 504, "error"))
    counts["conn_errors"] = sum(1 for code, _ in out if code == "error")
    pct = (np.percentile(ok, [50, 95, 99]) * 1000).round(1).tolist() if ok.size else [None] * 3
    return {"clients": clients, "seconds": round(elapsed, 1),
            "rps": round(ok.size / elapsed, 3), "p50_ms": pct[0], "p95_ms": pct[1],
            "p99_ms": pct[2], **counts, "rss_start_mb": round(rss_start / 2**20, 1),
            "rss_end_mb": round(server.rss() / 2**20, 1),
            "images_per_call": round(images / calls, 2) if calls else None,
            "model_ms_per_call": round(1000 * model_s / calls, 1) if calls else None,
            "model_busy": round(model_s / elapsed, 2),
            "cpu_ms_per_request": round(1000 * cpu / ok.size, 1) if ok.size else None}


def first_last_minute(samples, since):
    """Mean RSS (MB) of the first and the last minute of samples taken after `since`."""
    rows = [(t, r) for t, r in samples if t >= since]
    if not rows or rows[-1][0] - rows[0][0] < 120:
        return None
    t0, t1 = rows[0][0], rows[-1][0]
    first = float(np.mean([r for t, r in rows if t < t0 + 60])) / 2**20
    last = float(np.mean([r for t, r in rows if t > t1 - 60])) / 2**20
    return {"first_min_mb": round(first, 1), "last_min_mb": round(last, 1),
            "growth_pct": round(100 * (last / first - 1), 2)}


def run_mode(name, args, flags, bodies, levels, soak_minutes):
    print(f"\n== {name}: serve {' '.join(flags)}", flush=True)
    server = Server(flags, os.path.join(args.out, f"serve_{name.replace(' ', '_')}.log"))
    rows = []
    drive(server, bodies, max(levels), args.warmup)          # warm connections, traces
    since = time.time()
    print(HEADER, flush=True)
    for clients in levels:
        rows.append(drive(server, bodies, clients, args.seconds))
        print_row(rows[-1])
    if soak_minutes:
        rows.append(dict(drive(server, bodies, max(levels), soak_minutes * 60), soak=True))
        print_row(rows[-1], "soak")
    memory = first_last_minute(server.samples, since)
    code = server.stop()
    print(f"RSS first vs last minute: {memory or 'run shorter than 2 min'}; "
          f"exit code after SIGTERM: {code}", flush=True)
    return {"mode": name, "flags": flags, "levels": rows, "memory": memory,
            "exit_code": code, "rss": server.samples}


HEADER = (f"{'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'200':>6} {'503':>5} {'504':>5} {'other':>5} {'conn':>5} {'RSS MB start/end':>17}"
          f" {'img/call':>8} {'ms/call':>8} {'busy':>5} {'CPU ms/req':>10}")


def print_row(r, note=""):
    print(f"{r['clients']:>7} {r['rps']:>7.2f} {r['p50_ms']!s:>8} {r['p95_ms']!s:>8} "
          f"{r['p99_ms']!s:>8} {r[200]:>6} {r[503]:>5} {r[504]:>5} {r['other']:>5} "
          f"{r['conn_errors']:>5} {r['rss_start_mb']:>8}/{r['rss_end_mb']:<8} "
          f"{r['images_per_call']!s:>8} {r['model_ms_per_call']!s:>8} {r['model_busy']:>5} "
          f"{r['cpu_ms_per_request']!s:>10} {note}", flush=True)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for res in results:
        rows = [r for r in res["levels"] if not r.get("soak")]
        x = [r["clients"] for r in rows]
        axes[0].plot(x, [r["rps"] for r in rows], "o-", label=res["mode"])
        axes[1].plot(x, [r["p99_ms"] or np.nan for r in rows], "o-", label=res["mode"])
        if res["rss"]:
            t0 = res["rss"][0][0]
            axes[2].plot([(t - t0) / 60 for t, _ in res["rss"]],
                         [r / 2**20 for _, r in res["rss"]], label=res["mode"])
    for ax, title, ylabel in zip(axes, ("Throughput", "p99 latency", "Server RSS"),
                                 ("requests/s (200)", "ms", "MB")):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[:2]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("concurrent clients")
    axes[2].set_xlabel("minutes since the server answered /healthz")
    fig.suptitle(f"fashion.py serve on 127.0.0.1 - {cpu_line()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(results, level):
    on, off = ({r["clients"]: r for r in res["levels"] if not r.get("soak")}
               for res in results)
    if level not in on or level not in off or not off[level]["rps"]:
        return None
    a, b = on[level], off[level]
    cpu = b["cpu_ms_per_request"] / a["cpu_ms_per_request"] \
        if a["cpu_ms_per_request"] and b["cpu_ms_per_request"] else None
    return {"clients": level, "throughput_ratio": round(a["rps"] / b["rps"], 3),
            "p99_on_ms": a["p99_ms"], "p99_off_ms": b["p99_ms"],
            "cpu_per_request_ratio": round(cpu, 3) if cpu else None}


def targets(results, versus):
    """The load test's targets, each True or False (None when not measured)."""
    rows = [r for res in results for r in res["levels"]]
    growth = [res["memory"]["growth_pct"] for res in results if res["memory"]]
    return {
        "only_200_503_504": all(r["other"] == 0 for r in rows),
        "no_connection_errors": all(r["conn_errors"] == 0 for r in rows),
        "rss_growth_under_10pct": all(g < 10 for g in growth) if growth else None,
        "batching_1.5x_throughput": versus["throughput_ratio"] >= 1.5 if versus else None,
        "batching_same_or_lower_p99": (versus["p99_on_ms"] <= versus["p99_off_ms"]
                                       if versus else None),
        "sigterm_exit_0": all(res["exit_code"] == 0 for res in results)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="a checkpoint with fashion_run.json beside it")
    p.add_argument("--export", help="a SavedModel directory written by `export`")
    p.add_argument("--train-minutes", type=float, default=5.0,
                   help="training budget when no model is given (default 5)")
    p.add_argument("--out", default="results/bench_serve", help="work and result directory")
    p.add_argument("--levels", default="1,4,16", help="concurrent clients (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per level")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of load first")
    p.add_argument("--soak-minutes", type=float, default=5.0,
                   help="extra minutes at the highest level with batching on (memory)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--max-queue", type=int, default=64,
                   help="the same for both modes, above the highest level")
    p.add_argument("--no-off", action="store_true", help="skip the batching-off run")
    return p.parse_args()


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    levels = [int(x) for x in args.levels.split(",")]
    print(cpu_line(), flush=True)
    flags = model_flags(args) + ["--max-queue", str(args.max_queue), "--quiet"]
    bodies = request_bodies(args)
    results = [run_mode("batching on", args, flags + [
        "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)],
        bodies, levels, args.soak_minutes)]
    if not args.no_off:
        results.append(run_mode("batching off", args, flags + ["--max-batch", "1"], bodies,
                                levels, 0))
    summary = {"cpu": cpu_line(), "results": results,
               "on_vs_off": compare(results, max(levels)) if len(results) == 2 else None}
    if summary["on_vs_off"]:
        c = summary["on_vs_off"]
        print(f"\nBatching on vs off at {c['clients']} clients: {c['throughput_ratio']}x "
              f"throughput, p99 {c['p99_on_ms']} ms vs {c['p99_off_ms']} ms, "
              f"{c['cpu_per_request_ratio']}x less server CPU per request", flush=True)
    summary["targets"] = targets(results, summary["on_vs_off"])
    print("Targets: " + ", ".join(f"{k} {v}" for k, v in summary["targets"].items()),
          flush=True)
    with open(os.path.join(args.out, "bench_serve.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    plot(results, os.path.join(args.out, "bench_serve.png"))
    print(f"Wrote {args.out}/bench_serve.json and bench_serve.png", flush=True)


if __name__ == "__main__":
    main()

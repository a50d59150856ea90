"""Fixed-wall-time training runs through the CLI: train from scratch for N minutes,
evaluate on the val split, return segm/bbox AP50 and the steps taken.

Shared by bench_learning.py --hard (today's settings vs the new ones on the hard demo
set) and bench_precision.py (float32 vs auto). Variants run concurrently by default so
that they share the machine's load alike (the shared CPU is the noise).
"""
import json
import os
import re
import subprocess
import sys
import time

from benchmarks.common import fashion_cli


def hard_demo(out_dir, num_images=750, size=256, seed=0, hard=True):
    """Generates (or reuses) the demo set and returns its directory."""
    from fashion.data.demo_data import generate_demo
    return str(generate_demo(out_dir, num_images=num_images, size=size, seed=seed,
                             hard=hard))


# Short epochs (a checkpoint and val loss every 100 steps) and a schedule longer than
# any budget; exact=True runs the command as a user types it (the defaults' epochs).
EPOCH_FLAGS = ["--steps-per-epoch", "100", "--schedule", "all:1000"]


def _train_cmd(data_dir, logs, minutes, size, backbone, extra, root=None, exact=False):
    return [sys.executable, fashion_cli(root), "train", "--dataset", data_dir,
            "--format", "imat2019", "--weights", "none", "--backbone", backbone,
            "--image-size", str(size),
            "--time-budget", str(minutes), "--logs", logs, "--quiet"] + (
                [] if exact else EPOCH_FLAGS) + list(extra)


def _eval_cmd(data_dir, logs, checkpoint, out, extra, root=None):
    return [sys.executable, fashion_cli(root), "evaluate", "--dataset", data_dir,
            "--format", "imat2019", "--weights", checkpoint, "--logs", logs, "--out", out,
            "--quiet"] + list(extra)


def run_variants(variants, data_dir, out_dir, minutes, size=256, backbone="resnet18",
                 concurrent=True, exact=False, env=None):
    """variants: {name: (train flags, evaluate flags[, checkout])} -> {name: result}.

    A variant's checkout (a directory holding another version of this project, e.g. a
    `git worktree` of an older commit) runs that version's fashion.py instead of ours.
    exact: the train command as a user types it (no EPOCH_FLAGS); env: environment
    of the commands (e.g. ONEDNN_MAX_CPU_ISA=AVX2).
    """
    procs = {}
    for name, (train_flags, _, *root) in variants.items():
        logs = os.path.join(out_dir, name, "logs")
        os.makedirs(logs, exist_ok=True)
        log = open(os.path.join(out_dir, name, "train.log"), "w")
        cmd = _train_cmd(data_dir, logs, minutes, size, backbone, train_flags, *root,
                         exact=exact)
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                       log, time.time())
        if not concurrent:
            procs[name][0].wait()
            procs[name] += (time.time(),)
    results = {}
    for name, (proc, log, t0, *end) in procs.items():
        proc.wait()
        log.close()
        results[name] = _finish(name, variants[name][1], data_dir, out_dir, t0,
                                *variants[name][2:], env=env)
        results[name]["train_minutes"] = round(((end[0] if end else time.time()) - t0)
                                               / 60, 2)
    return results


def _finish(name, eval_flags, data_dir, out_dir, t0, root=None, env=None):
    """Reads the train log, evaluates the checkpoint, returns the figures."""
    d = os.path.join(out_dir, name)
    text = open(os.path.join(d, "train.log")).read()
    ckpt = re.search(r"Checkpoint: (\S+)", text)
    steps = re.search(r"(\d+) steps, throughput ([\d.]+) images/s", text)
    precision = re.search(r"Precision: (.+)", text)
    own = re.findall(r"evaluation on \d+ val images .*?segm_AP50 ([\d.]+)", text)
    result = {"train_minutes": round((time.time() - t0) / 60, 1),
              "steps": int(steps.group(1)) if steps else None,
              "images_per_second": float(steps.group(2)) if steps else None,
              "precision": precision.group(1).strip() if precision else None,
              "train_own_segm_ap50": float(own[-1]) if own else None}
    if not ckpt:
        result["error"] = f"training failed; see {d}/train.log"
        return result
    out = os.path.join(d, "eval")
    with open(os.path.join(d, "eval.log"), "w") as log:
        subprocess.run(_eval_cmd(data_dir, os.path.join(d, "logs"), ckpt.group(1), out,
                                 eval_flags, root), stdout=log, stderr=subprocess.STDOUT,
                       env=env)
    try:
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        result.update(segm_ap50=metrics["segm"]["AP50"], segm_ap=metrics["segm"]["AP"],
                      segm_ap75=metrics["segm"]["AP75"],
                      bbox_ap50=metrics["bbox"]["AP50"], checkpoint=ckpt.group(1))
        if "boundary" in metrics:
            result.update(boundary_ap=metrics["boundary"]["AP"],
                          boundary_ap75=metrics["boundary"]["AP75"])
    except (OSError, KeyError, ValueError) as e:
        result["error"] = f"evaluation failed ({e}); see {d}/eval.log"
    return result


def print_table(results, title):
    print(f"\n{title}")
    print(f"{'variant':12}{'precision':>34}{'steps':>8}{'img/s':>8}{'segm AP50':>11}"
          f"{'segm AP':>9}{'bbox AP50':>11}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:12} {r['error']}")
            continue
        print(f"{name:12}{str(r['precision'])[:33]:>34}{r['steps']:>8}"
              f"{r['images_per_second']:>8.2f}{r['segm_ap50']:>11.3f}{r['segm_ap']:>9.3f}"
              f"{r['bbox_ap50']:>11.3f}")

"""From-scratch training per CPU-minute: this code against an older checkout.

    git worktree add /tmp/base <older commit>
    python benchmarks/bench_scratch.py --baseline-checkout /tmp/base              # both parts
    python benchmarks/bench_scratch.py --baseline-checkout /tmp/base --speed-only
    python benchmarks/bench_scratch.py --baseline-checkout /tmp/base --emulate-avx2

Prints the CPU (`lscpu` model name and the flags that decide precision and kernels),
then:

1. Speed: images per second of the from-scratch train step at 256 px, both versions
   running the same command line, `fashion.py train --weights none --backbone resnet18
   --image-size 256` (with --steps-per-epoch, one epoch and no evaluation, so only
   steps are timed; the first step, which builds the graph, is left out of the rate
   and printed apart), alternating old/new for --rounds rounds; the ratio of medians.
2. Learning: `fashion.py train --weights none --backbone resnet18 --image-size 256
   --time-budget 20` exactly as a user types it, old then new, one after the other, on
   the hard demo set (600 train + 150 val images at 256 px: crowds of small,
   overlapping garments); segm/bbox AP of each final checkpoint from `fashion.py
   evaluate` on the 150 val images, the steps taken and the command's wall time.

--emulate-avx2 sets ONEDNN_MAX_CPU_ISA=AVX2 for both versions: oneDNN then uses no
AVX-512 or bfloat16 instructions, as on an AVX2-only CPU, and "auto" precision picks
float32 (the old code, which does not read the variable, is given
--mixed-precision float32). A figure taken so is labelled "AVX2 emulated".
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from common import ROOT, cpu_line, fashion_cli  # the repo root on sys.path too

from benchmarks.fixed_time import hard_demo, print_table, run_variants  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def speed_run(root, data, out, steps, env, extra=()):
    """(images/s without the first step, first step seconds or None, wall seconds)."""
    logs = os.path.join(out, f"logs_{int(time.time() * 1000)}")
    cmd = [sys.executable, fashion_cli(root), "train", "--dataset", data,
           "--format", "imat2019", "--weights", "none", "--backbone", "resnet18", "--image-size", "256",
           "--steps-per-epoch", str(steps), "--schedule", "all:1", "--eval-every", "0",
           "--logs", logs] + list(extra)
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    text = done.stdout + done.stderr
    rate = re.search(r"throughput ([\d.]+) images/s", text)
    if done.returncode or not rate:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-2000:]}")
    return float(rate.group(1)), wall


def speed(a, data, env):
    old_extra = ["--mixed-precision", "float32"] if a.emulate_avx2 else []
    versions = {"before": (a.baseline_checkout, old_extra), "after": (ROOT, [])}
    rates = {k: [] for k in versions}
    for r in range(a.rounds):
        for name, (root, extra) in versions.items():
            rate, wall = speed_run(root, data, os.path.join(a.out, "speed"), a.steps, env,
                                   extra)
            rates[name].append(rate)
            print(f"  round {r + 1} {name:6}: {rate:.2f} images/s ({a.steps} steps, "
                  f"command {wall:.0f} s)", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\nTrain step at 256 px, from scratch, ResNet18 (median of {a.rounds}): before "
          f"{med['before']:.2f} images/s, after {med['after']:.2f} images/s -> "
          f"{med['after'] / med['before']:.2f}x (target >= 3x on a CPU without AVX-512)")
    return med


def learning(a, data, env):
    old_eval = ["--set", "MIXED_PRECISION=null"] if a.emulate_avx2 else []
    old_train = ["--mixed-precision", "float32"] if a.emulate_avx2 else []
    variants = {"before": (old_train, old_eval, os.path.abspath(a.baseline_checkout)),
                "after": ([], [])}
    results = run_variants(variants, data, os.path.join(a.out, "learning"), a.minutes,
                           256, "resnet18", concurrent=False, exact=True, env=env)
    print_table(results, f"Hard demo set, 256 px, ResNet18 from scratch, "
                f"--time-budget {a.minutes:g}, one after the other")
    for name, r in results.items():
        print(f"  {name}: command wall time {r.get('train_minutes')} min "
              f"(budget {a.minutes:g} min)")
    b, n = results["before"], results["after"]
    if "segm_ap50" in b and "segm_ap50" in n:
        print(f"segm AP50 {b['segm_ap50']:.3f} -> {n['segm_ap50']:.3f} "
              f"({n['segm_ap50'] / max(b['segm_ap50'], 1e-9):.2f}x; target >= 1.5x on a "
              f"CPU without AVX-512); steps {b['steps']} -> {n['steps']}")
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-checkout", required=True, metavar="DIR",
                   help="a checkout of the older code (git worktree add DIR COMMIT)")
    p.add_argument("--out", default="/tmp/bench_scratch")
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--steps", type=int, default=30, help="timed steps per speed run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--learning-only", action="store_true")
    p.add_argument("--emulate-avx2", action="store_true",
                   help="ONEDNN_MAX_CPU_ISA=AVX2 for both versions (float32, no AVX-512)")
    a = p.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if a.emulate_avx2:
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    print(cpu_line(FLAGS) + ("  [AVX2 emulated: ONEDNN_MAX_CPU_ISA=AVX2]"
                                  if a.emulate_avx2 else ""), flush=True)
    data = hard_demo(os.path.join(a.out, "demo_hard_256"), num_images=750, size=256)
    if not a.learning_only:
        speed(a, data, env)
    if not a.speed_only:
        learning(a, data, env)


if __name__ == "__main__":
    main()

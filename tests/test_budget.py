"""--time-budget is the whole command: training stops early enough that the final
checkpoint and evaluation end within the budget, and progress shows the budget's time."""
import csv
import io
import os
import subprocess
import sys
import time

import pytest

from mrcnn.training.callbacks import BudgetProgress, TimeBudget, clock_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    """A settable time source (TimeBudget reads its `clock` attribute)."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class Model:
    stop_training = False


def started_budget(minutes, after_training, margin):
    """(clock, TimeBudget) started now on a settable clock, with `after_training`
    seconds of work timed for after training."""
    clock = Clock()
    budget = TimeBudget(minutes, after_training=[lambda: after_training], margin=margin)
    budget.clock, budget.start = clock, clock.now
    budget.set_model(Model())
    budget.params = {"validation_steps": 0}
    return clock, budget


def test_budget_keeps_room_for_the_work_after_training():
    clock, budget = started_budget(2, 30.0, margin=5.0)
    assert budget.seconds == 120 - 30 - 5
    clock.now += 84
    budget.on_train_batch_begin(0)
    budget.on_train_batch_end(0)
    assert not budget.model.stop_training
    clock.now += 1                      # 85 s: what is left covers only the reserve
    budget.on_train_batch_begin(1)
    budget.on_train_batch_end(1)
    assert budget.model.stop_training and budget.exhausted
    assert budget.remaining() == pytest.approx(35)


def test_progress_line_shows_budget_time_and_steps():
    clock, budget = started_budget(20, 60.0, margin=0.0)
    out = io.StringIO()
    progress = BudgetProgress(budget, stream=out, every_seconds=0)
    progress.set_model(Model())
    progress.on_epoch_begin(0)
    for step in range(3):
        budget.on_train_batch_begin(step)
        clock.now += 70
        budget.on_train_batch_end(step)
        progress.on_train_batch_end(step, {"loss": 2.5})
    last = out.getvalue().strip().splitlines()[-1]
    assert "budget 3:30 of 20:00" in last and "16:30 left" in last
    assert "training until 19:00" in last and "step 3" in last and "loss 2.5000" in last
    assert clock_text(3725) == "1:02:05"


@pytest.mark.alone   # a wall-clock bound: run with the machine to itself
def test_a_one_minute_budget_ends_within_its_minute_plus_30_s(tmp_path):
    """The CLI from start to exit, evaluation included (the budget counts the start-up,
    the first step's graph building and the final evaluation and checkpoint)."""
    logs = tmp_path / "logs"
    cmd = [sys.executable, os.path.join(ROOT, "fashion", "fashion.py"), "train",
           "--dataset", "demo", "--demo-dir", str(tmp_path / "demo"), "--demo-images",
           "24", "--image-size", "128", "--weights", "none", "--backbone", "resnet18",
           "--time-budget", "1", "--logs", str(logs), "--steps-per-epoch", "4",
           "--schedule", "all:100", "--images-per-gpu", "2", "--set", "WARMUP_STEPS=5",
           "--set", "TRAIN_ROIS_PER_IMAGE=32", "--set", "DETECTION_MAX_INSTANCES=30"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                          cwd=str(tmp_path))
    wall = time.time() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert wall <= 60 + 30, (wall, done.stdout[-3000:])
    run_dir = logs / sorted(os.listdir(logs))[0]
    with open(run_dir / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    evaluated = [r for r in rows if r.get("segm_AP50") not in (None, "", "nan")]
    assert evaluated, rows                      # the final evaluation ran
    last = int(rows[-1]["epoch"]) + 1
    assert (run_dir / f"mask_rcnn_fashion_{last:04d}.h5").exists()
    assert "budget" in done.stdout and "left" in done.stdout   # budget progress shown

"""Learning-rate schedules: warm-up, decay to the floor on the last step of a budget."""
import csv
import os
import random
from types import SimpleNamespace

import pytest

from mrcnn.training.schedules import BudgetedLearningRate, learning_rate_at, lr_factor


def test_factor_shapes():
    assert lr_factor(0, "cosine", 0.01) == pytest.approx(1.0)
    assert lr_factor(0.5, "cosine", 0.01) == pytest.approx(0.505)
    assert lr_factor(1, "cosine", 0.01) == pytest.approx(0.01)
    assert lr_factor(0.5, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(0.7, "constant", 0.01) == 1.0
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        lr_factor(0.5, "step")


def test_warmup_then_decay_reaches_the_floor_on_the_last_step():
    rates = [learning_rate_at(s, 100, 1e-3, warmup_steps=10) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4 + 0.9e-4)
    assert rates[9] == pytest.approx(1e-3) and max(rates) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))   # decays monotonically
    assert rates[-1] == pytest.approx(1e-5) and rates[-2] > 1e-5
    # a budget shorter than the warm-up still decays: warm-up is cut to a fifth
    short = [learning_rate_at(s, 50, 1e-3, warmup_steps=200) for s in range(50)]
    assert short[9] == pytest.approx(1e-3) and short[-1] == pytest.approx(1e-5)


class _FakeRun:
    """Drives the callback as Keras would, with a clock that step times advance."""

    def __init__(self, config, budget_s, step_times, planned=10 ** 6):
        self.now = 1000.0
        self.budget = SimpleNamespace(start=self.now, seconds=budget_s)
        self.cb = BudgetedLearningRate(1e-3, config, planned, self.budget,
                                       clock=lambda: self.now)
        self.cb.set_model(SimpleNamespace(optimizer=SimpleNamespace(learning_rate=None)))
        self.step_times = step_times

    def run(self):
        rates = []
        for dt in self.step_times:
            self.cb.on_train_batch_begin(len(rates))
            rates.append(self.cb.model.optimizer.learning_rate)
            self.now += dt
            self.cb.on_train_batch_end(len(rates))
            if self.now - self.budget.start >= self.budget.seconds:  # TimeBudget
                return rates
        raise AssertionError("the budget never ran out")


def _assert_floor_on_last_step(rates, peak=1e-3, floor=0.01, warmup=0):
    """The floor is reached on the last step, or one step early, or is one step away."""
    at_floor = [i for i, r in enumerate(rates) if r <= peak * floor * (1 + 1e-6)]
    n = len(rates)
    if at_floor:
        assert at_floor[0] >= n - 2, (at_floor[0], n)
    else:  # one step short: the rate equals the one before last of an n+1-step run
        assert rates[-1] <= learning_rate_at(n - 1, n + 1, peak, warmup, "cosine",
                                             floor) * 1.001


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_budgeted_rate_reaches_the_floor_at_the_last_step(schedule):
    config = SimpleNamespace(LR_SCHEDULE=schedule, LR_FLOOR=0.01, WARMUP_STEPS=5)
    times = [8.0] + [1.0] * 1000          # a slow first (tracing) step, then 1 s steps
    rates = _FakeRun(config, 60.0, times).run()
    assert len(rates) == 53
    assert rates[-1] == pytest.approx(1e-5)
    _assert_floor_on_last_step(rates, warmup=5)


def test_budgeted_rate_with_noisy_step_times():
    config = SimpleNamespace(LR_SCHEDULE="cosine", LR_FLOOR=0.01, WARMUP_STEPS=20)
    for seed in range(20):
        rng = random.Random(seed)
        times = [10.0] + [rng.uniform(0.7, 1.3) for _ in range(2000)]
        _assert_floor_on_last_step(_FakeRun(config, 300.0, times).run(), warmup=20)


def test_without_budget_the_planned_steps_end_at_the_floor():
    config = SimpleNamespace(LR_SCHEDULE="cosine", LR_FLOOR=0.01, WARMUP_STEPS=0)
    run = _FakeRun(config, 10 ** 9, [1.0] * 40, planned=40)
    run.budget = None
    run.cb.budget = None
    rates = []
    for step in range(40):
        run.cb.on_train_batch_begin(step)
        rates.append(run.cb.model.optimizer.learning_rate)
        run.cb.on_train_batch_end(step)
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)


def test_budgeted_training_run_logs_the_rate_and_ends_at_the_floor(tiny_config, shapes_data,
                                                                   tmp_path, monkeypatch):
    import mrcnn.model
    from mrcnn.training.callbacks import TimeBudget
    from mrcnn.model import MaskRCNN

    class StepClockBudget(TimeBudget):
        """A budget whose clock is the step count: 1 s a step, 5 s for the first, so the
        run's length does not depend on how loaded the machine is. Nothing is kept for
        the work after training (its estimates are wall-clock measurements), so the
        whole 30 s go to steps."""

        def __init__(self, minutes, start_time=None, after_training=()):
            super().__init__(minutes, after_training=(), margin=0.0)
            self.now, self.start = 0.0, 0.0
            self.clock = lambda: self.now

        def on_train_batch_end(self, batch, logs=None):
            self.now += 5.0 if self.now == 0 else 1.0
            super().on_train_batch_end(batch, logs)
    monkeypatch.setattr(mrcnn.model, "TimeBudget", StepClockBudget)

    class Budgeted(type(tiny_config)):
        BACKBONE = "resnet18"
        STEPS_PER_EPOCH = 10 ** 4
        WARMUP_STEPS = 3
        LR_SCHEDULE = "cosine"
        MIXED_PRECISION = "float32"
    model = MaskRCNN("training", Budgeted(), str(tmp_path))
    model.train(shapes_data[0], None, 0.002, 1, "all", time_budget=0.5, verbose=0)
    assert model.time_budget_exhausted
    with open(os.path.join(model.log_dir, "training_curve.csv")) as f:
        rates = [float(r["learning_rate"]) for r in csv.DictReader(f)]
    assert len(rates) == 26                       # 5 s + 25 x 1 s = the 30 s budget
    assert rates[-1] == pytest.approx(0.002 * 0.01, rel=1e-4)
    assert max(rates) == pytest.approx(0.002, rel=1e-4)
    _assert_floor_on_last_step(rates, peak=0.002, warmup=3)

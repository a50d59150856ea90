"""Learning rates that end with the training: warm-up, then a decay to a floor.

``Config.LR_SCHEDULE`` picks the shape after the linear warm-up (WARMUP_STEPS, from a
tenth of the rate to the full rate):

* "cosine" (default): half a cosine from the full rate down to LR_FLOOR x the rate;
* "linear": a straight line down to the same floor;
* "constant": the full rate until the end (the behaviour before schedules existed).

The decay ends on the stage's last step. Without a time budget that step is known
(epochs x STEPS_PER_EPOCH). With ``train(time_budget=minutes)`` it is re-estimated
before every step from the wall time per step observed so far (data, validation and
checkpoints included), so the floor is reached on the step the budget ends after,
give or take one step when step times vary. A Keras callback assigns the rate to
the optimizer before each step (cross-replica context, so MirroredStrategy replicas
all see it).

Example:
    lr_factor(0.5, "cosine", floor=0.01)          # 0.505: halfway down
    BudgetedLearningRate(0.001, config, planned_steps=600, budget=time_budget_callback)
"""
import math
import time

import keras

SCHEDULES = ("cosine", "linear", "constant")
MAX_WARMUP_FRACTION = 0.2


def lr_factor(progress, schedule="cosine", floor=0.01):
    """The rate as a fraction of its peak once warm-up is over.

    progress: 0 at the first step after warm-up, 1 at the last step (clipped).
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - p)
    if schedule == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"LR_SCHEDULE is {schedule!r}; use one of {', '.join(SCHEDULES)}.")


def learning_rate_at(step, total_steps, peak, warmup_steps=0, schedule="cosine",
                     floor=0.01):
    """The rate of 0-based `step` of a stage of `total_steps` steps.

    Warm-up goes linearly from peak/10 to peak over warmup_steps, but over at most a
    fifth of the stage (a short budget still decays); the decay then reaches
    floor x peak at step total_steps - 1 (and stays there).
    """
    if schedule != "constant":
        warmup_steps = min(warmup_steps, max(1, int(MAX_WARMUP_FRACTION * total_steps)))
    if warmup_steps and step < warmup_steps:
        return peak * (0.1 + 0.9 * (step + 1) / warmup_steps)
    span = max(total_steps - 1 - warmup_steps, 1)
    return peak * lr_factor((step - warmup_steps) / span, schedule, floor)


def remaining_steps(elapsed, budget_seconds, seconds_per_step):
    """Steps that will still start, this one included: a step starts while the budget
    lasts, so the count is the steps needed to reach it (at least 1)."""
    left = budget_seconds - elapsed
    if seconds_per_step <= 0 or left <= 0:
        return 1
    return max(1, math.ceil(left / seconds_per_step))


class BudgetedLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's rate before every step from the stage's (estimated) length.

    Args:
        peak: the stage's learning rate.
        config: supplies LR_SCHEDULE, LR_FLOOR and WARMUP_STEPS.
        planned_steps: steps the stage runs without a budget (epochs x steps per epoch).
        budget: an mrcnn.training.callbacks.TimeBudget (its start and seconds), or None.
        clock: time source (default: the budget's, else time.time).
    """

    def __init__(self, peak, config, planned_steps, budget=None, clock=None):
        super().__init__()
        self.peak = float(peak)
        self.schedule = config.LR_SCHEDULE
        self.floor = float(config.LR_FLOOR)
        self.warmup = int(config.WARMUP_STEPS or 0)
        self.planned = max(int(planned_steps), 1)
        self.budget = budget
        self.clock = clock or getattr(budget, "clock", None) or time.time
        self.step = 0
        self.total = self.planned
        self._timed_from = None  # (clock, step) once the first (tracing) step is done
        self.history = []        # (step, total estimate, rate) of every step

    def estimate_total(self):
        """The stage's step count: planned, or fewer when the budget ends first."""
        if self.budget is None or self._timed_from is None:
            return self.planned
        now = self.clock()
        t0, s0 = self._timed_from
        done = self.step - s0
        if done < 1:
            return self.planned
        per_step = (now - t0) / done
        left = remaining_steps(now - self.budget.start, self.budget.seconds, per_step)
        return min(self.planned, self.step + left)

    def on_train_batch_begin(self, batch, logs=None):
        if self.step == 1 and self._timed_from is None:
            self._timed_from = (self.clock(), self.step)
        self.total = self.estimate_total()
        rate = learning_rate_at(self.step, self.total, self.peak, self.warmup,
                                self.schedule, self.floor)
        self.model.optimizer.learning_rate = rate
        self.history.append((self.step, self.total, rate))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1

"""Recording schedules: the steps at which metrics are recorded (step 0 always included).

A schedule is small by construction: ``train.record_points`` is at most
:data:`trajlab.config.MAX_RECORD_POINTS`, and :func:`schedule_length` gives the length of any
schedule without making it, so the memory check (:mod:`trajlab.engine.memory`) refuses a
``record_every`` that would record billions of steps before anything is allocated.
"""

from __future__ import annotations

import math

import numpy as np

from trajlab.config import TrainConfig


def _dense(max_steps: int, points: int) -> bool:
    """Whether ``points`` log-spaced values in [1, max_steps] are so close (consecutive gaps below
    1/2 everywhere: gap <= max_steps * ln(max_steps) / (points - 1)) that rounding hits every integer."""
    return points > 1 and max_steps * math.log(max(max_steps, 1)) < 0.5 * (points - 1)


def log_schedule(max_steps: int, points: int) -> np.ndarray:
    """0 and ``points`` log-spaced integers in [1, max_steps] (deduplicated, max_steps included).

    At most min(points, max_steps) + 1 entries. When the points are denser than the integers the
    result is every step 0..max_steps, made without the ``points`` floats.
    """
    if _dense(max_steps, points):
        return np.arange(0, max_steps + 1, dtype=np.int64)
    steps = np.unique(np.round(np.logspace(0, np.log10(max_steps), points)).astype(np.int64))
    return np.unique(np.concatenate([[0], steps, [max_steps]]))


def linear_schedule(max_steps: int, every: int) -> np.ndarray:
    """0, every, 2 every, ..., and max_steps (max_steps // every + 1 or + 2 entries, made directly:
    no sort, no copy)."""
    steps = np.arange(0, max_steps + 1, every, dtype=np.int64)
    if steps[-1] != max_steps:
        steps = np.append(steps, np.int64(max_steps))
    return steps


def schedule_length(train: TrainConfig) -> int:
    """An upper bound on ``len(recording_steps(train))``, computed without making the schedule."""
    if train.record == "log":
        return min(train.record_points, train.max_steps) + 2
    return train.max_steps // train.record_every + 2


def recording_steps(train: TrainConfig) -> np.ndarray:
    """The schedule of ``train.record`` (``log``: record_points; ``linear``: record_every)."""
    if train.record == "log":
        return log_schedule(train.max_steps, train.record_points)
    return linear_schedule(train.max_steps, train.record_every)

"""Recording schedules: the steps at which metrics are recorded (step 0 always included)."""

from __future__ import annotations

import numpy as np

from trajlab.config import TrainConfig


def log_schedule(max_steps: int, points: int) -> np.ndarray:
    """0 and ``points`` log-spaced integers in [1, max_steps] (deduplicated, max_steps included)."""
    steps = np.unique(np.round(np.logspace(0, np.log10(max_steps), points)).astype(np.int64))
    return np.unique(np.concatenate([[0], steps, [max_steps]]))


def linear_schedule(max_steps: int, every: int) -> np.ndarray:
    """0, every, 2 every, ..., and max_steps."""
    return np.unique(np.concatenate([np.arange(0, max_steps + 1, every), [max_steps]]))


def recording_steps(train: TrainConfig) -> np.ndarray:
    """The schedule of ``train.record`` (``log``: record_points; ``linear``: record_every)."""
    if train.record == "log":
        return log_schedule(train.max_steps, train.record_points)
    return linear_schedule(train.max_steps, train.record_every)

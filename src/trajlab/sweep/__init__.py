"""Sweeps: grids of configs, batched by static structure, run into a sweep folder."""

from trajlab.sweep.grid import expand_grid, group_batches, parse_assignment, split_axes
from trajlab.sweep.runner import BaselineJob, batch_frames, flat_row, run_sweep

__all__ = [
    "BaselineJob",
    "batch_frames",
    "expand_grid",
    "flat_row",
    "group_batches",
    "parse_assignment",
    "run_sweep",
    "split_axes",
]

"""A sweep folder on disk: manifest, runs, trajectories and baselines, written atomically."""

from trajlab.store.sweep_dir import SweepData, SweepStore, atomic_write_bytes, load

__all__ = ["SweepData", "SweepStore", "atomic_write_bytes", "load"]

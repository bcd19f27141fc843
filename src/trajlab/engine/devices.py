"""Every CPU core for one batch: the runs of a batch sharded over one host device per core.

XLA:CPU runs a vmapped batch of small matrix products on one core: batching does not add
throughput on a CPU (docs/benchmarks.md). With the host platform split into one device per core
(``--xla_force_host_platform_device_count``), a batch whose run axis is sharded over those devices
is one program that runs its shards side by side: on 2 cores, 2.0-2.1x the run-steps per second of
the same batch on one device (measured side by side, docs/benchmarks.md), with no second process to
start and nothing compiled twice.

- :func:`configure_host_devices` (called when trajlab is imported, before JAX is): one host
  device per core this process may use, unless ``XLA_FLAGS`` already sets a device count, JAX is
  already imported, or ``TRAJLAB_CPU_DEVICES`` says otherwise (a number, or 1 to keep one device).
  On a machine with a GPU the flag changes only the host platform, which trajlab then does not use.
- :func:`run_sharding` (used by :func:`trajlab.engine.run_batch`): on a CPU backend with several
  devices and a batch of several runs, the batch padded to a multiple of the device count (copies of
  its last run, dropped from the results) and the shardings of the run axis and of the data
  (replicated). Each run's computation is the same as unsharded: results agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajlab._host import CPU_DEVICES_ENV, configure_host_devices, cores  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class RunSharding:
    """How a batch of ``runs`` runs is laid out: ``padded`` runs (a multiple of the device count),
    ``runs_axis`` / ``replicated`` shardings for the batched inputs and the data."""

    runs: int
    padded: int
    runs_axis: object
    replicated: object
    devices: int


def run_sharding(runs: int, data_leaves=()) -> RunSharding | None:
    """The sharding of a batch of ``runs`` runs over the host devices, or None (one device, a GPU
    backend, or a single run)."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if runs < 2 or jax.default_backend() != "cpu":
        return None
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    count = min(len(devices), runs)
    padded = -(-runs // count) * count
    mesh = Mesh(np.array(devices[:count]), ("runs",))
    return RunSharding(runs, padded, NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec()), count)


def pad_runs(values, padded: int):
    """``values`` (one entry per run, numpy) with copies of the last entry up to ``padded``."""
    import numpy as np

    values = np.asarray(values)
    if len(values) == padded:
        return values
    return np.concatenate([values, np.repeat(values[-1:], padded - len(values), axis=0)])

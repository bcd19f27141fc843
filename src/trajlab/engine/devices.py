"""Every CPU core for one batch: the runs of a batch sharded over one host device per core.

XLA:CPU runs a vmapped batch of small matrix products on one core: batching does not add
throughput on a CPU (docs/benchmarks.md). With the host platform split into one device per core
(``--xla_force_host_platform_device_count``), a batch whose run axis is sharded over those devices
is one program that runs its shards side by side (a standalone loop of the headline step ran at
2.0-2.1x the run-steps per second of one device on 2 idle cores), with no second process to start
and nothing compiled twice.

- :func:`configure_host_devices` (called when trajlab is imported, before JAX is): when
  ``TRAJLAB_CPU_DEVICES`` is set (a number, or ``auto``: one per core this process may use), that
  many host devices, unless ``XLA_FLAGS`` already sets a device count or JAX is already imported.
  Opt-in: XLA:CPU with several devices deadlocked now and then in the test suite (a sharded metric
  recording waiting in ``device_get``); the metrics are therefore recorded on one device, and one
  device stays the default. On a machine with a GPU the flag changes only the host platform.
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

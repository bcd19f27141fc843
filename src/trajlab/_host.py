"""Host-device setup made before JAX is imported (see :mod:`trajlab.engine.devices`); only the
standard library here, so importing it costs nothing."""

from __future__ import annotations

import os
import sys

#: Environment variable: host devices to make (a number, or ``auto`` for one per core; unset: one).
CPU_DEVICES_ENV = "TRAJLAB_CPU_DEVICES"
_FLAG = "--xla_force_host_platform_device_count"


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_host_devices() -> int | None:
    """Set ``XLA_FLAGS`` for ``TRAJLAB_CPU_DEVICES`` host devices (``auto``: one per core) before
    JAX is imported; returns the count set (None when nothing was changed).

    Off unless asked for: XLA:CPU with several host devices deadlocked in this project's test
    suite (a metric recording of a sharded batch waiting forever in ``device_get``, as the
    in-process executor's threads did before; docs/benchmarks.md), so one device stays the default."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or _FLAG in flags:
        return None
    wanted = os.environ.get(CPU_DEVICES_ENV, "").strip().lower()
    if not wanted:
        return None
    try:
        count = cores() if wanted == "auto" else int(wanted)
    except ValueError:
        return None  # keep JAX's default
    if count <= 1:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
    return count

"""Dask distributed: batches run in the worker processes of a Dask cluster.

``DaskExecutor(scheduler="tcp://host:8786")`` connects to a running cluster (started with
``dask scheduler`` and ``dask worker`` on the machines that share the sweep folder); without an
address it starts a :class:`distributed.LocalCluster` of ``n_workers`` worker *processes* (one
thread each: a batch already uses every core through XLA) and closes it at :meth:`shutdown`.

Workers must import the same trajlab, and see the sweep folder at the same path (a shared file
system): each writes its batches itself. When a worker dies mid-batch the scheduler reruns the
batch elsewhere (up to its ``distributed.scheduler.allowed-failures``), then reports
``KilledWorker``; the sweep ends with a one-line error and the same command resumes it.

The scheduler address is checked when the executor is made, before anything starts
(:func:`check_scheduler_address`): ``tcp://host:port`` or ``host:port`` (tcp), or another scheme
of Dask's comm backends (``tls://host:port``, ``ws://``, ``wss://``, ``ucx://host:port``,
``inproc://...``, or one a package registers).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from concurrent.futures import Future

from trajlab.errors import ConfigError, TrajlabError
from trajlab.executors.base import BatchOutcome, BatchTask, Executor, Progress, execute_batch, require


# Dask's comm backends that address a host and a port; inproc addresses a process ("inproc://ip/pid/n").
HOST_PORT_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
KNOWN_SCHEMES = HOST_PORT_SCHEMES + ("inproc",)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")  # a host name or an IPv4 address
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")
_EXAMPLES = "give e.g. tcp://host:8786 or host:8786 (or tls://, ws://, wss://, ucx://host:port, inproc://...)"


def _known_scheme(scheme: str) -> bool:
    if scheme in KNOWN_SCHEMES:
        return True
    try:  # a backend another package registers (entry point group distributed.comm.backends)
        from distributed.comm.registry import get_backend

        get_backend(scheme)
        return True
    except Exception:
        return False


def check_scheduler_address(address: str) -> str:
    """The stripped Dask scheduler ``address``, or a one-line ConfigError naming --scheduler.

    Accepted: ``[scheme://]location`` with a scheme Dask knows (tcp when none is given); the
    location of tcp, tls, ws, wss and ucx is ``host:port`` (``[ipv6]:port``) with a port in 1..65535,
    as Dask's clients require a port. Nothing is resolved or contacted here.
    """
    text = address.strip()
    if not text:
        raise ConfigError(f"--scheduler: empty address; {_EXAMPLES}, or leave it out for a local cluster")

    def bad(why: str) -> ConfigError:
        return ConfigError(f"--scheduler: {address!r} is not a scheduler address ({why}); {_EXAMPLES}")

    if any(c.isspace() or not c.isprintable() for c in text):
        raise bad("it contains spaces or control characters")
    scheme, sep, location = text.partition("://")
    if not sep:
        scheme, location = "tcp", text
    elif not _SCHEME.fullmatch(scheme):
        raise bad(f"{scheme!r} is not a URL scheme")
    elif not _known_scheme(scheme):
        raise bad(f"unknown scheme {scheme!r}; Dask knows {', '.join(KNOWN_SCHEMES)}")
    if not location or "://" in location:
        raise bad("no location after the scheme" if not location else "more than one scheme")
    if scheme not in HOST_PORT_SCHEMES:
        return text
    if location.startswith("["):
        host, bracket, rest = location[1:].partition("]")
        if not bracket or not _IPV6.fullmatch(host) or not rest.startswith(":"):
            raise bad("an IPv6 address is written [address]:port")
        port = rest[1:]
    else:
        host, colon, port = location.rpartition(":")
        if not colon:
            raise bad("no port: write host:port")
        if not _HOST.fullmatch(host):
            raise bad(f"{host!r} is not a host name or address" if host else "no host before the port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise bad(f"port {port!r} is not an integer in 1..65535")
    return text


def default_workers() -> int:
    """Local worker processes when none are asked for: one per core, 2 to 4."""
    return max(2, min(4, os.cpu_count() or 2))


class DaskExecutor(Executor):
    """Run batches on a Dask cluster: the one at ``scheduler``, or a LocalCluster of processes."""

    name = "dask"
    remote = True

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None, connect_timeout_s: float = 30):
        require("distributed", "--executor dask")
        if scheduler is not None:
            scheduler = check_scheduler_address(scheduler)
        if scheduler is not None and n_workers is not None:
            raise ConfigError("--workers: sizes a local cluster and cannot be combined with --scheduler")
        if n_workers is not None and n_workers < 1:
            raise ConfigError(f"--workers must be an integer >= 1, got {n_workers}")
        self.scheduler = scheduler
        self.n_workers = n_workers if n_workers is not None else (None if scheduler else default_workers())
        self.connect_timeout_s = connect_timeout_s
        self.client = None
        self.cluster = None
        self._futures: dict[str, object] = {}  # dask keeps a task only while its future is referenced
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.client is not None:
            return
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout_s)
            except (OSError, TimeoutError, ValueError) as error:  # ValueError: an address Dask refuses after all
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise TrajlabError(f"--scheduler: cannot connect to {self.scheduler!r} ({reason})") from None
            return
        self.cluster = LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: never clash with a running cluster
            silence_logs=logging.ERROR,
            # Several worker processes may share one GPU: do not let each grab most of its memory.
            env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
        )
        self.client = Client(self.cluster)

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        self.start()
        key = f"trajlab-batch-{uuid.uuid4().hex}"
        remote = self.client.submit(execute_batch, task, key=key, pure=False)
        future: "Future[BatchOutcome]" = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._futures[key] = remote

        def relay(done) -> None:  # runs in a thread of the dask client
            try:
                if done.status == "cancelled":
                    future.set_exception(TrajlabError("dask: the batch was cancelled"))
                else:
                    future.set_result(done.result())
            except BaseException as error:
                future.set_exception(error)
            finally:
                with self._lock:
                    self._futures.pop(key, None)

        remote.add_done_callback(relay)
        return future

    def cancel_pending(self) -> None:
        with self._lock:
            pending = list(self._futures.values())
            self._futures.clear()
        if pending and self.client is not None:
            try:
                self.client.cancel(pending)
            except Exception:  # the scheduler may be gone already: nothing left to cancel
                pass

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def describe(self) -> str:
        if self.scheduler:
            return f"dask {self.scheduler}"
        return f"dask LocalCluster ({self.n_workers} worker processes)"

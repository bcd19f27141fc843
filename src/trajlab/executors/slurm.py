"""SLURM through submitit: one job per batch, submitted with ``sbatch`` from a login node.

Each job runs :func:`trajlab.executors.base.execute_batch` with the same Python as the
coordinator, so the cluster's nodes must see the same environment and the sweep folder at the
same path (a shared file system). Job scripts and logs go to ``<sweep folder>/slurm/`` unless
``log_folder`` is given. A job that fails or is killed (time limit, preemption) is reported as a
failed batch at the end; the same command resumes the sweep.

``cluster``: submitit's name of the backend; "slurm" for real use, "local" runs the same jobs as
local subprocesses (what the tests use, where there is no SLURM).

Security: submitit hands each job its task as a *pickle* in the job folder, and the job unpickles
it on the cluster, under your account. Whoever can write that folder, or the sweep folder above
it (and so rename the job folder away and put another in its place), can run any code in your
jobs. trajlab creates the job folder with owner-only permissions (0o700) and refuses one that is
not a folder of yours; keep the sweep folder writable by you only.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from trajlab.errors import ConfigError
from trajlab.executors.base import BatchOutcome, BatchTask, Executor, Progress, execute_batch, require


class SlurmExecutor(Executor):
    """Submit each batch as a SLURM job (``partition``, ``time_min`` per job, ``gpus`` per job).

    Job scripts, logs and the task pickles the jobs unpickle go to ``<sweep folder>/slurm/`` (or
    ``log_folder``), created with owner-only permissions (0o700); a folder there that is not a
    folder of yours (another user's, a symbolic link, a file) is a one-line error. **Whoever can
    write the sweep folder can run code on the cluster as you**: they can replace the job folder
    and the pickles in it before a job starts. Keep sweep folders of SLURM runs writable by you
    only.
    """

    name = "slurm"
    remote = True

    def __init__(
        self,
        partition: str | None = None,
        time_min: int = 60,
        gpus: int = 0,
        cpus: int | None = None,
        log_folder: str | Path | None = None,
        cluster: str = "slurm",
        poll_s: float = 1.0,
    ):
        require("submitit", "--executor slurm")
        if partition is not None and not partition.strip():
            raise ConfigError("--slurm-partition: empty name")
        if time_min < 1:
            raise ConfigError(f"--slurm-time must be an integer >= 1 (minutes per batch job), got {time_min}")
        if gpus < 0:
            raise ConfigError(f"--slurm-gpus must be an integer >= 0, got {gpus}")
        if cpus is not None and cpus < 1:
            raise ConfigError(f"slurm cpus must be an integer >= 1, got {cpus}")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm: no `sbatch` on PATH; run trajlab on a SLURM login node")
        self.partition, self.time_min, self.gpus, self.cpus = partition, time_min, gpus, cpus
        self.log_folder = Path(log_folder) if log_folder is not None else None
        self.cluster = cluster
        self.poll_s = poll_s
        self._submitit = {}  # log folder -> submitit executor
        self._jobs: list[tuple[object, Future]] = []
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    def parameters(self) -> dict:
        """The submitit parameters of every job (names as ``AutoExecutor.update_parameters`` takes them)."""
        params = {"name": "trajlab", "timeout_min": int(self.time_min), "gpus_per_node": int(self.gpus), "nodes": 1,
                  "tasks_per_node": 1}
        if self.cpus is not None:
            params["cpus_per_task"] = int(self.cpus)
        if self.partition:
            params["slurm_partition"] = self.partition
        return params

    def submitit_executor(self, sweep_folder: str | Path):
        """The submitit executor writing its scripts and logs for ``sweep_folder`` (made once per folder)."""
        import submitit

        folder = self.log_folder if self.log_folder is not None else Path(sweep_folder) / "slurm"
        if folder not in self._submitit:
            private_folder(folder)
            executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
            executor.update_parameters(**self.parameters())
            self._submitit[folder] = executor
        return self._submitit[folder]

    def submit(self, task: BatchTask, progress: Progress | None = None) -> "Future[BatchOutcome]":
        submitit_executor = self.submitit_executor(task.folder)
        private_folder(submitit_executor.folder.parent)  # again before each pickle: it may have been replaced
        job = submitit_executor.submit(execute_batch, task)
        future: "Future[BatchOutcome]" = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._jobs.append((job, future))
            if self._poller is None:
                self._stop.clear()
                self._poller = threading.Thread(target=self._poll, name="trajlab-slurm-poll", daemon=True)
                self._poller.start()
        return future

    def _poll(self) -> None:
        """Resolve the futures of finished jobs (submitit caches sacct, so polling is cheap)."""
        while not self._stop.is_set():
            with self._lock:
                jobs = list(self._jobs)
            finished = []
            for job, future in jobs:
                try:
                    if not job.done():
                        continue
                    future.set_result(job.result())
                except BaseException as error:  # a failed or killed job
                    future.set_exception(error)
                finished.append((job, future))
            with self._lock:
                self._jobs = [item for item in self._jobs if item not in finished]
                if not self._jobs:
                    self._poller = None
                    return
            time.sleep(self.poll_s)

    def cancel_pending(self) -> None:
        with self._lock:
            jobs = list(self._jobs)
        for job, _ in jobs:
            try:
                job.cancel(check=False)
            except Exception:  # already finished, or scancel unavailable: nothing to stop
                pass

    def shutdown(self) -> None:
        self._stop.set()
        poller = self._poller
        if poller is not None:
            poller.join(timeout=5)
        with self._lock:
            self._poller = None
            self._jobs = []

    def describe(self) -> str:
        parts = [f"partition={self.partition}"] if self.partition else []
        parts += [f"time={self.time_min}min", f"gpus={self.gpus}"]
        return f"slurm ({', '.join(parts)})" if self.cluster == "slurm" else f"submitit {self.cluster} ({', '.join(parts)})"


def private_folder(folder: Path) -> Path:
    """Create ``folder`` (and the folders above it) if needed, readable and writable by its owner
    only (0o700); raise a ConfigError if it is a symbolic link, not a folder, or another user's.

    submitit stores the job pickles in it (module docstring): nobody else may write there.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise ConfigError(
            f"--executor slurm: {folder} is {what}; submitit's job files (pickles the jobs run) must go to a "
            "folder of yours: remove it and rerun"
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"--executor slurm: {folder} belongs to another user (uid {st.st_uid}), who could replace the job "
            "pickles your jobs run: remove it and rerun"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)
    return folder

"""A sweep folder: a manifest, the finished runs and their trajectories, the baselines.

Layout::

    manifest.json                       configs by run id, presets, versions, device, executor
    runs.parquet                        consolidated finished runs (one row per run)
    trajectories.parquet                consolidated trajectories
    runs/batch-<key>.parquet            one file per finished batch, not yet consolidated
    trajectories/batch-<key>.parquet    the trajectories of that batch
    baselines.parquet                   one row per (problem, baseline), keyed by ``baseline_id``

- runs tables: config fields by dotted name, ``run_id``, ``status`` in {done, max_steps,
  diverged}, ``steps``, ``wall_s``, ``final.<metric>``.
- trajectories tables: ``run_id``, ``step``, ``t`` (= step x lr), one column per metric.

Why batch files: several worker processes (Dask workers, SLURM jobs, threads on several GPUs)
finish batches at the same time. Each writes its own pair of files, named by ``<key>`` = a hash
of the batch's run ids, so no two writers ever write the same file unless they computed the same
runs (then the later rename simply replaces an equal result). The coordinating process
(:func:`trajlab.sweep.run_sweep`) then *consolidates*: it merges the batch files into the
root ``runs.parquet`` / ``trajectories.parquet`` and deletes them, under an exclusive lock on
the folder, so that a finished sweep has the single-file layout that older folders have and that
``pd.read_parquet(folder / "runs.parquet")`` reads. Readers never depend on consolidation having
happened: :meth:`SweepStore.read_runs`, :meth:`SweepStore.read_trajectories`,
:meth:`SweepStore.completed_run_ids` and :func:`load` merge the root files and every batch file.

Crash safety:

- Every file is written whole to a temporary file in the same folder and renamed over its target
  (``os.replace`` is atomic on POSIX), so no reader ever sees half a file. Temporary files start
  with ``.`` and end in ``.tmp``; readers ignore them. Their names carry the writer's host and
  pid, so :meth:`SweepStore.prepare` deletes only those of dead processes on this host (or any
  older than a day), never a live worker's.
- A batch writes its trajectories file before its runs file, and a run counts as finished once a
  runs file holding it is visible. A writer killed between the two writes leaves a trajectories
  file without runs file: readers ignore it, resuming recomputes those runs.
- Merging dedupes by run id (the same run finished twice, e.g. when a worker died after writing
  and its batch was run again): the most recently written batch wins, the root files count as
  oldest, and a run's trajectory rows come from the same file as its runs row.
- Consolidation writes the root trajectories, then the root runs, then deletes the merged runs
  batch files, then their trajectories files; readers read batch files before the root files. So
  a reader concurrent with a consolidation still sees every finished run, with its trajectory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from trajlab.errors import TrajlabError

MANIFEST = "manifest.json"
FILE_MODE = 0o644  # mkstemp makes 0600 files; results are meant to be shared
RUNS = "runs.parquet"
TRAJECTORIES = "trajectories.parquet"
BASELINES = "baselines.parquet"
RUNS_DIR = "runs"
TRAJECTORIES_DIR = "trajectories"
BATCH_PATTERN = "batch-*.parquet"
LOCK_FILE = ".consolidate.lock"  # only where the folder itself cannot be locked (NFS)
# A temporary file whose writer cannot be checked (another host, an old name) is left alone for a
# day: no write takes that long, and a leftover file costs nothing (readers ignore it).
STALE_TEMP_S = 24 * 3600
# A trajectories batch file without its runs file is a batch whose writer died between the two
# writes (they are back to back, seconds apart): after an hour it is safe to delete.
ORPHAN_AGE_S = 3600
_ROOT = -1  # merge rank of the consolidated root files: older than any batch file


def _host() -> str:
    return socket.gethostname().replace("~", "-").replace(os.sep, "-") or "host"


def _temp_prefix(name: str) -> str:
    """``.<target>~<host>~<pid>~``: whose temporary file this is, so that cleanup spares live writers."""
    return f".{name}~{_host()}~{os.getpid()}~"


def _mkstemp(path: Path, create_parent: bool) -> tuple[int, str]:
    # A concurrent consolidation may remove an empty batch folder between our mkdir and mkstemp.
    for attempt in range(5):
        if create_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
        except FileNotFoundError:
            if not create_parent or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _atomic_write(path: Path, write: Callable[[str], None], create_parent: bool = False) -> None:
    """Write ``path`` through ``write(temporary path)``, fsync, chmod 0o644 and an atomic rename."""
    path = Path(path)
    fd, tmp = _mkstemp(path, create_parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    _atomic_write(Path(path), write)


def _atomic_write_parquet(frame: pd.DataFrame, path: Path, create_parent: bool = False) -> None:
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False), create_parent)


def _unreadable(path: Path, error: Exception) -> TrajlabError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return TrajlabError(f"{path}: not a readable parquet file ({reason}); move it aside to recompute what it held")


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    """The table at ``path``, None if absent (or removed while we read it, by a consolidation).

    A file that is not valid parquet is a TrajlabError naming it.
    """
    try:
        return pd.read_parquet(path, columns=columns)
    except FileNotFoundError:
        return None
    except Exception as error:  # pyarrow raises several types for truncated or foreign files
        if not path.exists():
            return None
        raise _unreadable(path, error) from None


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a pid we cannot check): assume alive
    return True


def _is_stale_temp(path: Path, now: float) -> bool:
    """A temporary file whose writer is dead: its pid on this host is gone, or it is a day old."""
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_TEMP_S:
        return True
    parts = path.name[1 : -len(".tmp")].split("~")
    if len(parts) == 4 and parts[1] == _host() and parts[2].isdigit():
        return not _pid_alive(int(parts[2]))
    return False


def batch_key(run_ids) -> str:
    """The name of a batch's files: sha256 of its sorted run ids, 16 hex digits."""
    text = "\n".join(sorted(map(str, run_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SweepData:
    """The DataFrames of a sweep folder, as returned by :func:`load`."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame
    baselines: pd.DataFrame
    manifest: dict[str, Any]


@dataclass
class _Snapshot:
    """Merged runs and trajectories, and the batch keys that went into them."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame
    keys: list[str]


class SweepStore:
    """Reads and writes one sweep folder (module docstring).

    Safe for any number of concurrent writers of batches (:meth:`write_batch`), on one host or
    several sharing the folder; the manifest, the baselines and :meth:`consolidate` belong to the
    coordinating process.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    # --- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the folder if needed and check it can be written; raise TrajlabError if not.

        Also deletes the temporary files of writers that died mid-write (see
        :meth:`remove_stale_temp_files`), never those of live ones.
        """
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise OSError("exists and is not a directory")
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.folder, prefix=_temp_prefix("write-probe"), suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
            self.remove_stale_temp_files()
        except OSError as error:
            reason = error.strerror or str(error)
            raise TrajlabError(f"--out: cannot write to folder {str(self.folder)!r} ({reason})") from None

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temporary files left by dead writers (module docstring); return what was deleted."""
        now = time.time()
        removed = []
        for folder in (self.folder, self.folder / RUNS_DIR, self.folder / TRAJECTORIES_DIR):
            for path in folder.glob(".*.tmp"):
                if _is_stale_temp(path, now):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    @staticmethod
    def can_write(folder: str | os.PathLike) -> str | None:
        """Why ``folder`` could not be a sweep folder, or None; creates nothing."""
        path = Path(folder).absolute()
        if path.exists():
            if not path.is_dir():
                return "exists and is not a directory"
            return None if os.access(path, os.W_OK | os.X_OK) else "permission denied"
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is not a directory"
        return None if os.access(parent, os.W_OK | os.X_OK) else f"permission denied in {parent}"

    def check_readable(self) -> None:
        """Raise TrajlabError naming the first file of the folder that cannot be read.

        Parquet files (root and batch files) are checked through their footer metadata, without
        reading the data.
        """
        import pyarrow.parquet as pq

        self.read_manifest()
        paths = [self.folder / name for name in (RUNS, TRAJECTORIES, BASELINES)]
        paths += self._batch_files(RUNS_DIR) + self._batch_files(TRAJECTORIES_DIR)
        for path in paths:
            try:
                pq.ParquetFile(path).metadata
            except FileNotFoundError:
                continue
            except Exception as error:
                if path.exists():
                    raise _unreadable(path, error) from None

    # --- manifest and baselines (coordinator only) ----------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrajlabError(f"{path}: not a valid manifest ({error}); move it aside to rerun") from None

    def update_manifest(self, configs: dict[str, dict], **info: Any) -> None:
        """Merge ``configs`` ({run_id: flat config}) and ``info`` into the manifest.

        Under the folder lock, so that two sweeps started into one folder both keep their configs.
        """
        with self._exclusive():
            manifest = self.read_manifest()
            manifest.setdefault("configs", {}).update(configs)
            for key, value in info.items():
                if isinstance(value, list) and isinstance(manifest.get(key), list):
                    manifest[key] = list(dict.fromkeys(manifest[key] + value))
                else:
                    manifest[key] = value
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
            atomic_write_bytes(self.folder / MANIFEST, text.encode())

    def read_baselines(self) -> pd.DataFrame:
        frame = _read_parquet(self.folder / BASELINES)
        return pd.DataFrame() if frame is None else frame

    def completed_baseline_ids(self) -> set[str]:
        baselines = self.read_baselines()
        return set(baselines["baseline_id"]) if "baseline_id" in baselines else set()

    def append_baselines(self, rows: pd.DataFrame) -> None:
        """Add baseline rows, replacing those with the same ``baseline_id`` (under the folder lock)."""
        with self._exclusive():
            old = self.read_baselines()
            if len(old):
                rows = pd.concat([old[~old["baseline_id"].isin(set(rows["baseline_id"]))], rows], ignore_index=True)
            _atomic_write_parquet(rows, self.folder / BASELINES)

    # --- runs and trajectories: reading ---------------------------------------------------------

    def _batch_files(self, subfolder: str) -> list[Path]:
        return sorted((self.folder / subfolder).glob(BATCH_PATTERN))

    def _snapshot(self, trajectories: bool = True) -> _Snapshot:
        """Merge the root files and every complete batch (module docstring: order and dedupe)."""
        # Batch files first, root files last: see "Consolidation writes ..." in the module docstring.
        batches = []  # (mtime_ns, key, runs frame)
        for path in self._batch_files(RUNS_DIR):
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            frame = _read_parquet(path)
            if frame is not None:
                batches.append((mtime, path.name[len("batch-") : -len(".parquet")], frame))
        batches.sort(key=lambda item: (item[0], item[1]))
        keys = [key for _, key, _ in batches]
        traj_parts = []
        if trajectories:
            for rank, key in enumerate(keys):
                frame = _read_parquet(self.folder / TRAJECTORIES_DIR / f"batch-{key}.parquet")
                if frame is not None:
                    traj_parts.append(frame.assign(_source=rank))
            root_traj = _read_parquet(self.folder / TRAJECTORIES)
            if root_traj is not None:
                traj_parts.insert(0, root_traj.assign(_source=_ROOT))
        root_runs = _read_parquet(self.folder / RUNS)
        run_parts = [] if root_runs is None else [root_runs.assign(_source=_ROOT)]
        run_parts += [frame.assign(_source=rank) for rank, (_, _, frame) in enumerate(batches)]

        runs = _concat(run_parts)
        if "run_id" in runs:
            runs = runs.drop_duplicates("run_id", keep="last").reset_index(drop=True)
        traj = _concat(traj_parts)
        if len(traj) and "run_id" in runs:
            winner = traj["run_id"].map(runs.set_index("run_id")["_source"])
            exact = traj["_source"] == winner
            # The winner's batch trajectories may have just been consolidated into the root file.
            fallback = (traj["_source"] == _ROOT) & winner.notna() & ~traj["run_id"].isin(set(traj.loc[exact, "run_id"]))
            traj = traj[exact | fallback].reset_index(drop=True)
        elif len(traj):
            traj = traj.iloc[:0]
        runs = runs.drop(columns="_source", errors="ignore")
        traj = traj.drop(columns="_source", errors="ignore")
        return _Snapshot(runs, traj, keys)

    def read_runs(self) -> pd.DataFrame:
        """Every finished run, once (root file and batch files merged, deduped by run id)."""
        return self._snapshot(trajectories=False).runs

    def read_trajectories(self) -> pd.DataFrame:
        """The trajectory rows of every finished run (rows of unfinished runs are left out)."""
        return self._snapshot().trajectories

    def completed_run_ids(self) -> set[str]:
        """Run ids with a row in the root runs file or in a batch runs file (reads that column only)."""
        done: set[str] = set()
        for path in [*self._batch_files(RUNS_DIR), self.folder / RUNS]:
            frame = _read_parquet(path, columns=["run_id"]) if path.exists() else None
            if frame is not None:
                done.update(frame["run_id"])
        return done

    # --- runs and trajectories: writing ---------------------------------------------------------

    def write_batch(self, runs: pd.DataFrame, trajectories: pd.DataFrame) -> str:
        """Store one finished batch as its own pair of files; safe with concurrent writers.

        Trajectories first, then the runs file that marks the runs finished. Returns the batch key.
        """
        if "run_id" not in runs or not runs["run_id"].is_unique:
            raise ValueError("write_batch: runs needs a run_id column without duplicates")
        if not self.folder.is_dir():
            raise TrajlabError(
                f"{self.folder}: sweep folder does not exist on {socket.gethostname()}; workers must see the "
                "coordinator's sweep folder at the same path (a shared file system)"
            )
        key = batch_key(runs["run_id"])
        name = f"batch-{key}.parquet"
        traj_path = self.folder / TRAJECTORIES_DIR / name
        runs_path = self.folder / RUNS_DIR / name
        _atomic_write_parquet(trajectories, traj_path, create_parent=True)
        try:
            _atomic_write_parquet(runs, runs_path, create_parent=True)
        except BaseException:
            if not runs_path.exists():  # else an earlier copy of this batch still needs its trajectories
                traj_path.unlink(missing_ok=True)
            raise
        return key

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """An exclusive lock on the folder, released by the kernel if we die.

        flock on the folder's own descriptor leaves no lock file behind. NFS cannot flock a
        directory: there a POSIX record lock on ``.consolidate.lock`` (what NFS locks) stands in.
        Yields False where neither works; callers then skip what needed the lock.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield False
            return
        with contextlib.ExitStack() as stack:
            fd = os.open(self.folder, os.O_RDONLY)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
            except OSError:
                try:
                    lock = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
                except OSError:
                    yield False
                    return
                stack.callback(os.close, lock)
                try:
                    fcntl.lockf(lock, fcntl.LOCK_EX)
                except OSError:
                    yield False
                    return
                stack.callback(fcntl.lockf, lock, fcntl.LOCK_UN)
            yield True

    def consolidate(self, remove_empty_folders: bool = True) -> int:
        """Merge the batch files into the root files and delete them; return how many were merged.

        Coordinator only; concurrent consolidations (two sweeps into one folder) take turns on a
        lock. Where the file system cannot lock, nothing is merged: readers merge batch files
        themselves, so results are the same, only spread over more files.
        """
        if not (self.folder / RUNS_DIR).exists() and not (self.folder / TRAJECTORIES_DIR).exists():
            return 0
        with self._exclusive() as locked:
            if not locked:
                return 0
            snapshot = self._snapshot() if self._batch_files(RUNS_DIR) else None
            if snapshot is not None and snapshot.keys:
                _atomic_write_parquet(snapshot.trajectories, self.folder / TRAJECTORIES)
                _atomic_write_parquet(snapshot.runs, self.folder / RUNS)
                for key in snapshot.keys:
                    (self.folder / RUNS_DIR / f"batch-{key}.parquet").unlink(missing_ok=True)
                for key in snapshot.keys:
                    (self.folder / TRAJECTORIES_DIR / f"batch-{key}.parquet").unlink(missing_ok=True)
            self._remove_orphan_trajectories()
            if remove_empty_folders:
                for name in (RUNS_DIR, TRAJECTORIES_DIR):
                    with contextlib.suppress(OSError):  # not empty (a live writer), or absent
                        (self.folder / name).rmdir()
        return len(snapshot.keys) if snapshot is not None else 0

    def _remove_orphan_trajectories(self) -> None:
        now = time.time()
        for path in self._batch_files(TRAJECTORIES_DIR):
            if (self.folder / RUNS_DIR / path.name).exists():
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_AGE_S:
                    path.unlink()

    def append_runs(self, runs: pd.DataFrame, trajectories: pd.DataFrame) -> None:
        """Add finished runs (one process): :meth:`write_batch` then :meth:`consolidate`.

        Runs already stored under the same run id are replaced, trajectories included.
        """
        self.write_batch(runs, trajectories)
        self.consolidate()


def load(folder: str | os.PathLike) -> SweepData:
    """The runs, trajectories, baselines and manifest of a sweep folder (root and batch files merged).

    Only finished runs are returned, each once, with the trajectory rows of the same write, so what
    is returned is always consistent, even while workers are writing.
    """
    store = SweepStore(folder)
    if not (store.folder / MANIFEST).exists() and not (store.folder / RUNS).exists() and not (
        store.folder / RUNS_DIR
    ).is_dir():
        raise TrajlabError(f"DIR: {str(store.folder)!r} is not a trajlab sweep folder (no {MANIFEST})")
    snapshot = store._snapshot()
    return SweepData(snapshot.runs, snapshot.trajectories, store.read_baselines(), store.read_manifest())

"""A sweep folder: ``manifest.json``, ``runs.parquet``, ``trajectories.parquet``, ``baselines.parquet``.

- ``manifest.json``: ``configs`` ({run_id: flat config}), ``presets``, package versions, git
  commit, device, timestamps.
- ``runs.parquet``: one row per finished run: config fields by dotted name, ``run_id``,
  ``status`` in {done, max_steps, diverged}, ``steps``, ``wall_s``, ``final.<metric>``.
- ``trajectories.parquet``: ``run_id``, ``step``, ``t`` (= step x lr), one column per metric.
- ``baselines.parquet``: one row per (problem, baseline), keyed by ``baseline_id``.

Every file is written whole to a temporary file in the same folder and then renamed over the old
one (``os.replace`` is atomic on POSIX), so a reader or a killed writer never sees half a file.
A run counts as finished once its row is in ``runs.parquet``; trajectories are written *before*
runs, and rows of unfinished runs found in ``trajectories.parquet`` are replaced on the next write,
so SIGKILL at any moment loses at most the batch in progress.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trajlab.errors import TrajlabError

MANIFEST = "manifest.json"
FILE_MODE = 0o644  # mkstemp makes 0600 files; results are meant to be shared
RUNS = "runs.parquet"
TRAJECTORIES = "trajectories.parquet"
BASELINES = "baselines.parquet"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_parquet(path: Path) -> pd.DataFrame:
    """The table at ``path`` (empty if absent); a file that is not valid parquet is a TrajlabError."""
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for truncated or foreign files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrajlabError(
            f"{path}: not a readable parquet file ({reason}); move it aside to recompute what it held"
        ) from None


@dataclass
class SweepData:
    """The DataFrames of a sweep folder, as returned by :func:`load`."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame
    baselines: pd.DataFrame
    manifest: dict[str, Any]


class SweepStore:
    """Reads and appends to one sweep folder (module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def prepare(self) -> None:
        """Create the folder if needed and check it can be written; raise TrajlabError if not."""
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise OSError("exists and is not a directory")
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.folder, prefix=".write-probe.")
            os.close(fd)
            os.unlink(probe)
            # Temporary files left by a writer killed mid-write: never renamed, so never read.
            for stale in self.folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        except OSError as error:
            reason = error.strerror or str(error)
            raise TrajlabError(f"--out: cannot write to folder {str(self.folder)!r} ({reason})") from None

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

        Parquet files are checked through their footer metadata, without reading the data.
        """
        import pyarrow.parquet as pq

        self.read_manifest()
        for name in (RUNS, TRAJECTORIES, BASELINES):
            path = self.folder / name
            if path.exists():
                try:
                    pq.ParquetFile(path).metadata
                except Exception as error:
                    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                    raise TrajlabError(
                        f"{path}: not a readable parquet file ({reason}); move it aside to recompute what it held"
                    ) from None

    def read_manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrajlabError(f"{path}: not a valid manifest ({error}); move it aside to rerun") from None

    def update_manifest(self, configs: dict[str, dict], **info: Any) -> None:
        """Merge ``configs`` ({run_id: flat config}) and ``info`` into the manifest."""
        manifest = self.read_manifest()
        manifest.setdefault("configs", {}).update(configs)
        for key, value in info.items():
            if isinstance(value, list) and isinstance(manifest.get(key), list):
                manifest[key] = list(dict.fromkeys(manifest[key] + value))
            else:
                manifest[key] = value
        atomic_write_bytes(self.folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())

    def read_runs(self) -> pd.DataFrame:
        return _read_parquet(self.folder / RUNS)

    def read_trajectories(self) -> pd.DataFrame:
        return _read_parquet(self.folder / TRAJECTORIES)

    def read_baselines(self) -> pd.DataFrame:
        return _read_parquet(self.folder / BASELINES)

    def completed_run_ids(self) -> set[str]:
        runs = self.read_runs()
        return set(runs["run_id"]) if "run_id" in runs else set()

    def completed_baseline_ids(self) -> set[str]:
        baselines = self.read_baselines()
        return set(baselines["baseline_id"]) if "baseline_id" in baselines else set()

    def append_runs(self, runs: pd.DataFrame, trajectories: pd.DataFrame) -> None:
        """Add finished runs: trajectories first, then the rows that mark the runs finished."""
        new_ids = set(runs["run_id"])
        finished = self.completed_run_ids()
        old_traj = self.read_trajectories()
        if len(old_traj):
            keep = old_traj["run_id"].isin(finished) & ~old_traj["run_id"].isin(new_ids)
            trajectories = pd.concat([old_traj[keep], trajectories], ignore_index=True)
        _atomic_write_parquet(trajectories, self.folder / TRAJECTORIES)
        old_runs = self.read_runs()
        if len(old_runs):
            runs = pd.concat([old_runs[~old_runs["run_id"].isin(new_ids)], runs], ignore_index=True)
        _atomic_write_parquet(runs, self.folder / RUNS)

    def append_baselines(self, rows: pd.DataFrame) -> None:
        old = self.read_baselines()
        if len(old):
            rows = pd.concat([old[~old["baseline_id"].isin(set(rows["baseline_id"]))], rows], ignore_index=True)
        _atomic_write_parquet(rows, self.folder / BASELINES)


def load(folder: str | os.PathLike) -> SweepData:
    """The runs, trajectories, baselines and manifest of a sweep folder.

    Trajectory rows of runs not (yet) in ``runs.parquet`` are dropped, so what is returned is
    always consistent.
    """
    store = SweepStore(folder)
    if not (store.folder / MANIFEST).exists() and not (store.folder / RUNS).exists():
        raise TrajlabError(f"DIR: {str(store.folder)!r} is not a trajlab sweep folder (no {MANIFEST})")
    runs = store.read_runs()
    trajectories = store.read_trajectories()
    if len(trajectories):
        finished = set(runs["run_id"]) if "run_id" in runs else set()
        trajectories = trajectories[trajectories["run_id"].isin(finished)].reset_index(drop=True)
    return SweepData(runs, trajectories, store.read_baselines(), store.read_manifest())

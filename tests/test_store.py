"""Tests for the sweep folder store: atomic writes, file modes, replace-on-append, consistent loads.

Independent references: hand-built DataFrames with known contents, the file system (listing,
``stat`` modes, bytes), ``importlib.metadata`` for package versions, the ``.git`` folder read
directly for the commit, ``jax.devices()`` for the device, and the documented run-id rule
(sha256 of the sorted JSON of the flat config, 16 hex digits).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajlab.config import RunConfig, replace_dotted, to_flat
from trajlab.errors import TrajlabError
from trajlab.store import SweepData, SweepStore, atomic_write_bytes, load

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def strict_umask():
    """A umask that would make new files private: the store must still write 0o644 files."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _runs(ids, value=1.0):
    return pd.DataFrame(
        {
            "model.depth": [2] * len(ids),
            "optimizer.lr": [0.1] * len(ids),
            "run_id": list(ids),
            "status": ["done"] * len(ids),
            "steps": [10] * len(ids),
            "wall_s": [0.5] * len(ids),
            "final.train_loss": [value] * len(ids),
        }
    )


def _trajectories(ids, steps=(0, 5, 10), value=1.0):
    rows = [(i, s, s * 0.1, value / (1 + s)) for i in ids for s in steps]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "t", "train_loss"])
    frame["step"] = frame["step"].astype(np.int64)
    return frame


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- atomic writes ----------------------------------------------------------------------------


def test_atomic_write_bytes_writes_whole_file_without_temp_files(tmp_path, strict_umask):
    target = tmp_path / "manifest.json"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]
    assert _mode(target) == 0o644


def test_atomic_write_bytes_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails after the temporary file was created
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]


def test_every_store_file_is_world_readable_and_no_temp_left(tmp_path, strict_umask):
    store = SweepStore(tmp_path / "sweep")
    store.prepare()
    store.update_manifest({"a": {"seed": 0}}, presets=["p"])
    store.append_runs(_runs(["a"]), _trajectories(["a"]))
    store.append_runs(_runs(["b"]), _trajectories(["b"]))
    store.append_baselines(pd.DataFrame({"baseline_id": ["x"], "baseline": ["nuclear_norm"], "test_error": [0.0]}))

    names = sorted(os.listdir(store.folder))
    assert names == ["baselines.parquet", "manifest.json", "runs.parquet", "trajectories.parquet"]
    for name in names:
        mode = _mode(store.folder / name)
        assert mode == 0o644, f"{name}: {oct(mode)}"
        assert mode & stat.S_IROTH
    assert _temp_files(store.folder) == []


def test_failed_runs_write_keeps_old_runs_file_and_no_temp(tmp_path):
    store = SweepStore(tmp_path)
    store.append_runs(_runs(["a"]), _trajectories(["a"]))
    before = (tmp_path / "runs.parquet").read_bytes()

    bad = _runs(["b"])
    bad["final.train_loss"] = pd.Series([object()], dtype=object)  # pyarrow cannot store this
    with pytest.raises(Exception):
        store.append_runs(bad, _trajectories(["b"]))

    assert (tmp_path / "runs.parquet").read_bytes() == before
    assert _temp_files(tmp_path) == []
    data = load(tmp_path)
    assert list(data.runs["run_id"]) == ["a"]
    assert set(data.trajectories["run_id"]) == {"a"}  # b's trajectory rows (if any) are not a run


# --- append semantics -------------------------------------------------------------------------


def test_append_runs_accumulates_runs_and_trajectories(tmp_path):
    store = SweepStore(tmp_path)
    store.append_runs(_runs(["a", "b"]), _trajectories(["a", "b"]))
    store.append_runs(_runs(["c"]), _trajectories(["c"]))
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    traj = pd.read_parquet(tmp_path / "trajectories.parquet")
    assert sorted(runs["run_id"]) == ["a", "b", "c"]
    assert sorted(traj["run_id"].unique()) == ["a", "b", "c"]
    assert len(traj) == 3 * 3
    assert store.completed_run_ids() == {"a", "b", "c"}


def test_append_runs_replaces_rows_of_the_same_run_id(tmp_path):
    store = SweepStore(tmp_path)
    store.append_runs(_runs(["a", "b"], value=1.0), _trajectories(["a", "b"], value=1.0))
    store.append_runs(_runs(["a"], value=7.0), _trajectories(["a"], steps=(0, 20), value=7.0))

    runs = pd.read_parquet(tmp_path / "runs.parquet").set_index("run_id")
    assert sorted(runs.index) == ["a", "b"]  # no duplicate row for a
    assert runs.loc["a", "final.train_loss"] == 7.0
    assert runs.loc["b", "final.train_loss"] == 1.0

    traj = pd.read_parquet(tmp_path / "trajectories.parquet")
    a = traj[traj["run_id"] == "a"].sort_values("step")
    assert list(a["step"]) == [0, 20]  # the old trajectory of a is gone, not merged
    assert a["train_loss"].tolist() == pytest.approx([7.0, 7.0 / 21])
    assert list(traj[traj["run_id"] == "b"].sort_values("step")["step"]) == [0, 5, 10]


def test_append_baselines_replaces_rows_of_the_same_baseline_id(tmp_path):
    store = SweepStore(tmp_path)
    store.append_baselines(pd.DataFrame({"baseline_id": ["x", "y"], "test_error": [1.0, 2.0]}))
    store.append_baselines(pd.DataFrame({"baseline_id": ["x"], "test_error": [3.0]}))
    rows = store.read_baselines().set_index("baseline_id")["test_error"].to_dict()
    assert rows == {"x": 3.0, "y": 2.0}
    assert store.completed_baseline_ids() == {"x", "y"}


# --- runs not (yet) finished ------------------------------------------------------------------


def test_orphan_trajectories_are_ignored_by_load_and_dropped_on_next_append(tmp_path):
    store = SweepStore(tmp_path)
    store.update_manifest({})
    store.append_runs(_runs(["a"]), _trajectories(["a"]))
    # A writer killed between the two writes of a batch: trajectories of "z" but no runs row.
    orphan = pd.concat([_trajectories(["a"]), _trajectories(["z"], steps=(0, 1, 2, 3))], ignore_index=True)
    orphan.to_parquet(tmp_path / "trajectories.parquet", index=False)

    data = load(tmp_path)
    assert set(data.trajectories["run_id"]) == {"a"}
    assert len(data.trajectories) == 3
    assert list(data.runs["run_id"]) == ["a"]

    store.append_runs(_runs(["b"]), _trajectories(["b"]))
    on_disk = pd.read_parquet(tmp_path / "trajectories.parquet")
    assert set(on_disk["run_id"]) == {"a", "b"}
    assert len(on_disk) == 6


def test_load_ignores_trajectories_when_no_run_has_finished_yet(tmp_path):
    """Killed during the first batch, after trajectories.parquet but before runs.parquet was written."""
    store = SweepStore(tmp_path)
    store.update_manifest({"z": {"seed": 0}})
    _trajectories(["z"]).to_parquet(tmp_path / "trajectories.parquet", index=False)

    data = load(tmp_path)
    assert len(data.runs) == 0
    assert len(data.trajectories) == 0, "trajectory rows of a run not in runs.parquet were returned"


def test_load_rejects_a_folder_that_is_not_a_sweep(tmp_path):
    with pytest.raises(TrajlabError, match="not a trajlab sweep folder"):
        load(tmp_path)
    with pytest.raises(TrajlabError):
        load(tmp_path / "missing")


def test_update_manifest_merges_configs_and_lists(tmp_path):
    store = SweepStore(tmp_path)
    store.update_manifest({"a": {"seed": 0}}, presets=["p1"], device="x")
    store.update_manifest({"b": {"seed": 1}}, presets=["p2", "p1"], device="y")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["configs"] == {"a": {"seed": 0}, "b": {"seed": 1}}
    assert manifest["presets"] == ["p1", "p2"]
    assert manifest["device"] == "y"


# --- can_write / prepare ----------------------------------------------------------------------


def test_can_write_reports_without_creating(tmp_path):
    assert SweepStore.can_write(tmp_path / "a" / "b") is None
    assert not (tmp_path / "a").exists()
    regular = tmp_path / "file"
    regular.write_text("x")
    assert SweepStore.can_write(regular)
    assert SweepStore.can_write(regular / "sub")
    assert SweepStore.can_write(regular / "sub" / "deeper")
    with pytest.raises(TrajlabError, match="--out"):
        SweepStore(regular / "sub").prepare()
    assert regular.read_text() == "x"


# --- a real sweep: what load returns and what the manifest records -----------------------------


def _git_head(repo: Path) -> str | None:
    git = repo / ".git"
    if not git.is_dir():
        return None
    head = (git / "HEAD").read_text().strip()
    if not head.startswith("ref: "):
        return head
    ref = head[len("ref: ") :]
    loose = git / ref
    if loose.exists():
        return loose.read_text().strip()
    packed = git / "packed-refs"
    if packed.exists():
        for line in packed.read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    return None


def _reference_run_id(flat: dict) -> str:
    """The documented rule: a config that trajlab 0.1 could express is laid over 0.1's defaults and its
    fields added after 0.1's first release are left out while at their defaults; others hash as they are."""
    from trajlab.config import _V1_DEFAULTS, _V1_LATER_FIELDS  # the data; the rule is checked here

    if set(flat) <= set(_V1_DEFAULTS):
        flat = {**_V1_DEFAULTS, **flat}
        flat = {k: v for k, v in flat.items() if not (k in _V1_LATER_FIELDS and v == _V1_DEFAULTS[k])}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_run_sweep_then_load_returns_runs_trajectories_baselines_manifest(tmp_path, strict_umask):
    import jax

    from trajlab.sweep import BaselineJob, run_sweep

    base = replace_dotted(
        RunConfig(),
        {
            "problem.m": 6,
            "problem.n": 5,
            "problem.rank": 1,
            "problem.observations": 20,
            "model.depth": 2,
            "model.scale": 0.1,
            "optimizer.name": "gd",
            "optimizer.lr": 0.05,
            "train.max_steps": 50,
            "train.record_points": 5,
            "metrics": ["train_loss", "singular_values"],
            "train.top_k": 2,
        },
    )
    configs = [replace_dotted(base, {"seed": s}) for s in (0, 1, 2)]
    job = BaselineJob("bl-1", {"baseline": "constant"}, lambda: {"test_error": 0.25})
    folder = tmp_path / "sweep"

    data = run_sweep(configs, folder, preset="unit", baselines=[job], show_progress=False)

    assert isinstance(data, SweepData)
    expected_ids = {_reference_run_id(to_flat(c)) for c in configs}
    assert set(data.runs["run_id"]) == expected_ids
    assert len(data.runs) == 3
    assert set(data.trajectories["run_id"]) == expected_ids
    assert {"run_id", "step", "t", "train_loss", "sv_0", "sv_1"} <= set(data.trajectories.columns)
    assert data.baselines.to_dict("records") == [{"baseline": "constant", "baseline_id": "bl-1", "test_error": 0.25}]

    manifest = data.manifest
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert set(manifest["configs"]) == expected_ids
    for config in configs:
        stored = manifest["configs"][_reference_run_id(to_flat(config))]
        assert stored == json.loads(json.dumps(to_flat(config)))
    assert manifest["presets"] == ["unit"]
    versions = manifest["versions"]
    for package in ("jax", "numpy", "pandas", "pyarrow"):
        assert versions[package] == importlib.metadata.version(package)
    assert "git_commit" in manifest
    head = _git_head(REPO)
    if head is not None:
        assert manifest["git_commit"] == head
    assert manifest["device"] == str(jax.devices()[0].device_kind)

    # Stored files: world-readable, no temporary files left.
    for name in os.listdir(folder):
        assert _mode(folder / name) == 0o644, name
    assert _temp_files(folder) == []

    # A second call with the same configs runs nothing and calls no baseline again.
    before = (folder / "runs.parquet").read_bytes()
    again = run_sweep(
        configs, folder, preset="unit",
        baselines=[BaselineJob("bl-1", {}, lambda: pytest.fail("baseline recomputed"))],
        show_progress=False,
    )
    assert (folder / "runs.parquet").read_bytes() == before
    pd.testing.assert_frame_equal(again.runs, data.runs)


def test_corrupted_files_give_one_line_errors_and_nothing_is_overwritten(tmp_path):
    """A truncated runs.parquet or manifest: `trajlab show` and `trajlab run` exit 2 with one line
    naming the file, and the folder's files are left byte for byte as they were."""
    import subprocess
    import sys

    trajlab = str(Path(sys.executable).parent / "trajlab")
    base = [
        "--set", "problem.m=5", "--set", "problem.n=4", "--set", "problem.rank=1",
        "--set", "problem.observations=12", "--set", "train.max_steps=20", "--set", "train.record_points=3",
        "--set", "model.depth=2", "--set", "model.scale=0.1", "--set", "optimizer.lr=0.01",
        "--no-figures", "--no-progress",
    ]
    out = tmp_path / "sweep"
    first = subprocess.run([trajlab, "run", "dmf-dynamics", *base, "--out", str(out)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    for name in ("runs.parquet", "manifest.json"):
        path = out / name
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        for command in (["show", str(out)], ["run", "dmf-dynamics", *base, "--out", str(out)]):
            result = subprocess.run([trajlab, *command], capture_output=True, text=True)
            assert result.returncode == 2, (command, result.stderr)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and name in lines[0] and lines[0].startswith("error:"), result.stderr
            assert "Traceback" not in result.stderr
            assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
        path.write_bytes(original)


# --- one file per batch: concurrent workers, merged by readers (issue 6) ------------------------


def _key(ids) -> str:
    """The documented batch key: sha256 of the sorted run ids joined by newlines, 16 hex digits."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def test_batch_files_are_named_by_their_run_ids_and_merged_by_every_reader(tmp_path, strict_umask):
    store = SweepStore(tmp_path)
    store.update_manifest({})
    key_ab = store.write_batch(_runs(["b", "a"]), _trajectories(["b", "a"]))
    key_c = store.write_batch(_runs(["c"], value=3.0), _trajectories(["c"], value=3.0))

    assert key_ab == _key(["a", "b"]) and key_c == _key(["c"])
    for sub in ("runs", "trajectories"):
        files = sorted(p.name for p in (tmp_path / sub).iterdir())
        assert files == sorted([f"batch-{key_ab}.parquet", f"batch-{key_c}.parquet"])
        for name in files:
            assert _mode(tmp_path / sub / name) == 0o644
    assert not (tmp_path / "runs.parquet").exists()  # not consolidated: readers merge the batch files

    assert sorted(pd.read_parquet(tmp_path / "runs" / f"batch-{key_ab}.parquet")["run_id"]) == ["a", "b"]
    assert store.completed_run_ids() == {"a", "b", "c"}
    assert sorted(store.read_runs()["run_id"]) == ["a", "b", "c"]
    data = load(tmp_path)
    assert sorted(data.runs["run_id"]) == ["a", "b", "c"]
    assert data.runs.set_index("run_id")["final.train_loss"].to_dict() == {"a": 1.0, "b": 1.0, "c": 3.0}
    assert len(data.trajectories) == 9 and set(data.trajectories["run_id"]) == {"a", "b", "c"}
    pd.testing.assert_frame_equal(store.read_trajectories(), data.trajectories)

    # The coordinator consolidates: the single-file layout of older folders, same contents.
    assert store.consolidate() == 2
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "runs.parquet", "trajectories.parquet"]
    assert sorted(pd.read_parquet(tmp_path / "runs.parquet")["run_id"]) == ["a", "b", "c"]
    again = load(tmp_path)
    pd.testing.assert_frame_equal(_sorted_runs(again.runs), _sorted_runs(data.runs))
    assert store.consolidate() == 0


def _sorted_runs(frame):
    return frame.sort_values("run_id").reset_index(drop=True)


def test_a_run_stored_twice_is_returned_once_with_the_trajectory_of_the_same_write(tmp_path):
    """A worker that died after writing its batch, whose batch then ran again elsewhere."""
    store = SweepStore(tmp_path)
    store.update_manifest({})
    store.append_runs(_runs(["a", "b"], value=1.0), _trajectories(["a", "b"], value=1.0))  # root files
    store.write_batch(_runs(["a", "c"], value=2.0), _trajectories(["a", "c"], steps=(0, 7), value=2.0))
    earlier = tmp_path / "runs" / f"batch-{_key(['a', 'c'])}.parquet"
    store.write_batch(_runs(["a"], value=5.0), _trajectories(["a"], steps=(0, 9), value=5.0))
    os.utime(earlier, ns=(earlier.stat().st_mtime_ns - 10**9,) * 2)  # a second older, whatever the clock

    merged_by_readers = load(tmp_path)
    store.consolidate()
    for data in (merged_by_readers, load(tmp_path)):
        runs = data.runs.set_index("run_id")
        assert sorted(runs.index) == ["a", "b", "c"]
        assert runs["final.train_loss"].to_dict() == {"a": 5.0, "b": 1.0, "c": 2.0}  # latest write wins
        traj = data.trajectories
        assert list(traj[traj["run_id"] == "a"].sort_values("step")["step"]) == [0, 9]  # a's rows: that write's
        assert list(traj[traj["run_id"] == "c"].sort_values("step")["step"]) == [0, 7]
        assert list(traj[traj["run_id"] == "b"].sort_values("step")["step"]) == [0, 5, 10]


def test_a_batch_killed_before_its_runs_file_is_not_finished(tmp_path):
    """Killed after the trajectories file, or mid-write of the runs file (a temporary file)."""
    store = SweepStore(tmp_path)
    store.update_manifest({})
    store.write_batch(_runs(["a"]), _trajectories(["a"]))
    _trajectories(["z"]).to_parquet(tmp_path / "trajectories" / f"batch-{_key(['z'])}.parquet", index=False)
    _runs(["z"]).iloc[:0].to_parquet(tmp_path / "runs" / ".half-written.tmp")  # ignored: a temporary file
    (tmp_path / "runs" / f".batch-{_key(['y'])}.parquet~host~1~abc.tmp").write_bytes(b"PAR1 truncated")

    assert store.completed_run_ids() == {"a"}
    data = load(tmp_path)
    assert list(data.runs["run_id"]) == ["a"] and set(data.trajectories["run_id"]) == {"a"}
    store.check_readable()  # temporary files are not part of the sweep

    # Consolidation keeps a young orphan (its writer may be between its two writes) and drops an old one.
    orphan = tmp_path / "trajectories" / f"batch-{_key(['z'])}.parquet"
    store.consolidate()
    assert orphan.exists()
    old = orphan.stat().st_mtime - 2 * 3600
    os.utime(orphan, (old, old))
    store.consolidate()
    assert not orphan.exists()
    assert set(load(tmp_path).trajectories["run_id"]) == {"a"}


def test_prepare_deletes_temporary_files_of_dead_writers_only(tmp_path):
    """Other workers write into the folder while a coordinator starts: their temporary files stay."""
    import socket
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    store = SweepStore(tmp_path)
    store.prepare()
    (tmp_path / "runs").mkdir()
    names = {
        "live": tmp_path / "runs" / f".batch-x.parquet~{host}~{os.getpid()}~a1.tmp",
        "dead": tmp_path / "runs" / f".batch-y.parquet~{host}~{dead_pid}~a2.tmp",
        "other host, fresh": tmp_path / f".runs.parquet~elsewhere~{dead_pid}~a3.tmp",
        "other host, old": tmp_path / f".runs.parquet~elsewhere~{os.getpid()}~a4.tmp",
        "old naming, fresh": tmp_path / ".runs.parquet.k2j3h4.tmp",
    }
    for path in names.values():
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(names["other host, old"], (two_days_ago, two_days_ago))

    store.prepare()
    left = {label for label, path in names.items() if path.exists()}
    assert left == {"live", "other host, fresh", "old naming, fresh"}


def test_old_single_file_folders_load_and_take_new_batches(tmp_path):
    """A folder written before batch files: runs.parquet and trajectories.parquet only."""
    old_runs, old_traj = _runs(["a", "b"]), _trajectories(["a", "b"])
    old_traj = pd.concat([old_traj, _trajectories(["unfinished"])], ignore_index=True)
    old_runs.to_parquet(tmp_path / "runs.parquet", index=False)
    old_traj.to_parquet(tmp_path / "trajectories.parquet", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"configs": {}}))

    store = SweepStore(tmp_path)
    data = load(tmp_path)
    pd.testing.assert_frame_equal(data.runs, old_runs)
    assert set(data.trajectories["run_id"]) == {"a", "b"} and len(data.trajectories) == 6
    assert store.completed_run_ids() == {"a", "b"}

    store.write_batch(_runs(["c"]), _trajectories(["c"]))
    assert sorted(load(tmp_path).runs["run_id"]) == ["a", "b", "c"]
    store.consolidate()
    assert sorted(pd.read_parquet(tmp_path / "runs.parquet")["run_id"]) == ["a", "b", "c"]
    assert set(pd.read_parquet(tmp_path / "trajectories.parquet")["run_id"]) == {"a", "b", "c"}


def test_an_unreadable_batch_file_is_named(tmp_path):
    store = SweepStore(tmp_path)
    store.update_manifest({})
    key = store.write_batch(_runs(["a"]), _trajectories(["a"]))
    path = tmp_path / "runs" / f"batch-{key}.parquet"
    path.write_bytes(path.read_bytes()[:40])
    for call in (store.check_readable, lambda: load(tmp_path)):
        with pytest.raises(TrajlabError, match=rf"batch-{key}\.parquet: not a readable parquet file"):
            call()


def test_write_batch_needs_unique_run_ids_and_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="run_id"):
        SweepStore(tmp_path).write_batch(_runs(["a", "a"]), _trajectories(["a"]))
    with pytest.raises(TrajlabError, match="does not exist"):
        SweepStore(tmp_path / "missing").write_batch(_runs(["a"]), _trajectories(["a"]))


def test_consolidation_without_folder_locks_uses_a_lock_file_or_leaves_batches_to_readers(tmp_path, monkeypatch):
    """NFS cannot flock a directory (a lock file stands in); with no locks at all nothing is merged,
    and the readers still return every run."""
    import fcntl

    def unsupported(fd, operation):
        raise OSError(9, "Bad file descriptor")

    store = SweepStore(tmp_path)
    store.update_manifest({})
    store.write_batch(_runs(["a"]), _trajectories(["a"]))
    monkeypatch.setattr(fcntl, "flock", unsupported)
    assert store.consolidate() == 1
    assert sorted(os.listdir(tmp_path)) == [".consolidate.lock", "manifest.json", "runs.parquet", "trajectories.parquet"]

    monkeypatch.setattr(fcntl, "lockf", unsupported)
    store.write_batch(_runs(["b"]), _trajectories(["b"]))
    assert store.consolidate() == 0
    assert (tmp_path / "runs" / f"batch-{_key(['b'])}.parquet").exists()
    assert sorted(load(tmp_path).runs["run_id"]) == ["a", "b"]
    assert set(load(tmp_path).trajectories["run_id"]) == {"a", "b"}

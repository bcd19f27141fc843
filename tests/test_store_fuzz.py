"""Fuzz tests of the sweep folder readers (issue 16, items 5 and 11).

Whatever a sweep folder's files hold (a manifest of any JSON shape, parquet tables of any columns
and types, random bytes, single flipped bits), every reader of the store (``load``,
``check_readable``, ``completed_run_ids``, ``read_baselines``, ``read_manifest``) and every
coordinator write (``update_manifest``, ``consolidate``) ends within seconds, either fine or with a
one-line :class:`~trajlab.errors.TrajlabError` naming the file; an error leaves the folder byte for
byte as it was, and nothing is written outside it.

Independent references: the hand-written oracle :func:`_must_reject` (the brief's rules: required
columns, string ids, integer steps, known statuses, unique names) evaluated on the table as pyarrow
reads it back, and, for bit flips, the DataFrames loaded from the undamaged folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trajlab import cli
from trajlab.errors import TrajlabError
from trajlab.store import SweepStore, load
from trajlab.store import sweep_dir

FIXTURE = Path(__file__).parent / "data" / "v01_acceleration_lp"
FUZZ = settings(  # TRAJLAB_FUZZ_EXAMPLES=1000 for a longer hunt (the default keeps the file near 20 s)
    max_examples=int(os.environ.get("TRAJLAB_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECONDS = 20  # per call; generous for a busy 2-core machine, a hang is what it catches
STATUSES = {"done", "max_steps", "diverged"}


# --- a valid sweep folder, copied per example ---------------------------------------------------


def _runs(ids, value=1.0):
    return pd.DataFrame(
        {
            "model.depth": [2] * len(ids),
            "optimizer.name": ["gd"] * len(ids),
            "run_id": list(ids),
            "status": ["done"] * len(ids),
            "steps": np.array([10] * len(ids), np.int64),
            "wall_s": [0.5] * len(ids),
            "final.train_loss": [value] * len(ids),
        }
    )


def _trajectories(ids, steps=(0, 5, 10), value=1.0):
    rows = [(i, s, s * 0.1, value / (1 + s)) for i in ids for s in steps]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "t", "train_loss"])
    frame["step"] = frame["step"].astype(np.int64)
    return frame


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """manifest.json, root runs / trajectories / baselines files, and one unconsolidated batch."""
    folder = tmp_path_factory.mktemp("template") / "sweep"
    store = SweepStore(folder)
    store.prepare()
    store.update_manifest({i: {"seed": n} for n, i in enumerate("abc")}, presets=["unit"], device="cpu")
    store.append_runs(_runs(["a", "b"]), _trajectories(["a", "b"]))
    store.write_batch(_runs(["c"], 3.0), _trajectories(["c"], value=3.0))
    store.append_baselines(pd.DataFrame({"baseline_id": ["x"], "baseline": ["constant"], "test_error": [0.25]}))
    return folder


def _files(template: Path) -> list[str]:
    return sorted(str(p.relative_to(template)) for p in template.rglob("*") if p.is_file())


def _kind(name: str) -> str:
    return "baselines" if name.startswith("baselines") else "runs" if name.startswith("runs") else "trajectories"


@pytest.fixture
def copies(tmp_path, template):
    """A fresh copy of the template folder per call (hypothesis runs many examples per test)."""
    counter = iter(range(10**6))

    def make() -> Path:
        folder = tmp_path / f"example-{next(counter)}" / "sweep"
        shutil.copytree(template, folder)
        return folder

    return make


@pytest.fixture(autouse=True)
def nothing_written_outside():
    """The working directory gets nothing new (every write of the store is inside its folder)."""
    before = sorted(os.listdir("."))
    yield
    assert sorted(os.listdir(".")) == before


def _contents(folder: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        mode = path.lstat().st_mode
        out[key] = path.read_bytes() if stat.S_ISREG(mode) else stat.filemode(mode)
    return out


def _one_line(error: TrajlabError, name: str) -> str:
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert name in message, (name, message)
    return message


CALLS = {
    "check_readable": lambda folder: SweepStore(folder).check_readable(),
    "load": load,
    "completed_run_ids": lambda folder: SweepStore(folder).completed_run_ids(),
    "read_baselines": lambda folder: SweepStore(folder).read_baselines(),
    "read_manifest": lambda folder: SweepStore(folder).read_manifest(),
    # Writers last: on success they change the folder.
    "update_manifest": lambda folder: SweepStore(folder).update_manifest({"new": {"seed": 9}}, presets=["p"]),
    "consolidate": lambda folder: SweepStore(folder).consolidate(),
}


def _exercise(folder: Path, damaged: str) -> dict[str, object]:
    """Every call on ``folder``: the value, or the error's message (checked: one line naming
    ``damaged``, folder untouched, in seconds)."""
    outcomes: dict[str, object] = {}
    for name, call in CALLS.items():
        before = _contents(folder)
        start = time.monotonic()
        try:
            outcomes[name] = call(folder)
        except TrajlabError as error:
            outcomes[name] = _one_line(error, damaged)
            assert _contents(folder) == before, f"{name} failed and changed the folder"
        assert time.monotonic() - start < SECONDS, name
    assert os.listdir(folder.parent) == ["sweep"]  # nothing written beside the sweep folder
    failed = {name for name, value in outcomes.items() if isinstance(value, str)}
    # check_readable is the gate of `trajlab run`: once it passes, every reader must work.
    if "check_readable" not in failed:
        assert not failed, failed
    else:
        assert "load" in failed  # it reads every file of this folder too
        if _kind(damaged) == "runs":  # a resume must not take the runs of a bad file as finished
            assert "completed_run_ids" in failed
    if not isinstance(outcomes["load"], str):
        data = outcomes["load"]
        runs = data.runs
        if len(runs):
            assert all(isinstance(i, str) for i in runs["run_id"]) and runs["run_id"].is_unique
            assert set(runs["status"]) <= STATUSES
            assert pd.api.types.is_integer_dtype(runs["steps"]) and (runs["steps"] >= 0).all()
        if len(data.trajectories):
            assert pd.api.types.is_integer_dtype(data.trajectories["step"])
            assert set(data.trajectories["run_id"]) <= set(runs["run_id"])
        assert isinstance(data.manifest, dict)
    if not isinstance(outcomes["completed_run_ids"], str):
        assert all(isinstance(i, str) for i in outcomes["completed_run_ids"])
    return outcomes


# --- manifests of random shape --------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "configs": st.one_of(json_values, st.dictionaries(st.sampled_from("abcz"), json_values, max_size=3)),
        "presets": st.one_of(json_values, st.lists(st.text(max_size=5), max_size=3)),
        "preset_sources": st.one_of(json_values, st.dictionaries(st.text(max_size=4), st.text(max_size=8))),
        "versions": json_values,
        "run_id_scheme": json_values,
        "git_commit": json_values,
        "device": json_values,
        "updated": json_values,
        "other": json_values,
    },
)
manifest_texts = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    manifest_like.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.text(max_size=20).map(str.encode),
    st.integers(1, 3000).map(lambda depth: ("[" * depth + "]" * depth).encode()),
    st.integers(4300, 5000).map(lambda digits: ("9" * digits).encode()),  # beyond int() of a str
)


@FUZZ
@given(text=manifest_texts)
def test_random_manifests_are_read_or_named(copies, text):
    folder = copies()
    (folder / "manifest.json").write_bytes(text)
    outcomes = _exercise(folder, "manifest.json")
    if not isinstance(outcomes["read_manifest"], str):
        # Accepted: then it is an object, and the coordinator can add to it and read it back.
        assert isinstance(outcomes["read_manifest"], dict)
        assert not isinstance(outcomes["update_manifest"], str)
        manifest = SweepStore(folder).read_manifest()
        assert manifest["configs"]["new"] == {"seed": 9} and "p" in manifest["presets"]


# --- parquet tables of random columns and types ---------------------------------------------------

NAMES = [
    "run_id", "status", "steps", "step", "t", "baseline_id", "wall_s", "final.train_loss", "train_loss",
    "model.depth", "_source",
]
KINDS = [
    "int64", "int32", "uint8", "float64", "float32", "bool", "ids", "status", "text", "null", "nullable_int",
    "list", "struct", "binary", "timestamp", "dictionary", "steps",
]


@st.composite
def arrow_columns(draw, rows: int):
    kind = draw(st.sampled_from(KINDS))
    n = dict(min_size=rows, max_size=rows)
    if kind in ("int64", "int32", "uint8"):
        bits = {"int64": 63, "int32": 31, "uint8": 0}[kind]
        low, high = (0, 255) if kind == "uint8" else (-(2**bits), 2**bits - 1)
        return pa.array(draw(st.lists(st.integers(low, high), **n)), type=getattr(pa, kind)())
    if kind == "steps":
        return pa.array(draw(st.lists(st.integers(0, 100), **n)), type=pa.int64())
    if kind in ("float64", "float32"):
        width = 64 if kind == "float64" else 32
        return pa.array(draw(st.lists(st.floats(width=width), **n)), type=getattr(pa, kind)())
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans(), **n)))
    if kind == "ids":
        return pa.array(draw(st.lists(st.one_of(st.sampled_from("abcz"), st.none()), **n)), type=pa.string())
    if kind == "status":
        values = st.sampled_from(["done", "max_steps", "diverged", "active", "bogus", ""])
        return pa.array(draw(st.lists(values, **n)), type=pa.string())
    if kind == "text":
        return pa.array(draw(st.lists(st.text(max_size=5), **n)), type=pa.large_string())
    if kind == "null":
        return pa.nulls(rows)
    if kind == "nullable_int":
        return pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), **n)), type=pa.int64())
    if kind == "list":
        return pa.array(draw(st.lists(st.lists(st.integers(0, 9), max_size=3), **n)))
    if kind == "struct":
        return pa.array([{"x": v} for v in draw(st.lists(st.integers(0, 9), **n))], type=pa.struct([("x", pa.int64())]))
    if kind == "binary":
        return pa.array(draw(st.lists(st.binary(max_size=4), **n)), type=pa.binary())
    if kind == "timestamp":
        return pa.array(draw(st.lists(st.integers(-(2**62), 2**62), **n)), type=pa.timestamp("us"))
    return pa.array(draw(st.lists(st.sampled_from(["a", "b"]), **n)), type=pa.string()).dictionary_encode()


VALID = {
    "runs": [("run_id", "ids"), ("status", "status"), ("steps", "steps")],
    "trajectories": [("run_id", "ids"), ("step", "steps"), ("t", "float64")],
    "baselines": [("baseline_id", "ids"), ("test_error", "float64")],
}


@st.composite
def tables(draw, kind: str):
    """A table that often starts like a ``kind`` table, then loses, changes and gains columns."""
    rows = draw(st.integers(0, 4))
    columns = []
    if draw(st.booleans()):
        for name, _ in VALID[kind]:
            if draw(st.integers(0, 4)):  # mostly kept
                columns.append((name, draw(arrow_columns(rows))))
    extra = st.tuples(st.one_of(st.sampled_from(NAMES), st.text(max_size=6)), arrow_columns(rows))
    columns += draw(st.lists(extra, max_size=4))
    if not columns:
        return pa.table({}).slice(0, 0) if rows == 0 else pa.Table.from_arrays([pa.nulls(rows)], names=["x"])
    return pa.Table.from_arrays([a for _, a in columns], names=[n for n, _ in columns])


def _write_table(table: pa.Table, path: Path, writer: str) -> None:
    if writer == "store":  # through pandas, with the store's checksums and content hash
        try:
            frame = table.to_pandas()
            if frame.columns.is_unique:
                sweep_dir._atomic_write_parquet(frame, path)
                return
        except Exception:  # not every table survives pandas; then it is written as it is
            pass
    pq.write_table(table, path, **({"write_page_checksum": True} if writer == "checksums" else {}))


def _must_reject(table: pa.Table, kind: str) -> str | None:
    """Why the brief's rules reject ``table`` as a ``kind`` table, or None (the oracle)."""
    if table.num_rows == 0:
        return None
    names = table.column_names
    if len(set(names)) != len(names):
        return "duplicate column names"
    types = dict(zip(names, table.schema.types))
    required = [name for name, _ in VALID[kind]][: 3 if kind == "runs" else 2 if kind == "trajectories" else 1]
    for name in required:
        if name not in names:
            return f"no {name}"
    identifier = required[0]
    if not (pa.types.is_string(types[identifier]) or pa.types.is_large_string(types[identifier])):
        return f"{identifier} not strings"
    if table.column(identifier).null_count:
        return f"{identifier} missing"
    counts = "steps" if kind == "runs" else "step" if kind == "trajectories" else None
    if counts and not pa.types.is_integer(types[counts]):
        return f"{counts} not integers"
    if kind == "runs":
        if not (pa.types.is_string(types["status"]) or pa.types.is_large_string(types["status"])):
            return "status not strings"
        if not set(table.column("status").to_pylist()) <= STATUSES:
            return "unknown status"
    return None


@FUZZ
@given(data=st.data(), writer=st.sampled_from(["plain", "checksums", "store"]))
def test_random_tables_in_every_file_are_read_or_named(copies, template, data, writer):
    name = data.draw(st.sampled_from([f for f in _files(template) if f.endswith(".parquet")]), label="file")
    kind = _kind(name)
    table = data.draw(tables(kind), label="table")
    note(str(table))
    folder = copies()
    path = folder / name
    path.unlink()
    _write_table(table, path, writer)
    reason = _must_reject(pq.ParquetFile(path).read(), kind)  # as written (pandas may change types)
    outcomes = _exercise(folder, name)
    if reason is not None:
        assert isinstance(outcomes["check_readable"], str), f"accepted a {kind} table with {reason}"
        if kind == "runs":
            assert isinstance(outcomes["completed_run_ids"], str), f"runs of a table with {reason} taken as done"


@st.composite
def valid_batches(draw):
    """Runs and trajectories as a worker writes them, with random config columns and values."""
    ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True))
    runs = pd.DataFrame({"run_id": ids})
    runs["status"] = draw(st.lists(st.sampled_from(sorted(STATUSES)), min_size=len(ids), max_size=len(ids)))
    runs["steps"] = np.array(draw(st.lists(st.integers(0, 2**62), min_size=len(ids), max_size=len(ids))), np.int64)
    values = st.lists(st.floats(), min_size=len(ids), max_size=len(ids))
    runs["final.loss"] = np.array(draw(values), np.float64)
    for n in range(draw(st.integers(0, 3))):
        config = draw(
            st.one_of(
                st.lists(st.integers(-(2**63), 2**63 - 1), min_size=len(ids), max_size=len(ids)),
                st.lists(st.text(max_size=4), min_size=len(ids), max_size=len(ids)),
                st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)),
                st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=len(ids), max_size=len(ids)),
                values,
            )
        )
        runs[f"section.field{n}"] = pd.Series(config, dtype=object if None in config else None)
    steps = draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=4, unique=True))
    traj = pd.DataFrame([(i, s) for i in ids for s in steps], columns=["run_id", "step"])
    traj["step"] = traj["step"].astype(np.int64)
    traj["t"] = np.array(draw(st.lists(st.floats(), min_size=len(traj), max_size=len(traj))), np.float64)
    traj["metric"] = np.array(
        draw(st.lists(st.floats(width=32), min_size=len(traj), max_size=len(traj))), np.float32
    )
    return runs, traj


def _by_id(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


@FUZZ
@given(batch=valid_batches())
def test_valid_tables_round_trip_through_checksums_and_hashes(tmp_path, batch):
    """No false alarm: what the store writes, with any values, reads back equal (batch and root files)."""
    runs, traj = batch
    # What parquet itself gives back (e.g. None in a column of strings reads as NaN in pandas' str).
    expected_runs, expected_traj = (pa.Table.from_pandas(f, preserve_index=False).to_pandas() for f in batch)
    folder = tmp_path / f"sweep-{time.monotonic_ns()}"
    store = SweepStore(folder)
    store.prepare()
    store.update_manifest({})
    store.write_batch(runs, traj)
    for _ in range(2):  # as batch files, then consolidated into the root files
        store.check_readable()
        data = load(folder)
        pd.testing.assert_frame_equal(_by_id(data.runs, ["run_id"]), _by_id(expected_runs, ["run_id"]))
        pd.testing.assert_frame_equal(
            _by_id(data.trajectories, ["run_id", "step"]), _by_id(expected_traj, ["run_id", "step"])
        )
        assert store.completed_run_ids() == set(runs["run_id"])
        store.consolidate()
    assert pq.read_schema(folder / "runs.parquet").metadata[sweep_dir.HASH_KEY]


# --- random bytes in every file --------------------------------------------------------------------


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["random", "framed", "truncated", "overwritten", "empty"]))
def test_random_bytes_in_every_file_are_read_or_named(copies, template, data, mode):
    name = data.draw(st.sampled_from(_files(template)), label="file")
    original = (template / name).read_bytes()
    if mode == "random":
        content = data.draw(st.binary(max_size=2000))
    elif mode == "framed":  # parquet's magic at both ends, garbage between
        content = b"PAR1" + data.draw(st.binary(max_size=400)) + b"PAR1"
    elif mode == "truncated":
        content = original[: data.draw(st.integers(0, len(original) - 1))]
    elif mode == "overwritten":
        content = bytearray(original)
        for _ in range(data.draw(st.integers(1, 8))):
            content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
        content = bytes(content)
    else:
        content = b""
    folder = copies()
    (folder / name).write_bytes(content)
    _exercise(folder, name)


# --- single bit flips (item 11) ---------------------------------------------------------------------


def _flip_trials(folder: Path, name: str, trials: int, seed: int, work: Path):
    """Flip one random bit of ``folder/name`` per trial; yield (outcome, loaded data or message)."""
    original = (folder / name).read_bytes()
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        copy = work / f"trial-{trial}"
        shutil.copytree(folder, copy)
        bit = int(rng.integers(len(original) * 8))
        damaged = bytearray(original)
        damaged[bit // 8] ^= 1 << (bit % 8)
        (copy / name).write_bytes(bytes(damaged))
        start = time.monotonic()
        try:
            data = load(copy)
        except TrajlabError as error:
            yield "detected", _one_line(error, name)
        else:
            yield "loaded", data
        assert time.monotonic() - start < SECONDS


def test_single_bit_flips_in_trajectories_are_detected_or_harmless(tmp_path, capsys):
    """40 single bit flips (fixed seed) in a trajectories.parquet the store wrote: each is a one-line
    error naming the file, or loads exactly the data of the undamaged file (a flip in a part the
    reader ignores, e.g. statistics); never changed values."""
    folder = tmp_path / "sweep"
    store = SweepStore(folder)
    store.prepare()
    ids = [f"{n:016x}" for n in range(12)]  # a quick preset's size: 12 runs, 5 points, 4 metrics
    rng = np.random.default_rng(0)
    traj = _trajectories(ids, steps=(0, 10, 20, 30, 40))
    for metric in ("train_loss", "test_error", "effective_rank", "nuclear_norm"):
        traj[metric] = rng.random(len(traj))
    store.update_manifest({i: {"seed": n} for n, i in enumerate(ids)})
    store.append_runs(_runs(ids), traj)
    reference = load(folder)
    detected = 0
    for outcome, value in _flip_trials(folder, "trajectories.parquet", 40, seed=16, work=tmp_path / "flips"):
        if outcome == "detected":
            detected += 1
        else:
            pd.testing.assert_frame_equal(value.trajectories, reference.trajectories)
            pd.testing.assert_frame_equal(value.runs, reference.runs)
    with capsys.disabled():
        print(f"\nsingle bit flips in trajectories.parquet: {detected} of 40 detected, the others load identical data")
    assert detected >= 20  # about 3 in 4 with page checksums and the content hash (the rest change nothing)


@pytest.mark.skipif(not sweep_dir._page_checksums(), reason="pyarrow < 15 writes no page checksums")
def test_a_damaged_data_page_fails_its_page_checksum(tmp_path, template):
    """The last byte of a column chunk is data of its last page: the page's CRC32 no longer matches."""
    folder = tmp_path / "sweep"
    shutil.copytree(template, folder)
    path = folder / "trajectories.parquet"
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(3)  # train_loss
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    damaged = bytearray(path.read_bytes())
    damaged[start + chunk.total_compressed_size - 1] ^= 0x10
    path.write_bytes(bytes(damaged))
    with pytest.raises(TrajlabError) as error:
        load(folder)
    assert "CRC" in _one_line(error.value, "trajectories.parquet")


def test_bit_flips_in_a_folder_of_trajlab_0_1_load_or_are_named(tmp_path):
    """Files written before checksums still load; damaged ones are one line (or, without checksums,
    may load changed values: what 0.1's files cannot tell)."""
    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    assert sweep_dir.HASH_KEY not in (pq.read_schema(folder / "runs.parquet").metadata or {})
    SweepStore(folder).check_readable()
    assert len(load(folder).runs) == 12 and len(SweepStore(folder).completed_run_ids()) == 12
    for name in ("trajectories.parquet", "runs.parquet"):
        outcomes = [o for o, _ in _flip_trials(folder, name, 15, seed=11, work=tmp_path / name)]
        assert len(outcomes) == 15


# --- the brief's cases, one by one (item 5) ---------------------------------------------------------

BAD_MANIFESTS = {
    "array": "[]",
    "null": "null",
    "number": "3",
    "string": '"configs"',
    "configs array": '{"configs": []}',
    "config number": '{"configs": {"a": 1}}',
    "config array": '{"configs": {"a": [1, 2]}}',
    "presets string": '{"presets": "p"}',
    "presets of numbers": '{"presets": [1]}',
    "preset_sources array": '{"preset_sources": ["x"]}',
    "versions number": '{"versions": 2}',
    "run_id_scheme string": '{"run_id_scheme": "2"}',
    "nested too deep": "[" * 100000 + "]" * 100000,
}


@pytest.mark.parametrize("text", list(BAD_MANIFESTS.values()), ids=list(BAD_MANIFESTS))
def test_a_manifest_of_the_wrong_shape_is_one_line_for_every_reader(copies, text):
    folder = copies()
    (folder / "manifest.json").write_text(text)
    outcomes = _exercise(folder, "manifest.json")
    for name in ("check_readable", "load", "read_manifest", "update_manifest"):
        assert "not a valid manifest" in outcomes[name], name
    assert (folder / "manifest.json").read_text() == text


def test_a_folder_named_manifest_json_is_one_line(copies):
    folder = copies()
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").mkdir()
    outcomes = _exercise(folder, "manifest.json")
    assert "not a regular file" in outcomes["load"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX named pipes")
@pytest.mark.parametrize("name", ["manifest.json", "runs.parquet", "trajectories.parquet"])
def test_a_named_pipe_is_refused_without_blocking(copies, name):
    """Opening a FIFO for reading blocks until someone writes: the readers must not open it."""
    folder = copies()
    (folder / name).unlink()
    os.mkfifo(folder / name)
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail(f"a reader blocked on the named pipe {name}"))
    signal.alarm(30)
    try:
        outcomes = _exercise(folder, name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "not a regular file" in outcomes["load"]


BAD_RUNS = {
    "no run_id": lambda f: f.drop(columns="run_id"),
    "no status": lambda f: f.drop(columns="status"),
    "no steps": lambda f: f.drop(columns="steps"),
    "run_id numbers": lambda f: f.assign(run_id=[1, 2]),
    "run_id missing": lambda f: f.assign(run_id=pd.Series(["a", None], dtype=object)),
    "status unknown": lambda f: f.assign(status=["done", "exploded"]),
    "status numbers": lambda f: f.assign(status=[0, 1]),
    "steps floats": lambda f: f.assign(steps=[1.5, 2.0]),
    "steps strings": lambda f: f.assign(steps=["10", "10"]),
    "steps negative": lambda f: f.assign(steps=np.array([-1, 10], np.int64)),
    "final strings": lambda f: f.assign(**{"final.train_loss": ["low", "high"]}),
    "reserved column": lambda f: f.assign(_source=[0, 0]),
}


@pytest.mark.parametrize("name", ["runs.parquet", "runs/batch"])
@pytest.mark.parametrize("change", list(BAD_RUNS.values()), ids=list(BAD_RUNS))
def test_a_runs_file_of_the_wrong_schema_is_named_and_its_runs_are_not_done(copies, template, name, change):
    folder = copies()
    if name == "runs/batch":
        name = next(f for f in _files(template) if f.startswith("runs/"))
    frame = change(_runs(["a", "b"]) if name == "runs.parquet" else _runs(["c"]).pipe(_one_more_row))
    frame.to_parquet(folder / name, index=False)  # written by someone else: no checksums, no hash
    outcomes = _exercise(folder, name)
    for call in ("check_readable", "load", "completed_run_ids", "consolidate"):
        assert "not a valid runs table" in outcomes[call], (call, outcomes[call])


def _one_more_row(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.assign(run_id="d")], ignore_index=True)


BAD_TRAJECTORIES = {
    "no run_id": lambda f: f.drop(columns="run_id"),
    "no step": lambda f: f.drop(columns="step"),
    "step floats": lambda f: f.assign(step=f["step"] + 0.5),
    "run_id numbers": lambda f: f.assign(run_id=range(len(f))),
    "metric strings": lambda f: f.assign(train_loss="small"),
    "duplicate column": lambda f: pd.concat([f, f[["t"]]], axis=1),
}


@pytest.mark.parametrize("change", list(BAD_TRAJECTORIES.values()), ids=list(BAD_TRAJECTORIES))
def test_a_trajectories_file_of_the_wrong_schema_is_named(copies, change):
    folder = copies()
    frame = change(_trajectories(["a", "b"]))
    table = pa.Table.from_arrays(
        [pa.array(frame.iloc[:, i]) for i in range(frame.shape[1])], names=[str(c) for c in frame.columns]
    )
    pq.write_table(table, folder / "trajectories.parquet")
    outcomes = _exercise(folder, "trajectories.parquet")
    for call in ("check_readable", "load", "consolidate"):
        assert "not a valid trajectories table" in outcomes[call], (call, outcomes[call])


def test_a_baselines_file_without_ids_is_named(copies):
    folder = copies()
    pd.DataFrame({"baseline": ["constant"], "test_error": [0.1]}).to_parquet(folder / "baselines.parquet")
    outcomes = _exercise(folder, "baselines.parquet")
    assert "no 'baseline_id' column" in outcomes["read_baselines"]


# --- through the CLI: `error: <one line>`, exit code 2, nothing changed -------------------------------

RUN = [
    "run", "dmf-dynamics", "--no-figures", "--no-progress", "--set", "problem.m=5", "--set", "problem.n=4",
    "--set", "problem.rank=1", "--set", "problem.observations=12", "--set", "train.max_steps=20",
    "--set", "train.record_points=3", "--set", "model.depth=2",
]


def _damage(folder: Path, what: str) -> str:
    if what == "manifest array":
        (folder / "manifest.json").write_text("[]")
    elif what == "manifest null":
        (folder / "manifest.json").write_text("null")
    elif what == "manifest configs array":
        (folder / "manifest.json").write_text('{"configs": [], "presets": ["dmf-dynamics"]}')
    elif what == "manifest folder":
        (folder / "manifest.json").unlink()
        (folder / "manifest.json").mkdir()
    elif what == "runs without status":
        _runs(["a", "b"]).drop(columns="status").to_parquet(folder / "runs.parquet", index=False)
        return "runs.parquet"
    elif what == "trajectories step floats":
        _trajectories(["a", "b"]).assign(step=0.5).to_parquet(folder / "trajectories.parquet", index=False)
        return "trajectories.parquet"
    return "manifest.json"


@pytest.mark.parametrize(
    "what",
    ["manifest array", "manifest null", "manifest configs array", "manifest folder", "runs without status",
     "trajectories step floats"],
)
def test_cli_commands_on_a_damaged_folder_print_one_error_line(copies, what):
    folder = copies()
    name = _damage(folder, what)
    before = _contents(folder)
    runner = CliRunner()
    commands = [["show", str(folder)], ["plot", str(folder)], ["report", str(folder)], [*RUN, "--out", str(folder)]]
    for command in commands:
        result = runner.invoke(cli.app, command)
        assert result.exit_code == 2, (command[0], result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], (command[0], result.stderr)
        assert _contents(folder) == before, command[0]


def test_config_columns_of_any_type_are_stored_and_read(tmp_path):
    """Config fields by dotted name are whatever a family's config holds (a plug-in's dict field):
    not part of the checked schema, and read back as written, hash checked."""
    store = SweepStore(tmp_path / "sweep")
    store.prepare()
    runs = _runs(["a", "b"]).assign(**{"model.options": [{"x": 1}, {"x": 2}], "model.sizes": [[1, 2], []]})
    store.write_batch(runs, _trajectories(["a", "b"]))
    store.consolidate()
    store.check_readable()
    data = load(store.folder)
    assert list(data.runs["model.options"]) == [{"x": 1}, {"x": 2}]
    assert [list(v) for v in data.runs["model.sizes"]] == [[1, 2], []]

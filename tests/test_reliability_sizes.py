"""Reliability of sizes, integer widths and data files (issue 16, items 2, 3, 4 and 6).

- Item 2: a run whose estimated memory exceeds the free memory is refused before anything is
  allocated, with one line naming the field, the estimate and the available memory; fields are
  capped by their meaning (train.top_k by the singular values there are, train.record_points);
  the recording schedule is never made from more entries than it has.
- Item 4: every integer is checked against the width it is used at (PRNGKey uint32, int32 step
  counters, int64 in parquet), before running.
- Item 3: a data file's content hash is part of the run id: a file that changes is re-run (with a
  note), never returned stale; configs without a data file keep their ids.
- Item 6: CSV files with random bytes, NaN / inf cells or a non-string path are one-line errors
  naming the file (row and column), raised before the sweep folder exists.

Every failing case is a ConfigError (CLI: exit code 2, one ``error:`` line) within seconds, and
nothing is written. Independent references: the old (materializing) schedule functions written out
here, numpy's own parsing of the tables, hashlib over the file bytes, the file system.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import trajlab
from trajlab import registry
from trajlab.config import (
    MAX_RECORD_POINTS,
    FlowConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    TrainConfig,
    from_flat,
    replace_dotted,
    run_id,
    to_flat,
)
from trajlab.engine import memory
from trajlab.engine.memory import Available
from trajlab.engine.schedule import linear_schedule, log_schedule, recording_steps, schedule_length
from trajlab.errors import ConfigError, PluginError, TrajlabError
from trajlab.problems import load_csv
from trajlab.sweep import run_sweep
from helpers import invoke

GIB = 2**30
#: The machine these tests pretend to run on: 4 GiB free, so the outcome does not depend on the host.
SMALL_MACHINE = Available(4 * GIB, "available (test)")
FAST = settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


@pytest.fixture
def small_machine(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: SMALL_MACHINE)
    monkeypatch.delenv("TRAJLAB_MEMORY_CHECK", raising=False)


def error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def tiny_completion(**updates) -> RunConfig:
    base = {
        "problem.m": 6, "problem.n": 5, "problem.rank": 2, "problem.observations": 20, "model.depth": 2,
        "model.scale": 0.1, "optimizer.name": "gd", "optimizer.lr": 0.05, "train.max_steps": 20,
        "train.record_points": 5,
    }
    return replace_dotted(RunConfig(), {**base, **updates})


def csv_regression(path, **updates) -> RunConfig:
    base = {
        "problem.kind": "regression", "problem.dataset": "csv", "problem.path": str(path), "problem.m": 1,
        "problem.n": 3, "problem.observations": 20, "model.depth": 2, "model.width": 2, "model.scale": 0.1,
        "optimizer.name": "gd", "optimizer.lr": 0.01, "train.max_steps": 10, "train.record_points": 4,
        "metrics": ["train_loss"],
    }
    return replace_dotted(RunConfig(), {**base, **updates})


def write_table(path: Path, table: np.ndarray, header: bool = True) -> Path:
    lines = [",".join(f"c{i}" for i in range(table.shape[1]))] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- item 2: memory estimated before anything is allocated -------------------------------------


HUGE = {
    "model.width": (st.integers(2 * 10**5, 10**6).map(lambda w: {"model.width": w}), "model.width"),
    "problem.m": (st.integers(2 * 10**5, 10**6).map(lambda m: {"problem.m": m}), "problem.m"),
    "sensing": (
        st.integers(10**8, 10**10).map(lambda o: {"problem.kind": "sensing", "problem.m": 100, "problem.n": 100,
                                                  "problem.observations": o}),
        "problem.observations",
    ),
    "record_every": (
        st.integers(10**9, 2**31 - 2).map(lambda s: {"train.record": "linear", "train.record_every": 1,
                                                     "train.max_steps": s}),
        "train.record_every",
    ),
    "lanczos": (
        st.integers(10**8, 2**31 - 1).map(lambda i: {"metrics": ["train_loss", "sharpness"], "problem.m": 1000,
                                                     "problem.n": 1000, "train.lanczos_iterations": i}),
        "train.lanczos_iterations",
    ),
}


@FAST
@given(case=st.sampled_from(sorted(HUGE)), runs=st.integers(1, 64), data=st.data())
def test_sizes_beyond_memory_are_refused_by_run_sweep_before_anything_is_written(tmp_path_factory, case, runs, data):
    """A huge width, problem.m, number of sensing measurements, record_every = 1 with max_steps
    ~ 2^31, 10^8+ Lanczos iterations: one line naming the field, the estimate and the available
    memory, within seconds; no folder."""
    strategy, field = HUGE[case]
    config = tiny_completion(**data.draw(strategy))
    configs = [dataclasses.replace(config, seed=s) for s in range(runs)]
    folder = tmp_path_factory.mktemp("sweep") / "out"
    memory.available_memory, saved = (lambda: SMALL_MACHINE), memory.available_memory
    try:
        start = time.perf_counter()
        with pytest.raises(ConfigError) as raised:
            run_sweep(configs, folder, show_progress=False)
        assert time.perf_counter() - start < 20
    finally:
        memory.available_memory = saved
    message = one_line(raised.value)
    assert message.startswith("memory: ") and field in message, message
    assert "4.0 GiB available (test)" in message and "needs about" in message
    assert not folder.exists()


def test_the_estimate_names_the_field_and_scales_with_it():
    base = tiny_completion(**{"problem.m": 200, "problem.n": 200, "problem.rank": 2})
    small = memory.estimate(base, 1)
    wide = memory.estimate(replace_dotted(base, {"model.width": 20_000}), 1)
    # two 200 x 20000 float32 layers, with at least the state copies the engine keeps
    assert wide.parameters == 4 * 2 * 200 * 20_000
    assert wide.per_run >= 5 * wide.parameters > small.per_run
    assert memory.estimate(base, 10).device - memory.estimate(base, 1).device == 9 * small.per_run
    x64 = memory.estimate(replace_dotted(base, {"train.x64": True}), 1)
    assert x64.parameters == 2 * small.parameters


def test_every_preset_fits_a_small_machine(small_machine):
    """The estimates do not refuse the published sweeps: every preset's batches (full and quick)
    stay under 4 GiB."""
    from trajlab.sweep.grid import group_batches

    for name in trajlab.registered_presets():
        for quick in (False, True):
            batches = group_batches(trajlab.grid(name, quick=quick), 512)
            memory.check_memory([(batch[0], len(batch)) for batch in batches], SMALL_MACHINE)


def test_direct_engine_use_is_checked_too(small_machine):
    from trajlab.engine import run_configs

    config = tiny_completion(**{"model.width": 10**6})
    with pytest.raises(ConfigError, match=r"^memory: model.width=1000000 needs about"):
        run_configs([config])


def test_gpu_free_memory_is_compared_with_what_lives_on_the_device(monkeypatch):
    config = tiny_completion(**{"model.width": 20_000, "problem.m": 200, "problem.n": 200})
    needed = memory.estimate(config, 1)
    gpu = Available(10**15, "available (test)", needed.device // 2, "free on a test GPU (memory_stats)")
    with pytest.raises(ConfigError, match="free on a test GPU"):
        memory.check_memory([(config, 1)], gpu)
    memory.check_memory([(config, 1)], Available(10**15, "available (test)", needed.device * 2, "gpu"))


def test_the_check_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("TRAJLAB_MEMORY_CHECK", "0")
    memory.check_memory([(tiny_completion(**{"model.width": 10**6}), 4)], Available(1, "available (test)"))


def test_available_memory_reads_meminfo():
    available = memory.available_memory()
    meminfo = memory._meminfo_available()
    if meminfo is not None:
        assert 0 < available.host <= meminfo


def test_cli_refuses_a_huge_width_in_seconds_and_writes_nothing(tmp_path, small_machine):
    out = tmp_path / "out"
    start = time.perf_counter()
    result = invoke("run", "dmf-completion", "--quick", "--set", "model.depth=2", "--set", "model.width=1000000",
                    "--out", out, "--no-progress")
    line = error_line(result)
    assert time.perf_counter() - start < 30
    assert "model.width=1000000" in line and "available" in line
    assert not out.exists()


def test_plugins_without_hooks_get_the_generic_estimate_and_with_hooks_their_own(small_machine):
    """A family without nbytes: its parameters by jax.eval_shape of init (nothing allocated),
    counted with the engine's copies; the data of a problem without nbytes is unknown (a note)."""
    import jax.numpy as jnp

    @dataclasses.dataclass(frozen=True)
    class BigConfig:
        size: int = 4
        scale: float = 1.0

    @dataclasses.dataclass(frozen=True)
    class NoDataConfig:
        seed: int = 0

    def data(section):
        return {"x": np.ones(3)}

    def build(config):
        size = config.model.size
        return registry.FamilyParts(
            init=lambda key, scale: {"w": scale * jnp.ones((size, size))},
            loss=lambda params, data: jnp.sum(params["w"] ** 2),
        )

    registry.register_problem(registry.Problem("memtest_problem", NoDataConfig, data), replace=True)
    registry.register_family(registry.Family("memtest_family", BigConfig, ("memtest_problem",), build), replace=True)
    try:
        config = replace_dotted(RunConfig(), {"problem.kind": "memtest_problem", "model.kind": "memtest_family",
                                              "optimizer.name": "gd", "train.max_steps": 10})
        small = memory.estimate(config, 1)
        assert small.parameters == 4 * 16
        assert any("problem.kind=memtest_problem" in note for note in small.notes)
        assert any("model.kind=memtest_family" in note for note in small.notes)
        big = replace_dotted(config, {"model.size": 10**6})  # 10^12 floats: traced, never allocated
        with pytest.raises(ConfigError, match=r"^memory: model.size=1000000 needs about \d"):
            memory.check_memory([(big, 1)], SMALL_MACHINE)
        # With hooks: the family's own number is used (here: a constant far above the machine).
        registry.register_family(
            registry.Family("memtest_family", BigConfig, ("memtest_problem",), build, nbytes=lambda c: 2**50),
            replace=True,
        )
        assert memory.estimate(config, 1).per_run >= 2**50
        with pytest.raises(PluginError, match="nbytes must be a function"):
            registry.register_family(registry.Family("memtest_bad", BigConfig, ("memtest_problem",), build, nbytes=3))
    finally:
        registry.unregister("memtest_family")
        registry.unregister("memtest_bad")
        registry.unregister("memtest_problem", kind="problem")


@FAST
@given(top_k=st.integers(11, 10**9), m=st.integers(1, 10), n=st.integers(1, 10))
def test_top_k_is_capped_by_the_singular_values_of_the_end_to_end_matrix(top_k, m, n):
    """train.top_k up to max(min(m, n), 10) (the default top_k stays valid on small problems, zero
    padded); beyond, a one-line error before anything runs (100000 ran 112 s, then bad_alloc)."""
    assume(top_k > max(min(m, n), 10))
    with pytest.raises(ConfigError) as raised:
        tiny_completion(**{"problem.m": m, "problem.n": n, "problem.rank": 1, "problem.observations": 1,
                           "train.top_k": top_k})
    assert one_line(raised.value).startswith("train.top_k must be an integer in [1, max(min(m, n), 10)]")
    tiny_completion(**{"problem.m": m, "problem.n": n, "problem.rank": 1, "problem.observations": 1,
                       "train.top_k": max(min(m, n), 10)})


def test_top_k_of_the_tensor_and_network_families_is_capped_by_their_width():
    tensor = {"problem.kind": "tensor_completion", "problem.dim": 3, "problem.order": 3, "problem.rank": 1,
              "problem.observations": 10, "model.kind": "cp", "model.width": 20}
    replace_dotted(RunConfig(), {**tensor, "train.top_k": 20})
    with pytest.raises(ConfigError, match=r"^train.top_k must be .* for model.kind=cp"):
        replace_dotted(RunConfig(), {**tensor, "train.top_k": 21})
    network = {"problem.kind": "classification", "model.kind": "mlp", "model.width": 4}
    replace_dotted(RunConfig(), {**network, "train.top_k": 10})
    with pytest.raises(ConfigError, match=r"^train.top_k must be .* for model.kind=mlp"):
        replace_dotted(RunConfig(), {**network, "train.top_k": 11})


def test_record_points_are_capped():
    TrainConfig(record_points=MAX_RECORD_POINTS)
    with pytest.raises(ConfigError, match=r"^train.record_points must be an integer in \[1, 1000000\]"):
        TrainConfig(record_points=MAX_RECORD_POINTS + 1)


def _old_log_schedule(max_steps, points):
    steps = np.unique(np.round(np.logspace(0, np.log10(max_steps), points)).astype(np.int64))
    return np.unique(np.concatenate([[0], steps, [max_steps]]))


def _old_linear_schedule(max_steps, every):
    return np.unique(np.concatenate([np.arange(0, max_steps + 1, every), [max_steps]]))


@settings(deadline=None, max_examples=60)
@given(max_steps=st.integers(1, 5000), points=st.integers(1, 40_000), every=st.integers(1, 6000))
def test_schedules_are_the_same_steps_made_without_materializing_more_than_they_hold(max_steps, points, every):
    np.testing.assert_array_equal(log_schedule(max_steps, points), _old_log_schedule(max_steps, points))
    np.testing.assert_array_equal(linear_schedule(max_steps, every), _old_linear_schedule(max_steps, every))
    for record in ("log", "linear"):
        train = TrainConfig(max_steps=max_steps, record=record, record_points=points, record_every=every)
        assert len(recording_steps(train)) <= schedule_length(train)


def test_a_dense_log_schedule_is_made_from_its_steps_not_its_points():
    """10^6 points over 1000 steps: every step, made without 10^6 floats (fast and exact)."""
    start = time.perf_counter()
    steps = log_schedule(1000, MAX_RECORD_POINTS)
    np.testing.assert_array_equal(steps, np.arange(1001))
    assert time.perf_counter() - start < 1
    assert schedule_length(TrainConfig(record="linear", record_every=1, max_steps=2**31 - 2)) == 2**31


# --- item 4: integers checked against the width they are used at -------------------------------


INT_FIELDS = {
    "seed": (2**32, "seed"),
    "train.max_steps": (2**31 - 1, "train.max_steps"),
    "train.record_every": (2**31, "train.record_every"),
    "train.top_k": (2**31, "train.top_k"),
    "train.lanczos_iterations": (2**31, "train.lanczos_iterations"),
    "train.hutchinson_probes": (2**31, "train.hutchinson_probes"),
    "flow.max_solver_steps": (2**31, "flow.max_solver_steps"),
    "optimizer.batch_size": (2**31, "optimizer.batch_size"),
    "problem.seed": (2**63, "problem.seed"),
}


@FAST
@given(name=st.sampled_from(sorted(INT_FIELDS)), excess=st.integers(0, 2**80))
def test_integers_beyond_their_width_are_one_line_errors(name, excess):
    """seed < 2^32 (PRNGKey uint32), step counts < 2^31 (int32 in the jitted loop), problem.seed <
    2^63 (parquet int64): a value above is refused when the config is made, naming the field."""
    limit, field = INT_FIELDS[name]
    with pytest.raises(ConfigError) as raised:
        tiny_completion(**{name: limit + excess})
    assert one_line(raised.value).startswith(f"{field} must be")
    with pytest.raises(ConfigError):
        tiny_completion(**{name: -1 - excess})


@FAST
@given(kind=st.sampled_from(["completion", "sensing", "regression", "whitened", "tensor_completion",
                             "tensor_sensing", "matricized_tensor_completion", "classification", "teacher_student"]),
       seed=st.integers(2**63, 2**100))
def test_problem_seed_beyond_int64_is_refused_for_every_problem(kind, seed):
    with pytest.raises(ConfigError, match=r"^problem.seed must be"):
        ProblemConfig(kind, seed=seed)


def test_largest_valid_integers_are_accepted():
    config = tiny_completion(**{"seed": 2**32 - 1, "problem.seed": 2**63 - 1, "train.max_steps": 2**31 - 2})
    assert run_id(config)
    assert to_flat(config)["problem.seed"] == 2**63 - 1


def test_the_largest_valid_integers_run_and_are_stored_exactly(tmp_path):
    """The other side of the bounds: seed 2^32 - 1, problem.seed 2^63 - 1 and max_steps 2^31 - 2 run
    (the loss is below tol at once) and come back from parquet unchanged."""
    config = tiny_completion(**{"seed": 2**32 - 1, "problem.seed": 2**63 - 1, "train.max_steps": 2**31 - 2,
                                "train.tol": 1e9})
    data = run_sweep([config], tmp_path / "sweep", show_progress=False)
    row = data.runs.iloc[0]
    assert (int(row["seed"]), int(row["problem.seed"]), int(row["train.max_steps"])) == (2**32 - 1, 2**63 - 1, 2**31 - 2)
    assert row["status"] == "done" and int(row["steps"]) == 0


def test_integer_fields_reject_bools_floats_and_strings_when_made_directly():
    with pytest.raises(ConfigError, match=r"^train.max_steps must be an integer"):
        TrainConfig(max_steps=1.5)
    with pytest.raises(ConfigError, match=r"^seed must be"):
        RunConfig(seed=True)
    with pytest.raises(ConfigError, match=r"^flow.max_solver_steps must be an integer"):
        FlowConfig(max_solver_steps="10")
    with pytest.raises(ConfigError, match=r"^optimizer.batch_size must be an integer"):
        OptimizerConfig(batch_size=2.0)


def test_a_plugin_section_gets_the_int64_check_of_its_integer_fields():
    """A user's section declares ``count: int`` and checks nothing: 2^63 is still refused (parquet
    stores it as int64), naming the field."""
    import jax.numpy as jnp

    @dataclasses.dataclass(frozen=True)
    class WideConfig:
        count: int = 3

    @dataclasses.dataclass(frozen=True)
    class WideModel:
        scale: float = 1.0

    def build(config):
        return registry.FamilyParts(init=lambda key, scale: {"w": scale * jnp.ones(2)},
                                    loss=lambda params, data: jnp.sum(params["w"] ** 2))

    registry.register_problem(registry.Problem("widths_problem", WideConfig, lambda s: {"x": np.ones(2)}), replace=True)
    registry.register_family(registry.Family("widths_family", WideModel, ("widths_problem",), build), replace=True)
    try:
        kinds = {"problem.kind": "widths_problem", "model.kind": "widths_family"}
        assert replace_dotted(RunConfig(), {**kinds, "problem.count": 2**63 - 1}).problem.count == 2**63 - 1
        with pytest.raises(ConfigError, match=r"^problem.count must be an integer in \[-2\^63, 2\^63\)"):
            replace_dotted(RunConfig(), {**kinds, "problem.count": 2**63})
    finally:
        registry.unregister("widths_family")
        registry.unregister("widths_problem", kind="problem")


@pytest.mark.parametrize("assignment", ["seed=4294967296", "train.max_steps=3000000000",
                                        "problem.seed=9223372036854775808"])
def test_cli_integer_overflow_is_exit_2_and_writes_nothing(tmp_path, assignment):
    out = tmp_path / "out"
    result = invoke("run", "dmf-completion", "--quick", "--set", assignment, "--out", out, "--no-progress")
    assert assignment.split("=")[0] in error_line(result)
    assert not out.exists()


# --- item 3: a data file that changes gives new runs, not stale ones ----------------------------


tables = st.integers(4, 12).flatmap(
    lambda rows: st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=4 * rows, max_size=4 * rows)
    .map(lambda values, rows=rows: np.asarray(values, float).reshape(rows, 4))
)


@FAST
@given(first=tables, second=tables)
def test_the_run_id_follows_the_content_of_the_data_file(tmp_path_factory, first, second):
    folder = tmp_path_factory.mktemp("data")
    path = write_table(folder / "data.csv", first)
    config = csv_regression(path, **{"problem.observations": 4})
    before, digest = run_id(config), to_flat(config)["problem.data_sha256"]
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    write_table(path, second)
    after = run_id(config)
    assert (after == before) == (path.read_bytes() == write_table(folder / "copy.csv", first).read_bytes())
    assert to_flat(config)["problem.data_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_configs_without_a_data_file_keep_their_ids():
    assert run_id(RunConfig()) == "975387415281e092"
    for name in trajlab.registered_presets():
        for config in trajlab.grid(name, quick=True)[:3]:
            assert "problem.data_sha256" not in to_flat(config)


def test_a_changed_file_is_rerun_with_a_note_and_the_old_runs_stay(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = write_table(tmp_path / "data.csv", rng.standard_normal((30, 4)))
    config = csv_regression(path)
    out = tmp_path / "sweep"
    first = run_sweep([config], out, show_progress=False)
    assert len(first.runs) == 1
    again = run_sweep([config], out, show_progress=False)  # unchanged: resumed, nothing re-run
    assert len(again.runs) == 1 and "changed" not in capsys.readouterr().err
    write_table(path, rng.standard_normal((30, 4)))
    data = run_sweep([config], out, show_progress=False)
    note = capsys.readouterr().err
    assert "note: the data file" in note and "data.csv" in note and "re-run" in note
    assert len(data.runs) == 2  # the new run beside the old one
    assert set(data.runs["problem.data_sha256"]) == {
        first.runs["problem.data_sha256"].iloc[0], hashlib.sha256(path.read_bytes()).hexdigest()
    }
    assert data.runs["final.train_loss"].nunique() == 2


def test_a_config_recorded_with_other_data_is_refused_when_rebuilt(tmp_path):
    path = write_table(tmp_path / "data.csv", np.arange(40.0).reshape(10, 4))
    flat = to_flat(csv_regression(path))
    assert from_flat(flat) == csv_regression(path)
    path.write_text(path.read_text() + "1,2,3,4\n")
    with pytest.raises(ConfigError, match=r"^problem.data_sha256: the data file .*data.csv' changed"):
        from_flat(flat)


# --- item 6: CSV files checked completely before anything is written ----------------------------


@FAST
@given(content=st.binary(min_size=0, max_size=400))
def test_random_bytes_are_a_one_line_error_or_a_finite_table(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("bytes") / "data.csv"
    path.write_bytes(content)
    try:
        features, target = load_csv(path)
    except ConfigError as error:
        assert one_line(error).startswith("problem.path: ") and str(path) in str(error)
        return
    assert np.all(np.isfinite(features)) and np.all(np.isfinite(target))


@FAST
@given(rows=st.integers(2, 8), columns=st.integers(2, 5), data=st.data(),
       bad=st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999"]), header=st.booleans())
def test_nan_and_inf_cells_name_the_file_row_and_column(tmp_path_factory, rows, columns, data, bad, header):
    row = data.draw(st.integers(0, rows - 1))
    column = data.draw(st.integers(0, columns - 1))
    cells = [[str(float(i * columns + j)) for j in range(columns)] for i in range(rows)]
    cells[row][column] = bad
    lines = ([",".join(f"x{j}" for j in range(columns))] if header else []) + [",".join(r) for r in cells]
    path = tmp_path_factory.mktemp("cells") / "cells.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as raised:
        load_csv(path)
    message = one_line(raised.value)
    assert str(path) in message
    assert f"data row {row + 1} (line {row + 1 + header}), column {column + 1}" in message


@pytest.mark.parametrize("path", [123, 1.5, True, ["a.csv"]])
def test_a_non_string_path_is_a_config_error(path):
    with pytest.raises(ConfigError, match=r"^problem.path must be a string"):
        ProblemConfig("regression", dataset="csv", path=path)
    with pytest.raises(ConfigError, match=r"^problem.path must be a string"):
        replace_dotted(RunConfig(), {"problem.kind": "regression", "problem.dataset": "csv", "problem.path": path})
    with pytest.raises(ConfigError, match=r"^problem.path must be a string"):
        load_csv(path)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x81\x82", b"a,b,c\n1,2,3\n4,nan,6\n", b"a,b\n1,inf\n",
                                     b"1,2\n3\n", b"", b"only,a,header\n"])
def test_run_sweep_checks_the_data_file_before_creating_the_folder(tmp_path, content):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    out = tmp_path / "sweep"
    with pytest.raises(TrajlabError) as raised:
        run_sweep([csv_regression(path, **{"problem.n": 2, "problem.observations": 1})], out, show_progress=False)
    assert one_line(raised.value).startswith("problem.path: ")
    assert not out.exists()


@pytest.mark.parametrize("make", ["missing", "bytes", "nan", "number"])
def test_cli_bad_data_file_is_exit_2_and_leaves_no_folder(tmp_path, make):
    path = tmp_path / "data.csv"
    if make == "bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif make == "nan":
        path.write_text("a,b,c\n1,2,3\n4,nan,6\n")
    value = "123" if make == "number" else (path if make != "missing" else tmp_path / "BAD")
    out = tmp_path / "out"
    result = invoke("run", "acceleration-lp", "--set", "problem.dataset=csv", "--set", f"problem.path={value}",
                    "--out", out, "--no-progress")
    line = error_line(result)
    assert "problem.path" in line
    assert not out.exists()
    if make == "nan":
        assert "row 2" in line and "column 2" in line and "'b'" in line


def test_a_valid_file_runs_and_the_hash_is_stored(tmp_path):
    path = write_table(tmp_path / "data.csv", np.random.default_rng(3).standard_normal((25, 4)))
    data = run_sweep([csv_regression(path)], tmp_path / "sweep", show_progress=False)
    assert list(data.runs["problem.data_sha256"]) == [hashlib.sha256(path.read_bytes()).hexdigest()]
    assert math.isfinite(float(data.runs["final.train_loss"].iloc[0]))

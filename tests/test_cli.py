"""Tests of the command line: list / config / run / show / plot, bad inputs, and resume after SIGKILL.

Independent references: the dataclass fields of the config walked here, hand-written expected
values of the tiny settings, the file system (bytes, mtimes, PNG/SVG signatures), the float32
grid (values of a float32 run are exactly representable in float32), the spectral identities
between singular values and the norms, an own cvxpy formulation of nuclear-norm minimization,
and an uninterrupted run of the same command for the resume test.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trajlab import cli
from trajlab.config import RunConfig
from helpers import invoke

TRAJLAB = str(Path(sys.executable).with_name("trajlab"))
M, N, RANK, OBS = 8, 6, 2, 30
TINY = [
    "--set", f"problem.m={M}",
    "--set", f"problem.n={N}",
    "--set", f"problem.rank={RANK}",
    "--set", f"problem.observations={OBS}",
    "--set", "train.max_steps=300",
    "--set", "train.record_points=10",
    "--set", "model.scale=0.1",
    "--set", "optimizer.lr=0.01",
]
STATUSES = {"done", "max_steps", "diverged"}
PRESETS = ("dmf-completion", "dmf-sensing", "dmf-dynamics")


def _all_fields(config=None, prefix="") -> list[str]:
    """The fields of the default config (deep linear on completion): the problem and model sections
    start with their kind and hold only that kind's fields."""
    config = RunConfig() if config is None else config
    names = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            if not prefix and f.name in ("problem", "model"):
                names.append(f"{f.name}.kind")
            names.extend(_all_fields(value, prefix + f.name + "."))
        else:
            names.append(prefix + f.name)
    return names


FIELDS = _all_fields()


@pytest.fixture(scope="module", autouse=True)
def wide_console():
    """Rich tables are cut to the console width; make it wide enough to show whole values."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.console, "width", 300)
        yield


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- the main tiny completion sweep, shared by the tests below ---------------------------------


@pytest.fixture(scope="module")
def completion(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "completion"
    result = invoke(
        "run", "dmf-completion", *TINY,
        "--set", "model.depth=[1,2]",
        "--set", "optimizer.lr=[0.01,0.02]",
        "--set", "train.top_k=6",
        "--no-figures", "--no-progress", "--out", out,
    )
    assert result.exit_code == 0, result.output + result.stderr
    return out, result


def test_list_shows_the_three_presets_with_descriptions():
    result = invoke("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in PRESETS:
        line = next((l for l in lines if l.split() and l.split()[0] == name), None)
        assert line is not None, f"{name} not listed:\n{result.stdout}"
        assert len(line.split()) > 3, f"{name} has no description: {line!r}"
    text = " ".join(result.stdout.split()).lower()
    assert "nuclear norm" in text and "sensing" in text and "singular values" in text


def test_config_prints_every_field_and_the_sweep():
    result = invoke("config", "dmf-completion")
    assert result.exit_code == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["preset"] == "dmf-completion"
    assert list(document["config"]) == FIELDS
    assert (document["config"]["problem.m"], document["config"]["problem.n"]) == (100, 100)
    assert document["config"]["problem.kind"] == "completion"
    assert document["sweep"]["model.depth"] == [1, 2, 3, 4]
    assert document["runs"] == int(np.prod([len(v) for v in document["sweep"].values()]))


def test_config_shows_set_changes():
    result = invoke(
        "config", "dmf-completion",
        "--set", "problem.m=8", "--set", "problem.observations=30",
        "--set", "optimizer.name=adam", "--set", "model.depth=[1,2]", "--set", "optimizer.lr=1e-2",
        "--x64",
    )
    assert result.exit_code == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    config = document["config"]
    assert list(config) == FIELDS
    assert config["problem.m"] == 8 and config["problem.observations"] == 30
    assert config["optimizer.name"] == "adam"
    assert config["optimizer.lr"] == pytest.approx(0.01)
    assert config["train.x64"] is True
    assert document["sweep"]["model.depth"] == [1, 2]
    assert "optimizer.lr" not in document["sweep"]  # a fixed value replaces the preset's axis
    assert "problem.observations" not in document["sweep"]
    assert document["runs"] == int(np.prod([len(v) for v in document["sweep"].values()]))


def test_config_quick_shrinks_the_preset():
    full = yaml.safe_load(invoke("config", "dmf-completion").stdout)
    quick = yaml.safe_load(invoke("config", "dmf-completion", "--quick").stdout)
    assert quick["config"]["train.max_steps"] < full["config"]["train.max_steps"]
    assert quick["runs"] < full["runs"]


def test_run_writes_manifest_runs_and_trajectories(completion):
    out, result = completion
    assert sorted(os.listdir(out)) == ["baselines.parquet", "manifest.json", "runs.parquet", "trajectories.parquet"]
    runs = pd.read_parquet(out / "runs.parquet")
    trajectories = pd.read_parquet(out / "trajectories.parquet")

    # One run per point of depth [1, 2] x lr [0.01, 0.02]; the preset's own axes are replaced.
    assert len(runs) == 4
    assert sorted(zip(runs["model.depth"], runs["optimizer.lr"])) == [(1, 0.01), (1, 0.02), (2, 0.01), (2, 0.02)]
    assert set(runs["model.scale"]) == {0.1}
    assert set(runs["problem.m"]) == {M} and set(runs["problem.observations"]) == {OBS}
    assert runs["run_id"].is_unique

    sv = [f"sv_{i}" for i in range(6)]
    for name in [*FIELDS, "run_id", "status", "steps", "wall_s", *(f"final.{c}" for c in sv)]:
        assert name in runs.columns, name
    for metric in ("train_loss", "test_error", "effective_rank", "nuclear_norm", "frobenius_norm", "balancedness"):
        assert f"final.{metric}" in runs.columns
    assert "final.sv_6" not in runs.columns  # train.top_k = 6
    assert set(runs["status"]) <= STATUSES
    assert ((runs["steps"] >= 0) & (runs["steps"] <= 300)).all()
    assert ((runs["status"] == "max_steps") == (runs["steps"] == 300)).all()
    assert (runs["wall_s"] > 0).all()

    assert {"run_id", "step", "t", "train_loss", "test_error", *sv} <= set(trajectories.columns)
    assert "sv_6" not in trajectories.columns
    assert set(trajectories["run_id"]) == set(runs["run_id"])
    lr = trajectories["run_id"].map(runs.set_index("run_id")["optimizer.lr"])
    np.testing.assert_allclose(trajectories["t"], trajectories["step"] * lr, rtol=1e-12)
    for run_id, group in trajectories.groupby("run_id"):
        steps = group["step"].to_numpy()
        assert steps[0] == 0 and (np.diff(steps) > 0).all()
        row = runs.set_index("run_id").loc[run_id]
        assert steps[-1] == row["steps"]
        last = group.iloc[-1]
        for metric in ("train_loss", "test_error", "nuclear_norm", *sv):
            assert last[metric] == pytest.approx(row[f"final.{metric}"], rel=1e-6, abs=1e-12), metric


def test_run_metrics_agree_with_their_singular_values(completion):
    out, _ = completion
    trajectories = pd.read_parquet(out / "trajectories.parquet")
    sigma = trajectories[[f"sv_{i}" for i in range(6)]].to_numpy()  # top_k = min(m, n): all of them
    assert (sigma >= 0).all() and (np.diff(sigma, axis=1) <= 1e-6 * sigma[:, :1]).all()
    np.testing.assert_allclose(trajectories["nuclear_norm"], sigma.sum(1), rtol=1e-4)
    np.testing.assert_allclose(trajectories["frobenius_norm"], np.sqrt((sigma**2).sum(1)), rtol=1e-4)
    p = sigma / sigma.sum(1, keepdims=True)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    np.testing.assert_allclose(trajectories["effective_rank"], np.exp(entropy), rtol=1e-3)


def test_run_manifest_holds_configs_by_run_id(completion):
    import json

    out, _ = completion
    manifest = json.loads((out / "manifest.json").read_text())
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(manifest["configs"]) == set(runs["run_id"])
    for _, row in runs.iterrows():
        config = manifest["configs"][row["run_id"]]
        assert sorted(config) == sorted(FIELDS)
        assert config["model.depth"] == row["model.depth"]
        assert config["optimizer.lr"] == row["optimizer.lr"]
    assert manifest["presets"] == ["dmf-completion"]
    for key in ("versions", "git_commit", "device"):
        assert key in manifest
    assert manifest["versions"]["pandas"] == pd.__version__


def test_run_float32_by_default(completion):
    out, _ = completion
    runs = pd.read_parquet(out / "runs.parquet")
    assert not runs["train.x64"].any()
    values = pd.read_parquet(out / "trajectories.parquet")[["train_loss", "test_error", "sv_0"]].to_numpy()
    assert (values.astype(np.float32).astype(np.float64) == values).all()


def test_run_nuclear_norm_baseline_row(completion):
    import cvxpy as cp

    from trajlab.config import ProblemConfig
    from trajlab.problems.matrix import make_matrix_problem

    out, _ = completion
    baselines = pd.read_parquet(out / "baselines.parquet")
    assert len(baselines) == 1
    row = baselines.iloc[0]
    assert row["baseline"] == "nuclear_norm"
    assert (row["problem.m"], row["problem.n"], row["problem.observations"]) == (M, N, OBS)
    assert row["baseline_id"]
    # Own formulation: min ||X||_* subject to X agreeing with the observed entries.
    data = make_matrix_problem(ProblemConfig(kind="completion", m=M, n=N, rank=RANK, observations=OBS))
    x = cp.Variable((M, N))
    problem = cp.Problem(cp.Minimize(cp.normNuc(x)), [x[data.rows, data.cols] == data.values])
    problem.solve(solver="SCS", eps=1e-7)
    assert row["nuclear_norm"] == pytest.approx(problem.value, rel=2e-3)
    error = np.sum((x.value - data.target) ** 2) / np.sum(data.target**2)
    assert row["test_error"] == pytest.approx(error, rel=5e-2, abs=1e-3)


def test_run_prints_tables(completion):
    _, result = completion
    assert "summary by depth" in result.stdout
    assert "final values" in result.stdout


def test_show_prints_a_table(completion):
    out, _ = completion
    result = invoke("show", out)
    assert result.exit_code == 0, result.stderr
    assert "summary by depth" in result.stdout and "final values" in result.stdout
    runs = pd.read_parquet(out / "runs.parquet")
    summary, final = result.stdout.split("final values")
    # One body row per depth in the summary, one per run plus the baseline in the final values.
    assert len([l for l in summary.splitlines() if l.startswith("\u2502")]) == runs["model.depth"].nunique()
    assert len([l for l in final.splitlines() if l.startswith("\u2502")]) == len(runs) + 1
    assert "nuclear norm" in final
    for status in runs["status"]:
        assert status in final


def test_show_rejects_a_folder_that_is_not_a_sweep(tmp_path):
    result = invoke("show", tmp_path)
    assert result.exit_code == 2
    assert str(tmp_path) in _error_line(result)


def test_plot_writes_png_svg_and_final_table(completion, tmp_path):
    source, _ = completion
    out = tmp_path / "copy"
    shutil.copytree(source, out)
    result = invoke("plot", out)
    assert result.exit_code == 0, result.stderr
    figures = out / "figures"
    names = sorted(os.listdir(figures))
    assert names, "no figures written"
    stems = {Path(n).stem for n in names}
    assert {"solution", "train_loss"} <= stems
    for stem in stems:
        png, svg = figures / f"{stem}.png", figures / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in svg.read_bytes()[:2000]
    assert not [n for n in names if n.endswith(".tmp")]
    table = pd.read_csv(out / "final_table.csv")
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["run_id"]) <= set(table["run_id"].dropna())
    assert len(table) == len(runs) + 1  # + the nuclear-norm row


def test_run_x64_stores_float64(tmp_path):
    out = tmp_path / "x64"
    proc = subprocess.run(
        [TRAJLAB, "run", "dmf-dynamics", *TINY, "--set", "model.depth=2", "--x64", "--no-figures", "--no-progress",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 1 and runs["train.x64"].all()
    import json

    configs = json.loads((out / "manifest.json").read_text())["configs"]
    assert [c["train.x64"] for c in configs.values()] == [True]
    values = pd.read_parquet(out / "trajectories.parquet")[["train_loss", "test_error", "sv_0"]].to_numpy().ravel()
    values = values[values != 0]
    representable = values.astype(np.float32).astype(np.float64) == values
    assert representable.mean() < 0.5, "an --x64 run computed in float32"


def test_run_sensing_tiny(tmp_path):
    out = tmp_path / "sensing"
    result = invoke("run", "dmf-sensing", *TINY, "--set", "model.depth=[1,2]", "--no-figures", "--no-progress",
                    "--out", out)
    assert result.exit_code == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["model.depth"]) == [1, 2]
    assert set(runs["problem.kind"]) == {"sensing"}
    assert set(runs["status"]) <= STATUSES
    assert set(pd.read_parquet(out / "trajectories.parquet")["run_id"]) == set(runs["run_id"])
    baselines = pd.read_parquet(out / "baselines.parquet")
    assert list(baselines["baseline"]) == ["nuclear_norm"]
    assert list(baselines["problem.kind"]) == ["sensing"]
    assert np.isfinite(baselines["nuclear_norm"]).all()


def test_run_dynamics_tiny_with_figures(tmp_path):
    out = tmp_path / "dynamics"
    result = invoke("run", "dmf-dynamics", *TINY, "--set", "model.depth=[1,2]", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert sorted(runs["model.depth"]) == [1, 2]
    assert set(runs["optimizer.name"]) == {"gd"}
    assert set(runs["status"]) <= STATUSES
    assert not (out / "baselines.parquet").exists() or len(pd.read_parquet(out / "baselines.parquet")) == 0
    stems = {p.stem for p in (out / "figures").iterdir()}
    assert "singular_values" in stems
    for stem in stems:
        assert (out / "figures" / f"{stem}.png").exists() and (out / "figures" / f"{stem}.svg").exists()
    assert (out / "final_table.csv").exists()


# --- bad inputs: one line on stderr, exit code 2, nothing written -----------------------------

BAD_INPUTS = [
    # (extra args, preset, words the message must contain)
    (["--set", f"problem.observations={M * N + 1}"], "dmf-completion", ["problem.observations", str(M * N)]),
    (["--set", f"problem.rank={min(M, N) + 1}"], "dmf-completion", ["problem.rank", str(min(M, N))]),
    (["--set", "model.depth=0"], "dmf-completion", ["model.depth", "an integer in [1, 1000]"]),
    (["--set", "model.depth=[0,1]"], "dmf-completion", ["model.depth", "an integer in [1, 1000]"]),
    (["--set", "model.depth=abc"], "dmf-completion", ["model.depth", "integer"]),
    (["--set", "optimizer.lr=0"], "dmf-completion", ["optimizer.lr", "> 0"]),
    (["--set", "optimizer.lr=-1"], "dmf-completion", ["optimizer.lr", "> 0"]),
    (["--set", "model.scale=0"], "dmf-completion", ["model.scale", "> 0"]),
    (["--set", "model.scale=-0.1"], "dmf-completion", ["model.scale", "> 0"]),
    ([], "no-such-preset", ["no-such-preset", *PRESETS]),
    (["--set", "optimizer.name=sgdx"], "dmf-completion", ["optimizer.name", "sgdx", "normalized_gd", "adam"]),
    (["--set", "metrics=[train_loss,nope]"], "dmf-completion", ["metrics", "nope", "train_loss", "effective_rank"]),
    (["--set", "model.deepness=3"], "dmf-completion", ["model.deepness"]),
    (["--set", "model.depth"], "dmf-completion", ["model.depth", "key=value"]),
    (["--set", "model.depth="], "dmf-completion", ["model.depth", "key=value"]),
    (["--set", "=3"], "dmf-completion", ["key=value"]),
    (["--max-batch", "0"], "dmf-completion", ["--max-batch", ">= 1"]),
]


@pytest.mark.parametrize("extra, preset, words", BAD_INPUTS, ids=[" ".join(b[0]) or b[1] for b in BAD_INPUTS])
def test_bad_input_fails_with_one_line_and_writes_nothing(extra, preset, words, tmp_path, completion):
    fresh = tmp_path / "fresh" / "out"
    result = invoke("run", preset, *TINY, *extra, "--no-figures", "--no-progress", "--out", fresh)
    assert result.exit_code == 2, result.output + result.stderr
    line = _error_line(result)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert not (tmp_path / "fresh").exists()

    existing = tmp_path / "existing"
    shutil.copytree(completion[0], existing)
    before = _snapshot(existing)
    again = invoke("run", preset, *TINY, *extra, "--no-figures", "--no-progress", "--out", existing)
    assert again.exit_code == 2
    assert _error_line(again) == line.replace(str(fresh), str(existing))
    assert _snapshot(existing) == before


def test_unknown_field_message_points_to_the_fields(tmp_path):
    result = invoke("run", "dmf-completion", "--set", "model.deepness=3", "--out", tmp_path / "out")
    line = _error_line(result)
    assert "trajlab config" in line or "model.depth" in line


def _unwritable_out(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through any mode bits: use a regular file as the parent
        parent = tmp_path / "a-file"
        parent.write_text("keep me")
        return parent / "sub" / "out"
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o500)
    return parent / "out"


def test_unwritable_out_fails_and_writes_nothing(tmp_path):
    out = _unwritable_out(tmp_path)
    before = _snapshot(tmp_path)
    try:
        result = invoke("run", "dmf-completion", *TINY, "--no-figures", "--no-progress", "--out", out)
    finally:
        for p in tmp_path.iterdir():
            if p.is_dir():
                p.chmod(0o700)
    assert result.exit_code == 2
    line = _error_line(result)
    assert "--out" in line and str(out) in line
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["file", "file/sub"])
def test_out_under_or_at_a_regular_file_fails(tmp_path, target):
    regular = tmp_path / "file"
    regular.write_text("keep me")
    out = tmp_path / target
    result = invoke("run", "dmf-completion", *TINY, "--no-figures", "--no-progress", "--out", out)
    assert result.exit_code == 2
    assert "--out" in _error_line(result)
    assert sorted(os.listdir(tmp_path)) == ["file"] and regular.read_text() == "keep me"


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "dmf-completion", *TINY, "--set", "optimizer.lr=0"], ["optimizer.lr", "> 0"]),
    ],
)
def test_console_script_exit_code_and_one_line(tmp_path, args, words):
    out = tmp_path / "out"
    proc = subprocess.run([TRAJLAB, *args, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0]
    assert proc.stdout == ""
    assert not out.exists()


def test_console_script_report_of_a_missing_folder(tmp_path):
    """`trajlab report` of a folder that is not there: one line on stderr, exit code 2, nothing on
    stdout, nothing written (bad input to `reproduce`: tests/test_report_html.py)."""
    missing = tmp_path / "no-sweep-here"
    proc = subprocess.run([TRAJLAB, "report", str(missing)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], proc.stderr
    assert not missing.exists()


def test_report_of_the_completion_sweep(completion, tmp_path):
    """The report of the shared tiny completion sweep: its claims (measured against the nuclear-norm
    baseline), the figures, and the baseline row in the final values."""
    import re

    source, _ = completion
    page = tmp_path / "report.html"
    result = invoke("report", source, "--output", page)
    assert result.exit_code == 0, result.stderr
    assert "dmf-completion: claims:" in result.stdout
    text = page.read_text()
    assert "nuclear norm min." in text
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 2  # solution, train_loss
    verdicts = re.findall(r'<tr class="claim (holds|fails|unchecked)">', text)
    # 30 of 48 entries (nuclear norm min. recovers the matrix) and one init scale: no claim can
    # be checked on this sweep (the third needs 5000 observations), and the page says why.
    assert verdicts == ["unchecked", "unchecked", "unchecked"]
    assert "nuclear norm min. recovers the matrix" in text and "at two init scales or more" in text
    assert not list(Path(source).glob("report.html"))  # --output: nothing written into the sweep


# --- resume after SIGKILL ------------------------------------------------------------------------

RESUME = [
    "run", "dmf-dynamics", *TINY,
    "--set", "train.max_steps=2000",
    "--set", "model.depth=[1,2]",
    "--set", "seed=[0,1,2,3,4,5]",
    "--max-batch", "1", "--no-figures", "--no-progress",
]
RESUME_RUNS = 2 * 6


def _read_runs(folder: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(folder / "runs.parquet")
    except (FileNotFoundError, OSError, ValueError):
        return None


def _sorted(frame: pd.DataFrame, keys) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_sigkill_loses_no_finished_run_and_resume_matches_uninterrupted(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # The uninterrupted run of the same command goes on alongside (2 cores: it also slows the other).
    uninterrupted = subprocess.Popen(
        [TRAJLAB, *RESUME, "--out", str(reference)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([TRAJLAB, *RESUME, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 240
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                runs = _read_runs(killed)
                if runs is not None and len(runs) >= 1:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before it was killed; make it longer"

    from trajlab.store import load

    # Every finished run: those consolidated into runs.parquet and those of batch files written after
    # the poll saw runs.parquet and before the kill landed (a batch of 2000 tiny steps can be that fast).
    partial = load(killed)
    before = partial.runs
    assert 1 <= len(pd.read_parquet(killed / "runs.parquet")) <= len(before) < RESUME_RUNS
    assert set(partial.trajectories["run_id"]) == set(before["run_id"])

    resumed = subprocess.run([TRAJLAB, *RESUME, "--out", str(killed)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    _, uninterrupted_err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted_err.decode()

    runs = pd.read_parquet(killed / "runs.parquet")
    expected = pd.read_parquet(reference / "runs.parquet")
    assert len(runs) == RESUME_RUNS and runs["run_id"].is_unique

    # The runs finished before the kill were kept as they were, not run again.
    kept = runs.set_index("run_id").loc[before["run_id"]].reset_index()[before.columns]
    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True), check_dtype=False)

    # Same runs, statuses, steps and final metrics as the uninterrupted sweep.
    assert set(runs["run_id"]) == set(expected["run_id"])
    pd.testing.assert_frame_equal(
        _sorted(runs, ["run_id"]).drop(columns="wall_s"),
        _sorted(expected, ["run_id"]).drop(columns="wall_s")[runs.drop(columns="wall_s").columns],
        check_dtype=False, check_exact=False, rtol=1e-6, atol=1e-9,
    )
    traj = pd.read_parquet(killed / "trajectories.parquet")
    expected_traj = pd.read_parquet(reference / "trajectories.parquet")
    assert set(traj["run_id"]) == set(runs["run_id"])  # no rows of the killed batch left behind
    pd.testing.assert_frame_equal(
        _sorted(traj, ["run_id", "step"]),
        _sorted(expected_traj, ["run_id", "step"])[traj.columns],
        check_dtype=False, check_exact=False, rtol=1e-6, atol=1e-9,
    )

    # Re-running the completed command runs nothing: the stored runs are not rewritten.
    files = ("runs.parquet", "trajectories.parquet")
    stamps = {f: ((reference / f).read_bytes(), (reference / f).stat().st_mtime_ns) for f in files}
    again = invoke(*RESUME, "--out", reference)
    assert again.exit_code == 0, again.stderr
    assert {f: ((reference / f).read_bytes(), (reference / f).stat().st_mtime_ns) for f in files} == stamps


# --- executors: --executor / --scheduler / --workers / --slurm-* (issue 6) ---------------------

EXECUTOR_BAD_INPUTS = [
    (["--executor", "cluster"], ["--executor", "inprocess, processes, dask, slurm", "'cluster'"]),
    (["--scheduler", "tcp://127.0.0.1:8786"], ["--scheduler", "--executor dask only"]),
    (["--executor", "inprocess", "--workers", "2"], ["--workers", "--executor processes or dask only"]),
    (["--slurm-partition", "gpu"], ["--slurm-partition", "--executor slurm only"]),
    (["--executor", "dask", "--slurm-time", "30"], ["--slurm-time", "--executor slurm only"]),
    (["--slurm-gpus", "1"], ["--slurm-gpus", "--executor slurm only"]),
]


@pytest.mark.parametrize("extra, words", EXECUTOR_BAD_INPUTS, ids=[" ".join(b[0]) for b in EXECUTOR_BAD_INPUTS])
def test_bad_executor_options_fail_with_one_line_and_write_nothing(extra, words, tmp_path):
    out = tmp_path / "out"
    result = invoke("run", "dmf-completion", *TINY, *extra, "--no-figures", "--no-progress", "--out", out)
    assert result.exit_code == 2, result.output + result.stderr
    line = _error_line(result)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert not out.exists()


def test_bad_dask_worker_count_fails_with_one_line(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    result = invoke("run", "dmf-completion", *TINY, "--executor", "dask", "--workers", "0", "--out", out)
    assert result.exit_code == 2
    assert "--workers must be an integer >= 1, got 0" in _error_line(result)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, kind, settings",
    [
        ([], "InProcessExecutor", {}),
        (["--executor", "dask", "--workers", "3"], "DaskExecutor", {"n_workers": 3, "scheduler": None}),
        (["--executor", "dask", "--scheduler", "tcp://10.0.0.1:8786"], "DaskExecutor",
         {"scheduler": "tcp://10.0.0.1:8786", "n_workers": None}),
    ],
)
def test_run_hands_the_chosen_executor_to_the_sweep(extra, kind, settings, tmp_path, monkeypatch):
    """The options reach the executor given to run_sweep; nothing is started before the sweep needs it."""
    if kind == "DaskExecutor":
        pytest.importorskip("distributed")
    import trajlab.sweep
    from trajlab.store import SweepData

    seen = {}

    def fake_run_sweep(configs, folder, **kwargs):
        seen.update(kwargs, runs=len(configs), folder=folder)
        return SweepData(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {})

    monkeypatch.setattr(trajlab.sweep, "run_sweep", fake_run_sweep)
    out = tmp_path / "out"
    result = invoke("run", "dmf-completion", *TINY, *extra, "--no-figures", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    executor = seen["executor"]
    assert type(executor).__name__ == kind
    for name, value in settings.items():
        assert getattr(executor, name) == value, name
    if kind == "DaskExecutor":
        assert executor.client is None and executor.cluster is None  # never started, nothing left running
    assert seen["folder"] == out and seen["runs"] > 0

"""Helpers shared by the test modules (``from helpers import ...``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from trajlab import cli


def invoke(*args):
    """``trajlab ARGS...`` in this process (typer's CliRunner); every argument is passed as str."""
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def run_quick(tmp_path_factory, preset: str, *extra) -> Path:
    """Run ``trajlab run PRESET --quick`` (no progress, no figures) into a fresh folder and return
    it; fails the test with the command's output when the exit code is not 0."""
    out = tmp_path_factory.mktemp(preset) / "quick"
    result = invoke("run", preset, "--quick", "--no-progress", "--no-figures", "--out", out, *extra)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return out

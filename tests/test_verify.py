"""Tests of trajlab.verify: every numerical check of the theory passes, on numbers
that are not trivially passing (nonzero gaps, moving trajectories, nonzero drifts, a symmetric
control at depth 1)."""

from __future__ import annotations

import dataclasses

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from trajlab.errors import ConfigError  # noqa: E402
from trajlab.verify import CHECKS, CheckResult, format_results, run_checks  # noqa: E402

NAMES = [
    "balancedness_conservation",
    "factorized_vs_end_to_end_flow",
    "gd_to_gf_order",
    "singular_value_velocity",
    "end_to_end_not_gradient_field",
]


@pytest.fixture(scope="module")
def results() -> dict[str, CheckResult]:
    return {r.name: r for r in run_checks()}


def test_checks_are_registered_in_order():
    assert list(CHECKS) == NAMES
    for name, function in CHECKS.items():
        doc = function.__doc__ or ""
        assert "=" in doc, f"{name}: the docstring states the formula"
        assert any(source in doc for source in ("ACH18", "ACGH19", "ACHL19", "NeurIPS", "ICML", "ICLR")), name


def test_run_checks_returns_every_check(results):
    assert list(results) == NAMES
    for result in results.values():
        assert isinstance(result, CheckResult)
        assert result.claim and "\n" not in result.claim
        assert result.measured and all(isinstance(v, float) for v in result.measured.values())
        assert result.passed, f"{result.name}: {result.detail}"


def test_balancedness_conservation(results):
    m = results["balancedness_conservation"].measured
    assert m["gf_gap_norm"] > 0.1  # a non-balanced init: the conserved gaps are not zero
    assert m["gf_distance_moved"] > 0.1  # ... and the flow moves
    assert m["gf_relative_drift"] < 1e-8
    assert m["gd_drift_smallest_eta"] > 1e-6  # GD really drifts, far above round-off
    assert m["gd_drift_largest_eta"] > 10 * m["gd_drift_smallest_eta"]
    assert 1.7 <= m["gd_slope"] <= 2.3


def test_factorized_vs_end_to_end_flow(results):
    m = results["factorized_vs_end_to_end_flow"].measured
    assert m["gf_relative_motion"] > 0.1
    assert m["gf_max_relative_difference"] < 1e-6
    assert m["gd_difference_smallest_eta"] > 1e-4  # the discrete dynamics differ, at order eta
    assert 0.8 <= m["gd_slope"] <= 1.2


def test_gd_to_gf_order(results):
    m = results["gd_to_gf_order"].measured
    assert m["distance_smallest_eta"] > 1e-4
    assert m["distance_largest_eta"] > 4 * m["distance_smallest_eta"]
    assert 0.8 <= m["slope"] <= 1.2


def test_singular_value_velocity(results):
    m = results["singular_value_velocity"].measured
    assert m["max_abs_velocity"] > 0.1  # the singular values move
    assert m["min_relative_singular_gap"] > 1e-2  # and stay distinct (Theorem 3's premise)
    assert m["max_relative_error"] < 1e-3


def test_end_to_end_not_gradient_field(results):
    m = results["end_to_end_not_gradient_field"].measured
    assert m["asymmetry_depth_1"] < 1e-12  # the plain gradient: a symmetric Hessian
    assert m["asymmetry_depth_2"] > 1e-2
    assert m["asymmetry_depth_3"] > 1e-2


def test_run_checks_by_name_and_unknown_name():
    only = run_checks(["end_to_end_not_gradient_field"])
    assert [r.name for r in only] == ["end_to_end_not_gradient_field"]
    with pytest.raises(ConfigError, match="unknown check"):
        run_checks(["no_such_check"])


def test_check_result_is_frozen():
    result = CheckResult("x", "claim", {"a": 1.0}, True, "detail")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = False  # type: ignore[misc]


def test_format_results(results):
    failing = CheckResult("broken", "a claim that fails", {"error": 0.5}, False, "detail")
    table = format_results([*results.values(), failing])
    assert isinstance(table, Table)
    assert [c.header for c in table.columns] == ["check", "claim", "measured", "result"]
    assert table.row_count == len(NAMES) + 1
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    assert text.count("PASS") == len(NAMES) and text.count("FAIL") == 1
    assert "gd_slope" in text and "broken" in text


def test_end_to_end_runs_report_no_balancedness():
    """An end-to-end run trains W_e only: its balancedness is undefined (NaN), not a perfect 0."""
    import math

    from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
    from trajlab.engine import run_configs

    config = RunConfig(
        problem=ProblemConfig(kind="whitened", m=3, n=3),
        model=ModelConfig(depth=3, init="balanced_random", scale=0.5, parameterization="end_to_end"),
        optimizer=OptimizerConfig(name="gd", lr=0.01),
        train=TrainConfig(max_steps=5, tol=0, x64=True, record_points=2),
        metrics=("train_loss", "balancedness"),
    )
    result = run_configs([config])
    assert math.isnan(result.final["balancedness"][0])
    assert math.isfinite(result.final["train_loss"][0])

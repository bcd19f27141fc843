"""The strict saddle of 1/4 ||U U^T - M||^2 at U = 0 (``saddle_factorization``), perturbed GD, and the
``saddle-escape`` preset.

References: a plain numpy GD loop with the hand-written gradient (U U^T - M) U; the Hessian at 0 by
``jax.hessian`` against -M (x) I; the slope law against the exact escape time of the linear
recursion c_{t+1} = (1 + eta lambda_1) c_t.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import dataclasses  # noqa: E402
import math  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import trajlab  # noqa: E402
from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine.task import run_configs  # noqa: E402
from trajlab.families.ntk_networks import psd_target_data, saddle_loss  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.presets.saddle_escape import escape_figure, escape_step, predicted_slope, saddle_figures  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _config(**model):
    return RunConfig(
        problem=ProblemConfig("psd_target", dim=5, rank=2, top=1.0, ratio=0.5),
        model=ModelConfig("saddle_factorization", **{"width": 2, "start": "random", "scale": 1e-4, **model}),
        optimizer=OptimizerConfig(name="gd", lr=0.1),
        train=TrainConfig(max_steps=250, tol=0.0, record="linear", record_every=1, x64=True),
        metrics=("train_loss", "distance_to_saddle", "top_component"),
        seed=5,
    )


def test_origin_is_a_strict_saddle_with_hessian_minus_m():
    data = psd_target_data(ProblemConfig("psd_target", dim=4, rank=2, top=2.0, ratio=0.25))
    hessian = jax.hessian(lambda u: saddle_loss(u.reshape(4, 3), jnp.asarray(data.target)))(jnp.zeros(12))
    expected = -np.kron(data.target, np.eye(3))
    np.testing.assert_allclose(np.asarray(hessian), expected, atol=1e-14)
    assert np.linalg.eigvalsh(expected).min() == pytest.approx(-2.0)


def test_engine_escape_matches_a_numpy_gd_loop():
    config = _config()
    u = np.asarray(trajlab.init_params(config).factor, float)
    target = psd_target_data(config.problem).target
    norms = [np.linalg.norm(u)]
    for _ in range(250):
        u = u - 0.1 * (u @ u.T - target) @ u
        norms.append(np.linalg.norm(u))
    rows = run_configs([config]).trajectory
    np.testing.assert_allclose(rows["distance_to_saddle"], norms, rtol=1e-10, atol=1e-14)
    first = int(np.argmax(np.asarray(norms) >= 0.5))
    assert first - 1 <= escape_step(pd.DataFrame(rows)) <= first


def test_escape_time_slope_is_that_of_the_linear_recursion():
    """c_t = (1 + eta lambda)^t c_0 reaches rho at t = log(rho / c_0) / log(1 + eta lambda)."""
    lr, top, rho = 0.1, 1.0, 0.5
    times = []
    for c0 in (1e-3, 1e-5, 1e-7):
        c, steps = c0, 0
        while c < rho:
            c, steps = c * (1 + lr * top), steps + 1
        times.append(steps)
    assert (times[2] - times[0]) / math.log(1e4) == pytest.approx(predicted_slope(lr, top), abs=0.3)


def test_perturbed_gd_perturbs_only_where_the_gradient_is_small():
    """From the saddle: the first step is a perturbation of radius <= eta r; from a far random start
    (large gradient) perturbed GD coincides with plain GD until the gradient gets small."""
    saddle = run_configs([_config(start="saddle", scale=1.0, perturbation=1e-3)]).trajectory
    assert saddle["distance_to_saddle"][0] == 0.0 and 0 < saddle["distance_to_saddle"][1] <= 0.1 * 1e-3
    plain = _config(scale=0.3)
    perturbed = dataclasses.replace(plain, model=dataclasses.replace(plain.model, perturbation=1e-2))
    a, b = run_configs([plain]).trajectory, run_configs([perturbed]).trajectory
    np.testing.assert_allclose(a["distance_to_saddle"][:40], b["distance_to_saddle"][:40], rtol=1e-13)


@pytest.mark.parametrize(
    "assignment, field",
    [
        ("model.start=middle", "model.start"),
        ("model.perturbation=-1", "model.perturbation"),
        ("model.wait=0", "model.wait"),
        ("model.gradient_threshold=-1", "model.gradient_threshold"),
        ("problem.rank=8", "problem.rank"),
        ("problem.ratio=0", "problem.ratio"),
        ("problem.top=0", "problem.top"),
        ("optimizer.name=adam", "optimizer.name"),
    ],
)
def test_bad_fields_are_one_line_errors(assignment, field, tmp_path):
    result = invoke("run", "saddle-escape", "--quick", "--no-progress", "--no-figures", "--out", tmp_path / "x",
                    "--set", assignment)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], result.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return trajlab.load(run_quick(tmp_path_factory, "saddle-escape"))


def test_quick_preset_claims_hold(quick):
    assert len(quick.runs) == 20
    checks = check_claims(get_preset("saddle-escape").claims, quick)
    assert [c.holds for c in checks] == [True] * 5, [c.measured for c in checks]


def test_figure_draws_on_the_quick_data(quick):
    assert set(saddle_figures(quick)) == {"escape"}
    assert len(escape_figure(quick).axes) == 3

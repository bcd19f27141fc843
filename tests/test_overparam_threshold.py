"""How wide is wide enough to fit random labels: the ``overparam-threshold`` preset and its family
``two_layer_memorizer`` / problem ``random_labels``.

Independent references: a numpy forward pass of the network; numpy least squares for the fact that
at width p >= n the random ReLU features of the init already interpolate any labels; hand-computed
crossings.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.families.random_labels import mean_squared_error, predict, random_labels  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.presets.overparam_threshold import crossing_width  # noqa: E402
from trajlab.registry import get_family  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _error_line(result) -> str:
    lines = [line for line in (result.output + (result.stderr or "")).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_random_labels_are_signs_on_the_sphere():
    data = random_labels(ProblemConfig("random_labels", samples=400, dim=5, seed=2))
    np.testing.assert_allclose(np.linalg.norm(data["x"], axis=1), 1.0, atol=1e-12)
    assert set(np.unique(data["y"])) == {-1.0, 1.0}
    assert abs(data["y"].mean()) < 0.15  # fair coin: |mean| < 3 sd = 0.15 at n = 400
    assert abs(np.corrcoef(data["x"][:, 0], data["y"])[0, 1]) < 0.15  # independent of the inputs


def test_network_and_loss_match_numpy():
    config = RunConfig(problem=ProblemConfig("random_labels", samples=10, dim=3),
                       model=ModelConfig("two_layer_memorizer", width=7, scale=0.8),
                       optimizer=OptimizerConfig(name="adam", lr=0.01), train=TrainConfig(x64=True))
    params = get_family("two_layer_memorizer").build(config).init(jax.random.PRNGKey(5), 0.8)
    data = random_labels(config.problem)
    w, a = np.asarray(params.hidden), np.asarray(params.output)
    assert w.shape == (7, 3) and a.shape == (7,)
    expected = np.array([sum(a[r] * max(w[r] @ x, 0.0) for r in range(7)) / np.sqrt(7) for x in data["x"]])
    np.testing.assert_allclose(np.asarray(predict(params, jnp.asarray(data["x"]))), expected, atol=1e-12)
    jdata = {k: jnp.asarray(v) for k, v in data.items()}
    assert float(mean_squared_error(params, jdata)) == pytest.approx(np.mean((expected - data["y"]) ** 2), rel=1e-12)


def test_width_n_features_already_interpolate():
    """At p = n the ReLU features relu(X W^T) of a Gaussian init have rank n (almost surely), so some
    output layer fits any labels exactly: widths p >= n are always enough, the threshold is below."""
    data = random_labels(ProblemConfig("random_labels", samples=32, dim=4, seed=0))
    w = np.random.default_rng(0).standard_normal((32, 4))
    features = np.maximum(data["x"] @ w.T, 0.0)
    assert np.linalg.matrix_rank(features) == 32
    a = np.linalg.lstsq(features, data["y"], rcond=None)[0]
    np.testing.assert_allclose(features @ a, data["y"], atol=1e-8)


def test_crossing_width_interpolates_linearly():
    widths = np.array([4.0, 8.0, 12.0, 16.0])
    assert crossing_width(widths, np.array([0.0, 0.25, 0.75, 1.0])) == pytest.approx(10.0)
    assert np.isnan(crossing_width(widths, np.array([0.0, 0.1, 0.2, 0.4])))
    assert np.isnan(crossing_width(widths, np.array([0.6, 0.8, 1.0, 1.0])))


def test_widths_are_multiples_of_n():
    configs = get_preset("overparam-threshold").configs(quick=True)
    widths = {(c.problem.samples, c.model.width) for c in configs}
    assert widths == {(n, int(round(m * n))) for n in (16, 32) for m in (0.25, 0.375, 0.5, 1.0)}
    assert len(configs) == 8 * 16
    fixed = get_preset("overparam-threshold").configs({"model.width": 5, "seed": 0}, quick=True)
    assert {c.model.width for c in fixed} == {5}


@pytest.mark.parametrize(
    "setting, field",
    [("model.width=0", "model.width"), ("problem.samples=0", "problem.samples"), ("problem.dim=-2", "problem.dim")],
)
def test_bad_input_is_one_line_exit_2(tmp_path, setting, field):
    result = invoke("run", "overparam-threshold", "--quick", "--no-progress", "--set", setting, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert field in _error_line(result)
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "overparam-threshold"))


def test_quick_claim_holds(quick):
    checks = check_claims(get_preset("overparam-threshold").claims, quick)
    assert [c.holds for c in checks] == [True], [c.measured for c in checks]


def test_quick_fitting_runs_reached_the_tolerance(quick):
    runs = quick.runs
    done = runs[runs["status"] == "done"]
    assert len(done) > 0 and (done["final.train_loss"] <= 1e-4).all()
    # a fitted run has every residual below 1 (all signs right): max |f - y| <= sqrt(n * 1e-4) < 1
    assert (done["final.max_residual"] < 1).all() and (done["final.sign_accuracy"] == 1).all()
    assert (runs.loc[runs["status"] != "done", "final.train_loss"] > 1e-4).all()


def test_figures_draw(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.overparam_threshold import overparam_threshold_figures

    figures = overparam_threshold_figures(quick)
    assert set(figures) == {"fraction_fitting"} and figures["fraction_fitting"].axes

"""Shevchenko, Kungurtsev & Mondelli (2022): knots of a wide ReLU network, the ``mean-field-knots`` preset.

Independent references: piecewise linear functions with known knots (numpy.interp through chosen
breakpoints), finite differences of the loss, and the mean-field update written out by hand.
"""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.families import knots as K  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "mean-field-knots"))


def _piecewise(breaks, values):
    return lambda grid: np.interp(grid, breaks, values)


def test_knot_counts_of_a_piecewise_linear_function_with_known_knots():
    """Inputs 0, 1, 2, 3, 4; knots: none in (0, 1), one at 1.5, two at 2.3 and 2.7, three in (3, 4);
    kinks at the inputs themselves (1, 2, 3) do not count; a tiny kink (below threshold) neither."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    breaks = [-1, 0, 1, 1.5, 1.52, 2, 2.3, 2.7, 3, 3.2, 3.5, 3.8, 4, 5]
    values = [0, 0, 1, 0, 0.001, 0.5, 1.5, 0.5, 0, 1, 0, 1, 1.2, 1.2]
    function = _piecewise(breaks, values)
    counts = K.count_knots(function, x, threshold=0.3)
    assert counts == [0, 1, 2, 3]
    positions, changes = K.slope_changes(function, 3.0, 4.0)
    n, where = K.count_knots_in(positions, changes, 3.0, 4.0, 0.3)
    np.testing.assert_allclose(where, [3.2, 3.5, 3.8], atol=1e-3)


def test_a_knot_smeared_over_many_small_kinks_counts_once_and_small_wiggles_not():
    """A bend made of 200 kinks spread over 0.01 is one knot; a bump (up then down within 0.02) is two,
    one of each sign; 200 random kinks of 1 % of the threshold count as none."""
    rng = np.random.default_rng(0)
    centers = 0.5 + 0.01 * rng.uniform(-1, 1, 200)
    weights = np.full(200, 1.0 / 200)  # total slope change 1

    def bend(grid):
        return np.maximum(grid[:, None] - centers, 0) @ weights

    assert K.count_knots(bend, [0.0, 1.0], threshold=0.3) == [1]
    bump = _piecewise([0, 0.49, 0.5, 0.51, 1], [0, 0, 0.01, 0, 0])
    assert K.count_knots(bump, [0.0, 1.0], threshold=0.3) == [2]
    tiny = rng.uniform(0.1, 0.9, 200)
    signs = rng.choice([-1.0, 1.0], 200)

    def wiggles(grid):
        return np.maximum(grid[:, None] - tiny, 0) @ (0.003 * signs)

    assert K.count_knots(wiggles, [0.0, 1.0], threshold=0.3) == [0]


def test_network_output_kinks_where_neurons_switch():
    """One neuron a relu(w x + b) / m: the slope changes by a |w| / m at x = -b / w."""
    params = {"a": np.array([3.0, 0.0]), "w": np.array([2.0, 1.0]), "b": np.array([-1.0, 0.0])}
    function = K.numpy_output(params)
    positions, changes = K.slope_changes(function, 0.0, 1.0)
    assert changes.sum() == pytest.approx(3.0 * 2.0 / 2, rel=1e-9)
    assert positions[np.argmax(np.abs(changes))] == pytest.approx(0.5, abs=1e-3)
    assert float(K.mean_field_output({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(0.75))) == pytest.approx(0.75)


def test_mean_field_update_is_m_times_the_gradient_plus_the_noise():
    config = RunConfig(problem=ProblemConfig("regression_1d"),
                       model=ModelConfig("mean_field_relu", width=7, lam=0.1, noise=0.5),
                       optimizer=OptimizerConfig(name="gd", lr=0.1, batch_size=2), train=TrainConfig(x64=True))
    parts = K.build(config)
    data = {k: jnp.asarray(v) for k, v in K.regression_1d(config.problem).items()}
    params = parts.init(jax.random.PRNGKey(0), 1.0)
    batch = parts.minibatch(data, jax.random.PRNGKey(3))
    assert batch["x"].shape == (2,) and set(np.asarray(batch["x"])) <= set(np.asarray(data["x"]))
    grads = jax.grad(parts.loss)(params, batch)
    updates, _ = parts.optimizer.update(grads, parts.optimizer.init(params), params)
    # by hand: -(m d fit/d theta + lam theta + xi) for the minibatch
    x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
    a, w, b = (np.asarray(params[k]) for k in ("a", "w", "b"))
    pre = x[:, None] * w + b
    residual = (np.maximum(pre, 0) @ a) / 7 - y
    by_hand = {
        "a": (residual[:, None] * np.maximum(pre, 0)).mean(0) + 0.1 * a,
        "w": (residual[:, None] * a * (pre > 0) * x[:, None]).mean(0) + 0.1 * w,
        "b": (residual[:, None] * a * (pre > 0)).mean(0) + 0.1 * b,
    }
    for k in by_hand:
        np.testing.assert_allclose(-np.asarray(updates[k]), by_hand[k] + np.asarray(batch["noise"][k]), rtol=1e-10, atol=1e-12)
    assert np.std(np.concatenate([np.asarray(batch["noise"][k]) for k in by_hand])) == pytest.approx(0.5, rel=0.5)


@pytest.mark.parametrize("setting, field", [
    ("model.width=0", "model.width"),
    ("model.lam=-1", "model.lam"),
    ("model.noise=-0.1", "model.noise"),
    ("problem.samples=1", "problem.samples"),
    ("problem.targets=cosine", "problem.targets"),
    ("problem.jitter=1.5", "problem.jitter"),
    ("optimizer.batch_size=7", "optimizer.batch_size"),
    ("optimizer.name=adam", "optimizer.name"),
])
def test_bad_fields_are_one_line_errors(setting, field, tmp_path):
    result = invoke("run", "mean-field-knots", "--quick", "--no-progress", "--set", setting, "--out", tmp_path / "bad")
    assert result.exit_code == 2
    text = result.output.strip()
    assert field in text and "Traceback" not in text and len(text.splitlines()) == 1, text


def test_quick_preset_claims(quick):
    assert len(quick.runs) == 2
    checks = check_claims(get_preset("mean-field-knots").claims, quick)
    assert [c.holds for c in checks] == [True, True], [c.measured for c in checks]


def test_figures(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.mean_field_knots import knots_figures

    assert set(knots_figures(quick)) == {"functions", "knot_histogram"}

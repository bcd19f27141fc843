"""Residual vs plain ReLU MLPs (Balestriero & Baraniuk): the ``resnet-conditioning`` preset.

Independent references: the slope matrices I + D W / D W built by hand in numpy, central finite
differences of the network, numpy's condition number.
"""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.families import residual as R  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "resnet-conditioning"))


@pytest.mark.parametrize("residual", [True, False])
def test_slope_matrices_match_the_closed_form_and_finite_differences(residual):
    dim, depth = 5, 3
    params = R.init_params(jax.random.PRNGKey(0), dim, depth, residual, 1.0, jnp.float64)
    x = np.random.default_rng(1).standard_normal(dim)
    slopes = np.asarray(R.layer_slopes(params, jnp.asarray(x), residual))
    # by hand: A_l = [I +] diag(1[W_l h > 0]) W_l along the forward pass
    h = np.asarray(params["in"]) @ x
    product = np.eye(dim)
    for index, w in enumerate(np.asarray(params["hidden"])):
        pre = w @ h
        expected = np.diag((pre > 0).astype(float)) @ w + (np.eye(dim) if residual else 0)
        np.testing.assert_allclose(slopes[index], expected, atol=1e-12)
        product = expected @ product
        h = (h if residual else 0) + np.maximum(pre, 0)
    network = np.asarray(R.network_slope(params, jnp.asarray(x), residual))
    np.testing.assert_allclose(network, np.asarray(params["out"]) @ product @ np.asarray(params["in"]), atol=1e-12)
    eps = 1e-6
    f = lambda v: np.asarray(R.apply(params, jnp.asarray(v)[None], residual))[0]  # noqa: E731
    numeric = np.stack([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(dim)], axis=1)
    np.testing.assert_allclose(network, numeric, atol=1e-6)


def test_condition_numbers_match_numpy_and_floor_singular_matrices():
    rng = np.random.default_rng(2)
    matrices = rng.standard_normal((4, 6, 6))
    kappa, active = R.condition_numbers(jnp.asarray(matrices))
    np.testing.assert_allclose(np.asarray(kappa), np.linalg.cond(matrices), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(active), np.linalg.cond(matrices), rtol=1e-9)
    singular = matrices[0].copy()
    singular[:3] = 0.0  # three inactive units: a plain ReLU layer's slope
    kappa, active = R.condition_numbers(jnp.asarray(singular[None]))
    assert float(kappa[0]) == pytest.approx(1.0 / R.SINGULAR_FLOOR)
    top = np.linalg.svd(singular[3:], compute_uv=False)
    assert float(active[0]) == pytest.approx(top[0] / top[-1], rel=1e-9)


def test_init_scales_and_orthogonal_input_output_maps():
    """Hidden weights: std sqrt(2 / n) (plain) and sqrt(2 / n) / sqrt(L) (residual branches); W_in and W_out orthogonal."""
    dim, depth = 32, 16
    for residual, std in ((False, np.sqrt(2 / dim)), (True, np.sqrt(2 / dim / depth))):
        params = R.init_params(jax.random.PRNGKey(4), dim, depth, residual, 1.0, jnp.float64)
        assert float(np.std(np.asarray(params["hidden"]))) == pytest.approx(std, rel=0.03)
        for name in ("in", "out"):
            w = np.asarray(params[name])
            np.testing.assert_allclose(w.T @ w, np.eye(dim), atol=1e-12)


@pytest.mark.parametrize("setting, field", [
    ("model.depth=0", "model.depth"),
    ("model.scale=0", "model.scale"),
    ("problem.dim=0", "problem.dim"),
    ("problem.samples=0", "problem.samples"),
    ("optimizer.batch_size=3", "optimizer.batch_size"),
])
def test_bad_fields_are_one_line_errors(setting, field, tmp_path):
    result = invoke("run", "resnet-conditioning", "--quick", "--no-progress", "--set", setting, "--out", tmp_path / "bad")
    assert result.exit_code == 2
    text = result.output.strip()
    assert field in text and "Traceback" not in text and len(text.splitlines()) == 1, text


def test_quick_preset_claims(quick):
    assert len(quick.runs) == 2
    checks = check_claims(get_preset("resnet-conditioning").claims, quick)
    assert [c.holds for c in checks] == [True, True, True, True], [c.measured for c in checks]


def test_figures(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.resnet_conditioning import resnet_figures

    assert set(resnet_figures(quick)) == {"conditioning"}

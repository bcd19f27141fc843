"""l_p and whitened regression problems against numpy references."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ProblemConfig  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.problems import load_csv, loss_function, lp_loss, make_data, whitened_loss  # noqa: E402
from trajlab.problems import test_error as relative_error  # noqa: E402


def regression(**kw):
    base = dict(kind="regression", m=2, n=3, observations=7, p=4.0)
    base.update(kw)
    return ProblemConfig(**base)


def test_lp_loss_matches_numpy():
    rng = np.random.default_rng(0)
    x, y, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 2)), rng.standard_normal((2, 3))
    for p in (2.0, 3.0, 4.0):
        expected = np.mean(np.sum(np.abs(y - x @ w.T) ** p, axis=1))
        assert float(lp_loss(jnp.asarray(w), x, y, p)) == pytest.approx(expected, rel=1e-12)


def test_synthetic_regression_is_realizable_and_loss_vanishes_at_truth():
    config = regression()
    data = make_data(config)
    np.testing.assert_allclose(data.outputs, data.inputs @ data.target.T, atol=1e-12)
    loss = loss_function(config)
    assert float(loss(jnp.asarray(data.target), data)) == pytest.approx(0.0, abs=1e-20)
    assert float(relative_error(jnp.zeros((2, 3)), data)) == pytest.approx(1.0)


def test_lp_gradient_matches_finite_differences():
    config = regression(p=4.0)
    data = make_data(config)
    loss = loss_function(config)
    w = np.random.default_rng(1).standard_normal((2, 3))
    grad = np.asarray(jax.grad(lambda v: loss(v, data))(jnp.asarray(w)))
    h = 1e-6
    for i, j in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[i, j] = h
        numeric = (float(loss(jnp.asarray(w + e), data)) - float(loss(jnp.asarray(w - e), data))) / (2 * h)
        assert grad[i, j] == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_whitened_target_has_the_given_singular_values():
    config = ProblemConfig(kind="whitened", m=4, n=6, target_singular_values=(3.0, 2.0, 0.5))
    target = make_data(config).target
    np.testing.assert_allclose(np.linalg.svd(target, compute_uv=False), [3.0, 2.0, 0.5, 0, 0, 0][:4], atol=1e-12)
    w = np.ones((4, 6))
    assert float(whitened_loss(jnp.asarray(w), target)) == pytest.approx(0.5 * np.sum((w - target) ** 2))


def test_real_data_have_no_target_and_test_error_is_nan():
    config = ProblemConfig(kind="regression", dataset="diabetes", m=1, n=10, observations=442)
    data = make_data(config)
    assert data.inputs.shape == (442, 10) and data.outputs.shape == (442, 1) and data.target is None
    np.testing.assert_allclose(data.inputs.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(data.inputs.std(axis=0), 1, atol=1e-12)
    assert np.isnan(float(relative_error(jnp.zeros((1, 10)), data)))


def test_csv_loader_with_and_without_header(tmp_path):
    rng = np.random.default_rng(2)
    table = rng.standard_normal((9, 4))
    plain = tmp_path / "plain.csv"
    np.savetxt(plain, table, delimiter=",")
    headed = tmp_path / "headed.csv"
    headed.write_text("a,b,c,target\n" + plain.read_text())
    for path in (plain, headed):
        features, target = load_csv(path)
        np.testing.assert_allclose(features, table[:, :3])
        np.testing.assert_allclose(target, table[:, 3])
    config = regression(dataset="csv", path=str(headed), m=1, n=3, observations=9)
    data = make_data(config)
    np.testing.assert_allclose(data.outputs[:, 0], (table[:, 3] - table[:, 3].mean()) / table[:, 3].std())


def test_csv_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="problem.path"):
        make_data(regression(dataset="csv", path=str(tmp_path / "missing.csv"), m=1))
    path = tmp_path / "data.csv"
    np.savetxt(path, np.ones((5, 4)), delimiter=",")
    with pytest.raises(ConfigError, match="problem.n"):
        make_data(regression(dataset="csv", path=str(path), m=1, n=5, observations=5))
    with pytest.raises(ConfigError, match="problem.observations"):
        make_data(regression(dataset="csv", path=str(path), m=1, n=3, observations=6))
    with pytest.raises(ConfigError, match="problem.path"):
        regression(dataset="csv", path=None)
    with pytest.raises(ConfigError, match="problem.n"):
        ProblemConfig(kind="regression", dataset="diabetes", m=1, n=9, observations=10)
    with pytest.raises(ConfigError, match="problem.p"):
        regression(p=0.5)

"""The central flow (Cohen et al., ICLR 2025) and the ``central-flow`` preset.

Independent references: closed forms of the central flow on cubic losses with one and two
directions at the edge (derived below), scipy's solve_ivp of the reduced ODEs and of gradient flow,
the KKT conditions of the cone complementarity problem checked directly (eigenvalues of S and of the
residual), and the quick preset's claims on its stored baselines.
"""

from __future__ import annotations

import json
import math

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from trajlab import cli  # noqa: E402
from trajlab.dynamics.central_flow import (  # noqa: E402
    CentralFlowOptions,
    central_flow_history,
    integrate_central_flow,
    integrate_stable_flow,
    solve_cone_complementarity,
)
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.store import load  # noqa: E402


def test_cone_complementarity_satisfies_its_kkt_conditions():
    """S >= 0, R = C + M(S)/2 >= 0, <S, R> = 0 for random Gram operators (k = 3), and the k = 1
    closed form S = max(0, -2 C / M)."""
    rng = np.random.default_rng(0)
    for trial in range(4):
        g = rng.standard_normal((3, 3, 12))  # M full rank on the 6 symmetric entries
        g = 0.5 * (g + g.transpose(1, 0, 2))
        gram = np.einsum("ijn,kln->ijkl", g, g)
        c = rng.standard_normal((3, 3))
        c = 0.5 * (c + c.T)
        s = np.asarray(solve_cone_complementarity(jnp.asarray(c), jnp.asarray(gram), 3000))
        residual = c + 0.5 * np.einsum("ijkl,kl->ij", gram, s)
        assert np.linalg.eigvalsh(s).min() >= -1e-8
        scale = np.abs(c).max()
        assert np.linalg.eigvalsh(residual).min() >= -1e-6 * scale
        assert abs(np.sum(s * residual)) <= 1e-6 * scale * (1 + np.abs(s).sum())
    for c, m in ((-0.3, 2.0), (0.4, 1.5)):
        s = solve_cone_complementarity(jnp.array([[c]]), jnp.array([[[[m]]]]), 200)
        assert math.isclose(float(s[0, 0]), max(0.0, -2 * c / m), abs_tol=1e-10)


# One direction at the edge: L(x, y, z) = 1/2 (y + a z) x^2 - c y + mu z^2 / 2. At x = 0 the top
# eigenvalue is S = y + a z with eigenvector e_x, grad S = (0, 1, a), grad L = (0, -c, mu z). On the
# edge S = 2/eta: sigma^2 = -2 <grad S, grad L> / |grad S|^2 = 2 (c - a mu z) / (1 + a^2) and
# dz/dt = -mu z - a sigma^2 / 2 = -(mu z + a c) / (1 + a^2): z(t) = z_inf + (z0 - z_inf) exp(-mu t /
# (1 + a^2)), z_inf = -a c / mu, y = 2/eta - a z; predicted loss L + sigma^2 / eta.
A, C, MU, ETA = -0.5, 0.3, 1.0, 0.5


def one_edge_loss(w):
    x, y, z = w[0], w[1], w[2]
    return 0.5 * (y + A * z) * x**2 - C * y + 0.5 * MU * z**2


def test_central_flow_matches_the_closed_form_with_one_direction_at_the_edge():
    z0 = 1.0
    w0 = jnp.array([0.0, 2 / ETA - A * z0, z0])
    times = np.linspace(0.0, 4.0, 9)
    options = CentralFlowOptions(k=2, eigensolver="dense", substeps=16)
    path = integrate_central_flow(one_edge_loss, w0, ETA, times, options)
    history = central_flow_history(one_edge_loss, path, ETA, options)
    z_inf = -A * C / MU
    z = z_inf + (z0 - z_inf) * np.exp(-MU * times / (1 + A * A))
    sigma2 = 2 * (C - A * MU * z) / (1 + A * A)
    np.testing.assert_allclose(path[:, 2], z, atol=1e-4)
    np.testing.assert_allclose(path[:, 1], 2 / ETA - A * z, atol=1e-4)
    np.testing.assert_allclose(path[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(history["S"][1:, 0, 0], sigma2[1:], atol=1e-4)
    np.testing.assert_allclose(history["eigenvalues"][:, 0], 2 / ETA, atol=1e-6)
    loss = -C * (2 / ETA - A * z) + 0.5 * MU * z**2
    np.testing.assert_allclose(history["predicted_loss"][1:], loss[1:] + sigma2[1:] / ETA, atol=2e-4)
    np.testing.assert_allclose(history["oscillation"][1:], np.sqrt(sigma2[1:]), atol=1e-4)


# Two directions at the edge (a degenerate top eigenvalue 2/eta): L = 1/2 (y1 + a z) x1^2 + 1/2 (y2 +
# b z) x2^2 - c1 y1 - c2 y2 + mu z^2 / 2. With S = diag(s1, s2) (the off-diagonal third derivatives
# vanish at x = 0), staying on the edge needs M s / 2 = -beta, M = [[1 + a^2, a b], [a b, 1 + b^2]],
# beta = (mu a z - c1, mu b z - c2), then dy_i/dt = c_i - s_i / 2, dz/dt = -mu z - (a s1 + b s2) / 2.
A2, B2, C1, C2 = -0.5, 0.4, 0.3, 0.2


def two_edge_loss(w):
    x1, x2, y1, y2, z = w[0], w[1], w[2], w[3], w[4]
    return 0.5 * (y1 + A2 * z) * x1**2 + 0.5 * (y2 + B2 * z) * x2**2 - C1 * y1 - C2 * y2 + 0.5 * MU * z**2


def _two_edge_multipliers(z):
    m = np.array([[1 + A2**2, A2 * B2], [A2 * B2, 1 + B2**2]])
    return -2 * np.linalg.solve(m, np.array([MU * A2 * z - C1, MU * B2 * z - C2]))


def test_central_flow_solves_the_complementarity_problem_with_two_directions_at_the_edge():
    z0 = 0.5
    w0 = jnp.array([0.0, 0.0, 2 / ETA - A2 * z0, 2 / ETA - B2 * z0, z0])
    times = np.linspace(0.0, 3.0, 7)

    def reduced(t, state):
        y1, y2, z = state
        s = _two_edge_multipliers(z)
        return [C1 - s[0] / 2, C2 - s[1] / 2, -MU * z - (A2 * s[0] + B2 * s[1]) / 2]

    reference = solve_ivp(reduced, (0, 3), [float(w0[2]), float(w0[3]), z0], t_eval=times, rtol=1e-11, atol=1e-12)
    assert all((_two_edge_multipliers(z) > 0).all() for z in reference.y[2])  # both directions stay active
    options = CentralFlowOptions(k=3, eigensolver="dense", substeps=16, cone_iterations=400)
    path = integrate_central_flow(two_edge_loss, w0, ETA, times, options)
    np.testing.assert_allclose(path[:, 2:].T, reference.y, atol=2e-4)
    history = central_flow_history(two_edge_loss, path, ETA, options)
    s = np.array([_two_edge_multipliers(z) for z in reference.y[2]])
    # S is expressed in whatever basis eigh picks for the degenerate eigenspace: compare invariants
    np.testing.assert_allclose(np.trace(history["S"], axis1=1, axis2=2)[1:], s.sum(axis=1)[1:], atol=5e-4)
    np.testing.assert_allclose(np.linalg.norm(history["S"], axis=(1, 2))[1:], np.linalg.norm(s, axis=1)[1:], atol=5e-4)
    np.testing.assert_allclose(history["eigenvalues"][:, :2], 2 / ETA, atol=1e-6)


def test_central_flow_is_the_stable_flow_when_eta_is_small():
    """A tanh network whose sharpness stays far below 2/eta: S = 0 and both flows are gradient flow
    (reference: scipy's solve_ivp of dw/dt = -grad L, rtol 1e-9)."""
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.standard_normal((12, 3))), jnp.asarray(rng.standard_normal(12))

    def loss(w):
        hidden = jnp.tanh(x @ w[:12].reshape(3, 4))
        return 0.5 * jnp.mean((hidden @ w[12:] - y) ** 2)

    w0 = jnp.asarray(0.5 * rng.standard_normal(16))
    eta = 0.01
    times = np.linspace(0.0, 2.0, 5)
    options = CentralFlowOptions(k=2, eigensolver="dense", substeps=2)
    central = np.asarray(integrate_central_flow(loss, w0, eta, times, options))
    stable = np.asarray(integrate_stable_flow(loss, w0, eta, times))
    gradient = jax.jit(jax.grad(loss))
    reference = solve_ivp(lambda t, w: -np.asarray(gradient(jnp.asarray(w))), (0, 2), np.asarray(w0), t_eval=times,
                          rtol=1e-9, atol=1e-11).y.T
    np.testing.assert_allclose(stable, reference, atol=1e-7)
    np.testing.assert_allclose(central, reference, atol=1e-6)
    history = central_flow_history(loss, jnp.asarray(central), eta, options)
    assert float(jnp.abs(history["S"]).max()) == 0.0
    assert float(history["eigenvalues"].max()) < 0.1 * 2 / eta


def test_options_refuse_bad_values():
    for bad in (dict(k=0), dict(eigensolver="qr"), dict(solver="rk45"), dict(substeps=0), dict(tau_steps=0.0)):
        with pytest.raises(ValueError):
            CentralFlowOptions(**bad)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("central-flow") / "quick"
    result = CliRunner().invoke(cli.app, ["run", "central-flow", "--quick", "--no-progress", "--no-figures",
                                          "--out", str(out)])
    assert result.exit_code == 0, result.output
    return load(out)


def test_quick_preset_claims_hold(quick):
    rows = quick.baselines[quick.baselines["baseline"] == "central_flow"]
    assert len(rows) == len(quick.runs) == 2
    assert set(rows["run_id"]) == set(quick.runs["run_id"])
    for _, row in rows.iterrows():
        history = json.loads(row["history"])
        run = quick.trajectories[quick.trajectories["run_id"] == row["run_id"]].sort_values("step")
        # the baseline's float64 GD re-run starts where the engine's float32 run starts
        assert math.isclose(history["gd_loss"][0], float(run["train_loss"].iloc[0]), rel_tol=1e-5)
        assert history["step"] == run["step"].tolist()
    checks = check_claims(get_preset("central-flow").claims, quick)
    assert [c.holds for c in checks] == [True, True, True, True], [c.measured for c in checks]


def test_quick_rmsprop_row_starts_at_the_runs_init(quick):
    """The scalar-RMSProp comparison (claim 4) sits beside the deep linear run only; its float64 re-run
    starts at the engine run's (float32) initial loss, on the run's recording steps, and its central
    flow starts from RMSProp's nu_0."""
    from trajlab.presets.central_flow import RMSPROP_BETA2, RMSPROP_LR

    rows = quick.baselines[quick.baselines["baseline"] == "central_flow_rmsprop"]
    assert len(rows) == 1 and rows["model.kind"].iloc[0] == "deep_linear"
    row = rows.iloc[0]
    history = json.loads(row["history"])
    run = quick.trajectories[quick.trajectories["run_id"] == row["run_id"]].sort_values("step")
    assert math.isclose(history["rms_loss"][0], float(run["train_loss"].iloc[0]), rel_tol=1e-5)
    assert history["step"] == run["step"].tolist()
    assert math.isclose(history["t"][1], history["step"][1] * RMSPROP_LR)
    assert float(row["beta2"]) == RMSPROP_BETA2
    assert math.isclose(history["cf_nu"][0], history["rms_nu"][0], rel_tol=1e-12)
    assert np.all(np.isfinite(history["cf_predicted_loss"]))


def test_flows_figure_draws(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.central_flow import central_flow_figures

    figures = central_flow_figures(quick)
    assert len(figures["flows"].axes) == 6
    assert len(figures["rmsprop"].axes) == 3

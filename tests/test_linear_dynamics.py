"""Saxe's closed form against an ODE solver, and the claims of the linear-dynamics presets on shrunken runs.

Presets: ``acceleration-lp`` (Arora, Cohen, Hazan, ICML 2018), ``balanced-convergence`` (Arora,
Cohen, Golowich, Hu, ICLR 2019), ``saxe-dynamics`` (Saxe, McClelland, Ganguli, ICLR 2014).
"""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from trajlab.presets import get_preset  # noqa: E402
from trajlab.baselines.lp_regression import lp_regression_minimum  # noqa: E402
from trajlab.theory.margins import positive_margin_probability  # noqa: E402
from trajlab.presets.linear_dynamics.figures import (  # noqa: E402
    acceleration_figure,
    bound_table,
    convergence_bound_figure,
    loss_at_steps,
    margin_probability_figure,
    margin_table,
    mode_error_figure,
    mode_strengths_figure,
    mode_table,
    plateau_figure,
)
from trajlab.plots import table_figure  # noqa: E402
from trajlab.sweep import run_sweep  # noqa: E402
from trajlab.theory.saxe import (  # noqa: E402
    initial_strength,
    learning_time,
    mode_strength,
    mode_strength_velocity,
    rise_time,
    saxe_learning_time,
)

# ---------------------------------------------------------------------------------------------
# theory.saxe against an independent ODE solver


@pytest.mark.parametrize(
    "s, u0, tau", [(3.0, 1e-4, 1.0), (0.5, 1e-3, 1.0), (1.0, 0.9, 1.0), (2.0, 2.5, 1.0), (1.5, 1e-2, 3.0)]
)
def test_closed_form_solves_the_mode_ode(s, u0, tau):
    """u(t) of Saxe et al. Eq. 6 against scipy's solve_ivp (DOP853) of tau du/dt = 2 u (s - u),
    from below s and from above s."""
    t_end = 12.0 * tau / s
    times = np.linspace(0.0, t_end, 200)
    solution = solve_ivp(
        lambda t, u: 2.0 * u * (s - u) / tau, (0.0, t_end), [u0], method="DOP853", t_eval=times, rtol=1e-12, atol=1e-15
    )
    closed = np.asarray(mode_strength(times, s, u0, tau))
    np.testing.assert_allclose(closed, solution.y[0], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(np.asarray(mode_strength_velocity(closed, s, tau)), 2 * closed * (s - closed) / tau)


def test_closed_form_domain_and_limits():
    assert np.isnan(mode_strength(1.0, 2.0, 0.0)) and np.isnan(mode_strength(1.0, 2.0, -1e-3))
    assert float(mode_strength(0.0, 2.0, 1e-3)) == pytest.approx(1e-3, rel=1e-14)
    assert float(mode_strength(1e4, 2.0, 1e-3)) == pytest.approx(2.0, rel=1e-14)  # no overflow at large t


@pytest.mark.parametrize("s, u0, u_final", [(3.0, 1e-5, 2.9), (0.5, 1e-3, 0.25), (2.0, 0.1, 1.0)])
def test_learning_time_is_the_odes_hitting_time(s, u0, u_final):
    """Saxe et al. Eq. 7 against the time solve_ivp's event finder reports for u reaching u_final."""
    event = lambda t, u: u[0] - u_final  # noqa: E731
    event.terminal = True
    solution = solve_ivp(
        lambda t, u: 2.0 * u * (s - u), (0.0, 100.0), [u0], method="DOP853", events=event, rtol=1e-12, atol=1e-15
    )
    assert float(learning_time(s, u0, u_final)) == pytest.approx(solution.t_events[0][0], rel=1e-8)


@pytest.mark.parametrize("s", [3.0, 1.0, 0.5])
@pytest.mark.parametrize("eps", [1e-2, 1e-4, 1e-8])
def test_saxe_learning_time_convention(s, eps):
    """(tau/s) ln(s/eps) is the time from u0 = eps to u_final = s - eps, up to the stated relative error."""
    exact = float(learning_time(s, eps, s - eps))
    # s - (s - eps) loses digits to cancellation: relative round-off ~ 1e-16 s / eps
    assert exact == pytest.approx(np.log((s - eps) / eps) / s, rel=max(1e-12, 1e-14 * s / eps))
    approx = float(saxe_learning_time(s, eps))
    # the two differ by exactly (1/s) ln(s / (s - eps)), i.e. relatively ~ (eps/s) / ln(s/eps)
    assert approx - exact == pytest.approx(np.log(s / (s - eps)) / s, rel=1e-6, abs=1e-14 * exact * s / eps)
    assert abs(approx - exact) / exact < 2 * (eps / s) / np.log(s / eps)
    assert float(mode_strength(exact, s, eps)) == pytest.approx(s - eps, rel=1e-10)
    # tau rescales time
    assert float(saxe_learning_time(s, eps, tau=4.0)) == pytest.approx(4.0 * approx)


def test_rise_time_and_initial_strength():
    s = 1.7
    t = np.linspace(0.0, 30.0, 300_001)
    for u0 in (1e-6, 1e-3, 0.1):  # below 0.1 s, so the curve crosses both levels
        u = np.asarray(mode_strength(t, s, u0))
        t10, t90 = np.interp(0.1 * s, u, t), np.interp(0.9 * s, u, t)
        assert t90 - t10 == pytest.approx(float(rise_time(s)), rel=1e-6)
        t_half = np.interp(0.5 * s, u, t)
        assert float(initial_strength(s, t_half, s / 2)) == pytest.approx(u0, rel=1e-5)
    assert float(rise_time(s)) == pytest.approx(np.log(81) / (2 * s))


# ---------------------------------------------------------------------------------------------
# baselines of the presets against independent references


def test_lp_minimum_matches_scipy_on_diabetes():
    from scipy.optimize import minimize

    from trajlab.problems.regression import make_regression

    problem = get_preset("acceleration-lp").base.problem
    data = make_regression(problem)
    x, y = data.inputs, data.outputs[:, 0]
    for p in (4.0, 2.0):
        value, w, _ = lp_regression_minimum(data.inputs, data.outputs, p)
        loss = lambda v: np.mean(np.abs(y - x @ v) ** p)  # noqa: E731
        grad = lambda v: -p * x.T @ (np.sign(y - x @ v) * np.abs(y - x @ v) ** (p - 1)) / len(y)  # noqa: E731
        reference = minimize(loss, np.zeros(10), jac=grad, method="BFGS", options=dict(gtol=1e-12))
        assert value <= reference.fun + 1e-13
        assert value == pytest.approx(reference.fun, rel=1e-10)
        assert np.linalg.norm(grad(w[0])) < 1e-10
    assert lp_regression_minimum(data.inputs, data.outputs, 4.0)[0] == pytest.approx(0.6081154085, abs=1e-10)


def test_margin_probability_closed_form_matches_sampling():
    """The noncentral chi-square formula against direct sampling of A ~ N(0, scale^2) (m = 1, n = 4)."""
    rng = np.random.default_rng(1)
    target = rng.standard_normal((1, 4))
    target /= np.linalg.norm(target)
    z = rng.standard_normal((400_000, 4))
    from scipy.stats import ncx2

    for scale in (1e-3, 0.1, 0.5, 1.0, 3.0):
        value = positive_margin_probability(target, scale)
        sampled = np.mean(1.0 - np.linalg.norm(scale * z - target, axis=1) > 0)
        assert value == pytest.approx(sampled, abs=3e-3)
        assert value == pytest.approx(ncx2.cdf(scale**-2, df=4, nc=scale**-2), rel=1e-8)
    assert positive_margin_probability(target, 1e-8) == pytest.approx(0.5, abs=1e-6)  # where ncx2 gives NaN


# ---------------------------------------------------------------------------------------------
# preset grids


def test_preset_grids():
    acceleration = get_preset("acceleration-lp").configs()
    assert len(acceleration) == 12
    assert {c.problem.p for c in acceleration} == {4.0, 2.0}
    inits = {(c.model.init, c.model.scale, c.seed, c.model.width) for c in acceleration}
    assert inits == {("balanced_random", 1e-2, 0, 1)}
    assert {c.model.depth for c in acceleration if c.optimizer.name != "gd"} == {1}
    balanced = get_preset("balanced-convergence")
    assert len(balanced.configs()) == 3 * 3 * 4 * 128
    assert len(balanced.configs(quick=True)) == 3 * 3 * 2 * 32
    assert all(len(c.problem.target_singular_values) == c.problem.m for c in balanced.configs(quick=True))
    saxe = get_preset("saxe-dynamics").configs()
    assert len(saxe) == 3 * 8 and {c.optimizer.name for c in saxe} == {"gradient_flow"}
    assert all(c.problem.m != c.problem.n for c in saxe)  # see the preset's docstring: det(W) cannot change sign


# ---------------------------------------------------------------------------------------------
# acceleration-lp (Arora, Cohen, Hazan 2018)


def _lines_per_axis(fig: Figure) -> list[int]:
    return [len(ax.lines) for ax in fig.axes]


@pytest.fixture(scope="module")
def acceleration_data(tmp_path_factory):
    """The whole quick preset (12 runs, 2000 steps) with its ``lp_optimum`` baselines."""
    preset = get_preset("acceleration-lp")
    configs = preset.configs(quick=True)
    folder = tmp_path_factory.mktemp("acceleration")
    return run_sweep(configs, folder, baselines=preset.baselines(configs), show_progress=False)


def _excess_at_last_step(data, p, optimizer, depth):
    table = loss_at_steps(data.runs, data.trajectories, data.baselines, steps=(int(data.runs["steps"].min()),))
    label = [m for (q, m) in table.index if q == p and m.startswith(f"{optimizer}, depth {depth}")]
    assert len(label) == 1, table
    return float(table.loc[(p, label[0])].iloc[0])


def test_depth_accelerates_l4_but_not_l2(acceleration_data):
    """ICML 2018, Fig. 3: at p = 4, GD on a depth-3 (width 1) network is far below depth-1 GD after the
    same number of steps (quick: 2000); at p = 2 the two are within a factor 10 of each other. All
    runs start from the same end-to-end vector (equal loss at step 0)."""
    data = acceleration_data
    assert set(data.runs["status"]) == {"max_steps"}
    first = data.trajectories[data.trajectories["step"] == 0].merge(data.runs[["run_id", "problem.p"]], on="run_id")
    assert first.groupby("problem.p")["train_loss"].nunique().eq(1).all()

    last = data.trajectories.groupby("run_id")["step"].max().min()
    final = data.trajectories[data.trajectories["step"] == last].merge(data.runs, on="run_id")
    final = final[final["optimizer.name"] == "gd"]
    loss = {(r["problem.p"], r["model.depth"]): r["train_loss"] for _, r in final.iterrows()}
    assert loss[(4.0, 3)] < loss[(4.0, 1)]

    excess = {(p, d): _excess_at_last_step(data, p, "GD", d) for p in (4.0, 2.0) for d in (1, 3)}
    assert excess[(4.0, 3)] < 1e-2 * excess[(4.0, 1)], excess
    assert 0.1 < excess[(2.0, 3)] / excess[(2.0, 1)] < 10, excess



def test_deep_gd_beats_adagrad_and_adadelta_on_l4(acceleration_data):
    """ICML 2018: at p = 4, deep GD also beats AdaGrad and AdaDelta (each at its tuned step size)."""
    deep = max(_excess_at_last_step(acceleration_data, 4.0, "GD", d) for d in (2, 3))
    for optimizer in ("AdaGrad", "AdaDelta"):
        assert deep < 1e-2 * _excess_at_last_step(acceleration_data, 4.0, optimizer, 1)


def test_acceleration_figures(acceleration_data):
    runs, trajectories, baselines = acceleration_data.runs, acceleration_data.trajectories, acceleration_data.baselines
    figure = acceleration_figure(runs, trajectories, baselines)
    assert _lines_per_axis(figure) == [6, 6]  # a line per method, a panel per p
    assert figure.axes[0].get_yscale() == "log"
    table = loss_at_steps(runs, trajectories, baselines, steps=(100, 1000, 2000))
    assert table.shape == (12, 4) and (table[["step 100", "step 1000"]].to_numpy() > 0).all()
    assert isinstance(table_figure(table), Figure)
    figures = get_preset("acceleration-lp").figures(acceleration_data)
    assert set(figures) == {"excess_loss", "excess_loss_table"}


# ---------------------------------------------------------------------------------------------
# balanced-convergence (Arora, Cohen, Golowich, Hu 2019)


@pytest.fixture(scope="module")
def balanced_data(tmp_path_factory):
    preset = get_preset("balanced-convergence")
    configs = [c for c in preset.configs(quick=True) if c.problem.m in (1, 4) and c.model.depth in (2, 4)]
    folder = tmp_path_factory.mktemp("balanced")
    return run_sweep(configs, folder, baselines=preset.baselines(configs), show_progress=False)


def test_margin_probability(balanced_data):
    """ICLR 2019, Theorem 2 and Section 4: for m = 1, about half of the small balanced inits have a
    positive deficiency margin (fewer at larger scale); for m = 4, none. The probability is the same
    at every depth (the balanced init draws W(0) from the seed alone)."""
    table = margin_table(balanced_data.runs, balanced_data.trajectories)
    assert ((table["probability"] >= 0) & (table["probability"] <= 1)).all()
    by_depth = table["probability"].unstack("model.depth")
    assert (by_depth.nunique(axis=1) == 1).all()
    probability = table.xs(2, level="model.depth")["probability"]
    assert 0.25 <= probability[(1, 1e-3)] <= 0.75
    assert probability[(1, 0.5)] <= probability[(1, 1e-3)]  # nested: a margin at scale s implies one below s
    assert probability[(4, 1e-3)] == 0 and probability[(4, 0.5)] == 0
    closed = balanced_data.baselines.set_index("model.scale")["probability"]
    seeds = int(table["seeds"].min())
    for scale in (1e-3, 0.5):
        p = closed[scale]
        assert abs(probability[(1, scale)] - p) <= 4 * np.sqrt(p * (1 - p) / seeds) + 1 / seeds


def test_positive_margin_runs_stay_below_the_linear_rate_bound(balanced_data):
    """ICLR 2019, Theorem 1: every run with a positive margin converges, with loss(t) <=
    loss(0) (1 - eta c^(2(N-1)/N))^t at every recorded step."""
    frame = bound_table(balanced_data.runs, balanced_data.trajectories)
    assert frame["run_id"].nunique() >= 10
    assert (frame["train_loss"] <= frame["bound"] * (1 + 1e-9)).all()
    statuses = balanced_data.runs.set_index("run_id").loc[frame["run_id"].unique(), "status"]
    assert (statuses == "done").all()


def _steps_to_halve(runs, trajectories):
    out = {}
    for rid, traj in trajectories.groupby("run_id"):
        traj = traj.sort_values("step")
        loss = traj["train_loss"].to_numpy()
        below = np.flatnonzero(loss < 0.5 * loss[0])
        out[rid] = traj["step"].to_numpy()[below[0]] if below.size else np.inf
    return runs.assign(halve=runs["run_id"].map(out))


def test_near_zero_deep_init_sits_on_a_plateau(balanced_data):
    """Near zero the origin is a saddle of order N: from scale 1e-3 (m = 1) the depth-4 loss is still
    within 10% of loss(0) after 100 steps and takes >= 3x longer than depth 2 to halve; from scale 0.5
    both halve within 50 steps."""
    runs = _steps_to_halve(balanced_data.runs, balanced_data.trajectories)
    runs = runs[runs["problem.m"] == 1]
    median = runs.groupby(["model.scale", "model.depth"])["halve"].median()
    assert median[(1e-3, 4)] >= 3 * median[(1e-3, 2)]
    assert median[(0.5, 2)] <= 50 and median[(0.5, 4)] <= 50
    deep = runs[(runs["model.scale"] == 1e-3) & (runs["model.depth"] == 4)]["run_id"]
    traj = balanced_data.trajectories[balanced_data.trajectories["run_id"].isin(deep)]
    at_100 = traj[traj["step"] <= 100].sort_values("step").groupby("run_id")["train_loss"].last()
    at_0 = traj[traj["step"] == 0].set_index("run_id")["train_loss"]
    assert (at_100 / at_0.loc[at_100.index]).median() > 0.9


def test_balanced_convergence_figures(balanced_data):
    runs, trajectories, baselines = balanced_data.runs, balanced_data.trajectories, balanced_data.baselines
    figure = margin_probability_figure(runs, trajectories, baselines)
    # a line per (m, depth), the m = 1 closed form, the 1/2 reference line
    assert _lines_per_axis(figure) == [2 * 2 + 1 + 1]
    figure = convergence_bound_figure(runs, trajectories)
    counts = _lines_per_axis(figure)
    assert counts[:2] == [6, 6]  # top row: 3 runs x (measured, bound)
    positive = _positive_runs_per_depth(runs, trajectories)
    assert counts[2:] == [positive[2] + 1, positive[4] + 1]  # bottom row: a ratio per run + the line at 1
    figure = plateau_figure(runs, trajectories)
    assert _lines_per_axis(figure) == [2 * 2, 2 * 2]  # a panel per m: depth x (smallest, largest scale)
    figures = get_preset("balanced-convergence").figures(balanced_data)
    assert set(figures) == {"margin_probability", "margin_table", "convergence_bound", "plateau"}


def _positive_runs_per_depth(runs, trajectories):
    frame = bound_table(runs, trajectories)
    return frame.groupby("model.depth")["run_id"].nunique().to_dict()


# ---------------------------------------------------------------------------------------------
# saxe-dynamics (Saxe, McClelland, Ganguli 2014)


@pytest.fixture(scope="module")
def saxe_data(tmp_path_factory):
    preset = get_preset("saxe-dynamics")
    configs = preset.configs({"model.scale": 1e-4}, quick=True)
    return run_sweep(configs, tmp_path_factory.mktemp("saxe"), show_progress=False)


def test_modes_follow_the_closed_form_strongest_first(saxe_data):
    """After the layers align, each mode strength follows Saxe et al.'s logistic curve with rate 2 s:
    within 2% of s over the whole run (u0 fitted as a time shift at s/2), the 10-90% rise time is
    ln(81)/(2s) within 5%, the modes are learned in the order of s, and all are learned by t = 30."""
    assert len(saxe_data.runs) == 2 and set(saxe_data.runs["status"]) == {"max_steps"}
    table = mode_table(saxe_data.runs, saxe_data.trajectories)
    assert len(table) == 2 * 4
    assert (table["max error"] < 0.02).all(), table["max error"]
    np.testing.assert_allclose(table["rise 10-90"], table["rise 10-90 theory"], rtol=0.05)
    for _, block in table.groupby(level="seed"):
        block = block.sort_values("s", ascending=False)
        assert np.all(np.diff(block["t half"].to_numpy()) > 0)
    final = saxe_data.runs[[f"final.mode_{r}" for r in range(4)]].to_numpy()
    np.testing.assert_allclose(final, np.tile([3.0, 2.0, 1.0, 0.5], (2, 1)), atol=1e-4)


def test_saxe_figures(saxe_data):
    runs, trajectories = saxe_data.runs, saxe_data.trajectories
    assert _lines_per_axis(mode_strengths_figure(runs, trajectories)) == [4 + 4]  # simulated + closed form
    assert _lines_per_axis(mode_error_figure(runs, trajectories)) == [4 + 1]  # a line per mode + zero line
    figures = get_preset("saxe-dynamics").figures(saxe_data)
    assert set(figures) == {"mode_strengths", "mode_error", "mode_table"}
    assert all(isinstance(f, Figure) for f in figures.values())


def test_figures_reject_missing_columns():
    with pytest.raises(ValueError, match="missing"):
        acceleration_figure(pd.DataFrame({"run_id": ["a"]}), pd.DataFrame({"run_id": ["a"], "step": [0]}))

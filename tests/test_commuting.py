"""Sensing with commuting measurements (``commuting_sensing``) and the presets ``depth-nuclear-norm`` and
``schatten-counterexample``.

Independent references: cvxpy (SCS) nuclear-norm programs over all matrices and scipy's linprog (HiGHS)
for the l1 program on the spectra; dense measurement matrices built entry by entry; the spectral
recursion u <- u - lr u^(N-1) g of a diagonal network against gradient descent on the d x d layers;
dense SVDs of X° + t V against the spectral formula; finite differences of t -> S_p(X° + t V).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.families.commuting_problems import (  # noqa: E402
    CERTIFICATE_MARGIN,
    commuting_instance,
    measurement_matrices,
    spectral_matrix,
)
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.presets.commuting import (  # noqa: E402
    SCHATTEN_PS,
    face_profile,
    schatten,
    schatten_decreases_along_face,
    every_depth_reaches_the_point,
)
from trajlab.problems import loss_function, make_data  # noqa: E402
from trajlab.registry import get_family  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke  # noqa: E402

CERTIFIED = dict(dim=8, instance="certified", observations=4, rank=2, seed=3)
FACE = dict(dim=6, instance="symmetric_face", observations=5, rank=6, seed=0)


def section(**fields):
    return ProblemConfig("commuting_sensing", **fields)


def dense_matrices(instance) -> np.ndarray:
    """A_i = Q diag(a_i) Q^T, one matrix product at a time (not the einsum of the module)."""
    q = instance.basis
    return np.array([q @ np.diag(a) @ q.T for a in instance.spectra])


# ---------------------------------------------------------------------------------------------
# the problem


def test_measurements_commute_and_the_loss_is_the_mean_squared_error():
    instance = commuting_instance(section(**CERTIFIED))
    matrices = dense_matrices(instance)
    np.testing.assert_allclose(measurement_matrices(instance), matrices, atol=1e-13)
    for a in matrices:
        np.testing.assert_allclose(a, a.T, atol=1e-13)
        for b in matrices:
            np.testing.assert_allclose(a @ b, b @ a, atol=1e-12)
    np.testing.assert_allclose(instance.basis.T @ instance.basis, np.eye(8), atol=1e-13)
    config = section(**CERTIFIED)
    data = make_data(config)
    w = np.random.default_rng(0).standard_normal((8, 8))
    residual = np.array([np.sum(a * w) for a in matrices]) - instance.values
    assert float(loss_function(config)(jnp.asarray(w), data)) == pytest.approx(np.mean(residual**2), rel=1e-12)
    # the measurements see only the spectral coordinates diag(Q^T W Q)
    spectral = np.diag(instance.basis.T @ w @ instance.basis)
    np.testing.assert_allclose(instance.spectra @ spectral, residual + instance.values, atol=1e-12)
    np.testing.assert_allclose(data.target, instance.reference)
    np.testing.assert_allclose(np.array([np.sum(a * instance.reference) for a in matrices]), instance.values, atol=1e-12)


def test_certified_reference_is_the_minimum_nuclear_norm_solution():
    """Against cvxpy over all matrices and linprog (HiGHS) on the spectra."""
    from scipy.optimize import linprog

    from trajlab.baselines import nuclear_norm_sensing

    instance = commuting_instance(section(**CERTIFIED))
    np.testing.assert_allclose(instance.spectra.T @ instance.certificate, instance.dual, atol=1e-12)
    support = instance.reference_spectrum != 0
    assert support.sum() == 2
    np.testing.assert_allclose(instance.dual[support], 1.0)
    assert np.all(np.abs(instance.dual[~support]) <= CERTIFICATE_MARGIN)
    reference_norm = np.abs(instance.reference_spectrum).sum()
    assert np.linalg.svd(instance.reference, compute_uv=False).sum() == pytest.approx(reference_norm, rel=1e-12)
    result = nuclear_norm_sensing((8, 8), dense_matrices(instance), instance.values, eps=1e-9)
    assert result.nuclear_norm == pytest.approx(reference_norm, rel=1e-6)
    # min ||z||_1 s.t. A z = y as an LP in (z+, z-) >= 0
    d = 8
    spectra = instance.spectra
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([spectra, -spectra]), b_eq=instance.values, bounds=(0, None), method="highs")
    assert lp.status == 0
    np.testing.assert_allclose(lp.x[:d] - lp.x[d:], instance.reference_spectrum, atol=1e-9)


def test_symmetric_face_construction():
    """Trace measured, sigma-symmetric pairs, a one-dimensional face through z°, against dense checks."""
    from trajlab.baselines import nuclear_norm_sensing

    instance = commuting_instance(section(**FACE))
    d, swap = 6, np.arange(6) ^ 1
    z, v, t_max = instance.reference_spectrum, instance.face_direction, instance.face_extent
    np.testing.assert_allclose(z[swap], z)
    np.testing.assert_allclose(v[swap], -v, atol=1e-12)
    np.testing.assert_allclose(instance.spectra @ v, 0, atol=1e-12)
    assert np.linalg.norm(v) == pytest.approx(1.0) and np.sum(v) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(instance.spectra[0], np.full(d, 1 / np.sqrt(d)))
    assert np.min(z + t_max * v) == pytest.approx(0.0, abs=1e-12) and np.all(z - 0.999 * t_max * v > 0)
    # z° is the only sigma-invariant solution: the system on (w_pair) has a unique least-squares solution
    repeat = np.repeat(np.eye(3), 2, axis=0)
    pairs, *_ = np.linalg.lstsq(instance.spectra @ repeat, instance.values, rcond=None)
    assert np.linalg.matrix_rank(instance.spectra @ repeat) == 3
    np.testing.assert_allclose(repeat @ pairs, z, atol=1e-12)
    # the nuclear norm is constant (= tr X°) along the face and no matrix fitting y has less (cvxpy)
    result = nuclear_norm_sensing((d, d), dense_matrices(instance), instance.values, eps=1e-9)
    assert result.nuclear_norm == pytest.approx(z.sum(), rel=1e-6)
    direction = spectral_matrix(instance, v)
    matrices = dense_matrices(instance)
    for t in (-t_max, -0.3 * t_max, 0.7 * t_max, t_max):
        x = instance.reference + t * direction
        np.testing.assert_allclose([np.sum(a * x) for a in matrices], instance.values, atol=1e-12)
        assert np.linalg.svd(x, compute_uv=False).sum() == pytest.approx(z.sum(), rel=1e-12)


def test_schatten_profile_is_maximal_at_the_symmetric_point():
    """Dense SVDs of X° + t V against the spectral formula; finite differences: zero slope at t = 0,
    negative second difference (strict concavity) and decrease in |t|."""
    instance = commuting_instance(section(**FACE))
    direction = spectral_matrix(instance, instance.face_direction)
    ts = np.linspace(-0.95, 0.95, 39) * instance.face_extent
    for p in (*SCHATTEN_PS, 2 / 3):
        profile = face_profile(instance, ts, p)
        dense = [np.sum(np.linalg.svd(instance.reference + t * direction, compute_uv=False) ** p) ** (1 / p) for t in ts]
        np.testing.assert_allclose(profile, dense, rtol=1e-10)
        h = 1e-4 * instance.face_extent
        f = lambda t: face_profile(instance, [t], p)[0]  # noqa: E731
        assert abs(f(h) - f(-h)) / (2 * h) < 1e-8 * f(0)
        assert f(h) - 2 * f(0) + f(-h) < 0
        middle = len(ts) // 2
        assert np.all(np.diff(profile[middle:]) < 0) and np.all(np.diff(profile[: middle + 1]) > 0)
    nuclear = face_profile(instance, ts, 1.0)
    np.testing.assert_allclose(nuclear, nuclear[0], rtol=1e-12)


def test_deep_linear_from_identity_init_is_a_diagonal_network_in_the_common_basis():
    """40 GD steps on the 6 x 6 layers of depth 3 equal the recursion u <- u - lr u^2 g on the spectrum."""
    config = RunConfig(
        problem=section(**FACE),
        model=ModelConfig(depth=3, init="identity", scale=0.05),
        optimizer=OptimizerConfig(name="gd", lr=0.1),
        train=TrainConfig(x64=True),
    )
    parts = get_family("deep_linear").build(config)
    data = jax.tree_util.tree_map(lambda x: None if x is None else jnp.asarray(x), make_data(config.problem))
    layers = parts.init(jax.random.PRNGKey(0), 0.05)
    step = jax.jit(lambda ls: jax.tree_util.tree_map(lambda w, g: w - 0.1 * g, ls, jax.grad(parts.loss)(ls, data)))
    instance = commuting_instance(config.problem)
    a, y, u = instance.spectra, instance.values, np.full(6, 0.05 ** (1 / 3))
    for _ in range(40):
        layers = step(layers)
        g = (2 / len(y)) * a.T @ (a @ u**3 - y)
        u = u - 0.1 * u**2 * g
    for layer in layers:
        np.testing.assert_allclose(np.asarray(layer), spectral_matrix(instance, u), atol=1e-12)


@pytest.mark.parametrize(
    "fields, field",
    [
        (dict(dim=1), "problem.dim"),
        (dict(dim=5, instance="symmetric_face", observations=4, rank=5), "problem.dim"),
        (dict(instance="spectral"), "problem.instance"),
        (dict(dim=10, observations=11), "problem.observations"),
        (dict(dim=10, observations=4, rank=5), "problem.rank"),
        (dict(seed=-1), "problem.seed"),
    ],
)
def test_bad_fields_are_one_line_errors(fields, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        section(**fields)


@pytest.mark.parametrize(
    "preset, setting, field",
    [
        ("schatten-counterexample", "problem.dim=7", "problem.dim"),
        ("schatten-counterexample", "problem.instance=diagonal", "problem.instance"),
        ("schatten-counterexample", "problem.observations=4", "problem.observations"),
        ("schatten-counterexample", "problem.rank=5", "problem.rank"),
        ("depth-nuclear-norm", "problem.seed=-3", "problem.seed"),
        ("depth-nuclear-norm", "problem.rank=6", "problem.rank"),
    ],
)
def test_bad_fields_on_the_command_line_exit_2(preset, setting, field):
    result = invoke("config", preset, "--quick", "--set", setting)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], result.stderr


# ---------------------------------------------------------------------------------------------
# the certified Schatten claim, on made-up final matrices


def _runs_of(matrices, instance, problem) -> SimpleNamespace:
    rows = []
    for i, w in enumerate(matrices):
        singular = np.linalg.svd(w, compute_uv=False)
        row = {f"problem.{k}": v for k, v in problem.items()}
        row.update(
            {"run_id": f"r{i}", "model.depth": 2, "model.scale": 0.1, "final.train_loss": 0.0,
             "final.nuclear_norm": singular.sum(),
             "final.test_error": np.sum((w - instance.reference) ** 2) / np.sum(instance.reference**2)}
        )
        row.update({f"final.sv_{k}": s for k, s in enumerate(singular)})
        rows.append(row)
    return SimpleNamespace(runs=pd.DataFrame(rows), trajectories=pd.DataFrame(), baselines=pd.DataFrame())


def test_schatten_claim_is_certified_near_the_point_and_fails_away_from_it():
    instance = commuting_instance(section(**FACE))
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((6, 6))
    near = instance.reference + 1e-7 * noise / np.linalg.norm(noise)  # the nuclear part allows a 1e-6 relative fall
    measured, holds = schatten_decreases_along_face(_runs_of([near], instance, FACE))
    assert holds, measured
    direction = spectral_matrix(instance, instance.face_direction)
    t0 = 0.5 * instance.face_extent
    for p in SCHATTEN_PS:  # what the bound certifies, checked with dense SVDs
        for sign in (1, -1):
            assert schatten(np.linalg.svd(near + sign * t0 * direction, compute_uv=False), p) < schatten(
                np.linalg.svd(near, compute_uv=False), p
            )
    endpoint = instance.reference + instance.face_extent * direction  # a vertex of the face: far from X°
    measured, holds = schatten_decreases_along_face(_runs_of([endpoint], instance, FACE))
    assert holds is False, measured
    reached = every_depth_reaches_the_point(
        SimpleNamespace(**{**vars(_runs_of([endpoint], instance, FACE)), "baselines": pd.DataFrame()})
    )
    assert reached[1] is None  # without the cvxpy baseline: not measured


# ---------------------------------------------------------------------------------------------
# the presets, each run once at --quick


@pytest.fixture(scope="module")
def depth_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("depth-nuclear-norm")
    result = invoke("run", "depth-nuclear-norm", "--quick", "--no-progress", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output
    return load(out)


@pytest.fixture(scope="module")
def face_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("schatten-counterexample")
    result = invoke("run", "schatten-counterexample", "--quick", "--no-progress", "--no-figures", "--out", out)
    assert result.exit_code == 0, result.output
    return load(out)


def test_depth_nuclear_norm_quick_claims_hold(depth_quick):
    data = depth_quick
    assert len(data.runs) == 12 and set(data.runs["model.depth"]) == {2, 3, 4}
    checks = check_claims(get_preset("depth-nuclear-norm").claims, data)
    assert [c.holds for c in checks] == [True, True, True], [c.measured for c in checks]
    # every run ends close to fitting, and at scale 1e-4 the end-to-end matrix is nearly rank one
    assert (data.runs["final.train_loss"] < 1e-5).all()
    smallest = data.runs[data.runs["model.scale"] == 1e-4]
    assert (smallest["final.sv_1"] < 1e-2 * smallest["final.sv_0"]).all()


def test_schatten_counterexample_quick_claims_hold(face_quick):
    data = face_quick
    assert len(data.runs) == 6 and (data.runs["status"] == "done").all()
    checks = check_claims(get_preset("schatten-counterexample").claims, data)
    assert [c.holds for c in checks] == [True, True, True], [c.measured for c in checks]
    instance = commuting_instance(section(**FACE))
    minimum = instance.reference_spectrum.sum()
    for _, run in data.runs.iterrows():
        singular = np.array([run[f"final.sv_{i}"] for i in range(6)])
        np.testing.assert_allclose(np.sort(singular), np.sort(instance.reference_spectrum), rtol=1e-6)
        assert run["final.nuclear_norm"] == pytest.approx(minimum, rel=1e-8)
        for p in SCHATTEN_PS:  # the endpoints of the face have a smaller quasi-norm than every run
            ends = face_profile(instance, [-instance.face_extent, instance.face_extent], p)
            assert np.all(ends < schatten(singular, p) * (1 - 1e-3))


def test_figures_draw_on_the_quick_data(depth_quick, face_quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.commuting import depth_nuclear_norm_figures, schatten_figures

    figures = {**depth_nuclear_norm_figures(depth_quick), **schatten_figures(face_quick)}
    assert set(figures) == {"nuclear_norm_gap", "face"}
    for figure in figures.values():
        assert len(figure.axes) == 2
        figure.canvas.draw()
    assert math.isfinite(figures["face"].axes[0].get_ylim()[0])

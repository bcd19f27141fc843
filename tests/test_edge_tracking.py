"""Warm-started top-k eigenpairs along a trajectory and the count above 1.5 / lr (issue 14):
``block_krylov_eigenpairs`` against dense ``numpy.linalg.eigvalsh``; the engine's carried metric
state (``CarriedMetric``, ``Task.metric_carry``) and each run's own lr (``ctx.lr``), recorded by the
engine, against the dense Hessian spectrum of every recorded point, float64."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import trajlab  # noqa: E402
from trajlab import registry  # noqa: E402
from trajlab.config import RunConfig, replace_dotted  # noqa: E402
from trajlab.metrics.carried import CarriedMetric  # noqa: E402
from trajlab.metrics.curvature_suite import block_krylov_eigenpairs  # noqa: E402
from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS, MetricContext  # noqa: E402

RNG = np.random.default_rng(0)
N = 30
SYMMETRIC = (lambda a: a + a.T)(RNG.normal(size=(N, N)))
SPECTRUM = np.linalg.eigvalsh(SYMMETRIC)[::-1]


def product(v):
    return jnp.asarray(SYMMETRIC) @ v


def test_block_krylov_with_the_whole_space_is_exact():
    values, vectors = block_krylov_eigenpairs(product, N, jnp.float64, RNG.normal(size=(3, N)), jax.random.PRNGKey(1), 3, N)
    np.testing.assert_allclose(values, SPECTRUM[:3], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(vectors) @ np.asarray(vectors).T, np.eye(3), atol=1e-10)
    residual = SYMMETRIC @ np.asarray(vectors).T - np.asarray(vectors).T * np.asarray(values)
    assert np.abs(residual).max() < 1e-9


def test_a_warm_start_on_the_eigenvectors_is_exact_with_two_blocks_and_a_cold_one_is_not():
    _, vectors = np.linalg.eigh(SYMMETRIC)
    warm = vectors[:, ::-1][:, :3].T
    values, _ = block_krylov_eigenpairs(product, N, jnp.float64, warm, jax.random.PRNGKey(1), 3, 6)
    np.testing.assert_allclose(values, SPECTRUM[:3], rtol=1e-12)
    cold, _ = block_krylov_eigenpairs(product, N, jnp.float64, RNG.normal(size=(3, N)), jax.random.PRNGKey(1), 3, 6)
    assert np.abs(np.asarray(cold) - SPECTRUM[:3]).max() > 1e-2  # the same budget from a random block


def test_an_invariant_subspace_is_refilled_and_ritz_values_stay_lower_bounds():
    diagonal = np.diag([5.0, 4.0, 3.0] + [0.0] * (N - 3))
    values, _ = block_krylov_eigenpairs(lambda v: jnp.asarray(diagonal) @ v, N, jnp.float64, np.eye(N)[:3],
                                        jax.random.PRNGKey(1), 3, 12)
    np.testing.assert_allclose(values, [5.0, 4.0, 3.0], rtol=1e-12)
    cold, _ = block_krylov_eigenpairs(product, N, jnp.float64, RNG.normal(size=(3, N)), jax.random.PRNGKey(2), 3, 9)
    assert (np.asarray(cold) <= SPECTRUM[:3] + 1e-10).all()  # Cauchy interlacing


def test_block_krylov_rejects_k_above_n():
    with pytest.raises(ValueError, match="k must be"):
        block_krylov_eigenpairs(product, N, jnp.float64, np.ones((N + 1, N)), jax.random.PRNGKey(1), N + 1, 40)


def test_called_without_an_engine_it_starts_cold_and_uses_the_config_lr():
    config = replace_dotted(RunConfig(), {"train.top_k": 3, "train.lanczos_iterations": N, "optimizer.lr": 1.5 / 10.0})
    params = {"w": jnp.zeros(N)}

    def loss(p, data):
        return 0.5 * p["w"] @ jnp.asarray(SYMMETRIC) @ p["w"]

    out = GENERIC_METRIC_FUNCTIONS["edge_tracking"](MetricContext(params, params, None, None, loss=loss, config=config))
    np.testing.assert_allclose([out[f"track_eig_{j}"] for j in range(3)], SPECTRUM[:3], rtol=1e-10)
    assert out["edge_count"] == min(3, int(np.sum(SPECTRUM > 10.0)))


def test_the_engine_carries_the_ritz_vectors_and_passes_each_runs_lr(tmp_path):
    """Two runs (lr 0.001 and 0.0625) of a 36-parameter net whose top eigenvalues are crowded (29.7,
    24.3, 23.7, and -23.7 at the bottom), 3 eigenvalues tracked with 9 Hessian-vector products per
    recording (3 blocks of 3): with the carried warm start the tracked values converge to the dense
    spectrum of every later recorded point; the cold Lanczos of ``edge_eigenvalues`` with the same 9
    products stays further off. ``edge_count`` uses each run's own lr."""
    assert "edge_tracking" in registry.GENERIC_METRICS
    assert isinstance(GENERIC_METRIC_FUNCTIONS["edge_tracking"], CarriedMetric)
    base = {"problem.kind": "teacher_student", "model.kind": "two_layer", "train.x64": True, "train.max_steps": 24,
            "train.record": "linear", "train.record_every": 2, "train.top_k": 3, "train.lanczos_iterations": 9,
            "problem.n": 5, "model.width": 6, "train.tol": 0.0,
            "metrics": ["train_loss", "edge_eigenvalues", "edge_tracking"]}
    configs = [replace_dotted(RunConfig(), {**base, "optimizer.lr": lr}) for lr in (0.001, 0.0625)]
    parts = registry.get_family("two_layer").build(configs[0])

    def dense(ctx):  # the reference: every eigenvalue of the dense Hessian at the recorded point
        flat, unravel = ravel_pytree(ctx.params)
        return jnp.linalg.eigvalsh(jax.hessian(lambda x: parts.loss(unravel(x), ctx.data))(flat))[::-1]

    data = trajlab.run(configs, out=tmp_path / "sweep", extra_metrics={"dense_spectrum": dense})
    frame = data.trajectories.sort_values(["run_id", "step"])
    spectrum = frame[[f"dense_spectrum_{j}" for j in range(36)]].to_numpy()
    assert spectrum.shape[1] == 36
    tracked = frame[[f"track_eig_{j}" for j in range(3)]].to_numpy()
    cold = frame[[f"edge_eig_{j}" for j in range(3)]].to_numpy()
    lrs = frame["run_id"].map({rid: flat["optimizer.lr"] for rid, flat in data.manifest["configs"].items()})
    late = frame["step"].to_numpy() >= 12
    slow, fast = late & (lrs.to_numpy() == 0.001), late & (lrs.to_numpy() == 0.0625)
    tracked_error = np.abs(tracked - spectrum[:, :3]).max(axis=1) / np.abs(spectrum[:, 0])
    top_tracked = np.abs(tracked[:, 0] - spectrum[:, 0]) / spectrum[:, 0]
    top_cold = np.abs(cold[:, 0] - spectrum[:, 0]) / spectrum[:, 0]
    # measured: slow run top-3 from 2e-3 (step 12) down to 4e-5 (step 24), top-1 1e-8 down to 1e-10 (cold 9e-5);
    # fast run top-1 3e-6 (cold 2.7e-4)
    errors = tracked_error[slow]
    assert errors[-1] < 1e-4 and (np.diff(errors) < 0).all() and top_tracked[slow].max() < 1e-7
    assert top_cold[slow].min() > 1e3 * top_tracked[slow].max()
    assert top_tracked[fast].max() < 2e-5 and top_cold[fast].min() > 10 * top_tracked[fast].max()
    expected = np.minimum(3, (spectrum > (1.5 / lrs.to_numpy())[:, None]).sum(axis=1))
    counts = frame["edge_count"].to_numpy()
    assert (counts <= expected).all()  # Ritz values are lower bounds: so is the count
    np.testing.assert_array_equal(counts[late], expected[late])  # converged: the count is exact
    assert expected[late & slow].max() == 0 and expected[late & fast].max() >= 1  # each run's own lr


def test_a_users_carried_metric_counts_its_recordings_per_run(tmp_path):
    """A CarriedMetric passed as a user metric: its state (a counter) is kept per run and moves on at
    every recording point; called without an engine it starts cold."""
    counter = trajlab.CarriedMetric(lambda ctx, previous: (previous + 1.0, previous + 1.0),
                                    lambda ctx: jnp.zeros((), ctx.params[0].dtype))
    configs = [replace_dotted(RunConfig(), {"problem.m": 6, "problem.n": 6, "problem.rank": 1, "problem.observations": 20,
                                            "model.depth": 2, "train.max_steps": steps, "train.record": "linear",
                                            "train.record_every": 5, "train.tol": 0.0, "metrics": ["train_loss"]})
               for steps in (20, 40)]
    data = trajlab.run(configs, out=tmp_path / "counter", max_batch=2, extra_metrics={"recordings": counter})
    for _, run in data.trajectories.groupby("run_id"):
        run = run.sort_values("step")
        # one recording at step 0 and one every 5 steps: the k-th row is the counter's k-th call
        np.testing.assert_array_equal(run["recordings"].to_numpy(), np.arange(1, len(run) + 1))
        assert len(run) == run["step"].max() // 5 + 1
    with pytest.raises(TypeError):  # no engine: previous is None, and None + 1 fails: it did start cold
        counter(MetricContext([jnp.zeros((2, 2))], None, None, None))

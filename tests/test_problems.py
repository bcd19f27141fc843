"""Tests of trajlab.problems (matrix completion / sensing) and of config validation.

References: numpy's matrix_rank and norms, the documented distributions (sampling statistics with
their standard errors), numpy re-computations of y = A vec(W*) and of the losses.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trajlab.config import (  # noqa: E402
    ModelConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    TrainConfig,
    from_flat,
    replace_dotted,
    run_id,
    static_key,
    to_flat,
)
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.problems import (  # noqa: E402
    completion_loss,
    make_matrix_problem,
    reconstruction_error,
    sensing_loss,
    train_loss,
)

# --- ground truth and observations ----------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), rank_fraction=st.floats(0, 1), seed=st.integers(0, 2**20),
       kind=st.sampled_from(["completion", "sensing"]))
def test_ground_truth_norm_and_rank(m, n, rank_fraction, seed, kind):
    rank = 1 + int(rank_fraction * (min(m, n) - 1))
    data = make_matrix_problem(ProblemConfig(kind=kind, m=m, n=n, rank=rank, observations=1, seed=seed))
    target = data.target
    assert target.shape == (m, n) and target.dtype == np.float64
    assert np.sum(target**2) == pytest.approx(m * n, rel=1e-12)
    assert np.linalg.matrix_rank(target) == rank


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), fraction=st.floats(0, 1), seed=st.integers(0, 2**20))
def test_completion_observations_unique_and_in_range(m, n, fraction, seed):
    observations = 1 + int(fraction * (m * n - 1))
    data = make_matrix_problem(ProblemConfig(m=m, n=n, rank=1, observations=observations, seed=seed))
    assert data.sensing is None
    assert data.rows.shape == data.cols.shape == data.values.shape == (observations,)
    assert np.all((0 <= data.rows) & (data.rows < m))
    assert np.all((0 <= data.cols) & (data.cols < n))
    pairs = set(zip(data.rows.tolist(), data.cols.tolist()))
    assert len(pairs) == observations
    np.testing.assert_array_equal(data.values, data.target[data.rows, data.cols])


def test_completion_with_every_entry_observes_the_whole_matrix():
    data = make_matrix_problem(ProblemConfig(m=4, n=3, rank=2, observations=12, seed=5))
    seen = np.zeros((4, 3), bool)
    seen[data.rows, data.cols] = True
    assert seen.all()


def test_sensing_measurements():
    m, n, observations = 10, 8, 1500
    data = make_matrix_problem(ProblemConfig(kind="sensing", m=m, n=n, rank=3, observations=observations, seed=2))
    assert data.rows is None and data.cols is None
    assert data.sensing.shape == (observations, m * n)
    # y_i = <A_i, W*> with row-major vec
    expected = np.array([np.sum(a.reshape(m, n) * data.target) for a in data.sensing])
    np.testing.assert_allclose(data.values, expected, rtol=1e-12, atol=1e-12)
    # A entries i.i.d. N(0, 1/(m n)): sample variance within 5 standard errors (sqrt(2/K) relative)
    count = data.sensing.size
    variance = np.mean(data.sensing**2)
    assert abs(variance * m * n - 1) < 5 * np.sqrt(2 / count)
    assert abs(np.mean(data.sensing)) < 5 / np.sqrt(m * n * count)


def test_problems_are_reproducible_from_their_seed():
    config = ProblemConfig(kind="sensing", m=5, n=4, rank=2, observations=9, seed=11)
    a, b = make_matrix_problem(config), make_matrix_problem(config)
    np.testing.assert_array_equal(a.target, b.target)
    np.testing.assert_array_equal(a.sensing, b.sensing)
    c = make_matrix_problem(ProblemConfig(kind="sensing", m=5, n=4, rank=2, observations=9, seed=12))
    assert not np.allclose(a.target, c.target)


# --- losses ---------------------------------------------------------------------------------


def test_losses_match_numpy():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4))
    completion = make_matrix_problem(ProblemConfig(m=5, n=4, rank=2, observations=11, seed=1))
    expected = np.mean((w[completion.rows, completion.cols] - completion.values) ** 2)
    got = completion_loss(jnp.asarray(w), completion.rows, completion.cols, completion.values)
    assert float(got) == pytest.approx(expected, rel=1e-13)
    assert float(train_loss(jnp.asarray(w), completion)) == pytest.approx(expected, rel=1e-13)
    assert float(train_loss(jnp.asarray(completion.target), completion)) == pytest.approx(0.0, abs=1e-28)

    sensing = make_matrix_problem(ProblemConfig(kind="sensing", m=5, n=4, rank=2, observations=13, seed=1))
    measured = np.array([np.sum(a.reshape(5, 4) * w) for a in sensing.sensing])
    expected = np.mean((measured - sensing.values) ** 2)
    assert float(sensing_loss(jnp.asarray(w), sensing.sensing, sensing.values)) == pytest.approx(expected, rel=1e-12)
    assert float(train_loss(jnp.asarray(w), sensing)) == pytest.approx(expected, rel=1e-12)
    assert float(train_loss(jnp.asarray(sensing.target), sensing)) == pytest.approx(0.0, abs=1e-24)

    relative = np.sum((w - sensing.target) ** 2) / (5 * 4)  # ||W*||_F^2 = m n
    assert float(reconstruction_error(jnp.asarray(w), sensing.target)) == pytest.approx(relative, rel=1e-12)


# --- config validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: ProblemConfig(m=3, n=4, rank=1, observations=13), "problem.observations"),
        (lambda: ProblemConfig(m=3, n=4, rank=1, observations=0), "problem.observations"),
        (lambda: ProblemConfig(m=3, n=4, rank=4), "problem.rank"),
        (lambda: ProblemConfig(m=3, n=4, rank=0), "problem.rank"),
        (lambda: ProblemConfig(kind="tensor"), "problem.kind"),
        (lambda: ProblemConfig(m=0, rank=1), "problem.m"),
        (lambda: ProblemConfig(kind="sensing", observations=0), "problem.observations"),
        (lambda: ModelConfig(depth=0), "model.depth"),
        (lambda: ModelConfig(scale=0.0), "model.scale"),
        (lambda: ModelConfig(scale=-1e-3), "model.scale"),
        (lambda: ModelConfig(init="xavier"), "model.init"),
        (lambda: ModelConfig(width=0), "model.width"),
        (lambda: OptimizerConfig(lr=0.0), "optimizer.lr"),
        (lambda: OptimizerConfig(lr=-0.1), "optimizer.lr"),
        (lambda: OptimizerConfig(name="lbfgs"), "optimizer.name"),
        (lambda: OptimizerConfig(decay=1.0), "optimizer.decay"),
        (lambda: TrainConfig(max_steps=0), "train.max_steps"),
        (lambda: TrainConfig(record="cubic"), "train.record"),
        (lambda: RunConfig(metrics=("train_loss", "no_such_metric")), "metrics"),
        (lambda: RunConfig(seed=-1), "seed"),
    ],
)
def test_config_validation_names_the_field(make, field):
    with pytest.raises(ConfigError) as info:
        make()
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_sensing_allows_more_measurements_than_entries():
    config = ProblemConfig(kind="sensing", m=2, n=2, rank=1, observations=10)
    assert make_matrix_problem(config).sensing.shape == (10, 4)


def test_dotted_updates_round_trip_and_unknown_fields():
    config = replace_dotted(RunConfig(), {"problem.m": 70, "optimizer.lr": 0.5, "seed": 3, "model.width": None})
    assert config.problem.m == 70 and config.optimizer.lr == 0.5 and config.seed == 3
    assert from_flat(to_flat(config)) == config
    assert run_id(from_flat(to_flat(config))) == run_id(config)
    with pytest.raises(ConfigError, match="problem.q"):
        replace_dotted(RunConfig(), {"problem.q": 1})
    with pytest.raises(ConfigError, match="model.depth"):
        replace_dotted(RunConfig(), {"model.depth": 2.5})
    with pytest.raises(ConfigError, match="optimizer.lr"):
        replace_dotted(RunConfig(), {"optimizer.lr": -1.0})


def test_static_key_ignores_only_batched_fields():
    base = RunConfig()
    batched = replace_dotted(base, {"seed": 4, "optimizer.lr": 0.2, "model.scale": 0.5})
    assert static_key(batched) == static_key(base)
    assert run_id(batched) != run_id(base)
    assert static_key(replace_dotted(base, {"model.depth": 2})) != static_key(base)

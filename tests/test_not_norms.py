"""Razin & Cohen (NeurIPS 2020): the 2 x 2 example where implicit regularization is not a norm."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trajlab.config import ModelConfig, ProblemConfig, RunConfig, replace_dotted  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.presets import get_preset  # noqa: E402
from trajlab.metrics.registry import unobserved_max_abs  # noqa: E402
from trajlab.models.deep_linear import DeepLinear, end_to_end  # noqa: E402
from trajlab.problems import loss_function, make_data  # noqa: E402

RAZIN = dict(kind="completion", dataset="razin_cohen_2x2", m=2, n=2, rank=1, observations=3)


def test_problem_observes_the_three_known_entries_with_half_sum_loss():
    config = ProblemConfig(**RAZIN, loss_convention="half_sum")
    data = make_data(config)
    assert data.target is None
    known = {(int(i), int(j)): float(v) for i, j, v in zip(data.rows, data.cols, data.values)}
    assert known == {(0, 1): 1.0, (1, 0): 1.0, (1, 1): 0.0}
    w = np.array([[5.0, 0.5], [2.0, -1.0]])
    expected = 0.5 * ((0.5 - 1) ** 2 + (2.0 - 1) ** 2 + (-1.0) ** 2)
    assert float(loss_function(config)(jnp.asarray(w), data)) == pytest.approx(expected)
    mean = ProblemConfig(**RAZIN)
    assert float(loss_function(mean)(jnp.asarray(w), data)) == pytest.approx(2 * expected / 3)
    assert float(unobserved_max_abs(jnp.asarray(w), data)) == pytest.approx(5.0)


def test_positive_det_condition_negates_the_first_column_exactly_when_needed():
    model = DeepLinear(2, 2, 3)
    flipped = 0
    for seed in range(40):
        key = jax.random.PRNGKey(seed)
        free = model.init(key, 0.5, "gaussian", jnp.float64)
        conditioned = model.init(key, 0.5, "gaussian", jnp.float64, "positive_det")
        assert np.linalg.det(np.asarray(end_to_end(conditioned))) > 0
        if np.linalg.det(np.asarray(end_to_end(free))) < 0:
            flipped += 1
            expected = np.asarray(free[0]).copy()
            expected[:, 0] *= -1
            np.testing.assert_array_equal(np.asarray(conditioned[0]), expected)
        else:
            np.testing.assert_array_equal(np.asarray(conditioned[0]), np.asarray(free[0]))
        for a, b in zip(conditioned[1:], free[1:]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert 5 < flipped < 35  # about half of the draws had det < 0


def test_condition_needs_a_square_matrix():
    with pytest.raises(ConfigError, match="model.condition"):
        RunConfig(problem=ProblemConfig(m=3, n=2, rank=1, observations=3), model=ModelConfig(condition="positive_det"))
    with pytest.raises(ConfigError, match="problem.dataset"):
        ProblemConfig(kind="sensing", dataset="razin_cohen_2x2", m=2, n=2, rank=1, observations=3)


def test_norms_grow_and_rank_falls_as_the_loss_goes_to_zero(tmp_path):
    """Depth 3 (Gaussian, std 8e-3) and balanced depth 2 from det(W_e(0)) > 0: the unobserved entry
    and the nuclear norm grow as the loss falls, and the effective rank approaches 1."""
    from trajlab.sweep import run_sweep

    preset = get_preset("not-norms")
    configs = [
        c for c in preset.configs({"seed": 0}, quick=True)
        if (c.model.depth, c.model.init) in ((3, "gaussian"), (2, "balanced_random"))
    ]
    assert len(configs) == 2
    configs = [replace_dotted(c, {"train.x64": False}) for c in configs]
    data = run_sweep(configs, tmp_path, show_progress=False)
    for _, run in data.runs.iterrows():
        traj = data.trajectories[data.trajectories["run_id"] == run["run_id"]].sort_values("step")
        late = traj[traj["train_loss"] < 1e-2]
        assert len(late) > 5
        # along the late phase the loss falls and the unobserved entry / nuclear norm rise
        assert np.all(np.diff(late["train_loss"]) <= 0)
        assert np.all(np.diff(late["unobserved_max_abs"]) >= -1e-6)
        assert np.all(np.diff(late["nuclear_norm"]) >= -1e-6)
        assert run["final.train_loss"] < 2e-4
        assert run["final.unobserved_max_abs"] > (30 if run["model.depth"] == 3 else 5)
        assert run["final.effective_rank"] < 1.15

"""The tensor families run through the engine (trajlab.engine.task.run_configs), float64.

Independent reference: plain JAX gradient descent on losses written as explicit dense einsums per
order (not the gathers of trajlab.models.tensor), with normalized GD written from its docstring.
The only thing shared with the engine is the initial point: the model's init called with
jax.random.PRNGKey(seed), as engine/loop.py makes its keys. The engine's parameters are read back
through a user metric that records them at every recording step.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig  # noqa: E402
from trajlab.engine.task import run_configs  # noqa: E402
from trajlab.families.tensor import CP_RANK_TOL, final_dense_tensor  # noqa: E402
from trajlab.errors import ConfigError  # noqa: E402
from trajlab.metrics.tensor import (  # noqa: E402
    cp_component_norms,
    estimate_cp_rank,
    ht_local_component_norms,
    matricization_effective_ranks,
    normalized_reconstruction_error,
)
from trajlab.models.tensor import cp_full, cp_init, ht_full, ht_init  # noqa: E402
from trajlab.problems.registry import make_data  # noqa: E402


def param_dump(state):
    """User metric: every parameter entry (columns param_0, param_1, ...)."""
    return ravel_pytree(state.params)[0]


EXTRA = {"param": param_dump}


def tensor_config(problem: dict, model: dict, optimizer=("gd", 0.05), steps=120, every=40, metrics=("train_loss",), seed=3):
    return RunConfig(
        problem=ProblemConfig(**problem),
        model=ModelConfig(**model),
        optimizer=OptimizerConfig(name=optimizer[0], lr=optimizer[1]),
        train=TrainConfig(max_steps=steps, tol=0.0, record="linear", record_every=every, x64=True, top_k=4),
        seed=seed,
        metrics=metrics,
    )


def initial_params(config: RunConfig):
    p, m = config.problem, config.model
    shape = (p.dim,) * p.order
    key = jax.random.PRNGKey(config.seed)
    if m.kind == "cp":
        return cp_init(key, shape, m.width, m.scale, jnp.float64)
    levels = {2: 1, 3: 2, 4: 2, 5: 3}[p.order]
    return ht_init(key, shape, (m.width,) * levels, m.scale, jnp.float64, core=m.core)


# Dense tensors written out per order and kind (leaves / factors, then cores level by level).
def dense_cp3(f):
    return jnp.einsum("ir,jr,kr->ijk", *f)


def dense_ht3_product(p):
    (a0, a1, a2), ((m01, m2), (root,)) = p.leaves, p.cores
    return jnp.einsum("ia,ja,ae,kb,be,ez->ijk", a0, a1, m01, a2, m2, root)


def dense_ht3_tucker(p):
    (a0, a1, a2), ((c01, m2), (root,)) = p.leaves, p.cores
    return jnp.einsum("ia,jb,abe,kc,cf,efz->ijk", a0, a1, c01, a2, m2, root)


def dense_ht4_product(p):
    (a0, a1, a2, a3), ((m01, m23), (root,)) = p.leaves, p.cores
    return jnp.einsum("ia,ja,ae,kb,lb,be,ez->ijkl", a0, a1, m01, a2, a3, m23, root)


def reference_run(params, dense, data, kind, optimizer, steps):
    """Plain GD (or normalized GD, alpha 0.99, eps 1e-4) on the mean squared error of the dense
    tensor at the observed entries (completion) or of the measurements (sensing).

    Returns the parameters after each step: [params_0, params_1, ..., params_steps]."""
    name, lr = optimizer

    def loss(p):
        w = dense(p)
        if kind == "tensor_completion":
            residual = w[tuple(jnp.asarray(data.indices).T)] - data.values
        else:
            residual = data.sensing @ w.reshape(-1) - data.values
        return jnp.mean(residual**2)

    grad = jax.jit(jax.grad(loss))
    history, average = [params], 0.0
    for t in range(1, steps + 1):
        g = grad(params)
        if name == "normalized_gd":
            squared = float(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(g)))
            average = 0.99 * average + 0.01 * squared
            factor = lr / (np.sqrt(average / (1 - 0.99**t)) + 1e-4)
        else:
            factor = lr
        params = jax.tree_util.tree_map(lambda p, d: p - factor * d, params, g)
        history.append(params)
    return history, jax.jit(loss)


def engine_params(result, config):
    """{step: flat parameter vector} of run 0, from the param_* columns."""
    trajectory = result.trajectory
    columns = sorted((c for c in trajectory if c.startswith("param_")), key=lambda c: int(c.split("_")[1]))
    out = {}
    for row, step in enumerate(trajectory["step"]):
        out[int(step)] = np.array([trajectory[c][row] for c in columns])
    return out


CASES = {
    "cp completion": (
        dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30),
        dict(kind="cp", width=5, init="gaussian", scale=0.6),
        ("gd", 0.05),
        dense_cp3,
    ),
    "cp sensing": (
        dict(kind="tensor_sensing", order=3, dim=3, rank=2, observations=20),
        dict(kind="cp", width=4, init="gaussian", scale=0.6),
        ("gd", 0.05),
        dense_cp3,
    ),
    "hierarchical product order 3, normalized GD": (
        dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30, target="hierarchical"),
        dict(kind="hierarchical", width=3, core="product", init="gaussian", scale=0.7),
        ("normalized_gd", 0.01),
        dense_ht3_product,
    ),
    "hierarchical tucker order 3": (
        dict(kind="tensor_completion", order=3, dim=3, rank=2, observations=15, target="hierarchical"),
        dict(kind="hierarchical", width=2, core="tucker", init="gaussian", scale=0.8),
        ("gd", 0.05),
        dense_ht3_tucker,
    ),
    "hierarchical product order 4 sensing": (
        dict(kind="tensor_sensing", order=4, dim=3, rank=2, observations=25, target="hierarchical"),
        dict(kind="hierarchical", width=2, core="product", init="gaussian", scale=0.8),
        ("gd", 0.05),
        dense_ht4_product,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_plain_jax_descent(case):
    problem, model, optimizer, dense = CASES[case]
    config = tensor_config(problem, model, optimizer)
    result = run_configs([config], extra_metrics=EXTRA)
    assert result.status == ["max_steps"] and int(result.steps[0]) == 120
    data = make_data(config.problem)
    start = initial_params(config)
    history, loss = reference_run(start, dense, data, problem["kind"], optimizer, 120)
    recorded = engine_params(result, config)
    assert sorted(recorded) == [0, 40, 80, 120]
    for step, flat in recorded.items():
        expected = np.asarray(ravel_pytree(history[step])[0])
        np.testing.assert_allclose(flat, expected, rtol=1e-9, atol=1e-12)
        row = list(result.trajectory["step"]).index(step)
        assert result.trajectory["train_loss"][row] == pytest.approx(float(loss(history[step])), rel=1e-9)
    # the run moved: the test is not passed by standing still
    assert float(loss(history[-1])) < 0.9 * float(loss(history[0]))


def test_metric_columns_equal_the_metric_functions_on_the_final_tensor():
    problem = dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30, target="hierarchical")
    metrics = ("train_loss", "reconstruction_error", "frobenius_norm", "distance_from_init",
               "local_component_norms", "matricization_effective_ranks")
    config = tensor_config(problem, dict(kind="hierarchical", width=3, init="gaussian", scale=0.7), metrics=metrics)
    result = run_configs([config], extra_metrics=EXTRA)
    data = make_data(config.problem)
    start = initial_params(config)
    unravel = ravel_pytree(start)[1]
    final = unravel(jnp.asarray(engine_params(result, config)[120]))
    w = ht_full(final)
    col = {name: values[-1] for name, values in result.trajectory.items()}
    assert col["reconstruction_error"] == pytest.approx(float(normalized_reconstruction_error(w, data.target)), rel=1e-10)
    assert col["frobenius_norm"] == pytest.approx(float(jnp.linalg.norm(w)), rel=1e-10)
    distance = np.linalg.norm(np.asarray(ravel_pytree(final)[0] - ravel_pytree(start)[0]))
    assert col["distance_from_init"] == pytest.approx(distance, rel=1e-10)
    for level, norms in enumerate(ht_local_component_norms(final), start=1):
        for node in range(norms.shape[0]):
            top = np.sort(np.asarray(norms[node]).ravel())[::-1][:4]
            got = [col[f"local_l{level}_n{node}_{i}"] for i in range(len(top))]
            np.testing.assert_allclose(got, top, rtol=1e-10)
    for level, ranks in enumerate(matricization_effective_ranks(w)):
        for node in range(ranks.shape[0]):
            assert col[f"erank_l{level}_n{node}"] == pytest.approx(float(ranks[node]), rel=1e-10)
    assert {f"erank_l{lv}_n{n}" for lv, n in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1))} <= set(col)
    # final values equal the last recorded row
    assert result.final["reconstruction_error"][0] == pytest.approx(col["reconstruction_error"])

    config = tensor_config(dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30),
                           dict(kind="cp", width=5, init="gaussian", scale=0.6),
                           metrics=("component_norms", "reconstruction_error"))
    result = run_configs([config], extra_metrics=EXTRA)
    unravel = ravel_pytree(initial_params(config))[1]
    final = unravel(jnp.asarray(engine_params(result, config)[120]))
    top = np.sort(np.asarray(cp_component_norms(final)))[::-1][:4]
    np.testing.assert_allclose([result.final[f"comp_{i}"][0] for i in range(4)], top, rtol=1e-10)
    target = make_data(config.problem).target
    assert result.final["reconstruction_error"][0] == pytest.approx(
        float(normalized_reconstruction_error(cp_full(final), target)), rel=1e-10
    )


@pytest.mark.parametrize("width", [1, 2, 3])
def test_cp_rank_estimate_of_a_final_tensor_of_known_rank(width):
    """One tiny step from a generic init: the final tensor is a sum of ``width`` generic rank-one
    tensors, whose CP rank is ``width``."""
    config = tensor_config(
        dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30),
        dict(kind="cp", width=width, init="gaussian", scale=1.0),
        optimizer=("gd", 1e-6), steps=1, every=1, metrics=("train_loss", "cp_rank_estimate"),
    )
    result = run_configs([config], extra_metrics=EXTRA)
    assert result.final["cp_rank_estimate"][0] == width
    assert "cp_rank_estimate" not in result.trajectory  # a final value only
    unravel = ravel_pytree(initial_params(config))[1]
    final = unravel(jnp.asarray(engine_params(result, config)[1]))
    dense = final_dense_tensor(jax.tree_util.tree_map(np.asarray, final))
    np.testing.assert_allclose(dense, np.asarray(cp_full(final)), rtol=1e-12, atol=1e-12)
    assert estimate_cp_rank(dense, tol=CP_RANK_TOL, max_rank=10, rng=0) == width


def test_cp_rank_estimate_of_a_trained_low_rank_solution():
    """A fully observed CP-rank-1 target fit by 4 components from small init: the solution has
    estimated rank 1 (the unused components stay small), and so does the hierarchical model's."""
    problem = dict(kind="tensor_completion", order=3, dim=4, rank=1, observations=64)
    config = tensor_config(problem, dict(kind="cp", width=4, init="gaussian", scale=0.05),
                           optimizer=("normalized_gd", 0.01), steps=3000, every=3000,
                           metrics=("train_loss", "reconstruction_error", "cp_rank_estimate"))
    config = RunConfig(**{**config.__dict__, "train": TrainConfig(max_steps=3000, tol=1e-7, record_points=5, x64=True)})
    result = run_configs([config])
    assert result.status == ["done"]
    assert result.final["reconstruction_error"][0] < 1e-3
    assert result.final["cp_rank_estimate"][0] == 1
    hierarchical = RunConfig(**{**config.__dict__, "model": ModelConfig(kind="hierarchical", width=3, init="gaussian", scale=0.3)})
    result = run_configs([hierarchical])
    assert result.final["reconstruction_error"][0] < 0.05
    assert result.final["cp_rank_estimate"][0] == 1


def test_hierarchical_final_dense_tensor_matches_the_model():
    params = ht_init(jax.random.PRNGKey(1), (3, 4, 2, 3, 2), (2, 3, 2), 1.0, jnp.float64, core="product")
    dense = final_dense_tensor(jax.tree_util.tree_map(np.asarray, params))
    np.testing.assert_allclose(dense, np.asarray(ht_full(params)), rtol=1e-12, atol=1e-12)


def test_matricized_tensor_completion_is_the_same_data_as_a_matrix():
    """Depth-2 matrix factorization of the 16 x 4 matricization of an order-3 tensor completion
    problem: same observations as the tensor problem, and the recorded train loss / test error are
    those of the end-to-end matrix viewed as the tensor."""
    fields = dict(order=3, dim=4, rank=2, observations=30, target="hierarchical", seed=5)
    tensor = make_data(ProblemConfig(kind="tensor_completion", **fields))
    config = RunConfig(
        problem=ProblemConfig(kind="matricized_tensor_completion", row_modes=2, **fields),  # 16 x 4
        model=ModelConfig(depth=2, init="gaussian_e2e", scale=0.1),
        optimizer=OptimizerConfig(name="gd", lr=0.05),
        train=TrainConfig(max_steps=50, tol=0.0, record="linear", record_every=50, x64=True),
        metrics=("train_loss", "test_error"),
    )
    matrix = make_data(config.problem)
    np.testing.assert_array_equal(matrix.target, tensor.target.reshape(16, 4))
    np.testing.assert_array_equal(matrix.values, tensor.values)
    np.testing.assert_array_equal(matrix.target[matrix.rows, matrix.cols], tensor.values)
    result = run_configs([config], extra_metrics={"w": lambda s: s.end_to_end.ravel()})
    w = np.array([result.trajectory[f"w_{i}"][-1] for i in range(64)]).reshape(4, 4, 4)
    residual = w[tuple(tensor.indices.T)] - tensor.values
    assert result.final["train_loss"][0] == pytest.approx(np.mean(residual**2), rel=1e-10)
    expected = np.sum((w - tensor.target) ** 2) / np.sum(tensor.target**2)
    assert result.final["test_error"][0] == pytest.approx(expected, rel=1e-10)


def test_config_errors_are_one_line_and_name_the_field():
    cases = [
        (lambda: RunConfig(problem=ProblemConfig(kind="completion"), model=ModelConfig(kind="cp", width=5, init="gaussian")),
         "problem.kind"),
        (lambda: RunConfig(problem=ProblemConfig(kind="tensor_completion"), model=ModelConfig(kind="deep_linear")),
         "problem.kind"),
        (lambda: ModelConfig(kind="hierarchical", width=4, init="gaussian_e2e"), "model.init"),
        (lambda: ModelConfig(kind="cp", width=0, init="gaussian"), "model.width"),
        (lambda: ProblemConfig(kind="matricized_tensor_completion", order=3, dim=4, observations=30, row_modes=3), "problem.row_modes"),
        (lambda: ProblemConfig(kind="matricized_tensor_completion", order=3, dim=4, observations=30, m=16), "problem.m is not a field"),
        (lambda: ProblemConfig(kind="tensor_completion", order=3, dim=4, observations=65), "problem.observations"),
        (lambda: ProblemConfig(kind="tensor_completion", loss_convention="sum"), "problem.loss_convention"),
    ]
    for make, field in cases:
        with pytest.raises(ConfigError) as error:
            make()
        message = str(error.value)
        assert "\n" not in message and message.startswith(field), message
    # a metric of the other tensor family: a ConfigError when the config is made
    with pytest.raises(ConfigError, match="component_norms is not recorded for model.kind=hierarchical"):
        tensor_config(dict(kind="tensor_completion", order=3, dim=4, rank=2, observations=30),
                      dict(kind="hierarchical", width=2, init="gaussian", scale=0.5),
                      metrics=("train_loss", "component_norms"))

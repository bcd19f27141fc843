"""Per-leaf Hessian blocks and the edge eigenvalues (issue 14), float64, under vmap, against dense
``numpy.linalg.eigvalsh`` of the Hessian (and of its diagonal blocks) of a tiny net; the metrics
recorded by the engine and ``edge_counts`` against the stored eigenvalues and each run's lr."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from trajlab import registry  # noqa: E402
from trajlab.config import RunConfig, replace_dotted  # noqa: E402
from trajlab.engine.memory import CURVATURE_METRICS  # noqa: E402
from trajlab.metrics.curvature_suite import (  # noqa: E402
    edge_counts,
    edge_eigenvalues_metric,
    leaf_paths,
    leaf_sharpness_metric,
)
from trajlab.metrics.generic import GENERIC_METRIC_FUNCTIONS, MetricContext  # noqa: E402
from trajlab.models.mlp import mlp_apply, mlp_init  # noqa: E402
from trajlab.problems.registry import make_data  # noqa: E402

X = jax.random.normal(jax.random.PRNGKey(1), (10, 3), jnp.float64)
Y = jax.random.normal(jax.random.PRNGKey(2), (10, 2), jnp.float64)


def loss(params):
    return jnp.mean(jnp.sum((mlp_apply(params, X, "quadratic") - Y) ** 2, axis=1))


BATCH = jax.vmap(lambda k: mlp_init(k, (3, 4, 2), "quadratic", True, "gaussian", 1.0, jnp.float64))(
    jax.random.split(jax.random.PRNGKey(0), 2))  # two nets of 26 parameters in 4 leaves, vmapped
PARAMS = [jax.tree_util.tree_map(lambda x: x[i], BATCH) for i in range(2)]


def dense_blocks(params):
    """The dense Hessian over the raveled params and the index ranges of the leaves in it."""
    flat, unravel = ravel_pytree(params)
    hessian = np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat))
    sizes = [leaf.size for leaf in jax.tree_util.tree_leaves(params)]  # ravel_pytree: tree order
    bounds = np.cumsum([0] + sizes)
    return hessian, [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def context(params, top_k=3, iterations=30):
    config = replace_dotted(RunConfig(), {"train.top_k": top_k, "train.lanczos_iterations": iterations})
    return MetricContext(params, params, None, None, loss=lambda p, d: loss(p), config=config)


def test_leaf_sharpness_is_the_top_eigenvalue_of_each_diagonal_block_under_vmap():
    out = jax.jit(jax.vmap(lambda p: leaf_sharpness_metric(context(p))))(BATCH)
    assert sorted(out) == [f"leaf_sharpness_{i}" for i in range(4)]
    assert len(leaf_paths(PARAMS[0])) == 4
    for r, params in enumerate(PARAMS):
        hessian, blocks = dense_blocks(params)
        for i, (a, b) in enumerate(blocks):
            reference = np.linalg.eigvalsh(hessian[a:b, a:b])[-1]
            np.testing.assert_allclose(out[f"leaf_sharpness_{i}"][r], reference, rtol=1e-8, atol=1e-10)
        # Cauchy interlacing: a diagonal block's top eigenvalue is at most the Hessian's
        assert max(float(out[f"leaf_sharpness_{i}"][r]) for i in range(4)) <= np.linalg.eigvalsh(hessian)[-1] + 1e-9


def test_edge_eigenvalues_are_the_top_k_and_pad_small_models():
    out = jax.jit(jax.vmap(lambda p: edge_eigenvalues_metric(context(p, top_k=3))))(BATCH)
    assert sorted(out) == ["edge_eig_0", "edge_eig_1", "edge_eig_2"]
    for r, params in enumerate(PARAMS):
        reference = np.linalg.eigvalsh(dense_blocks(params)[0])[::-1][:3]
        np.testing.assert_allclose([out[f"edge_eig_{j}"][r] for j in range(3)], reference, rtol=1e-8, atol=1e-10)
    # a model of 2 parameters with top_k = 4: the two eigenvalues, then NaN (columns stay stable)
    small = {"w": jnp.array([1.0, -2.0])}
    ctx = MetricContext(small, small, None, None, loss=lambda p, d: jnp.sum(jnp.array([3.0, 0.5]) * p["w"] ** 2),
                        config=replace_dotted(RunConfig(), {"train.top_k": 4}))
    values = edge_eigenvalues_metric(ctx)
    np.testing.assert_allclose([values[f"edge_eig_{j}"] for j in range(2)], [6.0, 1.0], rtol=1e-10)
    assert np.isnan(values["edge_eig_2"]) and np.isnan(values["edge_eig_3"])


def test_registered_and_recorded_by_the_engine_with_edge_counts(tmp_path):
    import trajlab

    for name in ("leaf_sharpness", "edge_eigenvalues"):
        assert name in registry.GENERIC_METRICS and name in GENERIC_METRIC_FUNCTIONS and name in CURVATURE_METRICS
    base = {"problem.kind": "teacher_student", "model.kind": "two_layer", "train.x64": True, "train.max_steps": 4,
            "train.record_points": 2, "train.top_k": 3, "train.lanczos_iterations": 40, "problem.n": 5,
            "model.width": 6,
            "metrics": ["train_loss", "sharpness", "leaf_sharpness", "edge_eigenvalues"]}
    configs = [replace_dotted(RunConfig(), {**base, "optimizer.lr": lr}) for lr in (0.001, 0.0625)]
    data = trajlab.run(configs, out=tmp_path / "sweep", progress=False)
    frame = data.trajectories
    leaves = [c for c in frame.columns if c.startswith("leaf_sharpness_")]
    assert leaves and all(np.isfinite(frame[c]).all() for c in leaves)
    np.testing.assert_allclose(frame["edge_eig_0"], frame["sharpness"], rtol=1e-10)
    assert (frame[leaves].max(axis=1) <= frame["sharpness"] * (1 + 1e-9)).all()
    counts = edge_counts(data)
    # at the init (step 0): every column against the dense Hessian, the count against all its eigenvalues
    parts = registry.get_family("two_layer").build(configs[0])
    params = trajlab.init_params(configs[0])
    flat, unravel = ravel_pytree(params)
    problem_data = make_data(configs[0].problem)
    hessian = np.asarray(jax.hessian(lambda x: parts.loss(unravel(x), problem_data))(flat))
    spectrum = np.linalg.eigvalsh(hessian)
    sizes = [leaf.size for leaf in jax.tree_util.tree_leaves(params)]
    bounds = np.cumsum([0] + sizes)
    seen = set()
    for index, row in frame[frame["step"] == 0].iterrows():
        lr = data.manifest["configs"][row["run_id"]]["optimizer.lr"]
        # Lanczos with m = n = 36 steps: exact to rounding
        np.testing.assert_allclose([row[f"edge_eig_{j}"] for j in range(3)], spectrum[::-1][:3], rtol=1e-8)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            block = hessian[a:b, a:b]
            assert row[f"leaf_sharpness_{i}"] == pytest.approx(np.linalg.eigvalsh(block)[-1], rel=1e-8)
        expected = int(np.sum(spectrum > 1.5 / lr))
        assert expected < 3 and counts[index] == expected
        seen.add(expected)
    assert seen == {0, 2}  # lr = 0.001: none above 1500; lr = 0.0625: two above 24 (29.7, 24.3; the third is 23.7)


def test_edge_counts_needs_the_columns():
    class Data:
        trajectories = __import__("pandas").DataFrame({"run_id": ["a"], "train_loss": [1.0]})

    with pytest.raises(ValueError, match="edge_eigenvalues"):
        edge_counts(Data())

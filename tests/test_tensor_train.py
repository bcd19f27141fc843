"""The tensor train family (``model.kind=tensor_train``) and the ``tt-incremental`` preset.

Independent references: brute-force matrix products per entry (numpy), numpy SVDs of the unfoldings
with scipy's entropy for the effective rank, central finite differences for the gradient.
"""

import itertools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import entropy  # noqa: E402

from trajlab.families.tensor_train import (  # noqa: E402
    bond_component_norms,
    core_shapes,
    tt_entries,
    tt_full,
    tt_init,
    unfolding_effective_ranks,
)
from trajlab.presets import get_preset  # noqa: E402
from trajlab.presets.claims import check_claims  # noqa: E402
from trajlab.presets.tensor_train import bond_norms_figure  # noqa: E402
from trajlab.problems.tensor import tensor_completion_loss  # noqa: E402
from trajlab.store import load  # noqa: E402
from helpers import invoke, run_quick  # noqa: E402


def _cores(order=4, dim=3, width=2, seed=0):
    return tt_init(jax.random.PRNGKey(seed), core_shapes(order, dim, width), 1.0, jnp.float64)


def _brute_force(cores):
    cores = [np.asarray(c) for c in cores]
    order, dim = len(cores), cores[0].shape[1]
    out = np.zeros((dim,) * order)
    for index in itertools.product(range(dim), repeat=order):
        product = np.eye(1)
        for core, i in zip(cores, index):
            product = product @ core[:, i, :]
        out[index] = product[0, 0]
    return out


def test_shapes_and_dense_tensor_match_the_matrix_product_of_every_entry():
    assert core_shapes(4, 3, 2) == ((1, 3, 2), (2, 3, 2), (2, 3, 2), (2, 3, 1))
    for order, width in ((2, 3), (3, 2), (4, 2)):
        cores = _cores(order, 3, width, seed=order)
        np.testing.assert_allclose(np.asarray(tt_full(cores)), _brute_force(cores), rtol=1e-12, atol=1e-12)


def test_entries_are_the_dense_tensor_at_the_indices():
    cores = _cores()
    indices = np.random.default_rng(0).integers(0, 3, size=(25, 4))
    dense = _brute_force(cores)
    np.testing.assert_allclose(np.asarray(tt_entries(cores, jnp.asarray(indices))), dense[tuple(indices.T)], atol=1e-12)


def test_bond_component_norms():
    cores = [np.asarray(c) for c in _cores(width=3)]
    norms = [np.asarray(v) for v in bond_component_norms(tuple(jnp.asarray(c) for c in cores))]
    for k in range(3):
        expected = [np.linalg.norm(cores[k][:, :, a]) * np.linalg.norm(cores[k + 1][a]) for a in range(3)]
        np.testing.assert_allclose(norms[k], expected, rtol=1e-12)


def test_unfolding_effective_ranks_and_the_tt_rank_bound():
    cores = _cores(order=4, dim=4, width=2)
    dense = _brute_force(cores)
    ranks = np.asarray(unfolding_effective_ranks(jnp.asarray(dense)))
    for k in range(1, 4):
        unfolding = dense.reshape(4**k, -1)
        sigma = np.linalg.svd(unfolding, compute_uv=False)
        assert ranks[k - 1] == pytest.approx(np.exp(entropy(sigma / sigma.sum())), rel=1e-9)
        assert np.linalg.matrix_rank(unfolding) <= min(2, 4**k, 4 ** (4 - k))  # TT rank <= bond dimension


def test_completion_gradient_matches_finite_differences():
    cores = _cores(order=3, dim=3, width=2, seed=5)
    rng = np.random.default_rng(1)
    indices = jnp.asarray(rng.integers(0, 3, size=(10, 3)))
    values = jnp.asarray(rng.standard_normal(10))

    def loss(params):
        return tensor_completion_loss(tt_entries(params, indices), values)

    grads = jax.grad(loss)(cores)
    h = 1e-6
    for k, (core, grad) in enumerate(zip(cores, grads)):
        for position in [(0, 0, 0), (0, 2, 0)]:
            bumped = [list(cores), list(cores)]
            bumped[0][k] = core.at[position].add(h)
            bumped[1][k] = core.at[position].add(-h)
            numeric = (loss(tuple(bumped[0])) - loss(tuple(bumped[1]))) / (2 * h)
            assert float(grad[position]) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("setting, field", [("model.width=0", "model.width"), ("model.init=orthogonal", "model.init"),
                                            ("model.scale=0", "model.scale")])
def test_bad_input_is_one_line_and_exit_2(setting, field, tmp_path):
    result = invoke("run", "tt-incremental", "--quick", "--set", setting, "--no-progress", "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0], result.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "tt-incremental"))


def test_quick_runs_fit_and_record_what_the_claims_need(quick):
    assert len(quick.runs) == len(get_preset("tt-incremental").configs(quick=True))
    assert {"bond2_0", "bond2_2", "erank_tt1", "erank_tt2", "erank_tt3"} <= set(quick.trajectories.columns)
    assert (quick.runs["final.train_loss"] <= 1e-3).all()
    # the TT rank at bond 2 is at most the bond dimension 8, and so is the effective rank
    assert (quick.runs["final.erank_tt2"] >= 1).all() and (quick.runs["final.erank_tt2"] <= 8).all()


def test_quick_claims(quick):
    checks = check_claims(get_preset("tt-incremental").claims, quick)
    assert [c.holds is not None for c in checks] == [True, True, True], [c.measured for c in checks]
    assert QUICK_VERDICTS == [c.holds for c in checks], [c.measured for c in checks]


#: The verdicts measured at --quick (see the preset's docstring).
QUICK_VERDICTS = [False, False, False]


def test_figure(quick):
    import matplotlib

    matplotlib.use("Agg")
    fig = bond_norms_figure(quick.runs, quick.trajectories)
    assert len(fig.axes) == len(quick.runs)

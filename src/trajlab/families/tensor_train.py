"""The tensor train (matrix product state) factorization, ``model.kind=tensor_train``, on tensor
completion and tensor sensing.

An order-K tensor of shape (d_1, ..., d_K) is held as cores (G_1, ..., G_K), G_k of shape
(r_{k-1}, d_k, r_k) with r_0 = r_K = 1 and every bond dimension r_1 = ... = r_{K-1} = ``width``:

    W[i_1, ..., i_K] = G_1[:, i_1, :] G_2[:, i_2, :] ... G_K[:, i_K, :]   (a 1 x 1 matrix product)

(Oseledets, "Tensor-Train Decomposition", SIAM J. Sci. Comput. 2011). Its TT rank at bond k is the
rank of the sequential unfolding [W]_{(1..k), (k+1..K)} (a d_1...d_k x d_{k+1}...d_K matrix), at
most r_k. Cohen, Sharir, Shashua ("On the Expressive Power of Deep Learning: A Tensor Analysis",
COLT 2016) and Khrulkov, Novikov, Oseledets ("Expressive power of recurrent neural networks", ICLR
2018) relate tree (hierarchical Tucker) factorizations to convolutional networks and the train
factorization to recurrent ones: the bond index is the hidden state passed from mode k to k + 1.

Local components (by analogy with the hierarchical factorization's local components of Razin,
Maman, Cohen, ICML 2022, which we assume carry over; not taken from a paper): at bond k, component
a is the pair (G_k[:, :, a], G_{k+1}[a, :, :]) and its norm is ||G_k[:, :, a]||_F ||G_{k+1}[a, :, :]||_F.
Setting that pair to zero removes one from the bound on the TT rank at bond k.

Fields: ``width`` (bond dimension r >= 1), ``init`` (``gaussian``: every core entry i.i.d.
N(0, scale^2), the per-factor std convention of Razin et al.), ``scale``.

Metrics (plus the generic ones): ``reconstruction_error`` ||W - W*||_F / ||W*||_F and
``frobenius_norm`` (as for the CP / hierarchical families), ``bond_component_norms`` ->
``bond{k}_{i}`` (the top ``train.top_k`` local component norms at bond k = 1..K-1),
``unfolding_effective_ranks`` -> ``erank_tt{k}`` (effective rank, Roy & Vetterli 2007, of the
unfolding at bond k; dense SVDs: small tensors only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trajlab.config import require
from trajlab.families.deep_linear import TOP_K_PADDED
from trajlab.registry import FamilyParts, family

TT_INITS = ("gaussian",)


@dataclass(frozen=True)
class TensorTrainConfig:
    """Tensor train factorization with bond dimension ``width`` (see :mod:`trajlab.families.tensor_train`)."""

    width: int = 10
    init: str = "gaussian"
    scale: float = 1e-2

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(
            isinstance(self.width, int) and 1 <= self.width <= 10**5, "model.width",
            "an integer in [1, 10^5] (bond dimension)", self.width,
        )
        require(self.init in TT_INITS, "model.init", f"one of {TT_INITS} for model.kind=tensor_train", self.init)


def core_shapes(order: int, dim: int, width: int) -> tuple[tuple[int, int, int], ...]:
    """(r_{k-1}, d, r_k) for k = 1..K, r_0 = r_K = 1."""
    bonds = [1] + [width] * (order - 1) + [1]
    return tuple((bonds[k], dim, bonds[k + 1]) for k in range(order))


def tt_init(key, shapes, scale, dtype):
    """Cores with i.i.d. N(0, scale^2) entries (one draw for all, split)."""
    import jax
    import jax.numpy as jnp

    sizes = [a * b * c for a, b, c in shapes]
    flat = jnp.asarray(scale, dtype) * jax.random.normal(key, (sum(sizes),), dtype)
    cores, start = [], 0
    for size, shape in zip(sizes, shapes):
        cores.append(flat[start:start + size].reshape(shape))
        start += size
    return tuple(cores)


def tt_full(cores):
    """The dense tensor: contract the cores left to right."""
    import jax.numpy as jnp

    tensor = cores[0][0]  # (d_1, r_1)
    for core in cores[1:]:
        tensor = jnp.tensordot(tensor, core, axes=([-1], [0]))
    return tensor[..., 0]


def tt_entries(cores, indices):
    """W at the multi-indices ``indices`` (M, K): a batch of matrix-vector products, never the dense tensor."""
    import jax.numpy as jnp

    vector = cores[0][0][indices[:, 0]]  # (M, r_1)
    for k, core in enumerate(cores[1:], start=1):
        vector = jnp.einsum("ma,amb->mb", vector, core[:, indices[:, k], :])
    return vector[:, 0]


def bond_component_norms(cores):
    """[norms at bond k for k = 1..K-1]: ||G_k[:, :, a]||_F ||G_{k+1}[a, :, :]||_F for every a."""
    import jax.numpy as jnp

    out = []
    for left, right in zip(cores[:-1], cores[1:]):
        out.append(jnp.sqrt(jnp.sum(left**2, axis=(0, 1))) * jnp.sqrt(jnp.sum(right**2, axis=(1, 2))))
    return out


def unfolding_effective_ranks(tensor):
    """Effective rank of [W]_{(1..k), (k+1..K)} for k = 1..K-1 (shape (K - 1,))."""
    import jax.numpy as jnp

    from trajlab.metrics.spectral import effective_rank

    order, size = tensor.ndim, tensor.size
    ranks = []
    for k in range(1, order):
        rows = 1
        for d in tensor.shape[:k]:
            rows *= d
        ranks.append(effective_rank(jnp.linalg.svd(tensor.reshape(rows, size // rows), compute_uv=False)))
    return jnp.stack(ranks)


def _top_k(values, k: int):
    import jax.numpy as jnp

    values = -jnp.sort(-values)
    return values[:k] if values.shape[-1] >= k else jnp.pad(values, (0, k - values.shape[-1]))


def _bond_metric(state):
    out = {}
    for bond, norms in enumerate(bond_component_norms(state.params), start=1):
        values = _top_k(norms, state.top_k)
        for i in range(values.shape[0]):
            out[f"bond{bond}_{i}"] = values[i]
    return out


def _unfolding_metric(state):
    ranks = unfolding_effective_ranks(state.tensor)
    return {f"erank_tt{k}": ranks[k - 1] for k in range(1, ranks.shape[0] + 1)}


def _metrics():
    from trajlab.metrics.tensor_registry import TENSOR_METRIC_FUNCTIONS

    return {
        "reconstruction_error": TENSOR_METRIC_FUNCTIONS["reconstruction_error"],
        "frobenius_norm": TENSOR_METRIC_FUNCTIONS["frobenius_norm"],
        "bond_component_norms": _bond_metric,
        "unfolding_effective_ranks": _unfolding_metric,
    }


def check(config) -> None:
    """Full-batch gradients; train.top_k within the bond dimension (zero-padded to 10)."""
    require(
        config.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=tensor_train",
        config.optimizer.batch_size,
    )
    top = max(config.model.width, TOP_K_PADDED)
    require(
        config.train.top_k <= top, "train.top_k",
        f"an integer in [1, max(model.width, {TOP_K_PADDED})] = [1, {top}] for model.kind=tensor_train "
        "(its bond component norms)", config.train.top_k,
    )


def nbytes(config) -> int:
    """The cores, the gathered core slices at the M observed entries (M x r^2 per core, with the
    gradient), the dense tensor with its unfoldings' SVDs, and the residuals."""
    problem, width = config.problem, config.model.width
    order, dim, observations = problem.order, problem.dim, problem.observations
    parameters = sum(a * b * c for a, b, c in core_shapes(order, dim, width))
    gathered = 3 * order * observations * width * width
    dense = 4 * dim**order + dim**order * width
    return (8 if config.train.x64 else 4) * (2 * parameters + gathered + dense + 3 * observations)


@family(
    "tensor_train",
    config=TensorTrainConfig,
    problems=("tensor_completion", "tensor_sensing"),
    metrics=_metrics(),
    default_metrics=("train_loss", "reconstruction_error", "frobenius_norm", "bond_component_norms"),
    check=check,
    description="tensor train (matrix product state) factorization",
    nbytes=nbytes,
)
def build(config) -> FamilyParts:
    """Init, loss (from index arrays for completion) and metric context of a tensor train run."""
    import jax.numpy as jnp

    from trajlab.metrics.tensor_registry import TensorMetricState
    from trajlab.problems.tensor import tensor_completion_loss, tensor_sensing_loss

    problem = config.problem
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    shapes = core_shapes(problem.order, problem.dim, config.model.width)
    convention = problem.loss_convention

    def init(key, scale):
        return tt_init(key, shapes, scale, dtype)

    if problem.kind == "tensor_completion":

        def loss(params, data):
            return tensor_completion_loss(tt_entries(params, data.indices), data.values, convention)

    else:

        def loss(params, data):
            return tensor_sensing_loss(tt_full(params), data.sensing, data.values, convention)

    context = functools.partial(_context, TensorMetricState, full=tt_full, loss=loss, config=config)
    return FamilyParts(init=init, loss=loss, context=context)


def _context(cls, params, initial, reference, data, **fields):
    return cls(params, initial, reference, data, **fields)

"""A deep linear network started from a *chosen* end-to-end matrix W_e(0), balanced or not:
the family ``deep_linear_prescribed`` (whitened regression only).

It is the deep linear network of :mod:`trajlab.families.deep_linear` (same layers, loss, metric
context and metrics; that module is reused, not changed) with an init that deep_linear's schemes do
not offer: the end-to-end matrix at init is a prescribed multiple of the target Phi, factorized into
layers by Procedure 1 of Arora, Cohen, Golowich, Hu (ICLR 2019), and then optionally unbalanced.
It is the init their Theorem 1 is stated for (a given W_e(0) with a deficiency margin, delta-balanced
layers), and the inits their Section 3.3 / the talk use to show that each assumption is needed.

Fields (``model.*``):

- ``end_to_end``: ``target``: W_e(0) = scale * Phi; ``negative_target``: W_e(0) = -scale * Phi.
  For Phi with singular values s_r, the deficiency margin (their Definition 2, c = sigma_min(Phi) -
  ||W_e(0) - Phi||_F) is s_min - |1 - scale| ||Phi||_F for ``target`` and s_min - (1 + scale)
  ||Phi||_F < 0 for ``negative_target``.
- ``scale`` > 0 (batched): the factor above.
- ``depth`` N >= 1 and ``width`` (every hidden width; None = max(m, n)).
- Layers: with the thin SVD A = U diag(s) V^T of the chosen W_e(0), W_1 = diag(s^(1/N)) V^T,
  W_j = diag(s^(1/N)), W_N = U diag(s^(1/N)), zero-padded
  (:func:`trajlab.models.deep_linear.balanced_from_end_to_end`): exactly balanced. When ``width`` is
  smaller than min(m, n) (a bottleneck), only the top ``width`` singular modes of A are kept (the
  product is then the best rank-``width`` approximation of A, Eckart-Young), still balanced.
- ``imbalance`` lambda >= 1: W_1 -> lambda W_1 and W_N -> W_N / lambda afterwards. The product is
  unchanged (hence the margin too); the layers are then far from balanced: for N = 2,
  ||W_2^T W_2 - W_1 W_1^T||_F = (lambda^2 - lambda^-2) ||s^(2/N)||_2.

The init is deterministic (Phi is drawn by ``problem.seed``; ``seed`` is not used).
Metrics: those of the deep linear family (``deficiency_margin``, ``balancedness``, singular values,
...) and the generic ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajlab.config import require
from trajlab.families.deep_linear import TOP_K_PADDED, _context
from trajlab.metrics.registry import METRIC_FUNCTIONS
from trajlab.registry import FamilyParts, family

END_TO_END_INITS = ("target", "negative_target")
DEFAULT_METRICS = (
    "train_loss",
    "test_error",
    "singular_values",
    "effective_rank",
    "nuclear_norm",
    "deficiency_margin",
    "balancedness",
)


@dataclass(frozen=True)
class PrescribedInitConfig:
    """A deep linear network from W_e(0) = +-scale * Phi (see :mod:`trajlab.families.deep_linear_inits`)."""

    depth: int = 3
    width: int | None = None
    scale: float = 0.5
    end_to_end: str = "target"
    imbalance: float = 1.0

    def __post_init__(self) -> None:
        require(self.scale > 0 and self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(isinstance(self.depth, int) and 1 <= self.depth <= 1000, "model.depth", "an integer in [1, 1000]", self.depth)
        require(
            self.width is None or (isinstance(self.width, int) and 1 <= self.width <= 10**6),
            "model.width", "an integer in [1, 10^6] or null", self.width,
        )
        require(
            self.end_to_end in END_TO_END_INITS, "model.end_to_end",
            f"one of {END_TO_END_INITS} for model.kind=deep_linear_prescribed", self.end_to_end,
        )
        require(
            isinstance(self.imbalance, (int, float)) and 1 <= self.imbalance <= 1e6,
            "model.imbalance", "a number in [1, 1e6] (W_1 -> lambda W_1, W_N -> W_N / lambda)", self.imbalance,
        )
        require(
            self.imbalance == 1 or self.depth >= 2, "model.imbalance",
            "1 when model.depth = 1 (a single layer cannot be unbalanced)", self.imbalance,
        )


def check(config) -> None:
    """Full-batch gradients, and train.top_k within the singular values of W_e (zero-padded to 10)."""
    problem = config.problem
    require(
        config.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=deep_linear_prescribed",
        config.optimizer.batch_size,
    )
    top = max(min(problem.m, problem.n), TOP_K_PADDED)
    require(
        config.train.top_k <= top, "train.top_k",
        f"an integer in [1, max(min(m, n), {TOP_K_PADDED})] = [1, {top}] for model.kind=deep_linear_prescribed",
        config.train.top_k,
    )


def shapes_of(config) -> tuple[tuple[int, int], ...]:
    """(d_j, d_{j-1}) of W_1 ... W_N: d_0 = n, d_N = m, hidden widths ``width`` (None: max(m, n))."""
    from trajlab.models.deep_linear import DeepLinear

    p, model = config.problem, config.model
    return DeepLinear(p.m, p.n, model.depth, model.width).shapes


def balanced_layers(a, shapes):
    """Balanced layers whose product is ``a``, or, when a hidden width k is below min(m, n), the best
    rank-k approximation of ``a`` (its top k singular modes): Procedure 1 of Arora et al. (ICLR 2019)
    on the kept modes. With room for every mode this is
    :func:`trajlab.models.deep_linear.balanced_from_end_to_end` itself."""
    import jax.numpy as jnp

    from trajlab.models.deep_linear import _pad, balanced_from_end_to_end

    depth = len(shapes)
    kept = min([min(a.shape)] + [shape[0] for shape in shapes[:-1]])
    if depth == 1 or kept == min(a.shape):
        return balanced_from_end_to_end(a, shapes)
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    root = s[:kept] ** (1.0 / depth)
    layers = [_pad(root[:, None] * vt[:kept], shapes[0])]
    layers += [_pad(jnp.diag(root), shape) for shape in shapes[1:-1]]
    layers.append(_pad(u[:, :kept] * root[None, :], shapes[-1]))
    return tuple(layers)


def unbalance(layers, imbalance):
    """W_1 -> lambda W_1, W_N -> W_N / lambda (the product is unchanged)."""
    if len(layers) == 1:
        return layers
    return (layers[0] * imbalance, *layers[1:-1], layers[-1] / imbalance)


def prescribed_layers(target, shapes, scale, end_to_end: str, imbalance: float = 1.0):
    """The layers of the init: W_e(0) = +-scale * target, factorized by :func:`balanced_layers`, then
    :func:`unbalance` d by ``imbalance``."""
    sign = -1.0 if end_to_end == "negative_target" else 1.0
    return unbalance(balanced_layers(sign * scale * target, shapes), imbalance)


def nbytes(config) -> int:
    """One run: the layers, the partial products and Gram matrices, W_e with its SVD, and Phi."""
    m, n = config.problem.m, config.problem.n
    dims = [n] + [shape[0] for shape in shapes_of(config)]
    layers = sum(dims[j + 1] * dims[j] for j in range(config.model.depth))
    working = sum(d * n + m * d for d in dims[1:]) + sum(d * d for d in dims) + 8 * m * n
    return (8 if config.train.x64 else 4) * (2 * layers + working)


@family(
    "deep_linear_prescribed",
    config=PrescribedInitConfig,
    problems=("whitened",),
    metrics=METRIC_FUNCTIONS,
    default_metrics=DEFAULT_METRICS,
    columns={"singular_values": "sv", "target_mode_strengths": "mode"},
    check=check,
    description="deep linear network from W_e(0) = +-scale Phi, balanced (or lambda-unbalanced) layers",
    nbytes=nbytes,
)
def build(config) -> FamilyParts:
    """Init from the chosen end-to-end matrix, and the loss 1/2 ||W_N ... W_1 - Phi||_F^2."""
    import functools

    import jax.numpy as jnp

    from trajlab.metrics.registry import MetricState
    from trajlab.models.deep_linear import end_to_end
    from trajlab.problems.registry import loss_function
    from trajlab.problems.regression import make_whitened

    dtype = jnp.float64 if config.train.x64 else jnp.float32
    target = jnp.asarray(make_whitened(config.problem).target, dtype)
    shapes = shapes_of(config)
    model = config.model

    def init(key, scale):
        del key  # deterministic: W_e(0) is chosen, Phi comes from problem.seed
        return prescribed_layers(target, shapes, jnp.asarray(scale, dtype), model.end_to_end, model.imbalance)

    problem_loss = loss_function(config.problem)

    def loss(params, data):
        return problem_loss(end_to_end(params), data)

    context = functools.partial(
        _context, MetricState, loss=loss, config=config, matrix_loss=problem_loss, top_k=config.train.top_k,
        schatten_p=config.train.schatten_p, end_to_end_parameters=False,
    )
    return FamilyParts(init=init, loss=loss, context=context)

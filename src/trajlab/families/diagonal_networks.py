"""The quadratically parameterized linear model ("diagonal linear network") on sparse regression.

Family ``quadratic_diagonal`` (``model.kind``): f(x) = <u * u - v * v, x> with elementwise squares,
parameters (u, v) in R^d x R^d, predictor w = u * u - v * v. Init u = v = ``scale`` * 1 (so w(0) = 0;
the init of Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry, Srebro, "Kernel and Rich
Regimes in Overparametrized Models", COLT 2020; the seed only draws label noise and minibatches).
Loss: L(u, v) = 1/(2n) sum_i (f(x_i) - y_i)^2 (half the *mean* squared residual).

``label_noise`` (sigma): the std of the fresh Gaussian noise added to every label of every
stochastic step (SGD with label noise: Blanc, Gupta, Valiant, Valiant, COLT 2020; HaoChen, Wei,
Lee, Ma, COLT 2021; Li, Wang, Arora, ICLR 2022). It acts through the family's ``minibatch`` hook,
so it needs ``optimizer.batch_size`` > 0; ``batch_size = problem.samples`` is allowed and is
full-batch gradient descent on freshly noised labels (each step draws a permutation of all samples,
which leaves the mean gradient unchanged). The stopping rule (``train.tol``) and the recorded
``train_loss`` use the clean labels.

Problem ``sparse_linear`` (``problem.kind``): n = ``samples`` inputs x_i ~ N(0, I_d), d = ``dim``,
a kappa-sparse ground truth w* (kappa = ``sparsity``: a uniformly random support drawn from
``seed``, entries ``signal`` times independent random signs) and clean labels y = X w*. The data
also carry three interpolators computed independently of any training, in float64 numpy/scipy:

- ``w_min_l2`` = pinv(X) y, the minimum-l2-norm interpolator (the kernel-regime limit of large
  init: the tangent kernel of u = v = alpha at init is 8 alpha^2 <x, x'>);
- ``w_min_l1`` = argmin ||w||_1 s.t. X w = y (basis pursuit, a linear program solved by
  ``scipy.optimize.linprog`` with HiGHS): the small-init limit of gradient flow (Woodworth et al.
  2020, Theorem 1 as alpha -> 0);
- ``w_min_trace`` = argmin sum_j c_j |w_j| s.t. X w = y with c_j = (1/n) sum_i x_ij^2: the
  interpolator of least Hessian trace. Derivation: at any (u, v),
  tr Hess L = (1/n) sum_i [||grad f_i||^2 + r_i tr Hess f_i] = (4/n) sum_ij x_ij^2 (u_j^2 + v_j^2)
  because Hess f_i = diag(2 x_i, -2 x_i) has zero trace; and min {u_j^2 + v_j^2 : u_j^2 - v_j^2 =
  w_j} = |w_j|, so over the interpolating manifold min tr Hess L = 4 sum_j c_j |w_j|. Label-noise
  SGD follows the flow that decreases tr Hess L on the manifold of minimizers (Blanc et al. 2020;
  Li, Wang, Arora 2022, Sec. 6 treat exactly this model), so this is its predicted limit.

Metrics (distances relative to ||w*||): ``recovery_error`` ||w - w*|| / ||w*||,
``distance_to_min_l2`` / ``distance_to_min_l1`` / ``distance_to_min_trace`` likewise,
``l1_norm`` and ``l2_norm`` of w, ``hessian_trace_exact`` (the closed form above; the generic
``hessian_trace`` is Hutchinson's estimate of the same number).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

#: Largest sizes accepted (dense float64 data and a linear program in 2 d variables).
MAX_DIM = 20_000
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class SparseLinearConfig:
    """n Gaussian samples of a kappa-sparse linear ground truth (see :mod:`trajlab.families.diagonal_networks`)."""

    samples: int = 20
    dim: int = 30
    sparsity: int = 2
    signal: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(1 <= self.dim <= MAX_DIM, "problem.dim", f"an integer in [1, {MAX_DIM}] (input dimension d)", self.dim)
        require(
            1 <= self.samples <= MAX_SAMPLES, "problem.samples", f"an integer in [1, {MAX_SAMPLES}] (samples n)",
            self.samples,
        )
        require(1 <= self.sparsity <= self.dim, "problem.sparsity", f"an integer in [1, problem.dim] = [1, {self.dim}]",
                self.sparsity)
        require(0 < self.signal < float("inf"), "problem.signal", "a number > 0 (magnitude of the nonzero entries)",
                self.signal)


def minimum_l1_interpolator(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """argmin sum_j c_j |w_j| s.t. X w = y (c = ``weights``, default 1): the linear program over
    w = p - q, p, q >= 0, min c^T (p + q) s.t. X (p - q) = y, solved by scipy's HiGHS."""
    from scipy.optimize import linprog

    n, d = x.shape
    c = np.ones(d) if weights is None else np.asarray(weights, np.float64)
    result = linprog(
        np.concatenate([c, c]), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None), method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"sparse_linear: the basis-pursuit linear program failed: {result.message}")
    return result.x[:d] - result.x[d:]


@problem("sparse_linear", config=SparseLinearConfig,
         nbytes=lambda c: 8 * (4 * c.samples * c.dim + 6 * c.dim + 2 * c.samples))
def sparse_linear(config):
    """Gaussian inputs, a kappa-sparse ground truth, clean labels, and the min-l2 / min-l1 /
    min-trace interpolators (numpy float64, see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    support = rng.choice(config.dim, config.sparsity, replace=False)
    w_star = np.zeros(config.dim)
    w_star[support] = config.signal * rng.choice([-1.0, 1.0], config.sparsity)
    x = rng.standard_normal((config.samples, config.dim))
    y = x @ w_star
    column_weights = np.mean(x**2, axis=0)
    return {
        "x": x,
        "y": y,
        "w_star": w_star,
        "w_min_l2": np.linalg.pinv(x) @ y,
        "w_min_l1": minimum_l1_interpolator(x, y),
        "w_min_trace": minimum_l1_interpolator(x, y, column_weights),
    }


@dataclass(frozen=True)
class QuadraticDiagonalConfig:
    """f(x) = <u*u - v*v, x>, init u = v = scale (see :mod:`trajlab.families.diagonal_networks`)."""

    scale: float = 1.0
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0", self.scale)
        require(
            0 <= self.label_noise < float("inf"), "model.label_noise",
            "a number >= 0 (std of the Gaussian noise added to each label at each stochastic step)", self.label_noise,
        )


def check(config) -> None:
    """Minibatches of at most the training set; label noise only on stochastic steps."""
    n = config.problem.samples
    require(
        config.optimizer.batch_size <= n, "optimizer.batch_size",
        f"an integer in [0, problem.samples] = [0, {n}] (problem.samples: the full batch with fresh label noise)",
        config.optimizer.batch_size,
    )
    require(
        config.model.label_noise == 0 or config.optimizer.batch_size > 0, "model.label_noise",
        "0 unless optimizer.batch_size > 0 (label noise is drawn by the minibatch of each stochastic step)",
        config.model.label_noise,
    )


def predictor(params):
    """w = u * u - v * v."""
    u, v = params
    return u * u - v * v


def half_mean_squared_loss(params, data):
    """L = 1/(2n) sum_i (<w, x_i> - y_i)^2."""
    residual = data["x"] @ predictor(params) - data["y"]
    return 0.5 * jnp.mean(residual**2)


def hessian_trace_exact(params, x):
    """tr Hess L = (4/n) sum_ij x_ij^2 (u_j^2 + v_j^2) (exact at any (u, v); see the module docstring)."""
    u, v = params
    return 4.0 * jnp.mean(jnp.sum(x**2 * (u * u + v * v), axis=1))


def _relative(target: str):
    def metric(ctx):
        return jnp.linalg.norm(predictor(ctx.params) - ctx.data[target]) / jnp.linalg.norm(ctx.data["w_star"])

    return metric


METRICS = {
    "recovery_error": _relative("w_star"),
    "distance_to_min_l2": _relative("w_min_l2"),
    "distance_to_min_l1": _relative("w_min_l1"),
    "distance_to_min_trace": _relative("w_min_trace"),
    "l1_norm": lambda ctx: jnp.sum(jnp.abs(predictor(ctx.params))),
    "l2_norm": lambda ctx: jnp.linalg.norm(predictor(ctx.params)),
    "hessian_trace_exact": lambda ctx: hessian_trace_exact(ctx.params, ctx.data["x"]),
}
DEFAULT_METRICS = (
    "train_loss", "recovery_error", "distance_to_min_l2", "distance_to_min_l1", "distance_to_min_trace", "l1_norm",
    "hessian_trace_exact",
)


def _nbytes(config) -> int:
    n, d = config.problem.samples, config.problem.dim
    return (8 if config.train.x64 else 4) * (2 * d + 3 * n * d + 4 * n + 8 * d)


@family("quadratic_diagonal", config=QuadraticDiagonalConfig, problems=("sparse_linear",), metrics=METRICS,
        default_metrics=DEFAULT_METRICS, check=check, nbytes=_nbytes)
def quadratic_diagonal(config):
    """Quadratically parameterized linear model f(x) = <u*u - v*v, x> (diagonal linear network)."""
    d = config.problem.dim
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    batch_size = config.optimizer.batch_size
    noise = config.model.label_noise

    def init(key, scale):
        ones = jnp.ones((d,), dtype)
        return (scale * ones, scale * ones)

    def minibatch(data, key):
        """``batch_size`` samples without replacement, each label plus fresh N(0, label_noise^2) noise."""
        n = data["x"].shape[0]
        choose, perturb = jax.random.split(key)
        if batch_size >= n:  # the full batch: the order of the samples does not change the mean
            x, y = data["x"], data["y"]
        else:
            index = jax.random.choice(choose, n, (batch_size,), replace=False)
            x, y = data["x"][index], data["y"][index]
        if noise > 0:
            y = y + noise * jax.random.normal(perturb, y.shape, y.dtype)
        return dict(data, x=x, y=y)

    return FamilyParts(init=init, loss=half_mean_squared_loss, minibatch=minibatch)

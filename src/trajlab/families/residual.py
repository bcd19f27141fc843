"""Residual and plain ReLU MLPs of equal depth and width (``model.kind=residual_mlp``) on a square
teacher regression (``problem.kind=square_teacher``), with the conditioning of their slope matrices:
R. Balestriero & R. Baraniuk's affine-spline view of deep networks (a ReLU network is a continuous
piecewise affine map; on each region of its input space every layer acts as an affine map
h -> A_l h + b_l and the network as x -> A(x) x + b(x)), where residual networks' slope matrices
are better conditioned. (The claim is taken from their abstracts; the papers' exact constructions
were not at hand.)

Model, width n = input = output dimension d (square maps, so condition numbers are defined):

    h_0 = W_in x,   h_l = h_{l-1} + relu(W_l h_{l-1})  (``residual``)   or   h_l = relu(W_l h_{l-1})  (plain),
    f(x) = W_out h_L,   l = 1..L (L = ``model.depth`` hidden layers), no biases.

Init: W_in, W_out = scale x random orthogonal matrices (so that the conditioning of A(x) is that
of the hidden layers' product, not of two Gaussian square matrices); W_l with entries N(0, 2 scale^2 / n) (He) for the
plain network and N(0, 2 scale^2 / (n L)) for the residual branches (the common 1/sqrt(L) branch
scale, which slows the growth of a residual network's forward signal with depth: with the plain He
init every block would roughly double ||h||^2. The branches' nonnegative outputs still add up
coherently: at L = 8 the residual network's initial loss is about 7 times the plain one's).

Slope matrices (the local affine maps of the spline, equal to the Jacobians on each region):
A_l(x) = dh_l / dh_{l-1} = I + diag(1[W_l h_{l-1} > 0]) W_l (residual) or diag(1[...]) W_l (plain),
and the network's A(x) = df/dx = W_out A_L ... A_1 W_in. Their condition numbers
kappa = sigma_max / sigma_min (sigma_min floored at :data:`SINGULAR_FLOOR` sigma_max, so a singular
matrix reads 1 / SINGULAR_FLOOR = 1e12) are taken at the first :data:`CONDITION_SAMPLES` training
inputs; metrics record their medians. A plain ReLU layer's slope matrix has a zero row for every
inactive unit, so it is singular whenever a unit is off: ``layer_condition_active`` also reports
kappa over the singular values above 1e-6 sigma_max (the map restricted to its range).

Loss: 1/(2S) sum_s ||f(x_s) - y_s||^2 (half the mean over samples of the squared error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

#: Condition numbers are computed at this many training inputs (medians are recorded).
CONDITION_SAMPLES = 16
#: sigma_min is floored at this fraction of sigma_max (singular matrices read 1e12).
SINGULAR_FLOOR = 1e-12
#: Singular values above this fraction of sigma_max count for the range-restricted condition number.
RANGE_TOL = 1e-6


@dataclass(frozen=True)
class SquareTeacher:
    """x ~ N(0, I_dim), y = B relu(A x) sqrt(2 / dim) with A, B entries N(0, 1 / dim): a square regression."""

    samples: int = 64
    dim: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.samples, int) and 1 <= self.samples <= 10**6, "problem.samples",
                "an integer in [1, 10^6]", self.samples)
        require(isinstance(self.dim, int) and 1 <= self.dim <= 4096, "problem.dim", "an integer in [1, 4096]", self.dim)


@problem("square_teacher", config=SquareTeacher)
def square_teacher(config: SquareTeacher) -> dict:
    """Inputs (S, d) and targets (S, d) of a random one-hidden-layer ReLU teacher."""
    rng = np.random.default_rng(config.seed)
    d = config.dim
    a = rng.standard_normal((d, d)) / math.sqrt(d)
    b = rng.standard_normal((d, d)) / math.sqrt(d)
    x = rng.standard_normal((config.samples, d))
    y = np.maximum(x @ a.T, 0.0) @ b.T * math.sqrt(2.0)
    return {"x": x, "y": y}


@dataclass(frozen=True)
class ResidualMLP:
    """A residual (or plain) ReLU MLP of ``depth`` hidden layers of width = problem.dim (see the module)."""

    depth: int = 8
    residual: bool = True
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(isinstance(self.depth, int) and 1 <= self.depth <= 1000, "model.depth",
                "an integer in [1, 1000] (hidden layers)", self.depth)
        require(isinstance(self.residual, bool), "model.residual", "true or false", self.residual)
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (init scale)", self.scale)


def init_params(key, dim: int, depth: int, residual: bool, scale, dtype=jnp.float32) -> dict:
    """{"in": (n, d), "hidden": (L, n, n), "out": (d, n)} with the init of the module docstring."""
    k_in, k_hidden, k_out = jax.random.split(key, 3)
    scale = jnp.asarray(scale, dtype)
    hidden_std = math.sqrt(2.0 / dim) / (math.sqrt(depth) if residual else 1.0)
    return {
        "in": scale * jnp.linalg.qr(jax.random.normal(k_in, (dim, dim), dtype))[0],
        "hidden": scale * hidden_std * jax.random.normal(k_hidden, (depth, dim, dim), dtype),
        "out": scale * jnp.linalg.qr(jax.random.normal(k_out, (dim, dim), dtype))[0],
    }


def layer(w, h, residual: bool):
    """One hidden layer on one input h (n,)."""
    branch = jax.nn.relu(w @ h)
    return h + branch if residual else branch


def hidden_states(params, x, residual: bool):
    """h_0, ..., h_L for one input x (d,): (L + 1, n)."""

    def step(h, w):
        new = layer(w, h, residual)
        return new, new

    h0 = params["in"] @ x
    _, hs = jax.lax.scan(step, h0, params["hidden"])
    return jnp.concatenate([h0[None], hs])


def apply(params, x, residual: bool):
    """f(x) for x (S, d) -> (S, d)."""
    return jax.vmap(lambda v: params["out"] @ hidden_states(params, v, residual)[-1])(x)


def mse_loss(params, x, y, residual: bool):
    """1/(2S) sum_s ||f(x_s) - y_s||^2."""
    return 0.5 * jnp.sum((apply(params, x, residual) - y) ** 2) / x.shape[0]


def layer_slopes(params, x, residual: bool):
    """A_l(x) = dh_l / dh_{l-1} for l = 1..L at one input x: (L, n, n) (forward-mode Jacobians)."""
    states = hidden_states(params, x, residual)
    return jax.vmap(lambda w, h: jax.jacfwd(lambda v: layer(w, v, residual))(h))(params["hidden"], states[:-1])


def network_slope(params, x, residual: bool):
    """A(x) = df/dx at one input x: (d, d)."""
    return jax.jacfwd(lambda v: params["out"] @ hidden_states(params, v, residual)[-1])(x)


def condition_numbers(matrices):
    """(kappa = sigma_max / max(sigma_min, SINGULAR_FLOOR sigma_max), kappa over sigma > RANGE_TOL sigma_max)
    for a stack of square matrices (..., n, n)."""
    singular = jnp.linalg.svd(matrices, compute_uv=False)
    top = singular[..., 0]
    kappa = top / jnp.maximum(singular[..., -1], SINGULAR_FLOOR * top)
    kept = jnp.where(singular > RANGE_TOL * top[..., None], singular, jnp.inf)
    return kappa, top / jnp.min(kept, axis=-1)


def _probe(ctx):
    return ctx.data["x"][:CONDITION_SAMPLES]


def _layer_kappas(ctx):
    residual = ctx.config.model.residual
    slopes = jax.vmap(lambda v: layer_slopes(ctx.params, v, residual))(_probe(ctx))  # (samples, L, n, n)
    return condition_numbers(slopes)


def layer_condition(ctx):
    """Median over the probe inputs of kappa(A_l(x)), per layer: columns layer_cond_<l>."""
    return jnp.median(_layer_kappas(ctx)[0], axis=0)


def layer_condition_summary(ctx):
    """{layer_cond_median: median over layers and inputs of kappa(A_l(x)), layer_cond_active_median: the same
    for the range-restricted kappa, singular_fraction: the fraction of (layer, input) slope matrices with
    kappa >= 1e10}."""
    kappa, active = _layer_kappas(ctx)
    return {
        "layer_cond_median": jnp.median(kappa),
        "layer_cond_active_median": jnp.median(active),
        "singular_fraction": jnp.mean((kappa >= 1e10).astype(kappa.dtype)),
    }


def network_condition(ctx):
    """{net_cond_median: median over the probe inputs of kappa(A(x)), net_sv_max / net_sv_min: medians of
    its largest and smallest singular values}."""
    residual = ctx.config.model.residual
    slopes = jax.vmap(lambda v: network_slope(ctx.params, v, residual))(_probe(ctx))
    singular = jnp.linalg.svd(slopes, compute_uv=False)
    kappa, _ = condition_numbers(slopes)
    return {"net_cond_median": jnp.median(kappa), "net_sv_max": jnp.median(singular[:, 0]),
            "net_sv_min": jnp.median(singular[:, -1])}


def check(config) -> None:
    require(config.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=residual_mlp (full-batch)",
            config.optimizer.batch_size)


def build(config) -> FamilyParts:
    """Init and loss of the residual or plain MLP (see :mod:`trajlab.families.residual`)."""
    model, dim = config.model, config.problem.dim
    dtype = jnp.float64 if config.train.x64 else jnp.float32

    def init(key, scale):
        return init_params(key, dim, model.depth, model.residual, scale, dtype)

    def loss(params, data):
        return mse_loss(params, data["x"], data["y"], model.residual)

    return FamilyParts(init=init, loss=loss)


family(
    "residual_mlp",
    config=ResidualMLP,
    problems=("square_teacher",),
    metrics={
        "layer_condition": layer_condition,
        "layer_condition_summary": layer_condition_summary,
        "network_condition": network_condition,
    },
    columns={"layer_condition": "layer_cond"},
    default_metrics=("train_loss", "layer_condition_summary", "network_condition"),
    check=check,
    description="residual or plain ReLU MLP of equal depth and width, with its slope matrices' conditioning",
)(build)

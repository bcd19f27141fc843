"""Memorizing random labels with a two-layer ReLU network (Lee's slides on over-parameterization;
Zhang, Bengio, Hardt, Recht, Vinyals, ICLR 2017 for random labels).

Problem ``random_labels`` (``problem.kind``): n = ``samples`` inputs uniform on the unit sphere of
R^d (d = ``dim``; x = z / ||z||, z ~ N(0, I_d)) and labels y_i uniform on {-1, +1}, independent of
the inputs, drawn from ``seed``.

Family ``two_layer_memorizer`` (``model.kind``): f(x) = (1 / sqrt(p)) sum_{r=1}^p a_r relu(<w_r, x>),
p = ``width``, both layers trained, no biases; the NTK parameterization (Jacot et al. 2018; Du, Zhai,
Poczos, Singh, ICLR 2019 use it with the output layer fixed), so one step size serves every width.
Init: w_r ~ N(0, scale^2 I_d), a_r ~ N(0, scale^2) (``scale`` batched). Loss: the mean squared error
(1/n) sum_i (f(x_i) - y_i)^2 (no factor 1/2, as the built-in network problems). It is a family of
its own rather than the built-in ``two_layer`` because a family's problems are a closed tuple (the
``two_layer`` family reads its data by problem kind), so a new problem cannot feed it.

Metrics: ``train_loss``; ``max_residual`` max_i |f(x_i) - y_i|; ``sign_accuracy`` the fraction of
samples with sign f(x_i) = y_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

MAX_SAMPLES = 100_000
MAX_DIM = 10_000


@dataclass(frozen=True)
class RandomLabelsConfig:
    """n points on the unit sphere of R^d with independent uniform +-1 labels."""

    samples: int = 32
    dim: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(1 <= self.samples <= MAX_SAMPLES, "problem.samples", f"an integer in [1, {MAX_SAMPLES}] (samples n)",
                self.samples)
        require(1 <= self.dim <= MAX_DIM, "problem.dim", f"an integer in [1, {MAX_DIM}] (input dimension d)", self.dim)


@problem("random_labels", config=RandomLabelsConfig, nbytes=lambda c: 8 * (3 * c.samples * c.dim + 2 * c.samples))
def random_labels(config):
    """Inputs uniform on the unit sphere, labels uniform on {-1, +1}, independent."""
    rng = np.random.default_rng(config.seed)
    z = rng.standard_normal((config.samples, config.dim))
    return {"x": z / np.linalg.norm(z, axis=1, keepdims=True), "y": rng.choice([-1.0, 1.0], config.samples)}


@dataclass(frozen=True)
class TwoLayerMemorizerConfig:
    """f(x) = p^-1/2 sum_r a_r relu(<w_r, x>), both layers trained (see :mod:`trajlab.families.random_labels`)."""

    width: int = 16
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (hidden units p)", self.width)
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0", self.scale)


class TwoLayerParams(NamedTuple):
    hidden: jax.Array  # (p, d): rows w_r
    output: jax.Array  # (p,): a_r


def predict(params: TwoLayerParams, x):
    """f(x) = p^-1/2 sum_r a_r relu(<w_r, x>) for x of shape (n, d) -> (n,)."""
    width = params.output.shape[0]
    return jax.nn.relu(x @ params.hidden.T) @ params.output / jnp.sqrt(jnp.asarray(width, params.output.dtype))


def mean_squared_error(params, data):
    """(1/n) sum_i (f(x_i) - y_i)^2."""
    return jnp.mean((predict(params, data["x"]) - data["y"]) ** 2)


METRICS = {
    "max_residual": lambda ctx: jnp.max(jnp.abs(predict(ctx.params, ctx.data["x"]) - ctx.data["y"])),
    "sign_accuracy": lambda ctx: jnp.mean((jnp.sign(predict(ctx.params, ctx.data["x"])) == ctx.data["y"]).astype(
        ctx.data["y"].dtype)),
}


def _nbytes(config) -> int:
    p, n, d = config.model.width, config.problem.samples, config.problem.dim
    return (8 if config.train.x64 else 4) * (p * (d + 1) + 4 * n * p + n * d + 4 * n)


@family("two_layer_memorizer", config=TwoLayerMemorizerConfig, problems=("random_labels",), metrics=METRICS,
        default_metrics=("train_loss", "max_residual", "sign_accuracy"), nbytes=_nbytes)
def two_layer_memorizer(config):
    """Two-layer ReLU network in the NTK parameterization, both layers trained, on random labels."""
    p, d = config.model.width, config.problem.dim
    dtype = jnp.float64 if config.train.x64 else jnp.float32

    def init(key, scale):
        draw = jax.random.normal(key, (p, d + 1), dtype)  # one draw for both layers
        scale = jnp.asarray(scale, dtype)
        return TwoLayerParams(scale * draw[:, :d], scale * draw[:, d])

    return FamilyParts(init=init, loss=mean_squared_error)

"""Two-layer ReLU networks in the NTK parameterization with an output scale (``model.kind=ntk_two_layer``)
on single-index regression on the sphere (``problem.kind=single_index``).

Model (Du, Zhai, Poczos, Singh, "Gradient descent provably optimizes over-parameterized neural
networks", ICLR 2019, their eq. (1), with Chizat, Oyallon, Bach's output scale alpha, "On lazy
training in differentiable programming", NeurIPS 2019):

    f(x) = alpha / sqrt(m) * sum_{r=1}^m a_r relu(w_r . x),     w_r(0) ~ N(0, scale^2 I_d),

trained on the Chizat-Bach scaled squared loss

    L = (1 / alpha^2) * (1 / (2n)) * sum_i (f(x_i) - y_i)^2.

The second layer a_r is in {-1, +1} and fixed (Du et al. 2019: only W is trained) unless
``train_output`` (then a is trained from those signs). The signs are not drawn: with ``symmetric``
(default) the units come in pairs with the same w_r(0) and opposite signs (the first m/2 units +1,
the last m/2 units -1: Chizat & Bach's "doubling" so that f(x; w(0)) = 0 exactly); without it the
m rows are independent and a_r = +1, -1 alternately (a balanced assignment of signs to i.i.d. rows
in place of Du et al.'s i.i.d. uniform signs).

With this loss, h = f / alpha follows d h / dt = -(1/n) Theta (h - y / alpha) under gradient flow,
Theta the neural tangent kernel of h, so the time scale does not depend on alpha: large alpha is
lazy (the weights move O(1/alpha) to fit y / alpha), small alpha (about 1/sqrt(m), the mean-field
scale) is rich (the units move O(1)). On the train set the linearized model follows

    f(t) = f(0) + (I - exp(-Theta t / n)) (y - f(0))               (gradient flow, t = step x lr)
    f_k  = f(0) + (I - (I - lr Theta / n)^k) (y - f(0))             (GD with step lr),

with the empirical NTK at init (fixed output layer; Du et al. 2019, their H(0))

    Theta(x, x') = (x . x') (1/m) sum_r a_r^2 1[w_r . x > 0] 1[w_r . x' > 0]
                   (+ (1/m) sum_r relu(w_r . x) relu(w_r . x') when a is trained),

:func:`empirical_ntk`; :func:`ntk_regression` gives the kernel regression predictions on the train
and test inputs at time t.

Problem ``single_index``: inputs uniform on the unit sphere S^{d-1} (||x|| = 1, as Du et al.
assume), targets y = g(sqrt(d) x . u) + noise with the direction u = e_1 and the link g (``link``):
``linear`` z, ``relu`` max(z, 0), ``abs`` |z|, ``he2`` (z^2 - 1) / sqrt(2) (the second Hermite
polynomial: no linear part, so a rotation-invariant kernel needs about d^2 samples, while a network
that learns u needs about d). Test targets are noiseless.

Metrics of the family: ``train_mse`` / ``test_mse``: the mean squared error (1/S) sum_i (f(x_i) -
y_i)^2, without the 1/alpha^2 of the loss, so that they compare across alpha; ``max_neuron_movement``:
max_r ||w_r(t) - w_r(0)||_2 (Du et al. 2019, Lemma 3.3: O(sqrt(n) / (sqrt(m) lambda_0))); ``feature_alignment``:
||W u||_2 / ||W||_F, the share of the first layer along the target direction (about 1/sqrt(d) at
init, 1 when every unit points along +-u).

Also here (for the ``saddle-escape`` preset): ``model.kind=saddle_factorization`` on
``problem.kind=psd_target``, L(U) = 1/4 ||U U^T - M||_F^2 with U of shape (d, ``width``) and
M = diag(top, top ratio, ..., top ratio^(rank-1), 0, ..., 0). U = 0 is a strict saddle (gradient
(U U^T - M) U = 0, Hessian -M (x) I). ``start``: ``random`` (U(0) = scale G / ||G||_F, G Gaussian),
``saddle`` (U(0) = 0) or ``stable`` (the same as random with the rows in the span of M zeroed: a
point at distance ``scale`` on the saddle's stable manifold {M U = 0}, which GD never leaves).
``perturbation`` > 0 switches to perturbed GD (Jin et al. 2017, Algorithm 2; :func:`perturbed_gd`)
with noise radius eta * perturbation, ``gradient_threshold`` g_thres and ``wait`` t_thres. Metrics:
``distance_to_saddle`` ||U||_F, ``top_component`` ||U_1,:|| (the row along M's top eigenvector),
``stable_component`` (the rows outside the span of M).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trajlab.config import require
from trajlab.metrics.network_registry import NetworkMetricState
from trajlab.registry import Family, FamilyParts, Problem, register_family, register_problem

LINKS = ("linear", "relu", "abs", "he2")


# --- the problem ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleIndexConfig:
    """Single-index regression on the unit sphere (see :mod:`trajlab.families.ntk_networks`)."""

    dim: int = 10
    observations: int = 32
    test_samples: int = 256
    link: str = "relu"
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(2 <= self.dim <= 10**4, "problem.dim", "an integer in [2, 10^4] (input dimension)", self.dim)
        require(1 <= self.observations <= 10**6, "problem.observations", "an integer in [1, 10^6] (training samples)",
                self.observations)
        require(0 <= self.test_samples <= 10**6, "problem.test_samples", "an integer in [0, 10^6]", self.test_samples)
        require(self.link in LINKS, "problem.link", f"one of {LINKS}", self.link)
        require(0 <= self.noise < float("inf"), "problem.noise", "a number >= 0 (label noise std)", self.noise)


class SingleIndexData(NamedTuple):
    inputs: np.ndarray
    outputs: np.ndarray
    test_inputs: np.ndarray
    test_outputs: np.ndarray
    direction: np.ndarray


def link_function(name: str):
    """g of ``problem.link`` as a numpy function."""
    return {
        "linear": lambda z: z,
        "relu": lambda z: np.maximum(z, 0.0),
        "abs": np.abs,
        "he2": lambda z: (z**2 - 1.0) / np.sqrt(2.0),
    }[name]


def _sphere(rng, count: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((count, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def single_index_data(config: SingleIndexConfig) -> SingleIndexData:
    """x uniform on S^{d-1}; y = g(sqrt(d) x_1) (+ N(0, noise^2) on the train targets)."""
    rng = np.random.default_rng(config.seed)
    g = link_function(config.link)
    direction = np.zeros(config.dim)
    direction[0] = 1.0
    x = _sphere(rng, config.observations, config.dim)
    xt = _sphere(rng, config.test_samples, config.dim)
    scale = np.sqrt(config.dim)
    y = g(scale * x @ direction) + config.noise * rng.standard_normal(config.observations)
    return SingleIndexData(x, y, xt, g(scale * xt @ direction), direction)


def _single_index_nbytes(config: SingleIndexConfig) -> int:
    return 8 * 3 * (config.observations + config.test_samples) * (config.dim + 1)


register_problem(Problem("single_index", SingleIndexConfig, single_index_data,
                         description="single-index regression y = g(sqrt(d) x_1) on the unit sphere",
                         nbytes=_single_index_nbytes))


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NTKTwoLayerConfig:
    """f(x) = alpha / sqrt(m) sum_r a_r relu(w_r . x) (see :mod:`trajlab.families.ntk_networks`)."""

    width: int = 256
    alpha: float = 1.0
    train_output: bool = False
    symmetric: bool = True
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (std of the first-layer entries)", self.scale)
        require(1 <= self.width <= 10**6, "model.width", "an integer in [1, 10^6] (hidden units m)", self.width)
        require(0 < self.alpha < float("inf"), "model.alpha", "a number > 0 (output scale)", self.alpha)
        if self.symmetric:
            require(self.width % 2 == 0, "model.width", "an even integer when model.symmetric=true (units in pairs)",
                    self.width)


class NTKTwoLayer(NamedTuple):
    """``hidden``: rows w_r, shape (m, d); ``output``: a, shape (m,), or None when it is fixed."""

    hidden: jax.Array
    output: jax.Array | None


def output_signs(width: int, symmetric: bool) -> np.ndarray:
    """The fixed (or initial) second layer: +1 then -1 by halves (symmetric), else +1, -1 alternately."""
    if symmetric:
        return np.concatenate([np.ones(width // 2), -np.ones(width // 2)])
    return np.where(np.arange(width) % 2 == 0, 1.0, -1.0)


def ntk_init(key, input_dim: int, width: int, scale, symmetric: bool, train_output: bool, dtype=jnp.float32):
    """w_r ~ N(0, scale^2 I_d) (pairs of equal rows when ``symmetric``); a = :func:`output_signs`."""
    rows = width // 2 if symmetric else width
    hidden = jnp.asarray(scale, dtype) * jax.random.normal(key, (rows, input_dim), dtype)
    if symmetric:
        hidden = jnp.concatenate([hidden, hidden], axis=0)
    output = jnp.asarray(output_signs(width, symmetric), dtype) if train_output else None
    return NTKTwoLayer(hidden, output)


def ntk_apply(params: NTKTwoLayer, x, alpha, signs):
    """f(x) = alpha / sqrt(m) sum_r a_r relu(w_r . x) for x of shape (S, d) -> (S,)."""
    a = signs if params.output is None else params.output
    width = params.hidden.shape[0]
    return (alpha / np.sqrt(width)) * (jax.nn.relu(x @ params.hidden.T) @ a)


def empirical_ntk(hidden, signs, x1, x2, train_output: bool = False) -> np.ndarray:
    """Theta(x, x') of h = f / alpha at parameters (hidden, signs), numpy float64 (module docstring)."""
    hidden, signs = np.asarray(hidden, np.float64), np.asarray(signs, np.float64)
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    width = hidden.shape[0]
    z1, z2 = x1 @ hidden.T, x2 @ hidden.T
    theta = (x1 @ x2.T) * (((z1 > 0) * signs**2) @ (z2 > 0).T) / width
    if train_output:
        theta = theta + np.maximum(z1, 0) @ np.maximum(z2, 0).T / width
    return theta


def ntk_regression(theta_train, theta_test_train, f0_train, f0_test, targets, t, lr=None):
    """Kernel regression with kernel Theta under the scaled squared loss (module docstring) at time t:
    (train predictions, test predictions).

    Gradient flow (``lr`` None): f(t) = f0 + V diag(1 - exp(-lambda t / n)) V^T (y - f0) on the train
    inputs, and f0_test + Theta_st V diag((1 - exp(-lambda t / n)) / lambda) V^T (y - f0) on the test
    inputs (Theta = V diag(lambda) V^T). GD with step ``lr`` after k = t / lr steps: 1 - (1 - lr lambda / n)^k
    in place of 1 - exp(-lambda t / n). Eigenvalues below 1e-12 lambda_max contribute their limit t / n.
    """
    theta_train = np.asarray(theta_train, np.float64)
    n = theta_train.shape[0]
    values, vectors = np.linalg.eigh((theta_train + theta_train.T) / 2)
    values = np.maximum(values, 0.0)
    residual = vectors.T @ (np.asarray(targets, np.float64) - np.asarray(f0_train, np.float64))
    if lr is None:
        decay = -np.expm1(-values * t / n)
    else:
        steps = round(t / lr)
        decay = 1.0 - (1.0 - lr * values / n) ** steps
    train = np.asarray(f0_train, np.float64) + vectors @ (decay * residual)
    tiny = values <= 1e-12 * max(values.max(), 1e-300)
    gain = np.where(tiny, (t / n) if lr is None else round(t / lr) * lr / n, decay / np.where(tiny, 1.0, values))
    test = np.asarray(f0_test, np.float64) + np.asarray(theta_test_train, np.float64) @ (vectors @ (gain * residual))
    return train, test


# --- the family -------------------------------------------------------------------------------


@dataclass
class NTKMetricState(NetworkMetricState):
    """The metric context of ``ntk_two_layer``: ``apply(params, x)``, the problem's direction."""

    apply: object = None


def _mse(out, targets):
    if out.shape[0] == 0:
        return jnp.full((), jnp.nan, out.dtype)
    return jnp.mean(jnp.square(out - targets))


def _max_neuron_movement(s):
    return jnp.max(jnp.linalg.norm(s.params.hidden - s.initial.hidden, axis=1))


def _feature_alignment(s):
    w = s.params.hidden
    u = s.data.direction.astype(w.dtype)
    return jnp.linalg.norm(w @ u) / jnp.linalg.norm(w)


NTK_METRICS = {
    "train_mse": lambda s: _mse(s.apply(s.params, s.data.inputs), s.data.outputs),
    "test_mse": lambda s: _mse(s.apply(s.params, s.data.test_inputs), s.data.test_outputs),
    "max_neuron_movement": _max_neuron_movement,
    "feature_alignment": _feature_alignment,
}


def check(config) -> None:
    require(config.optimizer.batch_size <= config.problem.observations, "optimizer.batch_size",
            f"an integer in [0, problem.observations] = [0, {config.problem.observations}]", config.optimizer.batch_size)
    top = max(min(config.model.width, config.problem.dim), 10)
    require(config.train.top_k <= top, "train.top_k", f"an integer in [1, {top}] for model.kind=ntk_two_layer",
            config.train.top_k)


def nbytes(config) -> int:
    """One run: the weights and the activations over the train and test samples (with gradients)."""
    model, problem = config.model, config.problem
    parameters = model.width * (problem.dim + 1)
    working = 4 * problem.observations * model.width + 2 * problem.test_samples * model.width + parameters
    return (8 if config.train.x64 else 4) * (parameters + working)


def build(config) -> FamilyParts:
    """Init, loss, outputs (for the linearization), minibatch draws and metric context."""
    model, problem = config.model, config.problem
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    signs = jnp.asarray(output_signs(model.width, model.symmetric), dtype)
    alpha = model.alpha

    def init(key, scale):
        return ntk_init(key, problem.dim, model.width, scale, model.symmetric, model.train_output, dtype)

    def apply(params, x):
        return ntk_apply(params, x, alpha, signs)

    def predict(params, data, split: str):
        return apply(params, data.test_inputs if split == "test" else data.inputs)

    def output_loss(out, data):
        return jnp.sum(jnp.square(out - data.outputs)) / (2.0 * alpha**2 * out.shape[0])

    def loss(params, data):
        return output_loss(apply(params, data.inputs), data)

    def test_loss(params, data):
        out = apply(params, data.test_inputs)
        if out.shape[0] == 0:
            return jnp.full((), jnp.nan, dtype)
        return jnp.sum(jnp.square(out - data.test_outputs)) / (2.0 * alpha**2 * out.shape[0])

    def accuracy(params, data, test):
        return jnp.full((), jnp.nan, dtype)

    def context(params, initial, reference, data):
        return NTKMetricState(params, initial, reference, data, loss=loss, config=config, test_loss=test_loss,
                              accuracy=accuracy, apply=apply)

    batch_size = config.optimizer.batch_size

    def minibatch(data, key):
        index = jax.random.choice(key, data.inputs.shape[0], (batch_size,), replace=False)
        return data._replace(inputs=data.inputs[index], outputs=data.outputs[index])

    return FamilyParts(init=init, loss=loss, minibatch=minibatch, context=context, predict=predict,
                       output_loss=output_loss)


register_family(Family(
    "ntk_two_layer", NTKTwoLayerConfig, ("single_index",), build,
    metrics={**NTK_METRICS, "test_loss": lambda s: s.test_loss(s.params, s.data)},
    default_metrics=("train_loss", "train_mse", "test_mse", "max_neuron_movement"),
    check=check, nbytes=nbytes,
    description="two-layer ReLU net alpha/sqrt(m) sum_r a_r relu(w_r.x), NTK parameterization (Du et al. 2019)",
))


# --- a strict saddle: symmetric PSD factorization from U = 0 (saddle-escape) -------------------
#
# Lives here (not in a module of its own) because this helper owns only this family module.

STARTS = ("random", "saddle", "stable")


@dataclass(frozen=True)
class PSDTargetConfig:
    """M = diag(top, top ratio, ..., top ratio^(rank-1), 0, ..., 0), a d x d PSD target of rank ``rank``."""

    dim: int = 8
    rank: int = 2
    top: float = 1.0
    ratio: float = 0.5

    def __post_init__(self) -> None:
        require(2 <= self.dim <= 10**4, "problem.dim", "an integer in [2, 10^4]", self.dim)
        require(1 <= self.rank < self.dim, "problem.rank", f"an integer in [1, problem.dim - 1] = [1, {self.dim - 1}]",
                self.rank)
        require(0 < self.top < float("inf"), "problem.top", "a number > 0 (largest eigenvalue of M)", self.top)
        require(0 < self.ratio <= 1, "problem.ratio", "a number in (0, 1] (ratio of consecutive eigenvalues)", self.ratio)


class PSDTargetData(NamedTuple):
    target: np.ndarray
    eigenvalues: np.ndarray


def psd_target_data(config: PSDTargetConfig) -> PSDTargetData:
    values = np.zeros(config.dim)
    values[: config.rank] = config.top * config.ratio ** np.arange(config.rank)
    return PSDTargetData(np.diag(values), values)


register_problem(Problem("psd_target", PSDTargetConfig, psd_target_data,
                         description="diagonal PSD target M of given rank (strict saddle of U U^T at U = 0)"))


@dataclass(frozen=True)
class SaddleFactorizationConfig:
    """L(U) = 1/4 ||U U^T - M||_F^2, U of shape (d, ``width``), from a chosen start (module docstring)."""

    width: int = 2
    start: str = "random"
    perturbation: float = 0.0
    gradient_threshold: float = 1e-3
    wait: int = 20
    scale: float = 1e-3

    def __post_init__(self) -> None:
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (distance of the start from the saddle)",
                self.scale)
        require(1 <= self.width <= 10**4, "model.width", "an integer in [1, 10^4] (columns of U)", self.width)
        require(self.start in STARTS, "model.start", f"one of {STARTS}", self.start)
        require(0 <= self.perturbation < float("inf"), "model.perturbation",
                "a number >= 0 (perturbation radius in units of the step size; 0: plain GD)", self.perturbation)
        require(0 <= self.gradient_threshold < float("inf"), "model.gradient_threshold", "a number >= 0",
                self.gradient_threshold)
        require(1 <= self.wait <= 10**9, "model.wait", "an integer in [1, 10^9] (steps between perturbations)", self.wait)


class SaddleParams(NamedTuple):
    """``factor`` U (d, k); ``noise_seed``: a scalar drawn from the run's key for the perturbations
    (not trained: the loss does not depend on it and its update is zero)."""

    factor: jax.Array
    noise_seed: jax.Array


def saddle_init(key, dim: int, width: int, rank: int, start: str, scale, dtype=jnp.float32) -> SaddleParams:
    """U(0): ``random``: scale G / ||G||_F (G Gaussian); ``saddle``: 0; ``stable``: the same with the
    first ``rank`` rows (the span of M) zeroed, i.e. a point of norm ``scale`` on the stable manifold
    {U : M U = 0} of the saddle."""
    draw_key, noise_key = jax.random.split(key)
    g = jax.random.normal(draw_key, (dim, width), dtype)
    if start == "stable":
        g = g.at[:rank].set(0.0)
    factor = jnp.asarray(scale, dtype) * g / jnp.linalg.norm(g)
    if start == "saddle":
        factor = jnp.zeros((dim, width), dtype)
    seed = jnp.floor(jax.random.uniform(noise_key, (), dtype) * 2**20)
    return SaddleParams(factor, seed)


def perturbed_gd(radius: float, gradient_threshold: float, wait: int) -> optax.GradientTransformation:
    """Perturbed GD (Jin, Ge, Netrapalli, Kakade, Jordan, ICML 2017, Algorithm 2) at unit step: the
    update is -g, plus xi ~ uniform on the ball of radius ``radius`` when ||g|| <= ``gradient_threshold``
    and at least ``wait`` steps have passed since the last perturbation (the engine multiplies the
    update by the step size eta, so the displacement radius is eta * radius). The first step counts as
    ``wait`` steps after a perturbation. The draws use key fold_in(PRNGKey(noise_seed), step)."""

    class State(NamedTuple):
        step: jax.Array
        since: jax.Array

    def init(params):
        del params
        return State(jnp.zeros((), jnp.int32), jnp.full((), wait, jnp.int32))

    def update(grads, state, params=None):
        g = grads.factor
        key = jax.random.fold_in(jax.random.PRNGKey(params.noise_seed.astype(jnp.uint32)), state.step)
        direction_key, radius_key = jax.random.split(key)
        xi = jax.random.normal(direction_key, g.shape, g.dtype)
        u = jax.random.uniform(radius_key, (), g.dtype)
        xi = radius * u ** (1.0 / g.size) * xi / jnp.linalg.norm(xi)
        perturb = (radius > 0) & (jnp.linalg.norm(g) <= gradient_threshold) & (state.since >= wait)
        factor = -g + jnp.where(perturb, xi, 0.0)
        since = jnp.where(perturb, 1, state.since + 1)
        return SaddleParams(factor, jnp.zeros_like(grads.noise_seed)), State(state.step + 1, since.astype(jnp.int32))

    return optax.GradientTransformation(init, update)


def saddle_loss(factor, target):
    """1/4 ||U U^T - M||_F^2."""
    return 0.25 * jnp.sum(jnp.square(factor @ factor.T - target))


def _saddle_build(config) -> FamilyParts:
    model, problem = config.model, config.problem
    dtype = jnp.float64 if config.train.x64 else jnp.float32

    def init(key, scale):
        return saddle_init(key, problem.dim, model.width, problem.rank, model.start, scale, dtype)

    def loss(params, data):
        return saddle_loss(params.factor, data.target)

    optimizer = None
    if model.perturbation > 0:
        require(config.optimizer.name == "gd", "optimizer.name",
                "gd when model.perturbation > 0 (perturbed GD is a GD rule)", config.optimizer.name)
        optimizer = perturbed_gd(model.perturbation, model.gradient_threshold, model.wait)
    return FamilyParts(init=init, loss=loss, optimizer=optimizer)


SADDLE_METRICS = {
    "distance_to_saddle": lambda ctx: jnp.linalg.norm(ctx.params.factor),
    "top_component": lambda ctx: jnp.linalg.norm(ctx.params.factor[0]),
    "stable_component": lambda ctx: jnp.linalg.norm(ctx.params.factor[ctx.config.problem.rank:]),
}

register_family(Family(
    "saddle_factorization", SaddleFactorizationConfig, ("psd_target",), _saddle_build,
    metrics=SADDLE_METRICS,
    default_metrics=("train_loss", "distance_to_saddle"),
    description="1/4 ||U U^T - M||^2 from the strict saddle U = 0, its stable manifold or a random start; perturbed GD",
))

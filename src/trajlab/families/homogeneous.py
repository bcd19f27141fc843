"""Parallel positively homogeneous subnetworks (``model.kind=homogeneous``) on a teacher regression
(``problem.kind=homogeneous_teacher``): Haeffele & Vidal, "Global Optimality in Neural Network
Training" (CVPR 2017), and R. Vidal's CVPR 2017 tutorial "Mathematics of Deep Learning".

Model: r parallel K-layer subnetworks without biases,

    Phi(W)(x) = sum_{i=1}^r phi(W_i)(x),   phi(W_i)(x) = W_i^K s(W_i^{K-1} ... s(W_i^1 x)),

with s = ReLU or the identity (``model.activation``), W_i^1 of shape (h, d), W_i^k (h, h) for
1 < k < K and W_i^K (m, h) (h = ``model.width``, the hidden width inside each subnetwork). phi is
positively homogeneous of degree K in W_i (phi(a W_i) = a^K phi(W_i) for a >= 0).

Objective (``loss`` of the family, what the engine trains):

    F(W) = l(W) + lam R(W),   l(W) = 1/(2S) sum_s ||Phi(W)(x_s) - y_s||^2 (half the mean),

with R (``model.regularizer``):
- ``product``: Theta(W) = sum_i prod_k ||W_i^k||_F, positively homogeneous of degree K like Phi
  (Haeffele & Vidal's matching regularizer; for K = 2 and width 1 it is sum_i ||u_i|| ||v_i||);
- ``weight_decay``: 1/2 sum_i sum_k ||W_i^k||_F^2, degree 2 whatever K. At K = 2 its minimum over
  the rescalings (a W^1, W^2 / a) of a unit is ||W^1|| ||W^2|| (AM-GM), so there it has the same
  minimizers and values as ``product``; for K > 2 the degrees differ (the tutorial: "weight decay
  doesn't work so well").

Optimization: plain (sub)gradient descent by the engine. Theta is not differentiable where a layer
of a unit is zero; :func:`safe_norm` uses the subgradient 0 there (and is smooth elsewhere). The
init is *balanced* (every layer of every unit has Frobenius norm ``scale``): for gradient flow the
loss and Theta both conserve ||W_i^k||^2 - ||W_i^{k+1}||^2 per unit, so a balanced unit stays
balanced and a useless unit shrinks through the smooth region (rate lam a^(K-1) for its layer norm
a: exponentially at K = 2, like 1 / (lam t) at K = 3) without the oscillation an unbalanced unit
would show at a kink. GD never makes a norm exactly zero; a unit counts as zero when its
Theta_i = prod_k ||W_i^k|| is at most ``zero_tol`` (:data:`ZERO_TOL`, relative to the largest), and
the certificate (:func:`certificate`) sets those units to exactly zero first.

Global-optimality check (Haeffele & Vidal, Theorem 2 and the polar condition; the tutorial's "add a
neuron" test): adding a unit t w (unit-norm layers w) changes F by

    Delta F(t) = t^K <grad l, phi(w)> + t^(2K) ||phi(w)(X)||^2 / (2S) + lam R(t w)

(exact for the squared loss), with R(t w) = t^K (product) or K t^2 / 2 (weight decay). For the
product regularizer a decrease exists for small t iff the polar value
Omega(w) = max_w <-grad l, phi(w)> exceeds lam; a point with a zero unit and polar <= lam is a
global minimizer. The polar problem is tractable for linear units (sigma_max(-G) for the gradient G
with respect to the end-to-end matrix, any K: the product of Frobenius norms bounds the spectral
norm of the product, with equality for rank-one layers) and is searched otherwise: random unit
directions (:data:`POLAR_STARTS`), the best refined by projected gradient ascent on the product of
spheres (:func:`polar_search`), a lower bound on the true value. For weight decay at K > 2 the
small-t test is vacuous (lam K t^2 / 2 dominates t^K), so the check minimizes Delta F(t) over a
grid of t for each candidate direction: "no added unit lowers F" is the test for both regularizers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import require
from trajlab.registry import FamilyParts, family, problem

ACTIVATIONS = ("relu", "linear")
REGULARIZERS = ("product", "weight_decay")
#: A unit is zero when Theta_i <= ZERO_TOL * max_j Theta_j (GD makes no norm exactly zero).
ZERO_TOL = 1e-4
#: ... or when Theta_i <= ZERO_FLOOR (absolute: every unit of a collapsed network is zero).
ZERO_FLOOR = 1e-12
#: Random unit directions of the polar search, and how many of the best are refined.
POLAR_STARTS = 2000
POLAR_REFINED = 32
POLAR_ASCENT_STEPS = 300
#: Tolerances of the certificate: polar <= lam (1 + POLAR_TOL), |alignment - 1| <= ALIGNMENT_TOL, and
#: no added unit lowers F by more than DECREASE_TOL |F|.
POLAR_TOL = 1e-3
ALIGNMENT_TOL = 1e-3
DECREASE_TOL = 1e-6
#: Delta F(t) is minimized over this many log-spaced values of t^K in [1e-8, 1e4] x the scale.
T_GRID = 600


@dataclass(frozen=True)
class HomogeneousTeacher:
    """y = sum_j a_j s(<w_j, x>) + noise: a teacher of ``teacher_units`` one-hidden-layer units
    (s = ReLU or identity, ``activation``), x ~ N(0, I_inputs), w_j orthonormal (uniform unit
    vectors when teacher_units > inputs), a_j = +1, -1, +1, ... for one output, else uniform unit vectors."""

    samples: int = 50
    inputs: int = 3
    outputs: int = 1
    teacher_units: int = 2
    activation: str = "relu"
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.samples, int) and 2 <= self.samples <= 10**6, "problem.samples",
                "an integer in [2, 10^6]", self.samples)
        require(isinstance(self.inputs, int) and 1 <= self.inputs <= 10**4, "problem.inputs",
                "an integer in [1, 10^4]", self.inputs)
        require(isinstance(self.outputs, int) and 1 <= self.outputs <= 10**4, "problem.outputs",
                "an integer in [1, 10^4]", self.outputs)
        require(isinstance(self.teacher_units, int) and 1 <= self.teacher_units <= 10**4, "problem.teacher_units",
                "an integer in [1, 10^4]", self.teacher_units)
        require(self.activation in ACTIVATIONS, "problem.activation", f"one of {ACTIVATIONS}", self.activation)
        require(0 <= self.noise < float("inf"), "problem.noise", "a number >= 0", self.noise)


@problem("homogeneous_teacher", config=HomogeneousTeacher)
def homogeneous_teacher(config: HomogeneousTeacher) -> dict:
    """Inputs (S, d), targets (S, m) of a one-hidden-layer teacher (see :class:`HomogeneousTeacher`)."""
    rng = np.random.default_rng(config.seed)
    x = rng.standard_normal((config.samples, config.inputs))
    w = rng.standard_normal((config.teacher_units, config.inputs))
    if config.teacher_units <= config.inputs:
        w = np.linalg.qr(w.T)[0].T  # orthonormal rows: no two teacher units cancel
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    if config.outputs == 1:
        a = np.where(np.arange(config.teacher_units) % 2 == 0, 1.0, -1.0)[:, None]
    else:
        a = rng.standard_normal((config.teacher_units, config.outputs))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
    pre = x @ w.T
    hidden = np.maximum(pre, 0.0) if config.activation == "relu" else pre
    y = hidden @ a + config.noise * rng.standard_normal((config.samples, config.outputs))
    return {"x": x, "y": y}


@dataclass(frozen=True)
class Homogeneous:
    """r parallel K-layer subnetworks with a product-of-norms or weight-decay regularizer (see the module)."""

    units: int = 6
    depth: int = 2
    width: int = 2
    activation: str = "relu"
    regularizer: str = "product"
    lam: float = 0.05
    scale: float = 0.5

    def __post_init__(self) -> None:
        require(isinstance(self.units, int) and 1 <= self.units <= 10**4, "model.units",
                "an integer in [1, 10^4] (parallel subnetworks)", self.units)
        require(isinstance(self.depth, int) and 2 <= self.depth <= 10, "model.depth",
                "an integer in [2, 10] (layers per subnetwork)", self.depth)
        require(isinstance(self.width, int) and 1 <= self.width <= 10**4, "model.width",
                "an integer in [1, 10^4] (hidden width of a subnetwork)", self.width)
        require(self.activation in ACTIVATIONS, "model.activation", f"one of {ACTIVATIONS}", self.activation)
        require(self.regularizer in REGULARIZERS, "model.regularizer", f"one of {REGULARIZERS}", self.regularizer)
        require(0 <= self.lam < float("inf"), "model.lam", "a number >= 0 (regularization strength)", self.lam)
        require(0 < self.scale < float("inf"), "model.scale", "a number > 0 (Frobenius norm of every layer at init)", self.scale)


# ---------------------------------------------------------------------------------------------
# the model


def layer_shapes(inputs: int, outputs: int, depth: int, width: int) -> list[tuple[int, int]]:
    """Shapes (out, in) of the K layers of one subnetwork."""
    return [(width, inputs)] + [(width, width)] * (depth - 2) + [(outputs, width)]


def balanced_init(key, units: int, shapes, scale, dtype=jnp.float32) -> tuple:
    """Layers (r, out, in), Gaussian directions, every layer of every unit of Frobenius norm ``scale``."""
    keys = jax.random.split(key, len(shapes))
    layers = []
    for k, shape in zip(keys, shapes):
        draw = jax.random.normal(k, (units,) + shape, dtype)
        norms = jnp.sqrt(jnp.sum(draw**2, axis=(1, 2), keepdims=True))
        layers.append(jnp.asarray(scale, dtype) * draw / norms)
    return tuple(layers)


def unit_outputs(layers, x, activation: str = "relu"):
    """phi(W_i)(x_s) for every unit: (r, S, m), from layers (r, out, in) and x (S, d)."""
    h = jnp.einsum("rhd,sd->rsh", layers[0], x)
    for w in layers[1:]:
        if activation == "relu":
            h = jax.nn.relu(h)
        h = jnp.einsum("roh,rsh->rso", w, h)
    return h


def network_output(layers, x, activation: str = "relu"):
    """Phi(W)(x) = sum_i phi(W_i)(x): (S, m)."""
    return jnp.sum(unit_outputs(layers, x, activation), axis=0)


@jax.custom_jvp
def safe_norm(w):
    """Frobenius norm over the last two axes, with the subgradient 0 at w = 0 (no NaN)."""
    return jnp.sqrt(jnp.sum(w**2, axis=(-2, -1)))


@safe_norm.defjvp
def _safe_norm_jvp(primals, tangents):
    (w,), (dw,) = primals, tangents
    norm = safe_norm(w)
    positive = norm > 0
    direction = w / jnp.where(positive, norm, 1.0)[..., None, None]
    return norm, jnp.where(positive, jnp.sum(direction * dw, axis=(-2, -1)), 0.0)


def layer_norms(layers):
    """||W_i^k||_F: (K, r)."""
    return jnp.stack([safe_norm(w) for w in layers])


def unit_products(layers):
    """Theta_i = prod_k ||W_i^k||_F per unit: (r,)."""
    return jnp.prod(layer_norms(layers), axis=0)


def regularizer_value(layers, kind: str):
    """Theta(W) = sum_i prod_k ||W_i^k|| (``product``) or 1/2 sum_{i,k} ||W_i^k||^2 (``weight_decay``)."""
    if kind == "product":
        return jnp.sum(unit_products(layers))
    return 0.5 * sum(jnp.sum(w**2) for w in layers)


def data_loss(layers, x, y, activation: str):
    """1/(2S) sum_s ||Phi(x_s) - y_s||^2."""
    residual = network_output(layers, x, activation) - y
    return 0.5 * jnp.sum(residual**2) / x.shape[0]


def objective(layers, x, y, activation: str, kind: str, lam):
    """F = l + lam R."""
    return data_loss(layers, x, y, activation) + lam * regularizer_value(layers, kind)


# ---------------------------------------------------------------------------------------------
# the polar problem and the add-a-unit test (host side, float64)


def _unit_sphere(layers):
    return [w / np.sqrt(np.sum(w**2, axis=(-2, -1), keepdims=True)) for w in layers]


def _chain_outputs(layers, x, activation: str):
    """numpy float64 forward pass of a batch of subnetworks, layers (n, out, in): (inputs of every
    layer, pre-activations of the hidden layers, outputs (n, S, m))."""
    inputs, pres = [], []
    h = np.broadcast_to(x, (layers[0].shape[0],) + x.shape)
    for index, w in enumerate(layers):
        inputs.append(h)
        z = np.einsum("noi,nsi->nso", w, h)
        if index < len(layers) - 1:
            pres.append(z)
            h = np.maximum(z, 0.0) if activation == "relu" else z
        else:
            h = z
    return inputs, pres, h


def _polar_value_grad(layers, x, residual, activation: str):
    """v(w) = -(1/S) sum_s r_s . phi(w)(x_s) for a batch of subnetworks, and its gradient in every layer
    (numpy backpropagation through the chain)."""
    samples = x.shape[0]
    inputs, pres, out = _chain_outputs(layers, x, activation)
    values = -np.einsum("nso,so->n", out, residual) / samples
    upstream = np.broadcast_to(-residual / samples, out.shape)
    grads = [None] * len(layers)
    for index in range(len(layers) - 1, -1, -1):
        grads[index] = np.einsum("nso,nsi->noi", upstream, inputs[index])
        if index > 0:
            upstream = np.einsum("nso,noi->nsi", upstream, layers[index])
            if activation == "relu":
                upstream = upstream * (pres[index - 1] > 0)
    return values, grads


def _ascend(starts, x, residual, activation: str, steps: int):
    """Projected gradient ascent of v(w) on the product of unit spheres from each start (a batch of
    unit layers); returns (best values, best layers)."""
    layers = list(starts)
    current, _ = _polar_value_grad(layers, x, residual, activation)
    best, best_layers = current.copy(), [w.copy() for w in layers]
    for fraction in np.linspace(0.0, 1.0, steps):
        _, grads = _polar_value_grad(layers, x, residual, activation)
        # phi is linear in each layer, so the radial part of the gradient is the value itself: the
        # tangent divided by the value is a scale-free direction; the step shrinks geometrically
        # from 0.5 to 1e-4 (large steps cross activation patterns, small ones converge).
        size = 0.5 * (2e-4) ** fraction
        unit = np.maximum(np.abs(current), 1e-30)[:, None, None]
        proposal = []
        for w, gw in zip(layers, grads):
            tangent = gw - np.sum(gw * w, axis=(1, 2), keepdims=True) * w
            proposal.append(w + size * tangent / unit)
        layers = _unit_sphere(proposal)
        current, _ = _polar_value_grad(layers, x, residual, activation)
        better = current > best
        best = np.maximum(best, current)
        best_layers = [np.where(better[:, None, None], w, b) for w, b in zip(layers, best_layers)]
    return best, best_layers


def polar_search(x, residual, shapes, activation: str, *, starts: int = POLAR_STARTS, refined: int = POLAR_REFINED,
                 steps: int = POLAR_ASCENT_STEPS, seed: int = 0):
    """max over unit-norm layers w of <-grad l, phi(w)> = -(1/S) sum_s r_s . phi(w)(x_s), searched.

    ``residual`` r_s = Phi(x_s) - y_s, so grad l = r / S. ``starts`` random unit directions
    (Gaussian, normalized per layer; numpy ``seed``), the best ``refined`` improved by projected
    gradient ascent on the product of spheres (``steps`` steps). numpy float64. Returns (value,
    layers of the best w, the refined candidates' layers (n, out, in), their values): a lower bound on
    the polar value.
    """
    x = np.asarray(x, np.float64)
    residual = np.asarray(residual, np.float64)
    rng = np.random.default_rng(seed)
    draws = _unit_sphere([rng.standard_normal((starts,) + tuple(shape)) for shape in shapes])
    values, _ = _polar_value_grad(draws, x, residual, activation)
    order = np.argsort(-values)[:refined]
    best, best_layers = _ascend([w[order] for w in draws], x, residual, activation, steps)
    index = int(np.argmax(best))
    return float(best[index]), tuple(w[index] for w in best_layers), tuple(best_layers), best


def linear_polar(x, residual, depth: int) -> float:
    """Exact polar value for linear units: sigma_max(-G), G = X^T r / S (d, m) the gradient with respect
    to the end-to-end map (max of <-G, W^K...W^1> over unit Frobenius layers; any K >= 1)."""
    gradient = np.asarray(x, np.float64).T @ np.asarray(residual, np.float64) / x.shape[0]
    return float(np.linalg.norm(gradient, 2))


def add_unit_decrease(x, residual, candidates, lam: float, depth: int, kind: str, activation: str,
                      data_scale: float) -> tuple[float, float]:
    """min over the candidate unit directions w and t > 0 of Delta F(t) (see the module): returns
    (the most negative Delta F found (0 if none), the t^K where it is reached).

    Delta F(t) = s <r/S, phi(w)> + s^2 ||phi(w)(X)||^2 / (2S) + lam R, s = t^K, R = s (product) or
    K s^(2/K) / 2 (weight decay), minimized over a log grid of s (:data:`T_GRID` values).
    """
    candidates = [np.asarray(w, np.float64) for w in candidates]
    outputs = _chain_outputs(candidates, np.asarray(x, np.float64), activation)[2]
    samples = x.shape[0]
    linear = np.einsum("nsm,sm->n", outputs, residual) / samples
    quadratic = np.sum(outputs**2, axis=(1, 2)) / (2 * samples)
    s = np.logspace(-8, 4, T_GRID) * max(data_scale, 1e-12)
    reg = s[None, :] if kind == "product" else depth * s[None, :] ** (2.0 / depth) / 2
    delta = linear[:, None] * s[None, :] + quadratic[:, None] * s[None, :] ** 2 + lam * reg
    flat = int(np.argmin(delta))
    best = float(delta.flat[flat])
    return min(best, 0.0), float(s[flat % T_GRID]) if best < 0 else 0.0


def certificate(layers, x, y, config, *, seed: int = 0, starts: int = POLAR_STARTS, refined: int = POLAR_REFINED) -> dict:
    """The global-optimality check at the final point (host side, float64; see the module).

    Units with Theta_i <= ZERO_TOL max_j Theta_j (or <= ZERO_FLOOR) are set to exactly zero; then
    the polar value (exact for linear units, searched otherwise), the first-order equality
    alignment = <-grad l, Phi(W)> / (lam Theta(W)) and the best Delta F of an added unit are
    computed. ``cert_passes``:

    - product regularizer: polar <= lam (1 + POLAR_TOL), |alignment - 1| <= ALIGNMENT_TOL and no
      added unit lowers F by more than DECREASE_TOL |F|. The first two are Haeffele & Vidal's
      optimality conditions: -grad l / lam in the subdifferential of the induced regularizer
      Omega at Phi(W) with Omega(Phi(W)) = Theta(W), which makes W a global minimizer
      (a zero unit is what makes a *local* minimizer satisfy them: their Theorem 2; the count of
      zero units is reported as ``cert_zero_units``);
    - weight decay: no added unit lowers F by more than DECREASE_TOL |F| (the polar condition is
      not the optimality condition of a degree-2 regularizer on a degree-K network).
    """
    model = config.model
    layers = [np.asarray(w, np.float64) for w in layers]
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    norms = np.stack([np.sqrt(np.sum(w**2, axis=(1, 2))) for w in layers])
    products = np.prod(norms, axis=0)
    zero = (products <= ZERO_TOL * products.max()) | (products <= ZERO_FLOOR)
    pruned = [np.where(zero[:, None, None], 0.0, w) for w in layers]
    residual = np.sum(_chain_outputs(pruned, x, model.activation)[2], axis=0) - y
    loss_value = 0.5 * float(np.sum(residual**2)) / x.shape[0]
    pruned_norms = np.stack([np.sqrt(np.sum(w**2, axis=(1, 2))) for w in pruned])
    theta = float(np.sum(np.prod(pruned_norms, axis=0)))
    reg = theta if model.regularizer == "product" else 0.5 * float(np.sum(pruned_norms**2))
    f_value = loss_value + model.lam * reg
    shapes = layer_shapes(x.shape[1], y.shape[1], model.depth, model.width)
    searched, _, candidates, _ = polar_search(x, residual, shapes, model.activation, starts=starts, refined=refined, seed=seed)
    polar = linear_polar(x, residual, model.depth) if model.activation == "linear" else searched
    data_scale = float(np.sqrt(np.mean(y**2)))
    decrease, at = add_unit_decrease(x, residual, candidates, model.lam, model.depth, model.regularizer,
                                     model.activation, data_scale)
    relative = decrease / max(abs(f_value), 1e-300)
    # first-order equality <-grad l, Phi(W)> = lam Theta(W) (Theta: the product regularizer)
    alignment = float(-np.sum(residual * (residual + y)) / x.shape[0]) / (model.lam * theta) if theta > 0 else math.nan
    if model.regularizer == "product":
        passes = bool(polar <= model.lam * (1 + POLAR_TOL) and abs(alignment - 1) <= ALIGNMENT_TOL
                      and relative >= -DECREASE_TOL)
    else:
        passes = bool(relative >= -DECREASE_TOL)
    return dict(
        cert_zero_units=float(zero.sum()),
        cert_active_units=float((~zero).sum()),
        cert_objective=f_value,
        cert_fit=loss_value,
        cert_regularizer=reg,
        cert_theta=theta,
        cert_polar=polar,
        cert_polar_searched=searched,
        cert_polar_ratio=polar / model.lam if model.lam > 0 else math.inf,
        cert_alignment=alignment,
        cert_add_unit_decrease=relative,
        cert_add_unit_scale=at,
        cert_passes=float(passes),
    )


# ---------------------------------------------------------------------------------------------
# the family


def _shapes(config):
    return layer_shapes(config.problem.inputs, config.problem.outputs, config.model.depth, config.model.width)


def check(config) -> None:
    require(config.problem.activation in ACTIVATIONS, "problem.activation", f"one of {ACTIVATIONS}", config.problem.activation)
    require(config.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=homogeneous (full-batch GD)",
            config.optimizer.batch_size)


def build(config) -> FamilyParts:
    """Balanced init, F = l + lam R (see :mod:`trajlab.families.homogeneous`)."""
    model = config.model
    dtype = jnp.float64 if config.train.x64 else jnp.float32
    shapes = _shapes(config)

    def init(key, scale):
        return balanced_init(key, model.units, shapes, scale, dtype)

    def loss(params, data):
        return objective(params, data["x"], data["y"], model.activation, model.regularizer, model.lam)

    return FamilyParts(init=init, loss=loss)


def _fit(ctx):
    return data_loss(ctx.params, ctx.data["x"], ctx.data["y"], ctx.config.model.activation)


def _active(ctx):
    products = unit_products(ctx.params)
    return jnp.sum((products > ZERO_TOL * jnp.max(products)) & (products > ZERO_FLOOR)).astype(products.dtype)


def _balancedness(ctx):
    """max over units and consecutive layers of | ||W_i^k||^2 - ||W_i^(k+1)||^2 | (0 at a balanced point)."""
    norms = layer_norms(ctx.params)
    return jnp.max(jnp.abs(norms[1:] ** 2 - norms[:-1] ** 2))


def _certificate_metric(params, data, config):
    return certificate(params, data["x"], data["y"], config, seed=config.seed)


family(
    "homogeneous",
    config=Homogeneous,
    problems=("homogeneous_teacher",),
    metrics={
        "fit": _fit,
        "regularizer": lambda ctx: regularizer_value(ctx.params, ctx.config.model.regularizer),
        "theta": lambda ctx: jnp.sum(unit_products(ctx.params)),
        "unit_products": lambda ctx: unit_products(ctx.params),
        "active_units": _active,
        "balancedness": _balancedness,
    },
    final_metrics={"certificate": _certificate_metric},
    columns={"unit_products": "unit_theta"},
    default_metrics=("train_loss", "fit", "regularizer", "unit_products", "active_units"),
    check=check,
    description="r parallel K-layer positively homogeneous subnetworks, product-of-norms or weight-decay regularizer",
)(build)

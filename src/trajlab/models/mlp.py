"""Small nonlinear networks: fully connected nets, two-layer nets, parallel homogeneous subnetworks.

Parameters are pytrees of arrays (NamedTuples and tuples), so everything here jits, vmaps and
differentiates; shapes, activation and scheme are static (Python values).

Fully connected network (``mlp_*``): sizes (d_0, d_1, ..., d_L), d_0 the input and d_L the output
dimension. Parameters are a tuple of :class:`Dense` layers (W_1, b_1), ..., (W_L, b_L) with W_l of
shape (d_l, d_{l-1}) (as in :mod:`trajlab.models.deep_linear`) and b_l of shape (d_l,), or
``b_l = None`` when biases are off (None is an empty pytree node: no parameter, no gradient, no
Hessian direction). For inputs x of shape (S, d_0):

    h_0 = x,   h_l = sigma(h_{l-1} W_l^T + b_l)  (l < L),   f(x) = h_{L-1} W_L^T + b_L,

i.e. no activation on the output layer. sigma is ``linear`` (identity: a deep linear network, whose
function is x W_e^T with W_e = W_L ... W_1 when biases are off), ``relu`` (max(z, 0); JAX takes
relu'(0) = 0) or ``quadratic`` (sigma(z) = z^2, Livni, Shalev-Shwartz, Shamir 2014; Du & Lee 2018).

Initialization schemes (weights; biases always start at zero), ``scale`` a multiplier (gain):

- ``xavier``: Glorot & Bengio (AISTATS 2010) "normalized initialization", their eq. (16):
  W_ij ~ U[-a, a], a = scale * sqrt(6 / (d_{l-1} + d_l)), so Var W_ij = scale^2 * 2 / (fan_in +
  fan_out). This is the published convention and what ``xavier_uniform_`` (PyTorch) and
  ``glorot_uniform`` (Keras) draw. (Elkabetz & Cohen, NeurIPS 2021, name "Xavier" initialization; we
  could not check there whether they drew the uniform or the normal variant.)
- ``xavier_normal``: the Gaussian variant with the same variance, W_ij ~ N(0, scale^2 * 2 / (fan_in
  + fan_out)).
- ``he``: He, Zhang, Ren, Sun (ICCV 2015), eq. (10): W_ij ~ N(0, scale^2 * 2 / fan_in).
- ``gaussian``: W_ij ~ N(0, scale^2), i.e. ``scale`` is the per-entry standard deviation.

Two-layer network (``two_layer_*``): f(x) = sum_r a_r sigma(w_r^T x), parameters :class:`TwoLayer`
(hidden: the rows w_r, shape (R, d); output: a, shape (R,)); the scalar-output model of the
over-parameterization analyses with quadratic or ReLU units (Livni et al. 2014; Soltanolkotabi,
Javanmard, Lee 2018; Du & Lee 2018; Du, Hu, Lee 2018). See :func:`two_layer_init`.

Parallel positively homogeneous subnetworks (Haeffele & Vidal, CVPR 2017, "Global optimality in
neural network training"): f = sum_r phi(W_r) with each phi a subnetwork positively homogeneous of
degree 2 in its parameters W_r = (v_r, u_r), regularized by Theta(W) = sum_r ||u_r|| ||v_r||
(degree 2 as well). Parameters :class:`ParallelUnits` (inner: rows v_r, shape (R, d_in); outer:
rows u_r, shape (R, d_out)). Two subnetworks are provided:

- rank-one factors, phi_r = u_r v_r^T, so f = sum_r u_r v_r^T (a matrix of shape (d_out, d_in)) and
  min over factorizations of Theta is the nuclear norm (:func:`parallel_matrix`);
- one-hidden-unit ReLU nets, phi_r(x) = u_r max(v_r^T x, 0) (:func:`parallel_relu_apply`).

Their meta-algorithm: run local descent on loss + lambda Theta; a local minimum at which some
subnetwork is entirely zero (W_r = 0) is a global minimum (their Theorem 2; :func:`zero_units` is the
certificate); otherwise add a unit (:func:`add_unit`) and continue. For the matrix case the unit to
add is the top singular pair of the negative loss gradient (:func:`matrix_polar`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

ACTIVATIONS = ("linear", "relu", "quadratic")
MLP_SCHEMES = ("xavier", "xavier_normal", "he", "gaussian")
TWO_LAYER_OUTPUTS = ("balanced", "gaussian", "ones")


def activation_function(name: str):
    """sigma for ``name`` in ``ACTIVATIONS``: identity, max(z, 0), or z^2."""
    if name == "linear":
        return lambda z: z
    if name == "relu":
        return jax.nn.relu
    if name == "quadratic":
        return jnp.square
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


# --- fully connected ------------------------------------------------------------------------


class Dense(NamedTuple):
    """One layer: ``weight`` W of shape (d_out, d_in); ``bias`` b of shape (d_out,) or None."""

    weight: jax.Array
    bias: jax.Array | None


def mlp_weight_std(scheme: str, fan_in: int, fan_out: int, scale=1.0):
    """Standard deviation of one weight entry under ``scheme`` (module docstring).

    xavier / xavier_normal: scale sqrt(2 / (fan_in + fan_out)); he: scale sqrt(2 / fan_in);
    gaussian: scale.
    """
    if scheme in ("xavier", "xavier_normal"):
        return scale * (2.0 / (fan_in + fan_out)) ** 0.5
    if scheme == "he":
        return scale * (2.0 / fan_in) ** 0.5
    if scheme == "gaussian":
        return scale
    raise ValueError(f"scheme must be one of {MLP_SCHEMES}, got {scheme!r}")


def mlp_init(key, sizes, activation: str = "relu", bias: bool = True, scheme: str = "xavier", scale=1.0,
             dtype=jnp.float32):
    """Layers (Dense(W_1, b_1), ..., Dense(W_L, b_L)) for ``sizes`` = (d_0, ..., d_L).

    Weights by ``scheme`` (module docstring) with gain ``scale``; biases zero when ``bias``, else
    None. ``activation`` is only validated (the schemes do not depend on it). jit/vmap-safe in key
    and scale; sizes, activation, bias, scheme and dtype are static.
    """
    activation_function(activation)
    sizes = tuple(int(d) for d in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must hold at least two positive dimensions, got {sizes}")
    mlp_weight_std(scheme, 1, 1)  # validates the scheme
    shapes = [(fan_out, fan_in) for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    # One draw of all entries (not one per layer) keeps the compiled random-number code small.
    total = sum(a * b for a, b in shapes)
    if scheme == "xavier":
        unit = jax.random.uniform(key, (total,), dtype, minval=-1.0, maxval=1.0)
        spreads = [(6.0 / (a + b)) ** 0.5 for a, b in shapes]  # the bound a of U[-a, a]
    else:
        unit = jax.random.normal(key, (total,), dtype)
        spreads = [mlp_weight_std(scheme, b, a) for a, b in shapes]
    scale = jnp.asarray(scale, dtype)
    layers, start = [], 0
    for shape, spread in zip(shapes, spreads):
        size = shape[0] * shape[1]
        weight = (scale * spread) * unit[start : start + size].reshape(shape)
        layers.append(Dense(weight, jnp.zeros((shape[0],), dtype) if bias else None))
        start += size
    return tuple(layers)


def mlp_apply(params, x, activation: str = "relu"):
    """f(x) for x of shape (S, d_0) -> (S, d_L): sigma after every layer but the last."""
    sigma = activation_function(activation)
    h = x
    for index, layer in enumerate(params):
        h = h @ layer.weight.T
        if layer.bias is not None:
            h = h + layer.bias
        if index < len(params) - 1:
            h = sigma(h)
    return h


# --- two-layer ------------------------------------------------------------------------------


class TwoLayer(NamedTuple):
    """f(x) = sum_r output[r] sigma(hidden[r] . x); hidden (R, d), output (R,)."""

    hidden: jax.Array
    output: jax.Array


def two_layer_init(key, input_dim: int, hidden: int, scale=1.0, output: str = "balanced", dtype=jnp.float32):
    """Two-layer parameters: hidden rows w_r with i.i.d. N(0, scale^2 / d) entries (E ||w_r||^2 = scale^2).

    Output weights by ``output``:

    - ``balanced``: a_r = s_r ||w_r|| with s_r independent uniform random signs, so
      a_r^2 = ||w_r||^2 for every unit. For ReLU and linear units gradient flow conserves
      a_r^2 - ||w_r||^2 per unit (Du, Hu, Lee, NeurIPS 2018), so the units stay balanced along the
      flow (for quadratic units the conserved quantity is a_r^2 - ||w_r||^2 / 2). Small ``scale``
      is the small-initialization regime of the over-parameterized teacher/student experiments.
    - ``gaussian``: a_r i.i.d. N(0, scale^2).
    - ``ones``: a_r = 1 (fixed positive second layer, as in the quadratic-activation analyses of
      Livni et al. 2014 and Soltanolkotabi, Javanmard, Lee 2018 when only W is trained).

    jit/vmap-safe in key and scale.
    """
    if output not in TWO_LAYER_OUTPUTS:
        raise ValueError(f"output must be one of {TWO_LAYER_OUTPUTS}, got {output!r}")
    # One draw for both layers keeps the compiled random-number code small; the signs of the
    # balanced init are the signs of the last ``hidden`` normals (uniform on {-1, +1}).
    draw = jax.random.normal(key, (hidden, input_dim + 1), dtype)
    scale = jnp.asarray(scale, dtype)
    weights = scale / jnp.sqrt(jnp.asarray(input_dim, dtype)) * draw[:, :input_dim]
    if output == "balanced":
        a = jnp.where(draw[:, input_dim] >= 0, 1.0, -1.0).astype(dtype) * jnp.linalg.norm(weights, axis=1)
    elif output == "gaussian":
        a = scale * draw[:, input_dim]
    else:
        a = jnp.ones((hidden,), dtype)
    return TwoLayer(weights, a)


def two_layer_apply(params: TwoLayer, x, activation: str = "relu"):
    """f(x) = sum_r a_r sigma(w_r^T x) for x of shape (S, d) -> (S,)."""
    return activation_function(activation)(x @ params.hidden.T) @ params.output


# --- parallel homogeneous subnetworks (Haeffele & Vidal 2017) -------------------------------


class ParallelUnits(NamedTuple):
    """R parallel units: ``inner`` rows v_r (R, d_in), ``outer`` rows u_r (R, d_out)."""

    inner: jax.Array
    outer: jax.Array


def parallel_init(key, input_dim: int, output_dim: int, units: int, scale=1.0, dtype=jnp.float32):
    """R units with every entry of v_r and u_r i.i.d. N(0, scale^2) (per-entry std ``scale``)."""
    draw = jnp.asarray(scale, dtype) * jax.random.normal(key, (units, input_dim + output_dim), dtype)
    return ParallelUnits(draw[:, :input_dim], draw[:, input_dim:])


def parallel_matrix(params: ParallelUnits):
    """W = sum_r u_r v_r^T = outer^T inner, shape (d_out, d_in) (rank-one factor subnetworks)."""
    return params.outer.T @ params.inner


def parallel_relu_apply(params: ParallelUnits, x):
    """f(x) = sum_r u_r max(v_r^T x, 0) for x of shape (S, d_in) -> (S, d_out)."""
    return jax.nn.relu(x @ params.inner.T) @ params.outer


def unit_norm_products(params: ParallelUnits):
    """theta(W_r) = ||u_r|| ||v_r|| per unit, shape (R,) (Euclidean norms)."""
    return jnp.linalg.norm(params.inner, axis=-1) * jnp.linalg.norm(params.outer, axis=-1)


def parallel_regularizer(params: ParallelUnits):
    """Theta(W) = sum_r ||u_r|| ||v_r|| (Haeffele & Vidal 2017); its minimum over factorizations of a
    matrix W with enough units is the nuclear norm ||W||_*."""
    return jnp.sum(unit_norm_products(params), axis=-1)


def zero_units(params: ParallelUnits, tol=0.0):
    """Boolean (R,): unit r entirely zero, max(||u_r||, ||v_r||) <= tol (absolute tolerance).

    Haeffele & Vidal (2017), Theorem 2: a local minimizer of loss + lambda Theta with some unit
    entirely zero is a global minimizer; ``zero_units(params).any()`` is that certificate.
    """
    largest = jnp.maximum(jnp.linalg.norm(params.inner, axis=-1), jnp.linalg.norm(params.outer, axis=-1))
    return largest <= tol


def add_unit(params: ParallelUnits, inner=None, outer=None) -> ParallelUnits:
    """Append one unit (v, u) (zeros where not given): R -> R + 1 (changes shapes: not under jit).

    A zero unit is a stationary point of loss + lambda Theta (both factors have zero gradient); to
    escape, pass a descent direction, e.g. ``t * v`` and ``t * u`` from :func:`matrix_polar`.
    """
    dtype = params.inner.dtype
    inner = jnp.zeros(params.inner.shape[-1], dtype) if inner is None else jnp.asarray(inner, dtype)
    outer = jnp.zeros(params.outer.shape[-1], dtype) if outer is None else jnp.asarray(outer, dtype)
    return ParallelUnits(
        jnp.concatenate([params.inner, inner[None, :]], axis=0),
        jnp.concatenate([params.outer, outer[None, :]], axis=0),
    )


def matrix_polar(gradient):
    """(value, u, v): max over ||u|| = ||v|| = 1 of u^T (-G) v = sigma_max(G), with its maximizers.

    G = grad of the loss at W = sum_r u_r v_r^T (shape (d_out, d_in)). This is the polar problem of
    Haeffele & Vidal (2017) for rank-one units: for min loss(W) + lambda Theta, value <= lambda
    certifies global optimality; when value > lambda, the unit (t u, t v) with small t > 0 lowers the
    objective by t^2 (value - lambda) + O(t^4) (u, v the top singular pair of -G).
    """
    left, values, right_t = jnp.linalg.svd(-gradient, full_matrices=False)
    return values[0], left[:, 0], right_t[0]

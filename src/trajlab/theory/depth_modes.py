"""Closed forms of the singular-value dynamics of depth-N linear networks along fixed singular vectors.

Source: Arora, Cohen, Hu, Luo, "Implicit Regularization in Deep Matrix Factorization" (NeurIPS
2019), Theorem 3: under gradient flow on a depth-N factorization W = W_N ... W_1 from a balanced
init, the singular values of W obey

    d sigma_r / dt = -N (sigma_r^2)^(1 - 1/N) <grad L(W), u_r v_r^T>.                     (1)

Everything here is about settings in which the singular vectors u_r, v_r do *not* move, so that
(1) is a closed system of scalar ODEs. (Assumed, and checked numerically by the presets that use
these formulas; the paper's Theorem 3 also gives the singular-vector dynamics, which vanish there.)

**Common driving factor** (``singular-gaps``). If <grad L(W), u_r v_r^T> = -a_r g(t) with fixed
weights a_r > 0 and one scalar g(t) (e.g. a single measurement y = <A, W> with A = diag(a) and
a diagonal balanced init, loss 1/2 (<A, W> - y)^2: g = y - <A, W>), then (1) reads
d sigma_r/dt = N a_r sigma_r^(2-2/N) g(t), and with the *depth potential*

    phi_N(sigma) = ln sigma                              (N = 2)
    phi_N(sigma) = sigma^(2/N - 1) / (2/N - 1)           (N != 2; N = 1: phi = sigma)

(phi_N' = sigma^(-(2 - 2/N))) every phi_N(sigma_r) moves at rate N a_r g(t). Eliminating g:

    phi_N(sigma_2) - phi_N(sigma_2(0)) = c (phi_N(sigma_1) - phi_N(sigma_1(0))),  c = a_2 / a_1,

so sigma_2 is an explicit function of sigma_1 (:func:`partner_singular_value`):

- N = 1: sigma_2 = sigma_2(0) + c (sigma_1 - sigma_1(0)): a straight line of slope c;
- N = 2: sigma_2 = sigma_2(0) (sigma_1 / sigma_1(0))^c: a power law of exponent c;
- N >= 3, p = 1 - 2/N: sigma_2^(-p) = sigma_2(0)^(-p) + c (sigma_1^(-p) - sigma_1(0)^(-p)). As
  sigma_1 -> infinity, sigma_2 increases to the finite bound (:func:`partner_bound`)
  sigma_2^inf = (sigma_2(0)^(-p) - c sigma_1(0)^(-p))^(-1/p) when that base is > 0 (e.g. equal
  init and c < 1: sigma_2^inf = sigma(0) (1 - c)^(-1/p)): the weaker mode saturates while the
  stronger one grows without bound. (If the base is <= 0, sigma_2 blows up at a finite sigma_1.)

**One mode with a target** (``saddle-order``): for 1/2 (u - s)^2 (whitened regression with a
one-dimensional target s > 0, or one mode of a whitened target when the init is aligned with it),
(1) is du/dt = N u^(2 - 2/N) (s - u), the depth-N analogue of Saxe et al. (ICLR 2014, Eq. 5; N = 2
is their logistic curve). With a = 2 - 2/N and x = u / s, the time from u0 to u1 (0 < u0 < u1 < s) is

    t = s^(-a) / N [I(u1 / s) - I(u0 / s)],   I(x) = int x^(-a) / (1 - x) dx,

    I(x) = -x^(-p) / p  2F1(1, -p; 1 - p; x)       (p = 1 - 2/N != 0; N = 1: I = -ln(1 - x)),
    I(x) = ln(x / (1 - x))                          (N = 2),

(termwise integration of x^(-a) sum_k x^k; 2F1 is the Gauss hypergeometric function), see
:func:`mode_time`. For small u0 the escape time to s / 2 is (:func:`escape_time_leading`)

    N = 2:   t = ln((s - u0) / u0) / (2 s)     ~ ln(1 / u0) / (2 s),
    N >= 3:  t = u0^(-p) / ((N - 2) s) + O(1)  (p = 1 - 2/N),

a logarithmic plateau for N = 2 and a power-law one for N >= 3: the origin is a saddle whose
order grows with depth (all derivatives of order < N of the loss vanish at W_1 = ... = W_N = 0;
:func:`origin_directional_derivative`, :func:`depth_two_origin_hessian_eigenvalues`).

Time convention: d theta / dt = -grad L(theta) (tau = 1), trajlab's gradient flow. The functions
are numpy / scipy (hyp2f1), elementwise over broadcastable arrays, not traced by JAX.
"""

from __future__ import annotations

import math

import numpy as np


def _check_depth(depth) -> int:
    if not (isinstance(depth, (int, np.integer)) and not isinstance(depth, bool) and depth >= 1):
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return int(depth)


def saddle_exponent(depth: int) -> float:
    """p = 1 - 2/N: the escape time from scale u0 grows like u0^(-p) for N >= 3 (0 for N = 2: log)."""
    return 1.0 - 2.0 / _check_depth(depth)


def depth_potential(sigma, depth: int):
    """phi_N(sigma) with phi_N' = sigma^(-(2 - 2/N)): ln sigma for N = 2, sigma^(2/N - 1) / (2/N - 1) else.

    Along the singular-value ODE d sigma/dt = N a sigma^(2-2/N) g(t), phi_N(sigma) moves at rate N a g(t).
    """
    depth = _check_depth(depth)
    sigma = np.asarray(sigma, dtype=float)
    if depth == 2:
        return np.log(sigma)
    q = 2.0 / depth - 1.0
    return sigma**q / q


def inverse_depth_potential(value, depth: int):
    """The sigma > 0 with phi_N(sigma) = value (NaN where there is none: for N >= 3, value >= 0)."""
    depth = _check_depth(depth)
    value = np.asarray(value, dtype=float)
    if depth == 2:
        return np.exp(value)
    q = 2.0 / depth - 1.0
    base = value * q
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base > 0, np.abs(base) ** (1.0 / q), np.nan)


def partner_singular_value(sigma_1, depth: int, sigma_1_init, sigma_2_init, ratio):
    """sigma_2 as a function of sigma_1 under a common driving factor (module docstring):

    phi_N(sigma_2) = phi_N(sigma_2(0)) + ratio (phi_N(sigma_1) - phi_N(sigma_1(0))), ratio = a_2 / a_1.

    N = 1: sigma_2(0) + ratio (sigma_1 - sigma_1(0)); N = 2: sigma_2(0) (sigma_1 / sigma_1(0))^ratio;
    N >= 3: (sigma_2(0)^(-p) + ratio (sigma_1^(-p) - sigma_1(0)^(-p)))^(-1/p), p = 1 - 2/N.
    NaN where sigma_2 would have blown up already (N >= 3) or become <= 0 (N = 1: a negative value
    is returned as is, it is the diagonal entry, whose absolute value is the singular value).
    """
    depth = _check_depth(depth)
    value = depth_potential(sigma_2_init, depth) + ratio * (
        depth_potential(sigma_1, depth) - depth_potential(sigma_1_init, depth)
    )
    if depth == 1:
        return np.asarray(value, dtype=float)
    return inverse_depth_potential(value, depth)


def partner_bound(depth: int, sigma_1_init, sigma_2_init, ratio):
    """sup over sigma_1 >= sigma_1(0) of :func:`partner_singular_value` (ratio > 0): the limit as
    sigma_1 -> infinity, (sigma_2(0)^(-p) - ratio sigma_1(0)^(-p))^(-1/p) for N >= 3 when that base is
    positive; infinity for N = 1, 2 and when the base is <= 0."""
    depth = _check_depth(depth)
    sigma_1_init, sigma_2_init = np.asarray(sigma_1_init, float), np.asarray(sigma_2_init, float)
    if depth <= 2:
        return np.full(np.broadcast(sigma_1_init, sigma_2_init, np.asarray(ratio)).shape, np.inf)
    p = saddle_exponent(depth)
    base = sigma_2_init ** (-p) - ratio * sigma_1_init ** (-p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base > 0, np.abs(base) ** (-1.0 / p), np.inf)


def mode_velocity(u, s, depth: int):
    """du/dt = N u^(2 - 2/N) (s - u): one balanced mode of a depth-N network on 1/2 (u - s)^2."""
    depth = _check_depth(depth)
    u = np.asarray(u, dtype=float)
    return depth * np.abs(u) ** (2.0 - 2.0 / depth) * (s - u)


def _antiderivative(x, depth: int):
    """I(x) = int x^(-a) / (1 - x) dx, a = 2 - 2/N, for 0 < x < 1 (module docstring)."""
    from scipy.special import hyp2f1

    x = np.asarray(x, dtype=float)
    if depth == 2:
        return np.log(x / (1.0 - x))
    p = saddle_exponent(depth)
    return -(x ** (-p)) / p * hyp2f1(1.0, -p, 1.0 - p, x)


def mode_time(u0, u1, s, depth: int):
    """Exact time for du/dt = N u^(2-2/N) (s - u) to go from u0 to u1 (0 < u0, u1 < s):
    s^(-a) / N [I(u1 / s) - I(u0 / s)], a = 2 - 2/N (hypergeometric closed form; module docstring).

    N = 1: ln((s - u0) / (s - u1)); N = 2: ln(u1 (s - u0) / (u0 (s - u1))) / (2 s) (Saxe et al. Eq. 7).
    """
    depth = _check_depth(depth)
    s = np.asarray(s, dtype=float)
    a = 2.0 - 2.0 / depth
    return s ** (-a) / depth * (_antiderivative(np.asarray(u1) / s, depth) - _antiderivative(np.asarray(u0) / s, depth))


def escape_time(u0, s, depth: int, level: float = 0.5):
    """The exact time for one mode to rise from u0 to ``level`` x s: :func:`mode_time` (u0, level s)."""
    return mode_time(u0, level * np.asarray(s, dtype=float), s, depth)


def escape_time_quadrature(u0: float, s: float, depth: int, level: float = 0.5) -> float:
    """The same time by numerical quadrature of dt = du / (N u^(2-2/N) (s - u)) in log u (scipy quad),
    an independent check of the closed form."""
    from scipy.integrate import quad

    depth = _check_depth(depth)
    a = 2.0 - 2.0 / depth

    def integrand(log_u):  # du = u d(log u)
        u = math.exp(log_u)
        return u ** (1.0 - a) / (depth * (s - u))

    value, _ = quad(integrand, math.log(u0), math.log(level * s), epsabs=0.0, epsrel=1e-13, limit=500)
    return float(value)


def escape_time_leading(u0, s, depth: int):
    """The small-u0 law of the escape time to s / 2: ln(s / u0) / (2 s) for N = 2,
    u0^(-p) / ((N - 2) s) for N >= 3 (p = 1 - 2/N), ln 2 for N = 1 (no plateau)."""
    depth = _check_depth(depth)
    u0, s = np.asarray(u0, dtype=float), np.asarray(s, dtype=float)
    if depth == 1:
        return np.full(np.broadcast(u0, s).shape, math.log(2.0))
    if depth == 2:
        return np.log(s / u0) / (2.0 * s)
    return u0 ** (-saddle_exponent(depth)) / ((depth - 2) * s)


def origin_directional_derivative(target, directions) -> float:
    """d^N/de^N of L(e A_1, ..., e A_N) at e = 0 for L = 1/2 ||W_N ... W_1 - Phi||_F^2:
    -N! <A_N ... A_1, Phi> (the only term of L(e A) of order < 2N besides the constant). All
    derivatives of lower order (1 .. N-1) vanish: the origin is a critical point of order N."""
    product = directions[0]
    for layer in directions[1:]:
        product = layer @ product
    return float(-math.factorial(len(directions)) * np.sum(product * np.asarray(target)))


def depth_two_origin_hessian_eigenvalues(target, width: int) -> np.ndarray:
    """The Hessian of 1/2 ||W_2 W_1 - Phi||_F^2 at W_1 = W_2 = 0 (W_1: width x n, W_2: m x width),
    sorted ascending: +-sigma_i(Phi), each `width` times, and width (m + n - 2 min(m, n)) zeros.

    At 0 the quadratic part is -<W_2 W_1, Phi> = -sum_j a_j^T Phi b_j over hidden units j (a_j the
    j-th column of W_2, b_j the j-th row of W_1): per unit the block [[0, -Phi], [-Phi^T, 0]], whose
    eigenvalues are +-sigma_i(Phi) and |m - n| zeros.
    """
    target = np.asarray(target, dtype=float)
    m, n = target.shape
    singular = np.linalg.svd(target, compute_uv=False)
    values = np.concatenate([singular, -singular, np.zeros(m + n - 2 * singular.size)])
    return np.sort(np.tile(values, width))

"""The central flow of gradient descent at the edge of stability, and the stable flow beside it.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with Central
Flows" (ICLR 2025), Sec. 3 (gradient descent). GD with step eta, w_{k+1} = w_k - eta grad L(w_k),
at the edge of stability oscillates along the top Hessian eigenvectors around a smooth path w(t);
writing GD's iterate as w + delta with delta in the span of the unstable eigenvectors U and
Sigma = E[delta delta^T], a Taylor expansion of the time-averaged gradient gives

    E[grad L(w + delta)] = grad L(w) + (1/2) grad_w <Sigma, H(w)> + O(|delta|^3)

(the second term is the third derivative: grad_w of u_i^T H(w) u_j, u held fixed). The central
flow (time t = step x eta, as every flow in trajlab) is

    dw/dt = -[grad L(w) + (1/2) sum_ij S_ij grad_w (u_i^T H(w) u_j)],     Sigma = U S U^T,

where S (k x k, positive semidefinite) is the smallest correction that keeps the top eigenvalues at
or below 2/eta: with Lambda = U^T H U = diag(lambda_i), A = 2/eta I - Lambda (the slack of the
stability condition) and, U held fixed,

    dA/dt = -U^T (dH/dt) U = b + (1/2) M(S),  b_ij = <grad_w(u_i^T H u_j), grad L>,
    M(S)_ij = sum_kl <grad_w(u_i^T H u_j), grad_w(u_k^T H u_l)> S_kl,

S solves the semidefinite cone complementarity problem

    S >= 0,   A + tau dA/dt >= 0,   <S, A + tau dA/dt> = 0           (>= : positive semidefinite).

tau = 0 is the paper's continuous condition on the active set (eigenvalues at 2/eta may not rise);
the paper's own discretization imposes A + dt dA/dt >= 0 one Euler step dt ahead. We keep a
relaxation time tau > 0 (default: the integration step, i.e. the paper's discretization) so that
the vector field is a function of w alone and integrates with diffrax: an eigenvalue below 2/eta
(A_ii > 0) is unconstrained unless it would cross 2/eta within about tau, and drift off the edge is
pulled back at rate 1/tau. Because M is a Gram operator (positive semidefinite), the problem is the
KKT system of the convex program

    S = argmin_{S >= 0} (1/4) <S, M(S)> + <A / tau + b, S>,

solved here by accelerated projected gradient (FISTA; projection onto the PSD cone by eigh of a
k x k matrix) with a fixed iteration count. With one eigenvalue at the edge this is the paper's
closed form sigma^2 = S_11 = max(0, -2 <grad S, grad L> / ||grad S||^2) (tau -> 0).

GD's time-averaged loss, as the central flow predicts it (the paper's Sec. 3, same expansion):

    E[L(w + delta)] = L(w) + (1/2) <Sigma, H> = L(w) + (1/2) sum_i S_ii lambda_i  (= L + tr(S) / eta
    on the edge), and sqrt(E[|delta|^2]) = sqrt(tr S), the size of the oscillation.

The stable flow is gradient flow dw/dt = -grad L(w) (diffrax Tsit5 at the fixed step eta / 4). The central flow is
integrated with a fixed step (Heun by default; its vector field has kinks where eigenvalues enter or
leave the edge, which an adaptive controller would chase), dt = eta / ``substeps``.

Eigenpairs: the top k by Lanczos (full reorthogonalization, ``iterations`` Hessian-vector
products, fixed start key) or, for small problems, the dense Hessian (``eigensolver="dense"``).
What the paper text did not settle for us (assumed): tau as above; the top-k set is fixed in size
(k static) instead of "every eigenvalue above 1.5/eta" (eigenvalues far below 2/eta get S = 0 from
the complementarity condition anyway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from trajlab.metrics.curvature_suite import flat_lanczos_eigenpairs


@dataclass(frozen=True)
class CentralFlowOptions:
    """Static settings of the central flow.

    ``k``: eigenpairs tracked; ``eigensolver``: ``lanczos`` or ``dense``; ``iterations``: Lanczos
    steps; ``substeps``: integration steps per GD step (dt = eta / substeps); ``solver``: ``heun`` or
    ``euler``; ``tau_steps``: the relaxation time tau in units of dt; ``cone_iterations``: FISTA
    iterations of the complementarity solve.
    """

    k: int = 2
    eigensolver: str = "lanczos"
    iterations: int = 30
    substeps: int = 2
    solver: str = "heun"
    tau_steps: float = 1.0
    cone_iterations: int = 100

    def __post_init__(self) -> None:
        if self.eigensolver not in ("lanczos", "dense"):
            raise ValueError(f"eigensolver must be 'lanczos' or 'dense', got {self.eigensolver!r}")
        if self.solver not in ("heun", "euler"):
            raise ValueError(f"solver must be 'heun' or 'euler', got {self.solver!r}")
        if self.k < 1 or self.substeps < 1 or self.iterations < self.k or self.tau_steps <= 0:
            raise ValueError("need k >= 1, substeps >= 1, iterations >= k, tau_steps > 0")


# ---------------------------------------------------------------------------------------------
# the complementarity solve


def project_psd(matrix):
    """Nearest positive semidefinite matrix in Frobenius norm: eigenvalues clipped at 0."""
    symmetric = 0.5 * (matrix + matrix.T)
    values, vectors = jnp.linalg.eigh(symmetric)
    return (vectors * jnp.maximum(values, 0.0)) @ vectors.T


def solve_cone_complementarity(linear, gram, iterations: int = 100):
    """S = argmin_{S psd} (1/4) <S, M(S)> + <C, S> by FISTA; the KKT conditions are S >= 0,
    C + (1/2) M(S) >= 0, <S, C + (1/2) M(S)> = 0.

    ``linear``: C (k, k) symmetric; ``gram``: M (k, k, k, k), M(S)_ij = sum_kl gram[i,j,k,l] S_kl,
    positive semidefinite as an operator on symmetric matrices. Step 1 / Lipschitz constant
    (1/2 the largest eigenvalue of M as a k^2 x k^2 matrix).
    """
    k = linear.shape[0]
    flat_gram = gram.reshape(k * k, k * k)
    lipschitz = 0.5 * jnp.linalg.eigvalsh(0.5 * (flat_gram + flat_gram.T))[-1]
    step = 1.0 / jnp.maximum(lipschitz, jnp.finfo(linear.dtype).tiny ** 0.5)

    def gradient(s):
        return linear + 0.5 * jnp.einsum("ijkl,kl->ij", gram, s)

    def body(i, carry):
        s, previous, momentum = carry
        new = project_psd(momentum - step * gradient(momentum))
        t = (i + 1.0) / (i + 4.0)  # Nesterov's (k - 1) / (k + 2) weights
        return new, s, new + t * (new - s)

    zero = jnp.zeros_like(linear)
    s, _, _ = jax.lax.fori_loop(0, int(iterations), body, (zero, zero, zero))
    return s


# ---------------------------------------------------------------------------------------------
# the vector field


def _eigenpairs(flat_loss, w, options: CentralFlowOptions):
    if options.eigensolver == "dense":
        values, vectors = jnp.linalg.eigh(jax.hessian(flat_loss)(w))
        return values[::-1][: options.k], vectors[:, ::-1][:, : options.k].T
    _, product = jax.linearize(jax.grad(flat_loss), w)
    return flat_lanczos_eigenpairs(product, w.shape[0], w.dtype, jax.random.PRNGKey(0), options.k, options.iterations)


def _third_derivatives(flat_loss, w, vectors):
    """grad_w (u_i^T H(w) u_j) for every ordered pair (i, j): shape (k, k, n) (vectors held fixed)."""
    k = vectors.shape[0]
    vectors = jax.lax.stop_gradient(vectors)

    def bilinear(x, u, v):
        return jnp.vdot(u, jax.jvp(jax.grad(flat_loss), (x,), (v,))[1])

    rows, cols = jnp.triu_indices(k)
    upper = jax.vmap(lambda i, j: jax.grad(bilinear)(w, vectors[i], vectors[j]))(rows, cols)
    full = jnp.zeros((k, k, w.shape[0]), w.dtype).at[rows, cols].set(upper)
    return full.at[cols, rows].set(upper)


def central_flow_terms(flat_loss: Callable, w, eta, dt, options: CentralFlowOptions) -> dict[str, Any]:
    """Everything the central flow needs and predicts at the flat point ``w``.

    Returns ``velocity`` (dw/dt), ``gradient``, ``eigenvalues`` (k,), ``vectors`` (k, n), ``S`` (k, k),
    ``loss``, ``predicted_loss`` = L + (1/2) sum_i S_ii lambda_i and ``oscillation`` = sqrt(tr S).
    """
    loss, gradient = jax.value_and_grad(flat_loss)(w)
    values, vectors = _eigenpairs(flat_loss, w, options)
    third = _third_derivatives(flat_loss, w, vectors)  # (k, k, n)
    tau = options.tau_steps * dt
    slack = jnp.diag(2.0 / eta - values)
    drift = jnp.einsum("ijn,n->ij", third, gradient)
    gram = jnp.einsum("ijn,kln->ijkl", third, third)
    s = solve_cone_complementarity(slack / tau + drift, gram, options.cone_iterations)
    velocity = -(gradient + 0.5 * jnp.einsum("ij,ijn->n", s, third))
    return dict(
        velocity=velocity,
        gradient=gradient,
        eigenvalues=values,
        vectors=vectors,
        S=s,
        loss=loss,
        predicted_loss=loss + 0.5 * jnp.sum(jnp.diag(s) * values),
        oscillation=jnp.sqrt(jnp.maximum(jnp.trace(s), 0.0)),
    )


def central_flow_field(flat_loss: Callable, eta, dt, options: CentralFlowOptions):
    """``field(t, w, args) -> dw/dt`` for diffrax."""

    def field(t, w, args):
        del t, args
        return central_flow_terms(flat_loss, w, eta, dt, options)["velocity"]

    return field


# ---------------------------------------------------------------------------------------------
# integration


def integrate_central_flow(flat_loss: Callable, w0, eta, times, options: CentralFlowOptions = CentralFlowOptions(),
                           max_steps: int | None = None):
    """Flat parameters of the central flow from ``w0`` at ``times`` (t = step x eta, times[0] = 0):
    shape (len(times), n); fixed step dt = eta / substeps. ``eta`` and ``times`` may be traced if
    ``max_steps`` (a bound on the number of steps dt) is given."""
    if max_steps is None:  # times and eta concrete
        max_steps = int(math.ceil(float(np.asarray(times)[-1]) * options.substeps / float(eta))) + 8
    steps = max_steps
    times = jnp.asarray(times, w0.dtype)
    dt = eta / options.substeps
    solver = diffrax.Heun() if options.solver == "heun" else diffrax.Euler()
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(central_flow_field(flat_loss, eta, dt, options)),
        solver,
        t0=times[0],
        t1=times[-1],
        dt0=dt,
        y0=w0,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max(steps, 16),
        throw=False,
    )
    return solution.ys


def integrate_stable_flow(flat_loss: Callable, w0, eta, times, substeps: int = 4, max_steps: int | None = None):
    """Gradient flow dw/dt = -grad L(w) from ``w0`` at ``times``: Tsit5 at the fixed step dt = eta /
    ``substeps`` (an adaptive controller stalls at the kinks of ReLU networks' gradients; with dt =
    eta / 4 the step is stable while the sharpness stays below ~14 / eta)."""
    if max_steps is None:
        max_steps = int(math.ceil(float(np.asarray(times)[-1]) * substeps / float(eta))) + 8
    times = jnp.asarray(times, w0.dtype)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, w, args: -jax.grad(flat_loss)(w)),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=eta / substeps,
        y0=w0,
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max(max_steps, 16),
        throw=False,
    )
    return solution.ys


def gradient_descent(flat_loss: Callable, w0, eta, steps: int, record_steps):
    """GD w <- w - eta grad L(w): (params at ``record_steps`` (R, n), loss at every step 0..steps (steps + 1,))."""
    record_steps = jnp.asarray(record_steps)

    def step(w, _):
        loss, gradient = jax.value_and_grad(flat_loss)(w)
        return w - eta * gradient, (w, loss)

    last, (path, losses) = jax.lax.scan(step, w0, None, length=int(steps))
    path = jnp.concatenate([path, last[None]], axis=0)
    losses = jnp.concatenate([losses, flat_loss(last)[None]])
    return path[record_steps], losses


def flatten_loss(loss: Callable, params, data):
    """(flat_loss(w) = loss(unravel(w), data), w0 flat, unravel)."""
    flat, unravel = ravel_pytree(params)
    return (lambda w: loss(unravel(w), data)), flat, unravel


def central_flow_history(flat_loss: Callable, path, eta, options: CentralFlowOptions = CentralFlowOptions()):
    """Per saved point of a central-flow ``path`` (R, n): loss, predicted_loss, oscillation,
    eigenvalues (R, k) and S (R, k, k), recomputed with the same dt as the integration."""
    dt = eta / options.substeps

    def one(w):
        terms = central_flow_terms(flat_loss, w, eta, dt, options)
        return {name: terms[name] for name in ("loss", "predicted_loss", "oscillation", "eigenvalues", "S")}

    return jax.lax.map(one, path)


__all__ = [
    "CentralFlowOptions",
    "central_flow_field",
    "central_flow_history",
    "central_flow_terms",
    "flatten_loss",
    "gradient_descent",
    "integrate_central_flow",
    "integrate_stable_flow",
    "project_psd",
    "solve_cone_complementarity",
]

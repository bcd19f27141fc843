"""The central flow of scalar RMSProp at the edge of stability, and its stable flow.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with Central
Flows" (ICLR 2025), Sec. 4 (Scalar RMSProp; also the companion site centralflows.github.io, part 2,
and the authors' code, github.com/locuslab/central_flows, read in the copy mahyarjn80/centralflows:
``ScalarRMSProp`` in src/update_rules.py and the flow substeps in src/flows.py, for the conventions,
taken from the code where its docstring differs; the paper's own text was not at hand, so section
numbers and the paper's notation are from memory). The GD central flow this builds on, its notation and
its discretization (cone complementarity by FISTA, relaxation time tau, eigenpairs) are in
:mod:`trajlab.dynamics.central_flow`; the functions are imported from there.

Scalar RMSProp (the paper's convention; the EMA is updated with the current gradient *before* the
step, no bias correction, eps added to sqrt(nu) as in the usual RMSProp implementations):

    nu_k     = beta2 nu_{k-1} + (1 - beta2) ||grad L(w_k)||^2,
    w_{k+1}  = w_k - eta / (sqrt(nu_k) + eps) grad L(w_k).

Here ``nu_k`` always means the value used by step k; ``nu_init`` (nu_{-1}, the EMA before the first
update) defaults to ||grad L(w_0)||^2, so that step 0 uses nu_0 = ||grad L(w_0)||^2 (what bias
correction gives at the first step). It is preconditioned GD with P_k = (sqrt(nu_k) + eps) / eta I,
effective step size eta / (sqrt(nu) + eps), and it is stable along a Hessian eigenvector while the
*effective sharpness* eta lambda_1 / (sqrt(nu) + eps) is at most 2, i.e. while lambda_1 <= 2 r / eta
with r = sqrt(nu) + eps.

Time is t = step x eta, as for every flow in trajlab (the paper counts steps). The EMA becomes

    dnu/dt = kappa (||grad L||^2 - nu),     kappa = (1 - beta2) / (beta2 eta):

the 1/beta2 (the paper's footnote; the authors' code divides the discrete EMA increment by beta2)
comes from rewriting the EMA as nu_k - nu_{k-1} = ((1 - beta2) / beta2) (||grad L(w_k)||^2 - nu_k),
the increment in terms of the value nu_k used at the same step as the gradient; with it, the EMA's
lag behind a slowly drifting ||grad L||^2 (b/(1-b) steps) is the ODE's. The *stable flow* is

    dw/dt = -grad L(w) / r,     dnu/dt = kappa (||grad L||^2 - nu),      r = sqrt(nu) + eps,

and starts from nu(0) = nu_0, the value RMSProp uses at step 0 (the authors' code, too, updates the
state once with grad L(w_0) before the flows start).

The *central flow* (Sec. 4): RMSProp's iterate is w + delta with delta oscillating in the span of
the top Hessian eigenvectors U, Sigma = E[delta delta^T] = U S U^T. Time-averaging the update to
second order in delta (with U orthonormal eigenvectors, U^T H U = Lambda = diag(lambda_i)):

    E[grad L(w + delta)]     = grad L + (1/2) sum_ij S_ij g_ij,   g_ij = grad_w (u_i^T H(w) u_j),
    E[||grad L(w + delta)||^2] = ||grad L||^2 + <Sigma, H^2> = ||grad L||^2 + sum_i S_ii lambda_i^2,

    dw/dt  = -(1 / r) [grad L + (1/2) sum_ij S_ij g_ij],
    dnu/dt = kappa [||grad L||^2 + sum_i S_ii lambda_i^2 - nu],

(with a single direction at the edge: sigma^2 = S_11 and sum_i S_ii lambda_i^2 = sigma^2 S(w)^2,
the paper's form), and S is the smallest PSD correction keeping U^T (2 P - H) U = A = 2 r / eta I -
Lambda positive semidefinite. Both P (through nu) and H (through w) move, and both moves are affine
in S, U held fixed:

    dA/dt = (1 / (eta sqrt(nu))) dnu/dt I - dLambda/dt = b + (1/2) M(S),
    b_ij   = <g_ij, grad L> / r + delta_ij kappa (||grad L||^2 - nu) / (eta sqrt(nu)),
    M(S)_ij = sum_kl <g_ij, g_kl> S_kl / r + delta_ij gamma sum_k lambda_k^2 S_kk,
    gamma = 2 kappa / (eta sqrt(nu)).

The oscillation feeds nu, which raises the threshold 2 r / eta: RMSProp's second stabilizing
mechanism beside the third-derivative one of GD (the effective step size adapts to the curvature
through the oscillation). S solves the cone complementarity problem S >= 0, A + tau dA/dt >= 0,
<S, A + tau dA/dt> = 0 with the relaxation time tau of the GD module (default: the integration step, the
paper's one-Euler-step-ahead discretization; the authors' code imposes A + dt dA/dt >= 0 the same
way, in units of the effective Hessian).

Assumed / changed (ours): the nu part of M, gamma delta_ij lambda_k^2 S_kk, is not symmetric in (ij)
<-> (kl), so the problem is not the KKT system of a convex quadratic; we replace lambda_k^2 by
lambda_i lambda_k there (a PSD rank-one term gamma vec(Lambda) vec(Lambda)^T), which is exact when
one direction carries the oscillation (k = 1, or S supported on one eigenvector) and when the
directions at the edge share the eigenvalue 2 r / eta (the edge), so that the existing FISTA solver
(:func:`~trajlab.dynamics.central_flow.solve_cone_complementarity`) applies. The velocities use the
exact lambda_k^2. The authors solve the general problem with CVXPY instead. Their cross terms of
order delta^2 in E||grad L||^2 from the third derivative along grad L are dropped (as in their code:
the gradient's covariance is (HU) X (HU)^T around grad L(w)). No bias correction in the flows (it
would make them explicitly time-dependent); eps is supported.

Predictions of the central flow: RMSProp's time-averaged loss L(w) + (1/2) sum_i S_ii lambda_i
(= L + tr(S) r / eta on the edge), its EMA nu (the flow's own state), E||grad L||^2 and the
oscillation size sqrt(tr S).

With one direction at the edge the condition d/dt (lambda_1 - 2 r / eta) = 0 has the closed form
(tau -> 0, eps = 0, grad S = g_11, S = lambda_1 = 2 sqrt(nu) / eta)

    sigma^2 = [-<grad S, grad L> + (kappa / eta) (nu - ||grad L||^2)] / [|grad S|^2 / 2 + (kappa / eta) S^2]

(positive part), which the tests integrate with scipy as an independent reference.

Integration: the central flow with a fixed step (Heun by default, dt = eta / ``substeps``; its
effective sharpness is at most 2, so dt lambda / r <= 2 / substeps); the stable flow with Tsit5 at the
fixed step eta / ``substeps`` (stable while its effective sharpness stays below ~3.5 x substeps: the
stable flow's nu follows ||grad L||^2 down, its effective sharpness grows without bound, so a long
horizon needs ``adaptive=True``, a PID controller, for smooth losses).
"""

from __future__ import annotations

import math
from typing import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from trajlab.dynamics.central_flow import (
    CentralFlowOptions,
    _eigenpairs,
    _third_derivatives,
    flatten_loss,
    solve_cone_complementarity,
)


def check_hyperparameters(eta, beta2, eps=0.0) -> None:
    """ValueError unless eta > 0, 0 < beta2 < 1 and eps >= 0 (checked only for concrete numbers: traced
    values pass)."""
    def concrete(x):
        return isinstance(x, (int, float, np.floating, np.integer))

    if concrete(eta) and not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    if concrete(beta2) and not 0 < beta2 < 1:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2}")
    if concrete(eps) and not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _kappa(eta, beta2):
    """Rate of the EMA per unit time t = step x eta: (1 - beta2) / (beta2 eta)."""
    return (1.0 - beta2) / (beta2 * eta)


# ---------------------------------------------------------------------------------------------
# the optimizer


def scalar_rmsprop(flat_loss: Callable, w0, eta, beta2, steps: int, record_steps, nu_init=None, eps=0.0):
    """Scalar RMSProp (module docstring) for ``steps`` steps from ``w0``.

    Returns a dict: ``path`` (params at ``record_steps``, (R, n)); per step k = 0..steps: ``loss``
    L(w_k), ``sq_grad`` ||grad L(w_k)||^2, ``nu`` nu_k (the EMA value step k uses; for k = steps
    the value the next step would use). ``nu_init``: the EMA before the first update (default
    ||grad L(w_0)||^2).
    """
    check_hyperparameters(eta, beta2, eps)
    record_steps = jnp.asarray(record_steps)
    g0 = jax.grad(flat_loss)(w0)
    nu_prev = jnp.vdot(g0, g0) if nu_init is None else jnp.asarray(nu_init, w0.dtype)

    def step(carry, _):
        w, nu_prev = carry
        loss, gradient = jax.value_and_grad(flat_loss)(w)
        sq = jnp.vdot(gradient, gradient)
        nu = beta2 * nu_prev + (1.0 - beta2) * sq
        return (w - eta / (jnp.sqrt(nu) + eps) * gradient, nu), (w, loss, sq, nu)

    (last, nu_last), (path, losses, sqs, nus) = jax.lax.scan(step, (w0, nu_prev), None, length=int(steps))
    loss_last, g_last = jax.value_and_grad(flat_loss)(last)
    sq_last = jnp.vdot(g_last, g_last)
    path = jnp.concatenate([path, last[None]], axis=0)
    return dict(
        path=path[record_steps],
        loss=jnp.concatenate([losses, loss_last[None]]),
        sq_grad=jnp.concatenate([sqs, sq_last[None]]),
        nu=jnp.concatenate([nus, (beta2 * nu_last + (1.0 - beta2) * sq_last)[None]]),
    )


def first_nu(flat_loss: Callable, w0, beta2, nu_init=None):
    """nu_0, the EMA value RMSProp uses at step 0 (the flows' initial nu)."""
    g0 = jax.grad(flat_loss)(w0)
    sq = jnp.vdot(g0, g0)
    return sq if nu_init is None else beta2 * nu_init + (1.0 - beta2) * sq


# ---------------------------------------------------------------------------------------------
# the vector fields


def rmsprop_stable_field(flat_loss: Callable, eta, beta2, eps=0.0):
    """``field(t, (w, nu), args) -> (dw/dt, dnu/dt)`` of the stable flow."""
    check_hyperparameters(eta, beta2, eps)
    kappa = _kappa(eta, beta2)

    def field(t, state, args):
        del t, args
        w, nu = state
        gradient = jax.grad(flat_loss)(w)
        return -gradient / (jnp.sqrt(nu) + eps), kappa * (jnp.vdot(gradient, gradient) - nu)

    return field


def rmsprop_central_flow_terms(flat_loss: Callable, w, nu, eta, beta2, dt, options: CentralFlowOptions, eps=0.0):
    """Everything the scalar-RMSProp central flow needs and predicts at (w, nu).

    Returns ``velocity`` (dw/dt), ``nu_rate`` (dnu/dt), ``gradient``, ``eigenvalues`` (k,),
    ``vectors`` (k, n), ``S`` (k, k), ``loss``, ``predicted_loss`` = L + (1/2) sum_i S_ii lambda_i,
    ``predicted_sq_grad`` = ||grad L||^2 + sum_i S_ii lambda_i^2, ``effective_sharpness`` = eta
    lambda_1 / (sqrt(nu) + eps) and ``oscillation`` = sqrt(tr S).
    """
    loss, gradient = jax.value_and_grad(flat_loss)(w)
    values, vectors = _eigenpairs(flat_loss, w, options)
    third = _third_derivatives(flat_loss, w, vectors)  # (k, k, n)
    k = values.shape[0]
    kappa = _kappa(eta, beta2)
    root = jnp.sqrt(nu)
    r = root + eps
    sq = jnp.vdot(gradient, gradient)
    eye = jnp.eye(k, dtype=w.dtype)
    tau = options.tau_steps * dt
    slack = 2.0 * r / eta * eye - jnp.diag(values)
    drift = jnp.einsum("ijn,n->ij", third, gradient) / r + eye * kappa * (sq - nu) / (eta * root)
    lam = jnp.diag(values)
    gram = (jnp.einsum("ijn,kln->ijkl", third, third) / r
            + 2.0 * kappa / (eta * root) * jnp.einsum("ij,kl->ijkl", lam, lam))
    s = solve_cone_complementarity(slack / tau + drift, gram, options.cone_iterations)
    extra = jnp.sum(jnp.diag(s) * values**2)
    return dict(
        velocity=-(gradient + 0.5 * jnp.einsum("ij,ijn->n", s, third)) / r,
        nu_rate=kappa * (sq + extra - nu),
        gradient=gradient,
        eigenvalues=values,
        vectors=vectors,
        S=s,
        loss=loss,
        predicted_loss=loss + 0.5 * jnp.sum(jnp.diag(s) * values),
        predicted_sq_grad=sq + extra,
        effective_sharpness=eta * values[0] / r,
        oscillation=jnp.sqrt(jnp.maximum(jnp.trace(s), 0.0)),
    )


def rmsprop_central_flow_field(flat_loss: Callable, eta, beta2, dt, options: CentralFlowOptions, eps=0.0):
    """``field(t, (w, nu), args) -> (dw/dt, dnu/dt)`` for diffrax."""
    check_hyperparameters(eta, beta2, eps)

    def field(t, state, args):
        del t, args
        terms = rmsprop_central_flow_terms(flat_loss, state[0], state[1], eta, beta2, dt, options, eps)
        return terms["velocity"], terms["nu_rate"]

    return field


# ---------------------------------------------------------------------------------------------
# integration


def _max_steps(times, eta, substeps, max_steps):
    if max_steps is None:  # times and eta concrete
        max_steps = int(math.ceil(float(np.asarray(times)[-1]) * substeps / float(eta))) + 8
    return max(int(max_steps), 16)


def integrate_rmsprop_central_flow(flat_loss: Callable, w0, nu0, eta, beta2, times,
                                   options: CentralFlowOptions = CentralFlowOptions(), eps=0.0,
                                   max_steps: int | None = None):
    """(w (R, n), nu (R,)) of the central flow from (w0, nu0) at ``times`` (t = step x eta, times[0]
    = 0); fixed step dt = eta / options.substeps. ``nu0``: the EMA value RMSProp uses at step 0
    (:func:`first_nu`). ``eta`` and ``times`` may be traced if ``max_steps`` is given."""
    steps = _max_steps(times, eta, options.substeps, max_steps)
    times = jnp.asarray(times, w0.dtype)
    dt = eta / options.substeps
    solver = diffrax.Heun() if options.solver == "heun" else diffrax.Euler()
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(rmsprop_central_flow_field(flat_loss, eta, beta2, dt, options, eps)),
        solver,
        t0=times[0],
        t1=times[-1],
        dt0=dt,
        y0=(w0, jnp.asarray(nu0, w0.dtype)),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=steps,
        throw=False,
    )
    return solution.ys


def integrate_rmsprop_stable_flow(flat_loss: Callable, w0, nu0, eta, beta2, times, eps=0.0, substeps: int = 4,
                                  adaptive: bool = False, max_steps: int | None = None):
    """(w (R, n), nu (R,)) of the stable flow from (w0, nu0) at ``times``: Tsit5 at the fixed step
    eta / ``substeps``, or (``adaptive``) with a PID controller (rtol 1e-8, atol 1e-10, first step
    eta / substeps, at most ``max_steps`` steps: for smooth losses only)."""
    steps = _max_steps(times, eta, substeps, max_steps)
    times = jnp.asarray(times, w0.dtype)
    controller = (diffrax.PIDController(rtol=1e-8, atol=1e-10) if adaptive else diffrax.ConstantStepSize())
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(rmsprop_stable_field(flat_loss, eta, beta2, eps)),
        diffrax.Tsit5(),
        t0=times[0],
        t1=times[-1],
        dt0=eta / substeps,
        y0=(w0, jnp.asarray(nu0, w0.dtype)),
        saveat=diffrax.SaveAt(ts=times),
        stepsize_controller=controller,
        max_steps=steps * (8 if adaptive else 1),
        throw=False,
    )
    return solution.ys


def rmsprop_central_flow_history(flat_loss: Callable, path, nus, eta, beta2,
                                 options: CentralFlowOptions = CentralFlowOptions(), eps=0.0):
    """Per saved point of a central-flow path (``path`` (R, n), ``nus`` (R,)): loss,
    predicted_loss, predicted_sq_grad, effective_sharpness, oscillation, eigenvalues (R, k), S
    (R, k, k), recomputed with the same dt as the integration."""
    dt = eta / options.substeps
    names = ("loss", "predicted_loss", "predicted_sq_grad", "effective_sharpness", "oscillation", "eigenvalues", "S")

    def one(state):
        terms = rmsprop_central_flow_terms(flat_loss, state[0], state[1], eta, beta2, dt, options, eps)
        return {name: terms[name] for name in names}

    return jax.lax.map(one, (path, nus))


__all__ = [
    "check_hyperparameters",
    "first_nu",
    "flatten_loss",
    "integrate_rmsprop_central_flow",
    "integrate_rmsprop_stable_flow",
    "rmsprop_central_flow_field",
    "rmsprop_central_flow_history",
    "rmsprop_central_flow_terms",
    "rmsprop_stable_field",
    "scalar_rmsprop",
]

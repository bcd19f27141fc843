"""Exact learning dynamics of one mode of a two-layer linear network (Saxe, McClelland, Ganguli, ICLR 2014).

Setting (Saxe et al., Section 1, "Exact solutions to the nonlinear dynamics of learning in deep
linear neural networks"): a network W = W_2 W_1 trained by gradient flow on whitened inputs. Here
the loss is 1/2 ||W - Phi||_F^2 (the ``whitened`` problem of trajlab; Phi = sum_r s_r u_r v_r^T is
Saxe's input-output correlation Sigma^31 and the input correlation Sigma^11 is I).

If the layers start *balanced and aligned* with Phi's modes, W_1 = sum_r a_r h_r v_r^T and
W_2 = sum_r a_r u_r h_r^T with orthonormal hidden directions h_r, every mode evolves on its own.
Its strength u_r = u_r^T W v_r = a_r^2 obeys

    tau du/dt = 2 u (s - u),                                                    (Saxe, Eq. 5)

whose solution from u(0) = u0 > 0 is the logistic curve

    u(t) = s e^(2 s t / tau) / (e^(2 s t / tau) - 1 + s / u0)                   (Saxe, Eq. 6)
         = s / (1 + (s / u0 - 1) e^(-2 s t / tau)).

Time convention: tau is the time constant of the flow ``tau dtheta/dt = -grad L(theta)``. trajlab's
gradient flow integrates ``dtheta/dt = -grad L(theta)`` with time t = step * lr, so tau = 1 for the
loss 1/2 ||W - Phi||_F^2 (Saxe's tau = 1 / learning rate of the sum-over-samples loss, which is the
same statement). Every function takes ``tau`` (default 1) so the other convention is a division.

Learning time (Saxe, Eq. 7): the time to go from u0 to u_f is

    t = tau / (2 s) ln( u_f (s - u0) / (u0 (s - u_f)) ),

and with u0 = eps and u_f = s - eps (start eps above 0, stop eps below s) this is exactly
(tau / s) ln((s - eps) / eps), which Saxe et al. approximate by (tau / s) ln(s / eps) for
eps << s: :func:`saxe_learning_time`. A useful consequence that does not depend on u0: the rise
from 10% to 90% of s takes (tau / (2 s)) ln 81 (:func:`rise_time`).

With a small *random* balanced initialization the modes are not aligned at t = 0. The layers first
align (for depth 2 the component of W_1 v_r + W_2^T u_r grows as e^(s_r t), the difference decays),
after which each mode follows the logistic curve with an *effective* initial strength that is not
u_r^T W(0) v_r; :func:`initial_strength` recovers it from any point of the curve (e.g. the time at
which the mode reaches s / 2).

All functions are elementwise over broadcastable arrays (``jax.numpy``), so they jit and vmap.
"""

from __future__ import annotations

import jax.numpy as jnp


def mode_strength_velocity(u, s, tau=1.0):
    """du/dt = 2 u (s - u) / tau: the mode-strength ODE of a balanced, aligned depth-2 network."""
    return 2.0 * u * (s - u) / tau


def mode_strength(t, s, u0, tau=1.0):
    """u(t) = s / (1 + (s / u0 - 1) e^(-2 s t / tau)) (Saxe et al. 2014, Eq. 6) for u0 > 0, s > 0.

    Written in this form (rather than s e^x / (e^x - 1 + s/u0)) so that it does not overflow for
    large t. NaN where u0 <= 0: a balanced aligned mode has u = a^2 >= 0, and from u0 = 0 it never
    moves (the origin is a saddle).
    """
    t, s, u0 = jnp.asarray(t), jnp.asarray(s), jnp.asarray(u0)
    safe_u0 = jnp.where(u0 > 0, u0, 1.0)
    value = s / (1.0 + (s / safe_u0 - 1.0) * jnp.exp(-2.0 * s * t / tau))
    return jnp.where(u0 > 0, value, jnp.nan)


def learning_time(s, u0, u_final, tau=1.0):
    """Exact time for the closed form to go from u0 to u_final (0 < u0, u_final < s): Saxe et al. Eq. 7.

    t = tau / (2 s) ln( u_final (s - u0) / (u0 (s - u_final)) ).
    """
    s, u0, u_final = jnp.asarray(s), jnp.asarray(u0), jnp.asarray(u_final)
    return tau / (2.0 * s) * jnp.log(u_final * (s - u0) / (u0 * (s - u_final)))


def saxe_learning_time(s, eps, tau=1.0):
    """t = (tau / s) ln(s / eps): Saxe et al.'s learning time of a mode of strength s.

    Convention: the time to travel from u0 = eps to u_final = s - eps. The exact value of that
    time is :func:`learning_time` (s, eps, s - eps) = (tau / s) ln((s - eps) / eps); the two agree to
    relative error ln(s / (s - eps)) / ln(s / eps) ~ (eps / s) / ln(s / eps) as eps / s -> 0.
    Larger s is learned sooner: t is ~ 1 / s up to the logarithm.
    """
    s, eps = jnp.asarray(s), jnp.asarray(eps)
    return tau / s * jnp.log(s / eps)


def rise_time(s, low=0.1, high=0.9, tau=1.0):
    """Time for the closed form to rise from ``low * s`` to ``high * s``: independent of u0.

    t = tau / (2 s) ln( high (1 - low) / (low (1 - high)) ); the 10%-90% rise time is
    tau ln(81) / (2 s).
    """
    s = jnp.asarray(s)
    return tau / (2.0 * s) * jnp.log(high * (1.0 - low) / (low * (1.0 - high)))


def initial_strength(s, t, u, tau=1.0):
    """The u0 whose closed form passes through (t, u): u0 = s / (1 + (s / u - 1) e^(2 s t / tau)).

    With u = s / 2 and t the measured half-time this is the effective initial strength of a mode that
    started unaligned: the closed form from it is the measured curve shifted to agree at s / 2.
    """
    s, t, u = jnp.asarray(s), jnp.asarray(t), jnp.asarray(u)
    return s / (1.0 + (s / u - 1.0) * jnp.exp(2.0 * s * t / tau))

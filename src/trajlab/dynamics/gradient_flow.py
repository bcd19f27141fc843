"""Gradient flow d theta/dt = -F(theta), F the (preconditioned) gradient, solved with diffrax.

Time is shared with gradient descent: t = step * lr, so a GD run and a flow run from the same
init are compared at equal t (Elkabetz & Cohen, NeurIPS 2021, "Continuous vs. Discrete
Optimization of Deep Neural Networks").

Solvers: ``tsit5`` (Tsitouras 5(4)) and ``dopri5`` (Dormand-Prince 5(4)) with a PID step-size
controller (rtol, atol), or ``rk4`` (classical Runge-Kutta, fixed step dt). The flow is integrated
between recording times in separate solves; each adaptive solve starts from the initial step
``dt0`` again. Gradient evaluations are counted as solver steps (accepted and rejected) times
the evaluations per step (6 for the FSAL pairs tsit5 / dopri5 plus 1 per solve, 4 for rk4).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from trajlab.config import FlowConfig


class ClassicalRK4(diffrax.AbstractERK):
    """The classical 4-stage, 4th-order Runge-Kutta method (Kutta 1901), for fixed steps.

    diffrax ships no classical RK4. The embedded error estimate (RK4 minus the explicit midpoint
    method, which shares its second stage) is only there because the tableau requires one.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = diffrax.ButcherTableau(
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.array([1 / 6, 1 / 3 - 1, 1 / 3, 1 / 6]),
        c=np.array([0.5, 0.5, 1.0]),
    )
    interpolation_cls: ClassVar[Callable] = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        del terms
        return 4


_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "rk4": ClassicalRK4}
_EVALUATIONS_PER_STEP = {"tsit5": 6, "dopri5": 6, "rk4": 4}
_EVALUATIONS_PER_SOLVE = {"tsit5": 1, "dopri5": 1, "rk4": 0}


def flow_integrator(direction: Callable, config: FlowConfig):
    """``integrate(params, t0, t1, dt, data) -> (params, gradient_evaluations, ok)``.

    direction(params, data): the field F with d theta/dt = -F(theta). ``dt``: the fixed step (rk4)
    or the initial step guess (adaptive). ``ok`` is False when the solver failed (too many steps,
    non-finite values). With t1 == t0 the parameters are returned unchanged and no work is done.
    """
    solver = _SOLVERS[config.solver]()
    adaptive = config.solver != "rk4"
    per_step = _EVALUATIONS_PER_STEP[config.solver]
    per_solve = _EVALUATIONS_PER_SOLVE[config.solver]

    def field(t, params, data):
        del t
        return jax.tree_util.tree_map(lambda d: -d, direction(params, data))

    def integrate(params, t0, t1, dt, data):
        controller = (
            diffrax.PIDController(rtol=config.rtol, atol=config.atol) if adaptive else diffrax.ConstantStepSize()
        )
        moving = t1 > t0
        # diffrax needs t1 > t0 for a nonzero dt0; a zero-length interval is a no-op.
        t1_safe = jnp.where(moving, t1, t0 + dt)
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            solver,
            t0=t0,
            t1=t1_safe,
            dt0=jnp.minimum(dt, t1_safe - t0),
            y0=params,
            args=data,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            max_steps=config.max_solver_steps,
            throw=False,
        )
        final = jax.tree_util.tree_map(lambda y: y[-1], solution.ys)
        final = jax.tree_util.tree_map(lambda new, old: jnp.where(moving, new, old), final, params)
        evaluations = jnp.where(moving, solution.stats["num_steps"] * per_step + per_solve, 0)
        ok = (solution.result == diffrax.RESULTS.successful) | ~moving
        return final, evaluations.astype(jnp.int32), ok

    return integrate

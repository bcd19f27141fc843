"""The exact minimum of the l_p regression loss: the reference that excess losses are measured from."""

from __future__ import annotations

import numpy as np


def lp_regression_minimum(inputs: np.ndarray, outputs: np.ndarray, p: float, *, max_iterations: int = 200):
    """(min loss, W, Newton iterations) of the convex loss (1/S) sum_i ||y_i - W x_i||_p^p, in float64.

    Damped Newton's method from the least-squares solution, for p >= 2: gradient
    -(p/S) R^T X sign(R)|R|^(p-1), Hessian (per output row) p (p-1)/S X^T diag(|r|^(p-2)) X, with
    backtracking on the loss; stops when a step no longer decreases the loss. For 1 <= p < 2 (Hessian
    unbounded where a residual vanishes) scipy's L-BFGS is used instead.
    """
    x = np.asarray(inputs, np.float64)
    y = np.asarray(outputs, np.float64)
    samples = x.shape[0]

    def loss(w):
        return float(np.sum(np.abs(y - x @ w.T) ** p) / samples)

    w = np.linalg.lstsq(x, y, rcond=None)[0].T  # (m, n)
    if p == 2:
        return loss(w), w, 0
    if p < 2:
        from scipy.optimize import minimize

        shape = w.shape
        result = minimize(lambda v: loss(v.reshape(shape)), w.ravel(), method="L-BFGS-B",
                          options=dict(maxiter=10_000, ftol=1e-15, gtol=1e-12))
        return float(result.fun), result.x.reshape(shape), int(result.nit)
    current = loss(w)
    for iteration in range(1, max_iterations + 1):
        residual = y - x @ w.T  # (S, m)
        step = np.zeros_like(w)
        for k in range(w.shape[0]):
            r = residual[:, k]
            grad = -p / samples * x.T @ (np.sign(r) * np.abs(r) ** (p - 1))
            hessian = p * (p - 1) / samples * (x.T * np.abs(r) ** (p - 2)) @ x
            step[k] = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        size = 1.0
        while size > 1e-12:
            candidate = w - size * step
            value = loss(candidate)
            if value < current:
                break
            size /= 2
        else:
            return current, w, iteration
        if current - value <= 1e-16 * max(1.0, abs(current)):
            return value, candidate, iteration
        w, current = candidate, value
    return current, w, max_iterations

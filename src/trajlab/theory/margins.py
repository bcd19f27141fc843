"""Deficiency margins of random balanced initializations (Arora, Cohen, Golowich, Hu, ICLR 2019)."""

from __future__ import annotations

import numpy as np


def positive_margin_probability(target: np.ndarray, scale: float) -> float:
    """P(deficiency margin > 0) of ``balanced_random`` init for output dimension m = 1, in closed form.

    W_e(0) = A with i.i.d. N(0, scale^2 / m) entries (m = 1), Phi a row vector, sigma_min = ||Phi||.
    With a = ||Phi|| / scale, A / scale = z_1 Phi / ||Phi|| + z_perp: the margin sigma_min - ||A - Phi||
    is positive iff (z_1 - a)^2 + q < a^2, q = ||z_perp||^2 ~ chi-square(n - 1), so

        P = E_q[ Phi_N(a + r) - Phi_N(a - r) ; q < a^2 ],   r = sqrt(a^2 - q),

    (Phi_N the standard normal cdf; a - r is evaluated as q / (a + r), without cancellation), i.e. the
    noncentral chi-square probability P(chi'^2_n(a^2) < a^2), integrated so that it stays accurate
    for tiny scales. Tends to 1/2 as scale -> 0 (the margin is then the sign of <A, Phi>) and to 0
    as scale grows.
    """
    from scipy.integrate import quad
    from scipy.special import ndtr
    from scipy.stats import chi2

    target = np.atleast_2d(np.asarray(target, np.float64))
    if target.shape[0] != 1:
        raise ValueError("positive_margin_probability: closed form only for output dimension m = 1")
    a = float(np.linalg.norm(target)) / float(scale)
    n = target.shape[1]

    def inside(q):
        r = np.sqrt(max(a * a - q, 0.0))
        return ndtr(a + r) - ndtr(q / (a + r)) if a + r > 0 else 0.0

    if n == 1:
        return float(inside(0.0))
    upper = min(a * a, float(chi2.isf(1e-17, n - 1)))
    value, _ = quad(lambda q: inside(q) * chi2.pdf(q, n - 1), 0.0, upper, limit=200, epsabs=1e-12, epsrel=1e-10)
    return float(value)

"""What a random ReLU layer does to angles and distances, the ``random-weights-geometry`` preset.

Independent references: the arc-cosine expectation by numerical integration (scipy quad over the
angle of a 2-D Gaussian) and by plain numpy Monte Carlo.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.presets.random_weights import arc_cosine, iterated_cosine
from trajlab.store import load
from helpers import run_quick


@pytest.mark.parametrize("angle", [0.0, 0.3, 1.0, math.pi / 2, 2.5, math.pi])
def test_arc_cosine_against_numerical_integration_and_sampling(angle):
    """E[relu(w.x) relu(w.y)] = J(a) / (2 pi) for w ~ N(0, I), unit x, y at angle a.

    In polar coordinates of (w.x, w.x_perp): (1 / 2 pi) int r^3 e^{-r^2/2} dr int relu(cos p) relu(cos(p - a)) dp,
    and int_0^inf r^3 e^{-r^2/2} dr = 2."""
    integrand = lambda p: max(math.cos(p), 0.0) * max(math.cos(p - angle), 0.0)  # noqa: E731
    angular, _ = quad(integrand, -math.pi, math.pi, points=[-math.pi / 2, math.pi / 2, angle - math.pi / 2,
                                                              angle + math.pi / 2], limit=200)
    integral = 2.0 * angular / (2 * math.pi)
    assert float(arc_cosine(angle)) / 2 == pytest.approx(integral, abs=1e-10)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1_000_000, 3))
    x, y = np.array([1.0, 0, 0]), np.array([math.cos(angle), math.sin(angle), 0])
    samples = np.maximum(w @ x, 0) * np.maximum(w @ y, 0)
    assert abs(samples.mean() - float(arc_cosine(angle)) / 2) <= 4 * samples.std() / 1000 + 1e-12


def test_iterated_cosine_against_sampling_a_wide_two_layer_network():
    """Mean over 40 random two-layer ReLU networks of width 1000 (N(0, 2 / width) weights) of the output cosine."""
    rng = np.random.default_rng(1)
    width, angle = 1000, 2.0
    x = np.zeros(8)
    x[0] = 1.0
    y = np.zeros(8)
    y[0], y[1] = math.cos(angle), math.sin(angle)
    cosines = []
    for _ in range(40):
        h = np.stack([x, y])
        for _ in range(2):
            h = np.maximum(h @ (rng.standard_normal((width, h.shape[1])) * math.sqrt(2 / width)).T, 0)
        cosines.append(h[0] @ h[1] / np.linalg.norm(h[0]) / np.linalg.norm(h[1]))
    assert np.mean(cosines) == pytest.approx(iterated_cosine(angle, 2), abs=0.01)
    assert iterated_cosine(angle, 2) > iterated_cosine(angle, 1) > math.cos(angle)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return load(run_quick(tmp_path_factory, "random-weights-geometry"))


def test_quick_preset_claims_hold(quick):
    checks = check_claims(get_preset("random-weights-geometry").claims, quick)
    assert [c.holds for c in checks] == [True, True, True], [c.measured for c in checks]
    rows = quick.baselines
    assert len(rows) == 48 and set(rows["depth"]) == set(range(1, 7))


def test_figure_draws_on_the_quick_data(quick):
    import matplotlib

    matplotlib.use("Agg")
    from trajlab.presets.random_weights import random_weights_figures

    figure = random_weights_figures(quick)["random_layers"]
    assert all(ax.lines for ax in figure.axes)

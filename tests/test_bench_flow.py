"""The gradient-flow vs GD benchmark measures what it says (small settings)."""

import numpy as np

from trajlab.bench_flow import flow_vs_gd


def test_gd_error_is_first_order_and_solver_is_cheaper_at_equal_accuracy():
    rows, ratios = flow_vs_gd(horizon=0.5, rtols=(1e-5,), step_sizes=(1e-2, 1e-3))
    gd = [r for r in rows if r.method.startswith("gd")]
    # GD's distance to the reference flow shrinks 10x when eta does (order 1, Elkabetz & Cohen 2021)
    assert 8 < gd[0].distance / gd[1].distance < 12
    # GD makes one gradient evaluation per step (+1 for the final stopping check)
    assert [r.gradient_evaluations for r in gd] == [51, 501]
    (ratio,) = ratios
    assert abs(ratio["gd_order"] - 1) < 0.05
    solver = next(r for r in rows if r.method.startswith("tsit5"))
    assert np.isclose(ratio["distance"], solver.distance)
    assert ratio["evaluations_ratio"] > 1  # the adaptive solver needs fewer evaluations

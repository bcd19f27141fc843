"""Preset ``gd-vs-gf`` (Elkabetz & Cohen, NeurIPS 2021): its grid of equal-time runs, its table on
made-up trajectories with known answers, and the quick version through the command line.

The engine's ``distance_to_flow`` itself is checked against scipy's ODE solver in
tests/test_network_engine.py; here the direction of the effect is asserted: GD is closer to the
flow the smaller its step, about in proportion to the step.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.presets.gd_vs_gf import distance_table, step_size_slopes
from helpers import invoke

PRESET = get_preset("gd-vs-gf")


# --- the grid -----------------------------------------------------------------------------------


def test_every_run_covers_the_same_time_and_each_setting_has_one_flow_run():
    configs = PRESET.configs()
    gd = [c for c in configs if c.optimizer.name == "gd"]
    flows = [c for c in configs if c.optimizer.name == "gradient_flow"]
    assert len(gd) == 2 * 5 and len(flows) == 2
    assert {c.model.activation for c in flows} == {"linear", "relu"}
    assert sorted({c.optimizer.lr for c in gd}) == pytest.approx([0.005, 0.01, 0.02, 0.05, 0.1])
    for c in configs:
        assert c.train.max_steps * c.optimizer.lr == pytest.approx(20.0)
        assert c.train.record_every * c.optimizer.lr == pytest.approx(1.0)  # one record per unit of t
        assert (c.model.kind, c.model.depth, c.model.width, c.model.init, c.model.scale) == ("mlp", 3, 50, "xavier", 1.0)
        assert (c.problem.dataset, c.problem.loss, c.optimizer.batch_size, c.train.x64) == ("digits", "cross_entropy", 0, True)
        assert "distance_to_flow" in c.metrics and "sharpness" in c.metrics
    assert all(f.optimizer.lr == 0.1 for f in flows)  # the largest step size is the flow's time unit


def test_quick_grid_and_user_values():
    quick = PRESET.configs(quick=True)
    assert [(c.optimizer.name, c.optimizer.lr, c.train.max_steps) for c in quick] == [("gd", 0.1, 40), ("gd", 0.02, 200)]
    assert [c.train.record_every * c.optimizer.lr for c in quick] == pytest.approx([0.2, 0.2])
    assert all(c.model.activation == "relu" and c.problem.observations == 100 for c in quick)
    # a value the user sets is kept; a user's optimizer means no extra flow run
    fixed = PRESET.configs({"train.max_steps": 7, "optimizer.name": "momentum"})
    assert {c.train.max_steps for c in fixed} == {7} and {c.optimizer.name for c in fixed} == {"momentum"}
    assert len(fixed) == 10


# --- the table on made-up trajectories ------------------------------------------------------------


def _synthetic(distance_of_eta):
    """Two settings, three step sizes and a flow run each; distance_to_flow(t) = distance_of_eta(eta) t / 4,
    the flow travels 2 t, GD's sharpness is 5 (so eta x sharpness = 5 eta)."""
    runs, rows = [], []
    for activation in ("linear", "relu"):
        for name, eta in (("gd", 0.1), ("gd", 0.05), ("gd", 0.02), ("gradient_flow", 0.1)):
            rid = f"{activation}-{name}-{eta}"
            runs.append({"run_id": rid, "model.activation": activation, "optimizer.name": name, "optimizer.lr": eta,
                         "train.max_steps": round(4 / eta), "status": "max_steps", "seed": 0})
            for t in np.linspace(0.0, 4.0, 9):
                flow = name == "gradient_flow"
                rows.append({"run_id": rid, "step": round(t / eta), "t": t, "train_loss": 1.0 / (1 + t),
                             "distance_from_init": 2 * t if flow else 2 * t + 0.01,
                             "distance_to_flow": 0.0 if flow else distance_of_eta(eta) * t / 4,
                             "sharpness": 5.0})
    return pd.DataFrame(runs), pd.DataFrame(rows)


def test_distance_table_and_slopes_on_known_trajectories():
    runs, trajectories = _synthetic(lambda eta: 3.0 * eta)
    table = distance_table(runs, trajectories)
    assert list(table.index.names) == ["model.activation", "eta"]
    assert len(table) == 6  # the flow runs are references, not rows
    row = table.loc[("relu", 0.05)]
    assert row["T"] == pytest.approx(4.0)
    assert row["distance to flow"] == pytest.approx(0.15)
    assert row["travelled"] == pytest.approx(8.0)  # the flow run's distance from init, not GD's
    assert row["relative"] == pytest.approx(0.15 / 8.0)
    assert row["max relative"] == pytest.approx(0.15 / 8.0)  # distance / travelled is constant in t here
    assert row["max eta x sharpness"] == pytest.approx(0.25)
    np.testing.assert_allclose(step_size_slopes(table).to_numpy(), [1.0, 1.0])
    runs, trajectories = _synthetic(lambda eta: eta**2)
    np.testing.assert_allclose(step_size_slopes(distance_table(runs, trajectories)).to_numpy(), [2.0, 2.0])


def test_claims_on_known_trajectories():
    class Data:
        pass

    data = Data()
    data.runs, data.trajectories = _synthetic(lambda eta: 3.0 * eta)
    shrinks, proportional, close = check_claims(PRESET.claims, data)
    assert shrinks.holds is True and proportional.holds is True and close.holds is True
    assert proportional.measured == "log-log slope: linear 1; relu 1"
    data.runs, data.trajectories = _synthetic(lambda eta: eta**2)  # shrinks, but faster than eta
    shrinks, proportional, close = check_claims(PRESET.claims, data)
    assert (shrinks.holds, proportional.holds, close.holds) == (True, False, True)
    data.runs, data.trajectories = _synthetic(lambda eta: 1.0)  # independent of eta: does not shrink
    shrinks, proportional, close = check_claims(PRESET.claims, data)
    assert (shrinks.holds, proportional.holds) == (False, False)
    assert close.holds is False  # 1/8 of the distance travelled > 10%


# --- the quick preset through the command line -----------------------------------------------------


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    from trajlab.store import load

    out = tmp_path_factory.mktemp("gd-vs-gf") / "quick"
    result = invoke("run", "gd-vs-gf", "--quick", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out, load(out)


def test_quick_distance_to_flow_shrinks_with_the_step(quick_sweep):
    """ReLU net, eta = 0.1 and 0.02 to t = 4: the 5x smaller step is 3-7x closer to the flow at every
    recorded t >= 1, and GD stays within 10% of the distance travelled."""
    _, data = quick_sweep
    assert set(data.runs["status"]) == {"max_steps"}
    table = distance_table(data.runs, data.trajectories)
    assert table["T"].tolist() == pytest.approx([4.0, 4.0])
    large, small = table.loc[0.1], table.loc[0.02]
    assert 0 < small["distance to flow"] < large["distance to flow"]
    assert 3.0 < large["distance to flow"] / small["distance to flow"] < 7.0
    assert large["distance to flow"] < 0.1 * large["travelled"]
    assert large["max eta x sharpness"] < 2.0
    by_eta = {
        float(run["optimizer.lr"]): data.trajectories[data.trajectories["run_id"] == run["run_id"]].set_index("t")
        for _, run in data.runs.iterrows()
    }
    common = [t for t in by_eta[0.1].index if t >= 1.0 and any(math.isclose(t, s) for s in by_eta[0.02].index)]
    assert len(common) >= 10
    for t in common:
        s = next(s for s in by_eta[0.02].index if math.isclose(t, s))
        assert by_eta[0.02].loc[s, "distance_to_flow"] < by_eta[0.1].loc[t, "distance_to_flow"]
    checks = check_claims(PRESET.claims, data)
    assert [c.holds for c in checks] == [True, True, True], [c.measured for c in checks]


def test_quick_figures_are_written_and_plot_redraws_them(quick_sweep):
    out, _ = quick_sweep
    names = ("distance", "scaling", "table")
    for name in names:
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / "figures" / f"{name}.png").unlink()
    result = invoke("plot", out)
    assert result.exit_code == 0, result.output + result.stderr
    for name in names:
        assert (out / "figures" / f"{name}.png").exists() and (out / "figures" / f"{name}.svg").exists()


def test_a_bad_value_is_one_error_line():
    result = invoke("run", "gd-vs-gf", "--quick", "--set", "problem.loss=logistic", "--no-progress", "--out", "/nonexistent/x")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "problem.loss" in lines[0]

"""Preset ``edge-of-stability`` (Cohen, Kaur, Li, Kolter, Talwalkar, ICLR 2021): its table on made-up
trajectories with known answers, and the quick version through the command line.

The sharpness column itself is checked against numpy's eigvalsh of the dense Hessian in
tests/test_network_engine.py; here the direction of the effect is asserted: the sharpness starts
well below 2/eta, rises to it and stays near it (so the smaller step settles at the larger
sharpness), while the loss falls with ups and downs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajlab.presets import get_preset
from trajlab.presets.claims import check_claims
from trajlab.presets.edge_of_stability import stability_table
from helpers import invoke

PRESET = get_preset("edge-of-stability")


def test_grid():
    configs = PRESET.configs()
    assert sorted(c.optimizer.lr for c in configs) == [0.05, 0.2, 0.3, 0.4]
    for c in configs:
        assert (c.problem.dataset, c.problem.loss, c.optimizer.name, c.optimizer.batch_size) == ("digits", "squared", "gd", 0)
        assert (c.train.record, c.train.record_every, c.train.max_steps) == ("linear", 5, 3000)
        assert "sharpness" in c.metrics
    quick = PRESET.configs(quick=True)
    assert sorted(c.optimizer.lr for c in quick) == [0.2, 0.4]
    assert {c.train.max_steps for c in quick} == {600}


def _synthetic():
    """eta 0.4 (edge 5): sharpness 1 -> 5.2 by step 30, then alternating 4.8 / 5.2, loss falling with
    bumps; eta 0.05 (edge 40): sharpness 2 -> 10, loss falling monotonically."""
    steps = np.arange(0, 101, 10)
    runs = pd.DataFrame({"run_id": ["a", "b"], "optimizer.lr": [0.4, 0.05], "status": ["max_steps"] * 2})
    edge_sharpness = np.array([1.0, 2.0, 3.5, 5.2, 4.8, 5.2, 4.8, 5.2, 4.8, 5.2, 4.8])
    edge_loss = np.array([1.0, 0.8, 0.6, 0.5, 0.55, 0.4, 0.45, 0.3, 0.35, 0.2, 0.25])
    trajectories = pd.concat([
        pd.DataFrame({"run_id": "a", "step": steps, "sharpness": edge_sharpness, "train_loss": edge_loss}),
        pd.DataFrame({"run_id": "b", "step": steps, "sharpness": np.linspace(2, 10, 11), "train_loss": np.linspace(1, 0.5, 11)}),
    ])
    return runs, trajectories


def test_stability_table_on_known_trajectories():
    table = stability_table(*_synthetic())
    edge, stable = table.loc[0.4], table.loc[0.05]
    assert edge["2/eta"] == pytest.approx(5.0)
    assert edge["initial"] == pytest.approx(0.2)
    assert edge["onset step"] == 30  # 5.2 >= 0.9 x 5 first at step 30 (3.5 < 4.5 before)
    assert edge["median"] == pytest.approx(1.0)  # 4 x 0.96 and 4 x 1.04 around it
    assert edge["max"] == pytest.approx(1.04)
    assert edge["loss increases"] == 4 and edge["records"] == 7
    assert edge["loss at onset"] == pytest.approx(0.5) and edge["final loss"] == pytest.approx(0.25)
    assert np.isnan(stable["onset step"]) and stable["peak"] == pytest.approx(0.25)
    assert stable["loss increases"] == 0 and stable["records"] == 10

    class Data:
        runs, trajectories = _synthetic()

    hovers, falls, descends = check_claims(PRESET.claims, Data)
    assert (hovers.holds, falls.holds, descends.holds) == (True, True, True)


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    from trajlab.store import load

    out = tmp_path_factory.mktemp("edge-of-stability") / "quick"
    result = invoke("run", "edge-of-stability", "--quick", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out, load(out)


def test_quick_sharpness_rises_to_two_over_eta_and_the_loss_falls_non_monotonically(quick_sweep):
    """eta = 0.4 and 0.2: the sharpness starts below 0.6 x 2/eta, reaches 2/eta within 100 steps and
    its median afterwards is within 20% of 2/eta, so the halved step settles at about twice the
    sharpness; the loss goes up between some records and still ends 20x lower."""
    _, data = quick_sweep
    assert set(data.runs["status"]) == {"max_steps"}
    table = stability_table(data.runs, data.trajectories)
    assert sorted(table.index) == [0.2, 0.4]
    for eta, row in table.iterrows():
        assert row["initial"] < 0.6
        assert row["onset step"] <= 100
        assert 0.8 < row["median"] < 1.2, (eta, row["median"])
        assert row["loss increases"] > 0
        assert row["final loss"] < 0.05 * row["initial loss"]
    plateau = {eta: row["median"] * row["2/eta"] for eta, row in table.iterrows()}
    assert 1.5 < plateau[0.2] / plateau[0.4] < 2.5
    checks = check_claims(PRESET.claims, data)
    assert [c.holds for c in checks[:2]] == [True, True], [c.measured for c in checks]
    assert checks[2].holds is None  # no stable control run in the quick sweep


def test_quick_figures_are_written_and_plot_redraws_them(quick_sweep):
    out, _ = quick_sweep
    for name in ("edge", "table"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        (out / "figures" / f"{name}.png").unlink()
    result = invoke("plot", out)
    assert result.exit_code == 0, result.output + result.stderr
    for name in ("edge", "table"):
        assert (out / "figures" / f"{name}.png").exists() and (out / "figures" / f"{name}.svg").exists()

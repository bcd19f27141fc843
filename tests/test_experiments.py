"""The presets' published claims, checked on shrunken versions (direction of the effect)."""

import subprocess
import sys

import numpy as np
import pytest

from trajlab.presets import PRESETS, get_preset
from trajlab.sweep import run_sweep


def test_every_preset_resolves_and_quick_is_smaller():
    for preset in PRESETS.values():
        full, quick = preset.configs(), preset.configs(quick=True)
        assert len(quick) <= len(full)
        assert max(c.train.max_steps for c in quick) <= max(c.train.max_steps for c in full)


def test_presets_load_without_matplotlib_and_old_imports_still_work():
    """A preset module holds its figures, but matplotlib is imported only when one is drawn (``trajlab
    list`` and running a sweep stay fast); ``trajlab.experiments`` still re-exports the registry."""
    code = (
        "import sys, trajlab.presets as p, trajlab.experiments as e, trajlab.experiments.claims_common as c\n"
        "assert 'matplotlib' not in sys.modules, 'importing the presets imported matplotlib'\n"
        "assert e.PRESETS is p.PRESETS and e.get_preset is p.get_preset and c.check_claims\n"
        "print(len(p.presets()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    from trajlab.presets import preset_source

    built_in = [p for p in PRESETS.values() if preset_source(p) is None]  # other tests load files' presets
    assert int(out.stdout) == len(built_in)


def test_full_dmf_completion_grid_is_the_papers():
    configs = get_preset("dmf-completion").configs()
    assert len(configs) == 2 * 4 * 4 * 2
    assert {c.problem.observations for c in configs} == {2000, 5000}
    assert {c.model.scale for c in configs} == {1e-3, 1e-4, 1e-5, 1e-6}
    assert {c.optimizer.name for c in configs} == {"normalized_gd"}


@pytest.mark.slow
def test_depth_three_beats_nuclear_norm_with_few_observations(tmp_path):
    """Arora et al. 2019, Fig. 2: at 2000 of 10^4 entries, depth 3 from small init finds a solution
    of lower test error and lower effective rank than nuclear-norm minimization, although its
    nuclear norm is larger (so it is not minimizing the nuclear norm)."""
    preset = get_preset("dmf-completion")
    configs = preset.configs({"model.depth": 3, "model.scale": 1e-3, "train.record_points": 10}, quick=True)
    data = run_sweep(configs, tmp_path, baselines=preset.baselines(configs), show_progress=False)
    run = data.runs.iloc[0]
    baseline = data.baselines.iloc[0]
    assert run["status"] == "done"
    assert run["final.test_error"] < 0.1 * baseline["test_error"]
    assert run["final.effective_rank"] < baseline["effective_rank"]
    assert run["final.nuclear_norm"] > baseline["nuclear_norm"]


@pytest.mark.slow
def test_singular_values_are_learned_one_by_one(tmp_path):
    """Arora et al. 2019, Fig. 3 / Theorem 3: for depth 3 under GD from small init the top
    singular values of W_e rise one after another: the steps at which they reach half their final
    value are ordered and spread apart, unlike depth 1 where they rise together."""
    preset = get_preset("dmf-dynamics")
    configs = preset.configs({"model.depth": [1, 3], "train.record_points": 120}, quick=True)
    data = run_sweep(configs, tmp_path, show_progress=False)
    spreads = {}
    for depth in (1, 3):
        rid = data.runs.loc[data.runs["model.depth"] == depth, "run_id"].iloc[0]
        traj = data.trajectories[data.trajectories["run_id"] == rid].sort_values("step")
        crossings = []
        for i in range(4):
            values = traj[f"sv_{i}"].to_numpy()
            crossings.append(traj["step"].to_numpy()[np.argmax(values >= 0.5 * values[-1])])
        spreads[depth] = crossings[-1] / crossings[0]
        if depth == 3:
            assert all(a <= b for a, b in zip(crossings, crossings[1:])), crossings
    assert spreads[3] > 1.5
    assert spreads[3] > spreads[1]


def test_user_metric_is_recorded(tmp_path):
    """A user metric (here ||W_e||_F^2 computed by the user) is stored as its own column and as
    ``final.<name>``, and equals the square of the built-in Frobenius norm recorded beside it."""
    import jax.numpy as jnp

    preset = get_preset("dmf-completion")
    overrides = {
        "problem.m": 6,
        "problem.n": 6,
        "problem.rank": 1,
        "problem.observations": 20,
        "model.depth": 2,
        "model.scale": 0.1,
        "train.max_steps": 50,
        "train.record_points": 5,
        "metrics": ["frobenius_norm"],
    }
    configs = preset.configs(overrides)
    metric = {"frobenius_squared": lambda state: jnp.sum(state.end_to_end**2)}
    data = run_sweep(configs, tmp_path, extra_metrics=metric, show_progress=False)
    traj = data.trajectories
    assert {"frobenius_squared", "frobenius_norm"} <= set(traj.columns)
    np.testing.assert_allclose(traj["frobenius_squared"], traj["frobenius_norm"] ** 2, rtol=1e-4)
    assert "final.frobenius_squared" in data.runs.columns

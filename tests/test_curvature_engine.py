"""The curvature suite recorded by the engine for any family (issue 14): names accepted in a
config, columns stored, the Gauss-Newton sharpness against a dense float64 J^T H_out J."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from trajlab import init_params
from trajlab.config import RunConfig, replace_dotted
from trajlab.engine import build_task
from trajlab.errors import ConfigError
from trajlab.registry import get_family


def tiny_network(**updates) -> RunConfig:
    base = {"problem.kind": "teacher_student", "model.kind": "two_layer", "train.x64": True, "train.max_steps": 3,
            "problem.n": 5, "problem.teacher_width": 3, "problem.observations": 40, "model.width": 6,
            "train.record_points": 2, "train.lanczos_iterations": 30, "optimizer.lr": 1e-12,
            "metrics": ["train_loss", "hessian_density", "hessian_trace_suite", "gauss_newton_sharpness",
                        "hessian_trace"]}
    return replace_dotted(RunConfig(), {**base, **updates})


def test_suite_columns_are_recorded_and_gauss_newton_matches_the_dense_matrix():
    from trajlab.executors.frames import batch_frames
    from trajlab.problems.registry import make_data

    config = tiny_network()
    _, frame = batch_frames([config])
    parts = get_family("two_layer").build(config)
    params = init_params(config)
    flat, unravel = ravel_pytree(params)
    data = make_data(config.problem)
    outputs = lambda x: parts.predict(unravel(x), data, "train")  # noqa: E731
    out = outputs(flat)
    jac = jax.jacfwd(outputs)(flat).reshape(out.size, flat.size)
    h_out = jax.hessian(lambda o: parts.output_loss(o, data))(out).reshape(out.size, out.size)
    top = float(np.linalg.eigvalsh(np.asarray(jac.T @ h_out @ jac))[-1])
    hessian = jax.hessian(lambda x: parts.loss(unravel(x), data))(flat)
    trace = float(np.trace(np.asarray(hessian)))
    first = frame.sort_values("step").iloc[0]
    assert first["step"] == 0
    assert first["gauss_newton_sharpness"] == pytest.approx(top, rel=1e-6)
    assert first["hessian_trace"] == pytest.approx(trace, rel=0.5)
    assert first["trace_hutchpp"] == pytest.approx(trace, rel=0.5)
    density = [c for c in frame.columns if c.startswith("hdens")]
    assert len(density) == 65 and np.all(np.isfinite(first[density].to_numpy(dtype=float)))


def test_gauss_newton_needs_the_family_outputs():
    config = replace_dotted(RunConfig(), {"metrics": ["train_loss", "gauss_newton_sharpness"]})
    with pytest.raises(ConfigError, match="gauss_newton_sharpness needs model.kind=deep_linear"):
        build_task(config)

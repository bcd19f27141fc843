"""The model-family registry: config validation per model.kind, run-id stability, dict metrics."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from trajlab import registry
from trajlab.config import (
    ModelConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    replace_dotted,
    run_id,
)
from trajlab.errors import ConfigError
from trajlab.metrics.registry import evaluate_metrics, resolve_metrics


def test_run_ids_of_deep_linear_configs_survive_the_new_fields():
    # Ids computed by the release before model families existed (commit 2c599ea).
    assert run_id(RunConfig()) == "975387415281e092"
    changed = replace_dotted(RunConfig(), {"model.kind": "deep_linear", "problem.kind": "completion"})
    assert run_id(changed) == "975387415281e092"  # both still at their defaults
    assert run_id(replace_dotted(RunConfig(), {"problem.rank": 3})) != "975387415281e092"
    # Ids computed by trajlab 0.1 for the quick dmf-completion sweep (depth 1, scale 1e-2 and 1e-3).
    quick = {"problem.observations": 2000, "model.depth": 1, "optimizer.lr": 1e-3, "train.max_steps": 60_000,
             "train.record_points": 40}
    assert run_id(replace_dotted(RunConfig(), {**quick, "model.scale": 1e-2})) == "b925faf9fb251c35"


def test_the_built_in_families_are_registered_with_their_own_sections():
    built_in = {"deep_linear", "cp", "hierarchical", "mlp", "two_layer"}
    assert built_in <= set(registry.families())
    for name in built_in:
        family = registry.get_family(name)
        assert family.origin.startswith("trajlab.families.")
        assert family.config.kind == name and "scale" in {f.name for f in __import__("dataclasses").fields(family.config)}


@pytest.mark.parametrize(
    "updates, field",
    [
        ({"model.kind": "cp", "model.width": 5}, "problem.kind"),  # cp needs a tensor problem
        ({"model.kind": "mlp", "model.width": 5, "model.init": "xavier"}, "problem.kind"),
        ({"problem.kind": "tensor_completion"}, "problem.kind"),  # deep_linear on a tensor problem
        ({"model.kind": "mlp"}, "problem.kind"),  # an mlp does not solve matrix completion
        ({"model.kind": "mlp", "model.init": "gaussian_e2e", "problem.kind": "classification"}, "model.init"),
        ({"model.init": "xavier"}, "model.init"),  # and xavier a network scheme
        ({"optimizer.batch_size": 10}, "optimizer.batch_size"),
        ({"problem.kind": "tensor_completion", "model.kind": "cp", "model.width": 3, "model.init": "gaussian",
          "problem.dim": 3, "problem.order": 3, "problem.observations": 28}, "problem.observations"),
        ({"problem.kind": "classification", "problem.dataset": "digits", "problem.loss": "logistic",
          "model.kind": "mlp", "model.width": 4, "model.init": "xavier", "problem.observations": 50}, "problem.loss"),
        ({"problem.kind": "classification", "problem.dataset": "digits", "model.kind": "mlp", "model.width": 4,
          "model.init": "xavier", "problem.observations": 50, "optimizer.batch_size": 51}, "optimizer.batch_size"),
        ({"model.kind": "cp", "model.width": 4, "model.init": "gaussian", "problem.kind": "tensor_sensing",
          "metrics": ["train_loss", "singular_values"]}, "metrics"),
    ],
)
def test_incompatible_fields_are_one_line_config_errors(updates, field):
    with pytest.raises(ConfigError) as error:
        replace_dotted(RunConfig(), updates)
    message = str(error.value)
    assert message.startswith(field) and "\n" not in message


def test_default_metrics_follow_the_family():
    config = replace_dotted(
        RunConfig(),
        {"problem.kind": "tensor_completion", "model.kind": "hierarchical", "model.width": 3, "model.init": "gaussian",
         "problem.order": 4, "problem.dim": 3, "problem.observations": 40},
    )
    assert config.metrics == registry.get_family("hierarchical").default_metrics
    assert RunConfig().metrics == registry.get_family("deep_linear").default_metrics


def test_dict_metrics_become_columns_and_vectors_get_prefixes():
    functions = resolve_metrics(
        [], {"pair": lambda s: {"a": s, "b": 2 * s}, "vec": lambda s: jnp.arange(3.0) * s}
    )
    out = evaluate_metrics(functions, jnp.asarray(2.0))
    assert {k: float(v) for k, v in out.items()} == {"a": 2.0, "b": 4.0, "vec_0": 0.0, "vec_1": 2.0, "vec_2": 4.0}


def test_family_parts_of_a_tensor_run_evaluate_the_completion_loss_from_index_arrays():
    import jax
    import numpy as np

    from trajlab.problems.registry import make_data

    config = RunConfig(
        problem=ProblemConfig(kind="tensor_completion", order=3, dim=4, rank=2, observations=30),
        model=ModelConfig(kind="cp", width=3, init="gaussian", scale=0.5),
        optimizer=OptimizerConfig(name="gd", lr=0.1),
    )
    parts = registry.get_family("cp").build(config)
    data = make_data(config.problem)
    params = parts.init(jax.random.PRNGKey(0), 0.5)
    dense = np.einsum("ir,jr,kr->ijk", *[np.asarray(f, np.float64) for f in params])
    expected = np.mean((dense[tuple(np.asarray(data.indices).T)] - data.values) ** 2)
    assert float(parts.loss(params, data)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "updates, family",
    [({"model.core": "tucker"}, "deep_linear"), ({"model.activation": "relu"}, "deep_linear"),
     ({"model.kind": "cp", "problem.kind": "tensor_completion", "model.depth": 2}, "cp")],
)
def test_a_field_of_another_family_is_an_error_not_a_new_run_id(updates, family):
    """Reliability issue, item 9: such a field used to be accepted silently and changed the run id."""
    with pytest.raises(ConfigError) as error:
        replace_dotted(RunConfig(), updates)
    field = next(k for k in updates if k not in ("model.kind", "problem.kind"))
    assert str(error.value).startswith(f"{field} is not a field of model.kind={family}") and "\n" not in str(error.value)

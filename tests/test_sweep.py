"""Tests for sweep grids: ``--set`` parsing, cartesian products and batching by static structure.

Independent references: literal Python values for the parsed text, ``itertools.product`` for the
grid, and the DESIGN.md rule for batching (seed, step size and init scale are vmapped; every other
field decides the compiled structure) re-derived here from the flat configs.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajlab.config import RunConfig, replace_dotted, run_id, to_flat
from trajlab.errors import ConfigError
from trajlab.sweep import expand_grid, group_batches, parse_assignment, split_axes

# DESIGN.md: "*batched* fields are vmapped (seed, step size, init scale)".
VMAPPED = {"seed", "optimizer.lr", "model.scale"}

TINY = {"problem.m": 8, "problem.n": 6, "problem.rank": 2, "problem.observations": 30}


def _config(**updates) -> RunConfig:
    flat = dict(TINY)
    flat.update({k.replace("__", "."): v for k, v in updates.items()})
    return replace_dotted(RunConfig(), flat)


def _structure(config: RunConfig) -> dict:
    return {k: v for k, v in to_flat(config).items() if k not in VMAPPED}


# --- parse_assignment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("optimizer.lr=1e-3", "optimizer.lr", 0.001),
        ("optimizer.lr=3E-4", "optimizer.lr", 0.0003),
        ("optimizer.lr=2.5e+1", "optimizer.lr", 25.0),
        ("optimizer.lr=0.25", "optimizer.lr", 0.25),
        ("model.scale=1e-6", "model.scale", 1e-6),
        ("train.tol=1.0e-06", "train.tol", 1e-6),
    ],
)
def test_parse_assignment_reads_scientific_notation_as_float(text, key, expected):
    parsed_key, value = parse_assignment(text)
    assert parsed_key == key
    assert type(value) is float
    assert value == pytest.approx(expected, rel=1e-15)


def test_parse_assignment_reads_integers_as_int():
    key, value = parse_assignment("model.depth=3")
    assert (key, value, type(value)) == ("model.depth", 3, int)
    key, value = parse_assignment("train.max_steps=1000000")
    assert (value, type(value)) == (1_000_000, int)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model.depth=[1,2]", [1, 2]),
        ("model.depth=[1, 2, 3]", [1, 2, 3]),
        ("model.scale=[1e-3,1e-4]", [0.001, 0.0001]),
        ("optimizer.lr=[0.25, 1e-2]", [0.25, 0.01]),
        ("problem.kind=[completion,sensing]", ["completion", "sensing"]),
    ],
)
def test_parse_assignment_reads_lists(text, expected):
    _, value = parse_assignment(text)
    assert isinstance(value, list)
    assert value == expected
    assert [type(v) for v in value] == [type(v) for v in expected]


def test_parse_assignment_reads_null_as_none_and_booleans():
    assert parse_assignment("model.width=null") == ("model.width", None)
    assert parse_assignment("model.width=~") == ("model.width", None)
    assert parse_assignment("train.x64=true") == ("train.x64", True)
    assert parse_assignment("train.x64=false") == ("train.x64", False)


def test_parse_assignment_keeps_strings_and_strips_key():
    assert parse_assignment("optimizer.name=adam") == ("optimizer.name", "adam")
    assert parse_assignment(" model.init =identity") == ("model.init", "identity")
    assert parse_assignment("metrics=[train_loss,test_error]") == ("metrics", ["train_loss", "test_error"])


@pytest.mark.parametrize(
    "text, needle",
    [
        ("model.depth", "key=value"),  # no '='
        ("model.depth=", "key=value"),  # empty value
        ("model.depth=   ", "key=value"),  # blank value
        ("=3", "key=value"),  # empty key
        ("no.such.field=1", "no.such.field"),
        ("depth=3", "depth"),
        ("model.depth={a: 1}", "model.depth"),  # mappings are neither scalars nor lists
        ("model.depth=[1, 2", "model.depth"),  # unparsable YAML
    ],
)
def test_parse_assignment_rejects_malformed_text(text, needle):
    with pytest.raises(ConfigError) as info:
        parse_assignment(text)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


# --- split_axes ------------------------------------------------------------------------------


def test_split_axes_lists_sweep_except_list_typed_fields():
    fixed, axes = split_axes(
        {"model.depth": [1, 2], "optimizer.lr": 0.01, "metrics": ["train_loss"], "model.width": None}
    )
    assert axes == {"model.depth": [1, 2]}
    assert fixed == {"optimizer.lr": 0.01, "metrics": ["train_loss"], "model.width": None}


def test_split_axes_rejects_empty_sweep():
    with pytest.raises(ConfigError, match="model.depth"):
        split_axes({"model.depth": []})


# --- expand_grid ------------------------------------------------------------------------------


def test_expand_grid_is_the_cartesian_product():
    base = _config()
    axes = {"model.depth": [1, 2, 3], "optimizer.lr": [0.1, 0.01], "seed": [0, 1, 2, 3]}
    configs = expand_grid(base, axes)

    expected = set(itertools.product(axes["model.depth"], axes["optimizer.lr"], axes["seed"]))
    got = [(c.model.depth, c.optimizer.lr, c.seed) for c in configs]
    assert len(configs) == 3 * 2 * 4
    assert set(got) == expected
    assert len(set(got)) == len(got)
    # Fields not swept keep the base's values.
    for config in configs:
        flat, base_flat = to_flat(config), to_flat(base)
        for name in base_flat:
            if name not in axes:
                assert flat[name] == base_flat[name], name
    # One run id per point.
    assert len({run_id(c) for c in configs}) == len(configs)


def test_expand_grid_without_axes_is_the_base():
    base = _config(model__depth=2)
    assert expand_grid(base, {}) == [base]


def test_expand_grid_deduplicates_repeated_values():
    configs = expand_grid(_config(), {"model.depth": [1, 1, 2], "seed": [5, 5]})
    assert sorted((c.model.depth, c.seed) for c in configs) == [(1, 5), (2, 5)]


def test_expand_grid_validates_every_point():
    with pytest.raises(ConfigError, match="model.depth"):
        expand_grid(_config(), {"model.depth": [1, 0]})
    with pytest.raises(ConfigError, match="problem.rank"):
        expand_grid(_config(), {"problem.rank": [2, 7]})  # min(8, 6) = 6


# --- group_batches ----------------------------------------------------------------------------


def test_group_batches_splits_on_depth():
    configs = expand_grid(_config(), {"model.depth": [1, 2]})
    batches = group_batches(configs, max_batch=512)
    assert len(batches) == 2
    assert sorted(b[0].model.depth for b in batches) == [1, 2]
    assert all(len(b) == 1 for b in batches)


@pytest.mark.parametrize("field, values", [("seed", [0, 1, 2]), ("optimizer.lr", [0.1, 0.01]), ("model.scale", [1e-3, 1e-1])])
def test_group_batches_keeps_vmapped_fields_in_one_batch(field, values):
    configs = expand_grid(_config(), {field: values})
    batches = group_batches(configs, max_batch=512)
    assert len(batches) == 1
    assert batches[0] == configs


def test_group_batches_mixed_sweep():
    configs = expand_grid(
        _config(),
        {"model.depth": [1, 2, 3], "seed": [0, 1], "optimizer.lr": [0.1, 0.01], "model.scale": [1e-2, 1e-3]},
    )
    batches = group_batches(configs, max_batch=512)
    assert len(batches) == 3
    for batch in batches:
        assert len(batch) == 2 * 2 * 2
        assert len({c.model.depth for c in batch}) == 1


@pytest.mark.parametrize("field, values", [("train.max_steps", [10, 20]), ("optimizer.name", ["gd", "adam"]), ("problem.observations", [20, 30])])
def test_group_batches_splits_on_other_static_fields(field, values):
    configs = expand_grid(_config(), {field: values})
    assert len(group_batches(configs, max_batch=512)) == 2


@pytest.mark.parametrize("max_batch, sizes", [(1, [1] * 7), (2, [2, 2, 2, 1]), (3, [3, 3, 1]), (7, [7]), (100, [7])])
def test_group_batches_respects_max_batch(max_batch, sizes):
    configs = expand_grid(_config(), {"seed": list(range(7))})
    batches = group_batches(configs, max_batch=max_batch)
    assert [len(b) for b in batches] == sizes
    assert [c for b in batches for c in b] == configs  # order kept


_DEPTHS = st.sampled_from([1, 2, 3])
_SEEDS = st.integers(0, 3)
_LRS = st.sampled_from([0.1, 0.01])
_SCALES = st.sampled_from([1e-3, 1e-2])
_MAX_STEPS = st.sampled_from([10, 20])


@settings(max_examples=60, deadline=None)
@given(
    points=st.lists(st.tuples(_DEPTHS, _SEEDS, _LRS, _SCALES, _MAX_STEPS), min_size=0, max_size=25),
    max_batch=st.integers(1, 6),
)
def test_group_batches_properties(points, max_batch):
    configs = [
        _config(model__depth=d, seed=s, optimizer__lr=lr, model__scale=sc, train__max_steps=ms)
        for d, s, lr, sc, ms in points
    ]
    batches = group_batches(configs, max_batch)

    # Every config exactly once (by identity: duplicates are kept, not merged).
    flat = [c for b in batches for c in b]
    assert sorted(map(id, flat)) == sorted(map(id, configs))
    # Non-empty batches of at most max_batch runs that share their static structure.
    for batch in batches:
        assert 1 <= len(batch) <= max_batch
        assert all(_structure(c) == _structure(batch[0]) for c in batch)
    # As few batches as the groups allow: sum over static structures of ceil(size / max_batch).
    groups: dict[str, list] = {}
    for config in configs:
        groups.setdefault(repr(sorted(_structure(config).items())), []).append(config)
    assert len(batches) == sum(math.ceil(len(g) / max_batch) for g in groups.values())
    # Within one static structure the original order is kept.
    for members in groups.values():
        ids = {id(c) for c in members}
        assert [id(c) for c in flat if id(c) in ids] == [id(c) for c in members]


# --- run ids ----------------------------------------------------------------------------------


def test_run_id_is_stable_and_separates_configs():
    a, b = _config(seed=1), _config(seed=1)
    assert run_id(a) == run_id(b)
    assert len(run_id(a)) == 16 and int(run_id(a), 16) >= 0
    assert run_id(_config(seed=2)) != run_id(a)
    assert run_id(_config(seed=1, optimizer__lr=0.5)) != run_id(a)

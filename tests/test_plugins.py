"""The open laboratory: a family and a problem defined here, outside trajlab, get the whole engine.

The plug-in is a diagonal linear network w = u*u - v*v (Woodworth et al. 2020) on sparse linear
regression. Independent references: a float64 numpy GD loop, scipy's ODE solver for gradient
flow, the Hessian in closed form (written out below), numpy SVDs, and an in-process run for the
Dask executor. Also: every contract breach of a plug-in is a one-line error before any run.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import trajlab  # noqa: E402
from trajlab import registry  # noqa: E402
from trajlab.errors import ConfigError, PluginError  # noqa: E402


class SparseData(NamedTuple):
    inputs: np.ndarray
    outputs: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class SparseRegression:
    samples: int = 12
    dim: int = 6
    sparsity: int = 2
    seed: int = 0

    def __post_init__(self):
        trajlab.require(1 <= self.sparsity <= self.dim, "problem.sparsity", "an integer in [1, problem.dim]", self.sparsity)


@trajlab.problem("test_sparse_regression", config=SparseRegression)
def sparse_regression(config):
    """y = X w* with a k-sparse w* (entries 1) and Gaussian X."""
    rng = np.random.default_rng(config.seed)
    target = np.zeros(config.dim)
    target[: config.sparsity] = 1.0
    inputs = rng.standard_normal((config.samples, config.dim))
    return SparseData(inputs, inputs @ target, target)


@dataclass(frozen=True)
class Diagonal:
    scale: float = 0.5


def _w(params):
    u, v = params
    return u * u - v * v


@trajlab.family(
    "test_diagonal",
    config=Diagonal,
    problems=("test_sparse_regression",),
    metrics={"recovery_error": lambda ctx: jnp.linalg.norm(_w(ctx.params) - ctx.data.target)},
    default_metrics=("train_loss", "recovery_error"),
)
def diagonal(config):
    """Diagonal linear network w = u*u - v*v, u(0) = v(0) = scale * 1 plus a small seeded perturbation."""
    dim = config.problem.dim

    def init(key, scale):
        noise = 0.1 * scale * jax.random.normal(key, (2, dim))
        return (scale + noise[0], scale + noise[1])

    def loss(params, data):
        return jnp.mean((data.inputs @ _w(params) - data.outputs) ** 2)

    return trajlab.FamilyParts(init=init, loss=loss)


def config(**updates):
    base = trajlab.RunConfig(
        problem=trajlab.ProblemConfig("test_sparse_regression"),
        model=trajlab.ModelConfig("test_diagonal", scale=0.5),
        optimizer=trajlab.OptimizerConfig(name="gd", lr=0.02),
        train=trajlab.TrainConfig(max_steps=200, record="linear", record_every=50, tol=0.0, x64=True),
    )
    return trajlab.replace_dotted(base, updates)


def numpy_init(cfg):
    params = jax.jit(lambda key: registry.get_family("test_diagonal").build(cfg).init(key, cfg.model.scale))(
        jax.random.PRNGKey(cfg.seed)
    )
    return [np.asarray(p, np.float64) for p in params]


def numpy_gradient(u, v, data):
    x, y = data.inputs, data.outputs
    g = 2.0 / len(y) * x.T @ (x @ (u * u - v * v) - y)
    return 2 * u * g, -2 * v * g


def numpy_hessian(u, v, data):
    """Closed form: w = u^2 - v^2, g = dL/dw, A = (2/S) X^T X; H_uu = diag(2g) + D_u A D_u with
    D_u = diag(2u), H_uv = D_u A D_v' with D_v' = diag(-2v), H_vv = diag(-2g) + D_v' A D_v'."""
    x, y = data.inputs, data.outputs
    g = 2.0 / len(y) * x.T @ (x @ (u * u - v * v) - y)
    a = 2.0 / len(y) * x.T @ x
    du, dv = np.diag(2 * u), np.diag(-2 * v)
    return np.block([[np.diag(2 * g) + du @ a @ du, du @ a @ dv], [dv @ a @ du, np.diag(-2 * g) + dv @ a @ dv]])


def test_a_plugin_family_runs_a_vmapped_sweep_matching_a_numpy_gd_loop(tmp_path):
    configs = trajlab.grid(config(), set={"seed": [0, 1], "optimizer.lr": [0.01, 0.02]})
    assert len(configs) == 4
    data = trajlab.run(configs, out=tmp_path / "sweep")
    assert len(data.runs) == 4 and set(data.runs["status"]) == {"max_steps"}
    problem = sparse_regression(configs[0].problem)
    for cfg in configs:
        u, v = numpy_init(cfg)
        expected = {}
        for step in range(cfg.train.max_steps + 1):
            if step % 50 == 0:
                expected[step] = np.mean((problem.inputs @ (u * u - v * v) - problem.outputs) ** 2)
            gu, gv = numpy_gradient(u, v, problem)
            u, v = u - cfg.optimizer.lr * gu, v - cfg.optimizer.lr * gv
        rows = data.trajectories[data.trajectories["run_id"] == trajlab.run_id(cfg)].set_index("step")
        for step, value in expected.items():
            assert rows.loc[step, "train_loss"] == pytest.approx(value, rel=1e-10)
    assert data.manifest["run_id_scheme"] == 2


def test_generic_metrics_of_a_plugin_match_closed_forms():
    cfg = config(**{
        "metrics": ["gradient_norm", "parameter_norm", "distance_from_init", "sharpness", "hessian_eigenvalues",
                    "hessian_trace", "recovery_error"],
        "train.max_steps": 30, "train.record_every": 30, "train.top_k": 3, "train.hutchinson_probes": 4000,
    })
    from trajlab.engine import run_configs

    result = run_configs([cfg])
    problem = sparse_regression(cfg.problem)
    u0, v0 = numpy_init(cfg)
    u, v = u0.copy(), v0.copy()
    for _ in range(30):
        gu, gv = numpy_gradient(u, v, problem)
        u, v = u - cfg.optimizer.lr * gu, v - cfg.optimizer.lr * gv
    last = {name: values[-1] for name, values in result.trajectory.items()}
    assert last["step"] == 30
    gu, gv = numpy_gradient(u, v, problem)
    assert last["gradient_norm"] == pytest.approx(np.sqrt(np.sum(gu**2) + np.sum(gv**2)), rel=1e-9)
    assert last["parameter_norm"] == pytest.approx(np.sqrt(np.sum(u**2) + np.sum(v**2)), rel=1e-10)
    assert last["distance_from_init"] == pytest.approx(np.sqrt(np.sum((u - u0) ** 2) + np.sum((v - v0) ** 2)), rel=1e-9)
    eigenvalues = np.sort(np.linalg.eigvalsh(numpy_hessian(u, v, problem)))[::-1]
    assert last["sharpness"] == pytest.approx(eigenvalues[0], rel=1e-8)
    for i in range(3):
        assert last[f"eig_{i}"] == pytest.approx(eigenvalues[i], rel=1e-6)
    assert last["hessian_trace"] == pytest.approx(eigenvalues.sum(), rel=0.05)
    assert last["recovery_error"] == pytest.approx(np.linalg.norm(u * u - v * v - problem.target), rel=1e-10)


def test_gradient_flow_and_distance_to_flow_of_a_plugin_match_scipy():
    from scipy.integrate import solve_ivp

    from trajlab.engine import run_configs

    cfg = config(**{"optimizer.name": "gradient_flow", "optimizer.lr": 0.05, "train.max_steps": 40,
                    "train.record_every": 20, "metrics": ["train_loss"]})
    problem = sparse_regression(cfg.problem)
    u0, v0 = numpy_init(cfg)
    dim = len(u0)

    def field(t, z):
        gu, gv = numpy_gradient(z[:dim], z[dim:], problem)
        return -np.concatenate([gu, gv])

    times = [1.0, 2.0]  # steps 20, 40 at lr 0.05
    solution = solve_ivp(field, (0, 2.0), np.concatenate([u0, v0]), t_eval=times, rtol=1e-11, atol=1e-12)
    result = run_configs([cfg])
    losses = dict(zip(result.trajectory["step"], result.trajectory["train_loss"]))
    for k, step in enumerate((20, 40)):
        z = solution.y[:, k]
        w = z[:dim] ** 2 - z[dim:] ** 2
        assert losses[step] == pytest.approx(np.mean((problem.inputs @ w - problem.outputs) ** 2), rel=1e-6)

    # GD beside the flow from the same init: distance_to_flow = ||theta_GD(k) - theta_GF(k lr)||.
    gd = config(**{"train.max_steps": 40, "train.record_every": 40, "metrics": ["distance_to_flow"],
                   "flow.rtol": 1e-10, "flow.atol": 1e-12,
                   "optimizer.lr": 0.05})
    distance = run_configs([gd]).trajectory["distance_to_flow"][-1]
    u, v = u0.copy(), v0.copy()
    for _ in range(40):
        gu, gv = numpy_gradient(u, v, problem)
        u, v = u - 0.05 * gu, v - 0.05 * gv
    assert distance == pytest.approx(np.linalg.norm(np.concatenate([u, v]) - solution.y[:, 1]), rel=1e-5)


def test_leaf_spectra_of_matrix_shaped_parameters_match_numpy():
    from trajlab.engine import run_configs

    cfg = trajlab.replace_dotted(trajlab.RunConfig(), {
        "problem.m": 5, "problem.n": 4, "problem.rank": 2, "problem.observations": 12, "model.depth": 2,
        "model.scale": 0.5, "optimizer.name": "gd", "optimizer.lr": 0.1, "train.max_steps": 1,
        "train.record": "linear", "train.record_every": 1, "train.top_k": 3, "train.x64": True,
        "metrics": ["leaf_singular_values", "leaf_effective_ranks"],
    })
    result = run_configs([cfg])
    layers = registry.get_family("deep_linear").build(cfg).init(jax.random.PRNGKey(0), 0.5)
    for i, layer in enumerate(layers):
        sigma = np.linalg.svd(np.asarray(layer), compute_uv=False)
        for j in range(3):
            assert result.trajectory[f"sv_{i}_{j}"][0] == pytest.approx(sigma[j], rel=1e-10)
        p = sigma / sigma.sum()
        assert result.trajectory[f"erank_{i}"][0] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-10)


def test_a_plugin_family_runs_on_the_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    from trajlab.executors import DaskExecutor

    configs = trajlab.grid(config(), set={"seed": [0, 1, 2]})
    local = trajlab.run(configs, out=tmp_path / "local")
    executor = DaskExecutor(n_workers=1)
    try:
        remote = trajlab.run(configs, out=tmp_path / "dask", executor=executor)
    finally:
        executor.shutdown()
    assert remote.manifest["executor"].startswith("dask")
    columns = ["run_id", "status", "final.train_loss", "final.recovery_error"]
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(
        local.runs[columns].sort_values("run_id").reset_index(drop=True),
        remote.runs[columns].sort_values("run_id").reset_index(drop=True),
    )


def test_the_sections_of_a_plugin_show_only_their_fields_and_switch_with_the_kind():
    flat = trajlab.to_flat(config())
    assert [k for k in flat if k.startswith("problem.")] == [
        "problem.kind", "problem.samples", "problem.dim", "problem.sparsity", "problem.seed"]
    assert [k for k in flat if k.startswith("model.")] == ["model.kind", "model.scale"]
    assert trajlab.from_flat(flat) == config()
    with pytest.raises(ConfigError, match=r"^model.depth is not a field of model.kind=test_diagonal") as error:
        trajlab.replace_dotted(config(), {"model.depth": 3})
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"^problem.sparsity must be an integer in \[1, problem.dim\]"):
        trajlab.replace_dotted(config(), {"problem.sparsity": 9})


# --- bad plug-ins: one line naming the plug-in, before any run ------------------------------------


def _register_bad(name, parts, config_cls=Diagonal, metrics=None):
    registry.register_family(
        registry.Family(name, config_cls, ("test_sparse_regression",), lambda cfg: parts, dict(metrics or {})),
        replace=True,
    )


@pytest.fixture
def bad_family():
    names = []

    def make(parts, metrics=None):
        name = f"test_bad_{len(names)}"
        config_cls = dataclasses.make_dataclass(f"Bad{len(names)}", [("scale", float, 0.5)], frozen=True)
        _register_bad(name, parts, config_cls, metrics)
        names.append(name)
        return trajlab.replace_dotted(config(), {"model.kind": name, "metrics": ["train_loss", *(metrics or {})]})

    yield make
    for name in names:
        registry.unregister(name)


def good_loss(params, data):
    return jnp.mean((data.inputs @ _w(params) - data.outputs) ** 2)


def good_init(key, scale):
    return (scale * jnp.ones(6), scale * jnp.ones(6))


@pytest.mark.parametrize(
    "parts, metrics, words",
    [
        (trajlab.FamilyParts(init=None, loss=good_loss), None, "FamilyParts.init is missing"),
        (trajlab.FamilyParts(init=lambda key, scale: "weights", loss=good_loss), None, "init(key, scale)"),
        (trajlab.FamilyParts(init=lambda key, scale: jnp.arange(3), loss=good_loss), None, "float arrays"),
        (trajlab.FamilyParts(init=good_init, loss=lambda p, d: d.inputs @ _w(p)), None, "must return a scalar"),
        (trajlab.FamilyParts(init=good_init, loss=good_loss), {"matrix": lambda ctx: jnp.ones((2, 2))}, "matrix"),
        (trajlab.FamilyParts(init=good_init, loss=lambda p, d: d.nonexistent), None, "loss(params, data) fails"),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_one_line_before_any_run(bad_family, tmp_path, parts, metrics, words):
    cfg = bad_family(parts, metrics)
    folder = tmp_path / "sweep"
    with pytest.raises((PluginError, ConfigError)) as error:
        trajlab.run([cfg], out=folder)
    message = str(error.value)
    assert "\n" not in message and words in message and "test_bad_" in message
    assert not (folder / "runs.parquet").exists() and not list(folder.glob("runs/*.parquet"))


def test_bad_registrations_are_one_line_plugin_errors():
    @dataclass(frozen=True)
    class WithKind:
        kind: str = "x"
        scale: float = 1.0

    @dataclass
    class NotFrozen:
        scale: float = 1.0

    @dataclass(frozen=True)
    class NoScale:
        width: int = 3

    @dataclass(frozen=True)
    class NoDefault:
        scale: float

    build = lambda cfg: None  # noqa: E731
    cases = [
        (WithKind, "clashes with the built-in field 'kind'"),
        (NotFrozen, "must be frozen"),
        (NoScale, "needs a field 'scale: float'"),
        (NoDefault, "needs a default value"),
    ]
    for cls, words in cases:
        with pytest.raises(PluginError, match=words) as error:
            registry.register_family(registry.Family("test_broken", cls, ("test_sparse_regression",), build))
        assert str(error.value).startswith("family 'test_broken'") and "\n" not in str(error.value)
    assert "test_broken" not in registry.families()
    # A second family under a taken name (from elsewhere) is refused; so is a built-in's name.
    for name in ("test_diagonal", "deep_linear"):
        with pytest.raises(PluginError, match="already registered"):
            registry.register_family(
                registry.Family(name, dataclasses.make_dataclass("Other", [("scale", float, 1.0)], frozen=True),
                                ("test_sparse_regression",), build, origin="somewhere_else@")
            )
    assert registry.get_family("deep_linear").origin.startswith("trajlab.families.deep_linear")


PLUGIN_FILE = textwrap.dedent('''
    """A user's own file: a scalar factorization w = a * b fitting y = 1 (depth-2 in one dimension)."""
    from dataclasses import dataclass

    import jax
    import jax.numpy as jnp
    import numpy as np

    import trajlab


    @dataclass(frozen=True)
    class Target:
        value: float = 1.0


    @trajlab.problem("file_scalar_target", config=Target)
    def target(config):
        return {"y": np.asarray(config.value)}


    @dataclass(frozen=True)
    class Product:
        scale: float = 0.1


    @trajlab.family("file_scalar_product", config=Product, problems=("file_scalar_target",),
                    metrics={"product": lambda ctx: ctx.params[0] * ctx.params[1]})
    def product(config):
        return trajlab.FamilyParts(
            init=lambda key, scale: (scale * jnp.ones(()), scale * jnp.ones(())),
            loss=lambda p, d: 0.5 * (p[0] * p[1] - d["y"]) ** 2,
        )


    def reaches_target(data):
        final = data.runs["final.product"].astype(float)
        return f"final products {sorted(final.round(6))}", bool(((final - 1.0).abs() < 1e-3).all())


    SCALAR = trajlab.Preset(
        name="scalar-product",
        description="w = a b from small init reaches y = 1",
        base=trajlab.RunConfig(
            problem=trajlab.ProblemConfig("file_scalar_target"),
            model=trajlab.ModelConfig("file_scalar_product"),
            optimizer=trajlab.OptimizerConfig(name="gd", lr=0.1),
            train=trajlab.TrainConfig(max_steps=2000, tol=1e-12),
            metrics=("train_loss", "product"),
        ),
        axes={"model.scale": [0.1, 0.01]},
        quick={"train.max_steps": 1500},
        claims=(trajlab.Claim("the product reaches the target", reaches_target),),
    )
''')


def test_a_preset_in_a_users_file_lists_runs_and_reports_from_the_cli(tmp_path):
    from trajlab import cli

    path = tmp_path / "mine.py"
    path.write_text(PLUGIN_FILE)
    runner = CliRunner()
    listed = runner.invoke(cli.app, ["list", str(path)])
    assert listed.exit_code == 0 and "scalar-product" in listed.output
    out = tmp_path / "out"
    result = runner.invoke(cli.app, ["run", f"{path}:scalar-product", "--quick", "--out", str(out), "--no-progress",
                                     "--no-figures"])
    assert result.exit_code == 0, result.output
    data = trajlab.load(out)
    assert len(data.runs) == 2 and set(data.runs["status"]) == {"done"}
    assert data.manifest["preset_sources"]["scalar-product"] == f"{path.resolve()}:scalar-product"
    report = runner.invoke(cli.app, ["report", str(out)])
    assert report.exit_code == 0 and "1 of 1 checked claims hold" in report.output.replace("\n", " ") or \
        "hold" in report.output, report.output
    for bad, words in ((f"{path}:nope", "defines no preset 'nope'"), (f"{tmp_path}/missing.py:x", "no such file")):
        failed = runner.invoke(cli.app, ["run", bad, "--out", str(tmp_path / "never")])
        assert failed.exit_code == 2 and words in failed.output and failed.output.count("\n") == 1, failed.output
    assert not (tmp_path / "never").exists()


def test_a_gradient_flow_run_is_its_own_reference_flow():
    """distance_to_flow of a gradient-flow run is 0 (the reference is not integrated a second time)
    and recording it changes nothing else."""
    from trajlab.engine import run_configs

    flow = {"optimizer.name": "gradient_flow", "optimizer.lr": 0.05, "train.max_steps": 200, "train.record_every": 50}
    with_reference = run_configs([config(**flow, metrics=["train_loss", "distance_to_flow"])]).trajectory
    without = run_configs([config(**flow, metrics=["train_loss"])]).trajectory
    assert list(with_reference["distance_to_flow"]) == [0.0] * len(with_reference["step"])
    assert list(with_reference["train_loss"]) == list(without["train_loss"])


@dataclass(frozen=True)
class BadFamiliesSection:
    size: int = 1


def test_a_problem_can_name_the_families_that_solve_it(tmp_path):
    """A new matrix problem for the built-in deep linear family, in a file of its own: the problem
    names deep_linear in ``families``; nothing of deep_linear is edited."""
    from trajlab import registry

    plugin = tmp_path / "diagonal_sensing_plugin.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "import numpy as np\n"
        "import trajlab\n"
        "from trajlab.families.matrix_problems import _squared_error_loss, SensingConfig\n"
        "@dataclass(frozen=True)\n"
        "class OnesSensing:\n"
        "    m: int = 3\n"
        "    n: int = 3\n"
        "    seed: int = 0\n"
        "@trajlab.problem('ones_sensing_test', config=OnesSensing, families=('deep_linear',),\n"
        "                 loss=lambda section: (lambda w, data: 0.5 * ((w.sum() - data['y']) ** 2)))\n"
        "def ones_sensing(section):\n"
        "    return {'y': np.asarray(2.0)}\n"
    )
    try:
        trajlab.load_plugins(str(plugin))
        assert "ones_sensing_test" in registry.problems_of("deep_linear")
        config = trajlab.RunConfig(problem=trajlab.ProblemConfig("ones_sensing_test"),
                                   model=trajlab.ModelConfig("deep_linear", depth=2, scale=0.1))
        assert config.problem.kind == "ones_sensing_test"
        with pytest.raises(trajlab.ConfigError, match="problem.kind must be one of"):
            trajlab.RunConfig(problem=trajlab.ProblemConfig("ones_sensing_test"), model=trajlab.ModelConfig("two_layer"))
        with pytest.raises(PluginError, match="families must be a tuple of family names"):
            registry.register_problem(registry.Problem("bad_families_test", BadFamiliesSection, lambda s: {},
                                                       families="deep_linear"))
    finally:
        registry.unregister("ones_sensing_test", kind="problem")

"""A diagonal linear network w = u^D - v^D on sparse regression (Woodworth et al., COLT 2020)."""
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import trajlab


@dataclass(frozen=True)
class SparseRegression:  # the section problem.*: frozen, every field has a default
    samples: int = 40
    dim: int = 100
    sparsity: int = 5
    seed: int = 0

    def __post_init__(self):
        trajlab.require(1 <= self.sparsity <= self.dim, "problem.sparsity", "an integer in [1, dim]", self.sparsity)


@trajlab.problem("sparse_regression", config=SparseRegression)
def sparse_regression(config):
    """y = X w* with a k-sparse w* and Gaussian X."""
    rng = np.random.default_rng(config.seed)
    w_star = np.where(np.arange(config.dim) < config.sparsity, 1.0, 0.0)
    x = rng.standard_normal((config.samples, config.dim))
    return {"x": x, "y": x @ w_star, "w_star": w_star}


@dataclass(frozen=True)
class Diagonal:  # the section model.*: needs `scale: float`, the batched init scale
    depth: int = 2
    scale: float = 0.1


def weights(params, depth):
    u, v = params
    return u**depth - v**depth


@trajlab.family(
    "diagonal", config=Diagonal, problems=("sparse_regression",),
    metrics={  # metric(ctx) -> scalar, 1-D array or {column: scalar}
        "l1_norm": lambda ctx: jnp.abs(weights(ctx.params, ctx.config.model.depth)).sum(),
        "recovery_error": lambda ctx: jnp.linalg.norm(weights(ctx.params, ctx.config.model.depth) - ctx.data["w_star"]),
    },
    default_metrics=("train_loss", "l1_norm", "recovery_error", "gradient_norm"),  # gradient_norm: generic
)
def diagonal(config):  # config: the whole RunConfig
    """Diagonal linear network w = u^D - v^D, init u = v = scale (so w(0) = 0)."""
    depth, dim = config.model.depth, config.problem.dim
    dtype = jnp.float64 if config.train.x64 else jnp.float32

    def init(key, scale):  # scale is traced: vmapped across the runs of a batch
        return (scale * jnp.ones(dim, dtype), scale * jnp.ones(dim, dtype))

    def loss(params, data):  # 1/2 mean squared residual over the samples
        return 0.5 * jnp.mean((data["x"] @ weights(params, depth) - data["y"]) ** 2)

    return trajlab.FamilyParts(init=init, loss=loss)


def smaller_init_sparser(data):
    runs = data.runs[data.runs["status"] == "done"]
    l1 = runs.groupby("model.scale")["final.l1_norm"].median()  # index sorted by scale
    if len(l1) < 2:
        return trajlab.not_measured("needs finished runs at two init scales")  # holds None
    return f"median final l1 norm by init scale: {l1.round(3).to_dict()}", bool(l1.is_monotonic_increasing)


SPARSE = trajlab.Preset(
    name="diagonal-sparse",
    description="Diagonal linear network: from small init GD finds a sparse interpolator",
    base=trajlab.RunConfig(
        problem=trajlab.ProblemConfig("sparse_regression"),
        model=trajlab.ModelConfig("diagonal"),
        optimizer=trajlab.OptimizerConfig(name="gd", lr=0.05),
        train=trajlab.TrainConfig(max_steps=50_000, tol=1e-6, record_points=40),
    ),
    axes={"model.scale": [1e-3, 1e-2, 1e-1, 0.5], "model.depth": [2, 3]},
    quick={"model.scale": [1e-2, 0.5], "model.depth": 2, "train.max_steps": 20_000},
    claims=(trajlab.Claim("the smaller the init scale, the lower the l1 norm of the interpolator "
                          "(Woodworth et al. 2020)", smaller_init_sparser),),
)

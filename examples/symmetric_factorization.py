"""Symmetric (PSD) matrix sensing with a full-width factorization X = U U^T: a user-side trajlab plug-in.

Li, Ma & Zhang (COLT 2018), "Algorithmic regularization in over-parameterized matrix sensing and
neural networks with quadratic activations": gradient descent on U U^T with U of shape n x n (no rank
constraint) from a small init recovers a rank-r PSD matrix from ~n r Gaussian measurements.

Run it with ``trajlab run examples/symmetric_factorization.py:symmetric-sensing --quick`` or
``trajlab.run("examples/symmetric_factorization.py:symmetric-sensing", quick=True)``.

Sizes (measured, not assumed): n = 30, r = 2 and 4 n r = 240 measurements, not 5 n r, also at
``--quick``. With more measurements per degree of freedom of a symmetric matrix (n(n+1)/2 = 465
here) X* seems to be the only PSD matrix that fits them: gradient descent from a large
init also drifts to X*, only slowly: at 5 n r = 300 (and at n = 20 with 4 n r = 160 of 210) the
scale-0.1 runs had not reached the train loss tolerance after 10k-20k steps, their recovery errors
1e-2 to 2e-2 and still falling. At 240 of 465 a large init fits the measurements with a
wrong, high-rank U U^T, which is the contrast the claims check.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import trajlab
from trajlab import require


@dataclass(frozen=True)
class PSDSensing:
    """X* = Q Q^T with Q an n x rank matrix with orthonormal columns (Gaussian QR): the rank nonzero
    eigenvalues of X* are all 1, ||X*||_F = sqrt(rank). A_i = (G_i + G_i^T) / 2 with G_i entries
    i.i.d. N(0, 1) (so <A_i, M> ~ N(0, ||M||_F^2) for symmetric M), y_i = <A_i, X*>."""

    n: int = 30
    rank: int = 2
    observations: int = 240
    seed: int = 0

    def __post_init__(self):
        require(1 <= self.n <= 500, "problem.n", "an integer in [1, 500]", self.n)
        require(1 <= self.rank <= self.n, "problem.rank", f"an integer in [1, n] = [1, {self.n}]", self.rank)
        require(self.observations >= 1, "problem.observations", "an integer >= 1", self.observations)
        require(0 <= self.seed < 2**32, "problem.seed", "an integer in [0, 2^32)", self.seed)


class PSDData(NamedTuple):
    sensing: np.ndarray  # (observations, n, n), symmetric A_i
    values: np.ndarray  # (observations,), y_i = <A_i, X*>
    target: np.ndarray  # (n, n), X*


@trajlab.problem("psd_sensing", config=PSDSensing)
def psd_sensing(config: PSDSensing) -> PSDData:
    """PSD matrix sensing: m symmetric Gaussian measurements of a rank-r X* = Q Q^T (Li, Ma, Zhang 2018)."""
    rng = np.random.default_rng(config.seed)
    q, _ = np.linalg.qr(rng.standard_normal((config.n, config.rank)))
    target = q @ q.T
    g = rng.standard_normal((config.observations, config.n, config.n))
    sensing = (g + g.transpose(0, 2, 1)) / 2
    return PSDData(sensing, np.einsum("kij,ij->k", sensing, target), target)


@dataclass(frozen=True)
class Symmetric:
    """U of shape n x width (None: width n, full width). init ``gaussian``: U_ij ~ N(0, scale^2);
    ``orthogonal``: U = scale * Q with Q's columns (width <= n) or rows (width > n) orthonormal."""

    width: int | None = None
    scale: float = 1e-3
    init: str = "gaussian"

    def __post_init__(self):
        require(self.width is None or self.width >= 1, "model.width", "an integer >= 1 or null (= n)", self.width)
        require(self.init in ("gaussian", "orthogonal"), "model.init", "one of ('gaussian', 'orthogonal')", self.init)


def product(ctx):
    return ctx.params @ ctx.params.T


def eigenvalues(ctx):
    """Eigenvalues of U U^T, descending: the squared singular values of U, zero padded to n."""
    s = jnp.linalg.svd(ctx.params, compute_uv=False) ** 2
    return jnp.pad(s, (0, ctx.params.shape[0] - s.shape[0]))


def effective_rank(ctx):
    """exp(entropy of p), p_i = lambda_i / sum_j lambda_j (Roy & Vetterli 2007)."""
    lam = eigenvalues(ctx)
    p = lam / jnp.sum(lam)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def recovery_error(ctx):
    """||U U^T - X*||_F / ||X*||_F."""
    return jnp.linalg.norm(product(ctx) - ctx.data.target) / jnp.linalg.norm(ctx.data.target)


def top_eigenvalues(ctx):
    """The top min(train.top_k, n) eigenvalues of U U^T (columns eigenvalue_0, eigenvalue_1, ...)."""
    return eigenvalues(ctx)[: min(ctx.config.train.top_k, ctx.params.shape[0])]


@trajlab.family(
    "symmetric",
    config=Symmetric,
    problems=("psd_sensing",),
    metrics={"effective_rank": effective_rank, "recovery_error": recovery_error, "top_eigenvalues": top_eigenvalues},
    default_metrics=("train_loss", "recovery_error", "effective_rank", "top_eigenvalues"),
    columns={"top_eigenvalues": "eigenvalue"},
)
def symmetric(config):
    """Symmetric factorization X = U U^T; loss (1/m) sum_i (<A_i, U U^T> - y_i)^2 (mean, not 1/(2m))."""
    n = config.problem.n
    width = config.model.width or n
    dtype = jnp.float64 if config.train.x64 else jnp.float32

    def init(key, scale):
        g = jax.random.normal(key, (n, width), dtype)
        if config.model.init == "orthogonal":
            q, r = jnp.linalg.qr(g if width <= n else g.T)
            q = q * jnp.sign(jnp.diag(r))
            g = q if width <= n else q.T
        return scale * g

    def loss(u, data):
        residual = jnp.einsum("kij,ij->k", data.sensing, u @ u.T) - data.values
        return jnp.mean(residual**2)

    return trajlab.FamilyParts(init=init, loss=loss)


# --- the preset: small vs large init ------------------------------------------------------------

SMALL, LARGE = 1e-3, 1e-1  # the claims compare the smallest and the largest scale of the sweep


def small_init_recovers(data):
    runs = data.runs
    small = runs[runs["model.scale"] == runs["model.scale"].min()]
    if small["model.scale"].iloc[0] > SMALL:
        return f"not measured in this sweep: smallest init scale {small['model.scale'].iloc[0]:g} > {SMALL:g}", None
    error, rank = small["final.recovery_error"], small["final.effective_rank"]
    gap = (rank - small["problem.rank"]).abs()
    text = (f"scale {small['model.scale'].iloc[0]:g}: {(small['status'] == 'done').sum()}/{len(small)} runs reached "
            f"train.tol, recovery error max {error.max():.3g}, effective rank {rank.min():.3f}-{rank.max():.3f}")
    return text, bool((small["status"] == "done").all() and (error < 1e-2).all() and (gap < 0.25).all())


def large_init_does_not(data):
    runs = data.runs
    small, large = runs["model.scale"].min(), runs["model.scale"].max()
    if large < LARGE or small > SMALL:
        return f"not measured in this sweep: needs scales <= {SMALL:g} and >= {LARGE:g}", None
    at = {s: runs[runs["model.scale"] == s] for s in (small, large)}
    error = {s: float(at[s]["final.recovery_error"].median()) for s in at}
    rank = {s: float(at[s]["final.effective_rank"].median()) for s in at}
    text = (f"median recovery error {error[large]:.3g} at scale {large:g} vs {error[small]:.3g} at {small:g}; "
            f"effective rank {rank[large]:.2f} vs {rank[small]:.2f}; "
            f"{(at[large]['status'] == 'done').sum()}/{len(at[large])} large-init runs reached train.tol")
    fits = (at[large]["status"] == "done").all()
    return text, bool(fits and error[large] > 10 * error[small] and rank[large] > rank[small] + 1)


def figures(data):
    """Recovery error and effective rank of U U^T along training, a color per init scale."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    trajectories = dict(list(data.trajectories.groupby("run_id")))
    scales = sorted(data.runs["model.scale"].unique())
    for _, run in data.runs.sort_values(["model.scale", "seed"]).iterrows():
        trajectory = trajectories[run["run_id"]]
        t = trajectory["t"].clip(lower=1e-2)
        color = f"C{scales.index(run['model.scale'])}"
        label = f"scale {run['model.scale']:g}" if run["seed"] == data.runs["seed"].min() else None
        left.loglog(t, trajectory["recovery_error"], color=color, alpha=0.7, label=label)
        right.semilogx(t, trajectory["effective_rank"], color=color, alpha=0.7)
    left.set(xlabel="t = step x lr", ylabel="||UU^T - X*||_F / ||X*||_F")
    right.set(xlabel="t = step x lr", ylabel="effective rank of UU^T")
    left.legend()
    return {"recovery": figure}


symmetric_sensing = trajlab.Preset(
    name="symmetric-sensing",
    description="GD on X = UU^T (full width) for rank-2 PSD sensing: small init recovers X* (Li, Ma, Zhang 2018)",
    base=trajlab.RunConfig(
        problem=trajlab.ProblemConfig("psd_sensing", n=30, rank=2, observations=240),
        model=trajlab.ModelConfig("symmetric"),
        optimizer=trajlab.OptimizerConfig(name="gd", lr=0.1),
        train=trajlab.TrainConfig(max_steps=60_000, tol=1e-6, record_points=60),
    ),
    axes={"model.scale": [1e-1, 1e-2, 1e-3, 1e-4], "seed": [0, 1, 2]},
    quick={"model.scale": [1e-1, 1e-3], "seed": [0, 1],
           "train.max_steps": 20_000, "train.record_points": 30},
    figures=figures,
    claims=(
        trajlab.Claim(f"from small init (scale <= {SMALL:g}) GD on the full-width UU^T recovers X*: every run reaches "
                      "train.tol with recovery error < 1e-2 and effective rank within 0.25 of r", small_init_recovers),
        trajlab.Claim(f"from large init (scale >= {LARGE:g}) GD fits the same measurements with a wrong, higher-rank "
                      "UU^T: median recovery error > 10x and effective rank > 1 above those from small init",
                      large_init_does_not),
    ),
)

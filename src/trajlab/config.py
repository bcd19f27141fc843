"""Run configurations: frozen, validated at construction, addressed by dotted names.

A run is described by one :class:`RunConfig`, a tree of frozen dataclasses. Each field is either
*static* (it decides what is compiled: shapes, depth, optimizer kind, recording schedule) or
*batched* (vmapped inside one compiled loop: the init seed, the step size and the init scale).
Runs whose static fields agree share one compilation and one batch (see :func:`static_key`).

Conventions (DESIGN.md):
- ``train.tol`` compares the train loss, the *mean* squared error over the observations.
- ``model.scale`` follows the convention chosen by ``model.init`` (see
  :mod:`trajlab.models.deep_linear`); the default ``gaussian_e2e`` is the end-to-end scale of the
  published deep matrix factorization code.
- time ``t = step * optimizer.lr``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from trajlab.errors import ConfigError

MATRIX_PROBLEM_KINDS = ("completion", "sensing", "regression", "whitened", "matricized_tensor_completion")
TENSOR_PROBLEM_KINDS = ("tensor_completion", "tensor_sensing")
NETWORK_PROBLEM_KINDS = ("classification", "teacher_student")
PROBLEM_KINDS = MATRIX_PROBLEM_KINDS + TENSOR_PROBLEM_KINDS + NETWORK_PROBLEM_KINDS
NETWORK_DATASETS = ("digits", "separable_2d")
NETWORK_LOSSES = ("cross_entropy", "logistic", "squared")
ACTIVATIONS = ("linear", "relu", "quadratic")
TENSOR_TARGETS = ("cp", "hierarchical")
# Model families (model.kind) and the problem kinds each one solves.
MODEL_KINDS = ("deep_linear", "cp", "hierarchical", "mlp", "two_layer")
MODEL_PROBLEMS = {
    "deep_linear": MATRIX_PROBLEM_KINDS,
    "cp": TENSOR_PROBLEM_KINDS,
    "hierarchical": TENSOR_PROBLEM_KINDS,
    "mlp": NETWORK_PROBLEM_KINDS,
    "two_layer": NETWORK_PROBLEM_KINDS,
}
HIERARCHICAL_CORES = ("product", "tucker")
DATASETS = ("synthetic", "diabetes", "csv", "razin_cohen_2x2") + NETWORK_DATASETS
LOSS_CONVENTIONS = ("mean", "half_sum")
INIT_CONDITIONS = ("none", "positive_det")
INIT_SCHEMES = ("gaussian_e2e", "gaussian", "identity", "orthogonal", "balanced_random", "xavier", "he")
NETWORK_INIT_SCHEMES = ("xavier", "he", "gaussian")
OPTIMIZERS = (
    "gd",
    "momentum",
    "nesterov",
    "adam",
    "adagrad",
    "adadelta",
    "rmsprop",
    "normalized_gd",
    "gradient_flow",
)
PARAMETERIZATIONS = ("factorized", "end_to_end")
FLOW_SOLVERS = ("tsit5", "dopri5", "rk4")
RECORD_SCHEDULES = ("log", "linear")
METRICS = (
    "train_loss",
    "test_error",
    "singular_values",
    "effective_rank",
    "nuclear_norm",
    "schatten_quasi_norm",
    "frobenius_norm",
    "balancedness",
    "balancedness_relative",
    "distance_from_init",
    "distance_to_flow",
    "end_to_end_distance_to_flow",
    "deficiency_margin",
    "target_mode_strengths",
    "unobserved_max_abs",
)
# Metrics that need a reference gradient flow carried beside each run (extra cost): opt-in.
FLOW_METRICS = ("distance_to_flow", "end_to_end_distance_to_flow")
# Metrics that need the problem's target W* (whitened regression; also completion / sensing).
TARGET_METRICS = ("deficiency_margin", "target_mode_strengths")
DEFAULT_METRICS = tuple(m for m in METRICS if m not in FLOW_METRICS + TARGET_METRICS + ("unobserved_max_abs",))
# Metrics of tensor factorizations (trajlab.metrics.tensor_registry).
TENSOR_METRICS = (
    "train_loss",
    "reconstruction_error",
    "frobenius_norm",
    "distance_from_init",
    "distance_to_flow",
    "component_norms",
    "local_component_norms",
    "matricization_effective_ranks",
    "cp_rank_estimate",  # final parameters only (ALS; see trajlab.metrics.tensor.estimate_cp_rank)
)
TENSOR_DEFAULT_METRICS = ("train_loss", "reconstruction_error", "frobenius_norm", "distance_from_init")
# Metrics of small nonlinear networks (trajlab.metrics.network_registry). Curvature metrics use
# train.lanczos_iterations / train.hutchinson_probes and cost O(iterations) Hessian-vector products.
NETWORK_METRICS = (
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "parameter_norm",
    "distance_from_init",
    "distance_to_flow",
    "sharpness",
    "hessian_eigenvalues",
    "hessian_trace",
    "angle_to_max_margin",
    "normalized_margin",
)
NETWORK_DEFAULT_METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "parameter_norm", "distance_from_init")
# Metrics each model family records ...
FAMILY_METRICS = {
    "deep_linear": METRICS,
    "cp": TENSOR_METRICS,
    "hierarchical": TENSOR_METRICS,
    "mlp": NETWORK_METRICS,
    "two_layer": NETWORK_METRICS,
}
# ... and its defaults (``metrics`` left at the deep-linear default means the family's defaults).
FAMILY_DEFAULT_METRICS = {
    "deep_linear": DEFAULT_METRICS,
    "cp": TENSOR_DEFAULT_METRICS + ("component_norms",),
    "hierarchical": TENSOR_DEFAULT_METRICS + ("local_component_norms",),
    "mlp": NETWORK_DEFAULT_METRICS,
    "two_layer": NETWORK_DEFAULT_METRICS,
}


def _require(condition: bool, field_name: str, allowed: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{field_name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class ProblemConfig:
    """A problem on an m x n end-to-end matrix W (maps R^n to R^m).

    kind:
    - ``completion``: observe ``observations`` entries of W*, drawn uniformly without replacement.
    - ``sensing``: ``observations`` Gaussian measurements y_i = <A_i, W*>, A_i entries
      i.i.d. N(0, 1/(m n)).
      For both, W* = U V^T / sqrt(rank), U, V i.i.d. N(0, 1), rescaled so ||W*||_F^2 = m n.
    - ``regression``: l_p regression, loss (1/S) sum_i ||y_i - W x_i||_p^p over S samples
      (``observations``), from ``dataset``: ``synthetic`` (x ~ N(0, I_n), y = W* x, W* entries
      N(0, 1/n)), ``diabetes`` (scikit-learn's bundled copy; n = 10, m = 1, 442 samples) or ``csv``
      (``path``; last column the target, the others the n features). Real data are standardized:
      features and target to zero mean and unit variance.
    - ``whitened``: whitened regression (E[x x^T] = I), loss 1/2 ||W - Phi||_F^2 (Arora, Cohen,
      Golowich, Hu, ICLR 2019). Phi = U diag(s) V^T with random orthogonal U, V and
      s = ``target_singular_values`` (the first len(s) modes), or, when empty, Phi with i.i.d.
      N(0, 1/n) entries.
    - ``tensor_completion`` / ``tensor_sensing`` (Razin, Maman, Cohen, ICML 2021 / 2022): an order
      ``order`` tensor W* of shape (dim, ..., dim) with CP rank ``rank`` (``target=cp``) or
      hierarchical rank ``rank`` at every node of the mode tree (``target=hierarchical``), rescaled
      to ||W*||_F^2 = dim^order (mean squared entry 1); ``observations`` entries observed (stored as
      index arrays) or Gaussian measurements (see :mod:`trajlab.problems.tensor`). m and n are unused.
    - ``matricized_tensor_completion`` (model.kind deep_linear): the ``tensor_completion`` problem
      of the same fields (same W*, same observed entries) as completion of the m x n matrix
      W*.reshape(m, n), (m, n) = (dim^a, dim^(order - a)); the test error is the matrix one.
    - ``classification`` (small nonlinear networks): ``dataset`` ``digits`` (scikit-learn's bundled
      8 x 8 digits, 64 features, 10 classes; ``observations`` training images and ``test_samples``
      held-out ones) or ``separable_2d`` (Soudry et al. 2018's separable set in R^2, one output,
      labels +-1; ``observations`` points in all); m and n are unused (set by the data); ``loss`` ``cross_entropy`` (softmax,
      mean over samples), ``logistic`` (labels +-1, mean log(1 + exp(-y f))) or ``squared`` (mean
      over samples of the squared error to one-hot targets, summed over outputs).
    - ``teacher_student``: inputs x ~ N(0, I_n), targets y = f_teacher(x) of a random two-layer ReLU
      teacher with ``teacher_width`` hidden units (one output; m unused), squared loss (mean over samples);
      ``observations`` training samples and ``test_samples`` held-out ones.
      See :mod:`trajlab.problems.classification` for the exact data conventions.
    ``seed`` draws the data.

    dataset ``razin_cohen_2x2`` (completion only): the 2 x 2 matrix [[?, 1], [1, 0]] with its three
    known entries observed (Razin & Cohen, NeurIPS 2020, Section 3); it has no ground truth, so the
    test error is NaN. loss_convention (completion / sensing): ``mean`` squared error over the
    observations, or ``half_sum``: 1/2 sum of squared residuals (Razin & Cohen's convention).
    """

    kind: str = "completion"
    m: int = 100
    n: int = 100
    rank: int = 5
    observations: int = 2000
    seed: int = 0
    p: float = 2.0
    dataset: str = "synthetic"
    path: str | None = None
    target_singular_values: tuple[float, ...] = ()
    loss_convention: str = "mean"
    order: int = 4
    dim: int = 10
    target: str = "cp"
    loss: str = "cross_entropy"
    teacher_width: int = 50
    test_samples: int = 0

    def __post_init__(self) -> None:
        _require(self.kind in PROBLEM_KINDS, "problem.kind", f"one of {PROBLEM_KINDS}", self.kind)
        _require(self.m >= 1, "problem.m", "an integer >= 1", self.m)
        _require(self.n >= 1, "problem.n", "an integer >= 1", self.n)
        _require(2 <= self.order <= 12, "problem.order", "an integer in [2, 12]", self.order)
        _require(self.dim >= 1, "problem.dim", "an integer >= 1", self.dim)
        _require(self.target in TENSOR_TARGETS, "problem.target", f"one of {TENSOR_TARGETS}", self.target)
        _require(self.loss in NETWORK_LOSSES, "problem.loss", f"one of {NETWORK_LOSSES}", self.loss)
        _require(self.teacher_width >= 1, "problem.teacher_width", "an integer >= 1", self.teacher_width)
        _require(self.test_samples >= 0, "problem.test_samples", "an integer >= 0", self.test_samples)
        if self.kind in NETWORK_PROBLEM_KINDS:
            _require(self.observations >= 1, "problem.observations", "an integer >= 1 (training samples)", self.observations)
            if self.kind == "classification":
                _require(
                    self.dataset in NETWORK_DATASETS,
                    "problem.dataset",
                    f"one of {NETWORK_DATASETS} for problem.kind=classification",
                    self.dataset,
                )
                if self.dataset == "digits":
                    _require(
                        self.observations + self.test_samples <= 1797,
                        "problem.observations",
                        "at most 1797 - problem.test_samples for dataset digits (1797 images)",
                        self.observations,
                    )
                else:
                    _require(self.observations >= 4, "problem.observations", "an integer >= 4 for dataset separable_2d (its 4 support vectors)", self.observations)
                    _require(self.loss != "cross_entropy", "problem.loss", "logistic or squared for dataset separable_2d (one output)", self.loss)
                if self.loss == "logistic":
                    _require(self.dataset == "separable_2d", "problem.loss", "cross_entropy or squared for dataset digits (10 classes)", self.loss)
            else:
                _require(self.dataset == "synthetic", "problem.dataset", "synthetic for problem.kind=teacher_student", self.dataset)
            return
        if self.kind in TENSOR_PROBLEM_KINDS or self.kind == "matricized_tensor_completion":
            size = self.dim**self.order
            _require(size <= 10**7, "problem.dim", f"such that dim^order <= 1e7 (got {size} entries)", self.dim)
            _require(self.rank >= 1, "problem.rank", "an integer >= 1", self.rank)
            if self.kind == "matricized_tensor_completion":  # the tensor as a dim^a x dim^(order - a) matrix
                shapes = [(self.dim**a, self.dim ** (self.order - a)) for a in range(1, self.order)]
                _require((self.m, self.n) in shapes, "problem.m/n", f"one of {shapes} for {self.kind}", (self.m, self.n))
            _require(
                self.loss_convention in LOSS_CONVENTIONS, "problem.loss_convention", f"one of {LOSS_CONVENTIONS}", self.loss_convention
            )
            limit = 10**6 if self.kind == "tensor_sensing" else size
            _require(
                1 <= self.observations <= limit,
                "problem.observations",
                f"an integer in [1, {limit}] for {self.kind}",
                self.observations,
            )
            _require(self.dataset == "synthetic", "problem.dataset", f"synthetic for problem.kind={self.kind}", self.dataset)
            return
        _require(
            1 <= self.rank <= min(self.m, self.n),
            "problem.rank",
            f"an integer in [1, min(m, n)] = [1, {min(self.m, self.n)}]",
            self.rank,
        )
        if self.kind == "completion":
            _require(
                1 <= self.observations <= self.m * self.n,
                "problem.observations",
                f"an integer in [1, m*n] = [1, {self.m * self.n}] for completion",
                self.observations,
            )
        else:
            _require(
                self.observations >= 1,
                "problem.observations",
                "an integer >= 1 (number of measurements or samples)",
                self.observations,
            )
        _require(self.seed >= 0, "problem.seed", "an integer >= 0", self.seed)
        _require(self.p >= 1, "problem.p", "a number >= 1", self.p)
        _require(self.dataset in DATASETS, "problem.dataset", f"one of {DATASETS}", self.dataset)
        _require(
            self.loss_convention in LOSS_CONVENTIONS,
            "problem.loss_convention",
            f"one of {LOSS_CONVENTIONS}",
            self.loss_convention,
        )
        allowed = {"regression": ("synthetic", "diabetes", "csv"), "completion": ("synthetic", "razin_cohen_2x2")}
        _require(
            self.dataset in allowed.get(self.kind, ("synthetic",)),
            "problem.dataset",
            f"one of {allowed.get(self.kind, ('synthetic',))} for problem.kind={self.kind}",
            self.dataset,
        )
        if self.dataset == "razin_cohen_2x2":
            _require(
                (self.m, self.n, self.observations, self.rank) == (2, 2, 3, 1),
                "problem.m/n/observations/rank",
                "2, 2, 3 and 1 for dataset razin_cohen_2x2",
                (self.m, self.n, self.observations, self.rank),
            )
        if self.dataset == "csv":
            _require(bool(self.path), "problem.path", "a CSV file path when problem.dataset=csv", self.path)
        if self.dataset == "diabetes":
            _require(self.n == 10, "problem.n", "10 for dataset diabetes (its number of features)", self.n)
            _require(self.m == 1, "problem.m", "1 for dataset diabetes (one target)", self.m)
            _require(self.observations <= 442, "problem.observations", "at most 442 for dataset diabetes", self.observations)
        values = self.target_singular_values
        _require(
            len(values) <= min(self.m, self.n) and all(v > 0 for v in values),
            "problem.target_singular_values",
            f"at most min(m, n) = {min(self.m, self.n)} positive numbers",
            values,
        )


@dataclass(frozen=True)
class ModelConfig:
    """The model: by ``kind`` a deep linear network (default), a CP or a hierarchical tensor factorization.

    ``deep_linear``: W_e = W_N ... W_1 of depth N with equal hidden widths (fields below).
    ``cp``: CP factorization with ``width`` = R components (Razin, Maman, Cohen 2021);
    ``hierarchical``: hierarchical tensor factorization over the mode tree of
    :mod:`trajlab.models.tensor` with local width ``width`` at every non-root node and nodes of kind
    ``core`` (``product``: the factorization of Razin, Maman, Cohen 2022; ``tucker``: hierarchical
    Tucker). Tensor inits: ``gaussian`` (every factor entry N(0, scale^2): scale is the per-factor
    std of the papers) or, for CP, ``gaussian_e2e`` (E ||W||_F^2 = scale^2).
    ``mlp``: fully connected network with ``depth`` weight layers, hidden width ``width``,
    ``activation`` (linear, relu, quadratic z^2) between layers, biases if ``bias``;
    ``two_layer``: f(x) = sum_r a_r sigma(w_r^T x) with ``width`` hidden units. Network inits:
    ``xavier`` (Glorot & Bengio 2010), ``he``, or ``gaussian`` (every entry N(0, scale^2)); see
    :mod:`trajlab.models.mlp`.

    width: hidden width of every hidden layer; ``None`` means max(m, n).
    init / scale: see :class:`trajlab.models.deep_linear.DeepLinear`.
    condition: ``positive_det`` conditions the init on det(W_e(0)) > 0 (square W_e only): a draw with
    det < 0 has the first column of W_1 negated, which maps the Gaussian (and balanced) measures
    onto themselves and flips the sign of det(W_e), so the result is exactly the conditional law.
    parameterization: ``factorized`` trains the layers; ``end_to_end`` trains W_e itself under the
    end-to-end dynamics of depth N (Arora, Cohen, Hazan, ICML 2018), started from the product of
    the initialized layers (see :mod:`trajlab.dynamics.end_to_end`).
    """

    depth: int = 3
    width: int | None = None
    init: str = "gaussian_e2e"
    scale: float = 1e-3
    parameterization: str = "factorized"
    condition: str = "none"
    kind: str = "deep_linear"
    core: str = "product"
    activation: str = "relu"
    bias: bool = False

    def __post_init__(self) -> None:
        _require(self.kind in MODEL_KINDS, "model.kind", f"one of {MODEL_KINDS}", self.kind)
        _require(self.activation in ACTIVATIONS, "model.activation", f"one of {ACTIVATIONS}", self.activation)
        if self.kind in ("mlp", "two_layer"):
            allowed = NETWORK_INIT_SCHEMES if self.kind == "mlp" else ("gaussian", "balanced_random")
            _require(self.init in allowed, "model.init", f"one of {allowed} for model.kind={self.kind}", self.init)
            _require(self.width is not None, "model.width", f"an integer >= 1 for model.kind={self.kind} (hidden width)", self.width)
        else:
            _require(
                self.init not in ("xavier", "he"),
                "model.init",
                "gaussian_e2e, gaussian, identity, orthogonal or balanced_random for model.kind=deep_linear",
                self.init,
            )
        _require(self.core in HIERARCHICAL_CORES, "model.core", f"one of {HIERARCHICAL_CORES}", self.core)
        if self.kind in ("cp", "hierarchical"):
            allowed = ("gaussian", "gaussian_e2e") if self.kind == "cp" else ("gaussian",)
            _require(self.init in allowed, "model.init", f"one of {allowed} for model.kind={self.kind}", self.init)
            _require(self.width is not None, "model.width", f"an integer >= 1 for model.kind={self.kind} (components or local width)", self.width)
        _require(self.depth >= 1, "model.depth", "an integer >= 1", self.depth)
        _require(
            self.width is None or self.width >= 1, "model.width", "an integer >= 1 or null", self.width
        )
        _require(self.init in INIT_SCHEMES, "model.init", f"one of {INIT_SCHEMES}", self.init)
        _require(self.scale > 0, "model.scale", "a number > 0", self.scale)
        _require(self.condition in INIT_CONDITIONS, "model.condition", f"one of {INIT_CONDITIONS}", self.condition)
        _require(
            self.parameterization in PARAMETERIZATIONS,
            "model.parameterization",
            f"one of {PARAMETERIZATIONS}",
            self.parameterization,
        )


@dataclass(frozen=True)
class OptimizerConfig:
    """The update rule. ``lr`` is the step size eta; time t = step * lr.

    ``gradient_flow`` integrates d theta/dt = -grad L(theta) with the solver of ``flow``; there
    ``lr`` is the time unit that maps steps to time, so GD and GF trajectories share the time axis.

    momentum: used by ``momentum`` and ``nesterov``. b1, b2, eps: Adam.  decay: RMSprop /
    normalized GD EMA coefficient (alpha). ``normalized_gd`` is *not* plain GD: see
    :func:`trajlab.dynamics.normalized_gd`; ``normalized_eps`` is its eps (1e-4 as in the published
    deep matrix factorization code; the hierarchical tensor factorization code uses 1e-6, which
    matters when gradients at init are far below 1e-4). batch_size: 0 for full-batch gradients; k > 0 for
    stochastic gradients on k samples drawn without replacement at every step (network problems;
    stopping and divergence still look at the full train loss).
    """

    name: str = "normalized_gd"
    lr: float = 1e-3
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    decay: float = 0.99
    batch_size: int = 0
    normalized_eps: float = 1e-4

    def __post_init__(self) -> None:
        _require(self.name in OPTIMIZERS, "optimizer.name", f"one of {OPTIMIZERS}", self.name)
        _require(self.normalized_eps > 0, "optimizer.normalized_eps", "a number > 0", self.normalized_eps)
        _require(self.batch_size >= 0, "optimizer.batch_size", "an integer >= 0 (0: full batch)", self.batch_size)
        _require(
            self.batch_size == 0 or self.name != "gradient_flow",
            "optimizer.batch_size",
            "0 for optimizer.name=gradient_flow",
            self.batch_size,
        )
        _require(self.lr > 0, "optimizer.lr", "a number > 0", self.lr)
        _require(0 <= self.momentum < 1, "optimizer.momentum", "a number in [0, 1)", self.momentum)
        _require(0 <= self.b1 < 1, "optimizer.b1", "a number in [0, 1)", self.b1)
        _require(0 <= self.b2 < 1, "optimizer.b2", "a number in [0, 1)", self.b2)
        _require(self.eps >= 0, "optimizer.eps", "a number >= 0", self.eps)
        _require(0 < self.decay < 1, "optimizer.decay", "a number in (0, 1)", self.decay)


@dataclass(frozen=True)
class FlowConfig:
    """Gradient flow solver (diffrax), used by ``optimizer.name=gradient_flow`` and by the
    ``distance_to_flow`` metrics.

    solver: ``tsit5`` or ``dopri5`` (adaptive, PID step-size controller with rtol / atol), or
    ``rk4`` (fixed step, dt = optimizer.lr). max_solver_steps: the most solver steps between two
    recording points (always explicit; a run that needs more is marked ``diverged``).
    """

    solver: str = "tsit5"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_solver_steps: int = 100_000

    def __post_init__(self) -> None:
        _require(self.solver in FLOW_SOLVERS, "flow.solver", f"one of {FLOW_SOLVERS}", self.solver)
        _require(self.rtol > 0, "flow.rtol", "a number > 0", self.rtol)
        _require(self.atol > 0, "flow.atol", "a number > 0", self.atol)
        _require(self.max_solver_steps >= 1, "flow.max_solver_steps", "an integer >= 1", self.max_solver_steps)


@dataclass(frozen=True)
class TrainConfig:
    """Stopping and recording.

    A run stops as ``done`` once its train loss <= tol, as ``max_steps`` after max_steps updates,
    and as ``diverged`` once its loss is non-finite or exceeds diverge_factor * max(1, loss at
    step 0). Metrics are recorded at step 0, at the recording steps, and at each run's last step.
    record = ``log``: ``record_points`` log-spaced steps in [1, max_steps] (deduplicated integers);
    ``linear``: every ``record_every`` steps.
    """

    max_steps: int = 1_000_000
    tol: float = 1e-6
    record: str = "log"
    record_points: int = 100
    record_every: int = 1000
    top_k: int = 10
    schatten_p: float = 0.5
    diverge_factor: float = 1e6
    x64: bool = False
    lanczos_iterations: int = 20
    hutchinson_probes: int = 10

    def __post_init__(self) -> None:
        _require(self.max_steps >= 1, "train.max_steps", "an integer >= 1", self.max_steps)
        _require(self.tol >= 0, "train.tol", "a number >= 0", self.tol)
        _require(self.record in RECORD_SCHEDULES, "train.record", f"one of {RECORD_SCHEDULES}", self.record)
        _require(self.record_points >= 1, "train.record_points", "an integer >= 1", self.record_points)
        _require(self.record_every >= 1, "train.record_every", "an integer >= 1", self.record_every)
        _require(self.top_k >= 1, "train.top_k", "an integer >= 1", self.top_k)
        _require(0 < self.schatten_p <= 1, "train.schatten_p", "a number in (0, 1]", self.schatten_p)
        _require(self.diverge_factor > 1, "train.diverge_factor", "a number > 1", self.diverge_factor)
        _require(self.lanczos_iterations >= 2, "train.lanczos_iterations", "an integer >= 2", self.lanczos_iterations)
        _require(self.hutchinson_probes >= 1, "train.hutchinson_probes", "an integer >= 1", self.hutchinson_probes)


@dataclass(frozen=True)
class RunConfig:
    """One run: problem, model, optimizer, training, the init ``seed`` and the recorded metrics."""

    problem: ProblemConfig = field(default_factory=ProblemConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    seed: int = 0
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", "an integer >= 0", self.seed)
        kind = self.model.kind
        _require(
            self.problem.kind in MODEL_PROBLEMS[kind],
            "problem.kind",
            f"one of {MODEL_PROBLEMS[kind]} for model.kind={kind}",
            self.problem.kind,
        )
        if kind != "deep_linear" and tuple(self.metrics) == DEFAULT_METRICS:
            # The deep-linear default stands for "this family's defaults".
            object.__setattr__(self, "metrics", FAMILY_DEFAULT_METRICS[kind])
        if kind != "deep_linear":
            allowed_metrics = FAMILY_METRICS[kind]
            unknown = [m for m in self.metrics if m not in allowed_metrics]
            _require(not unknown, "metrics", f"a list drawn from {allowed_metrics} for model.kind={kind}", unknown)
            if kind in ("cp", "hierarchical"):
                _require(self.optimizer.batch_size == 0, "optimizer.batch_size", f"0 for model.kind={kind}", self.optimizer.batch_size)
            else:
                _require(
                    self.optimizer.batch_size <= self.problem.observations,
                    "optimizer.batch_size",
                    f"an integer in [0, problem.observations] = [0, {self.problem.observations}]",
                    self.optimizer.batch_size,
                )
            for name in ("parameterization", "condition"):
                default = getattr(ModelConfig, name)
                value = getattr(self.model, name)
                _require(value == default, f"model.{name}", f"{default} for model.kind={kind}", value)
            return
        if self.model.init == "balanced_random" and self.model.depth > 1 and self.model.width is not None:
            smallest = min(self.problem.m, self.problem.n)
            _require(
                self.model.width >= smallest,
                "model.width",
                f"an integer >= min(m, n) = {smallest} for init balanced_random",
                self.model.width,
            )
        unknown = [m for m in self.metrics if m not in METRICS]
        _require(not unknown, "metrics", f"a list drawn from {METRICS}", unknown or self.metrics)
        if self.model.condition == "positive_det":
            _require(
                self.problem.m == self.problem.n,
                "model.condition",
                "none unless problem.m == problem.n (det needs a square end-to-end matrix)",
                self.model.condition,
            )
        _require(self.optimizer.batch_size == 0, "optimizer.batch_size", "0 for model.kind=deep_linear", self.optimizer.batch_size)
        if self.model.parameterization == "end_to_end":
            allowed = ("gd", "gradient_flow")
            _require(
                self.optimizer.name in allowed,
                "optimizer.name",
                f"one of {allowed} with model.parameterization=end_to_end",
                self.optimizer.name,
            )


# Fields vmapped inside one compiled batch; every other field is static.
BATCHED_FIELDS = ("seed", "optimizer.lr", "model.scale")


def list_fields(cls: type = RunConfig) -> set[str]:
    """Dotted names of tuple-typed fields: for these a list is the value, not a sweep."""
    return {name for name, value in to_flat(cls()).items() if isinstance(value, list)}


def to_flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config tree to ``{dotted.name: value}`` (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(value):
            out.update(to_flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def from_flat(flat: dict[str, Any], cls: type = RunConfig) -> Any:
    """Inverse of :func:`to_flat` (missing fields take their defaults)."""
    return replace_dotted(cls(), flat)


def field_names(cls: type = RunConfig) -> list[str]:
    return list(to_flat(cls()).keys())


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert a parsed value to the field's declared type, or raise ConfigError."""
    text = str(annotation)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{name} must not be null")
    if annotation is bool or text == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if text.startswith("int") or annotation is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or float(value) != int(value)
        ):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if annotation is float or text == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str or text == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if "float" in text:
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"{name} must be a list of numbers, got {value!r}") from None
            if not all(math.isfinite(v) for v in numbers):
                raise ConfigError(f"{name} must be a list of finite numbers, got {value!r}")
            return numbers
        return tuple(value)
    return value


def replace_dotted(config: Any, updates: dict[str, Any]) -> Any:
    """Return ``config`` with fields set by dotted name; unknown names raise ConfigError."""
    known = field_names(type(config))
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in known:
            raise ConfigError(f"unknown config field {key!r}; known fields: {', '.join(known)}")
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    hints = get_type_hints(type(config))
    kwargs: dict[str, Any] = {}
    for name, value in direct.items():
        kwargs[name] = _coerce(value, hints[name], name)
    for head, sub in nested.items():
        child = getattr(config, head)
        child_hints = get_type_hints(type(child))
        coerced = {k: _coerce(v, child_hints[k], f"{head}.{k}") for k, v in sub.items()}
        kwargs[head] = dataclasses.replace(child, **coerced)
    return dataclasses.replace(config, **kwargs)


# Fields added after the first release: left out of the run id while at their defaults, so the
# ids of existing sweep folders (and their resume) survive the addition.
_LATER_FIELDS = (
    "problem.order",
    "problem.dim",
    "problem.target",
    "problem.loss",
    "problem.teacher_width",
    "problem.test_samples",
    "model.kind",
    "model.core",
    "model.activation",
    "model.bias",
    "optimizer.batch_size",
    "optimizer.normalized_eps",
    "train.lanczos_iterations",
    "train.hutchinson_probes",
)


def run_id(config: RunConfig) -> str:
    """A stable 16-hex-digit hash of the whole config (sorted JSON of the flat dict; fields added
    later are left out while they hold their defaults)."""
    flat = to_flat(config)
    defaults = to_flat(RunConfig())
    for name in _LATER_FIELDS:
        if flat[name] == defaults[name]:
            del flat[name]
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def static_key(config: RunConfig) -> tuple:
    """Everything except the batched fields: runs with equal keys share one compiled batch."""
    flat = to_flat(config)
    return tuple(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(flat.items()) if k not in BATCHED_FIELDS
    )

"""Matrix problems on an m x n end-to-end matrix W (maps R^n to R^m): completion, sensing, l_p
regression, whitened regression. Their ``loss`` is a loss of the matrix W, so any family producing
a matrix (the deep linear network's end-to-end product) can solve them.

- ``completion``: observe ``observations`` entries of W*, drawn uniformly without replacement;
  ``sensing``: ``observations`` Gaussian measurements y_i = <A_i, W*>, A_i entries i.i.d.
  N(0, 1/(m n)). For both, W* = U V^T / sqrt(rank), U, V i.i.d. N(0, 1), rescaled so
  ||W*||_F^2 = m n (Arora, Cohen, Hu, Luo 2019). ``loss_convention``: ``mean`` squared error over
  the observations, or ``half_sum`` = 1/2 sum of squared residuals (Razin & Cohen 2020).
  Completion's ``dataset=razin_cohen_2x2``: the 2 x 2 matrix [[?, 1], [1, 0]] with its three known
  entries observed (Razin & Cohen, NeurIPS 2020, Sec. 3); it has no ground truth (test error NaN).
- ``regression``: l_p regression, loss (1/S) sum_i ||y_i - W x_i||_p^p over S = ``observations``
  samples of ``dataset``: ``synthetic`` (x ~ N(0, I_n), y = W* x, W* entries N(0, 1/n)),
  ``diabetes`` (scikit-learn's bundled copy; n = 10, m = 1, 442 samples) or ``csv`` (``path``; last
  column the target). Real data are standardized (zero mean, unit variance).
- ``whitened``: whitened regression (E[x x^T] = I), loss 1/2 ||W - Phi||_F^2 (Arora, Cohen,
  Golowich, Hu, ICLR 2019); Phi = U diag(s) V^T with random orthogonal U, V and
  s = ``target_singular_values``, or, when empty, i.i.d. N(0, 1/n) entries.

``seed`` draws the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from trajlab.config import require
from trajlab.registry import Problem, register_problem

LOSS_CONVENTIONS = ("mean", "half_sum")


def _check_shape(config) -> None:
    require(isinstance(config.m, int) and 1 <= config.m <= 10**6, "problem.m", "an integer in [1, 10^6]", config.m)
    require(isinstance(config.n, int) and 1 <= config.n <= 10**6, "problem.n", "an integer in [1, 10^6]", config.n)
    require(0 <= config.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", config.seed)


def _check_low_rank(config) -> None:
    _check_shape(config)
    require(
        1 <= config.rank <= min(config.m, config.n),
        "problem.rank",
        f"an integer in [1, min(m, n)] = [1, {min(config.m, config.n)}]",
        config.rank,
    )
    require(config.loss_convention in LOSS_CONVENTIONS, "problem.loss_convention", f"one of {LOSS_CONVENTIONS}", config.loss_convention)


@dataclass(frozen=True)
class CompletionConfig:
    """Matrix completion (see the module docstring)."""

    m: int = 100
    n: int = 100
    rank: int = 5
    observations: int = 2000
    seed: int = 0
    dataset: str = "synthetic"
    loss_convention: str = "mean"

    def __post_init__(self) -> None:
        _check_low_rank(self)
        require(
            1 <= self.observations <= self.m * self.n,
            "problem.observations",
            f"an integer in [1, m*n] = [1, {self.m * self.n}] for completion",
            self.observations,
        )
        datasets = ("synthetic", "razin_cohen_2x2")
        require(self.dataset in datasets, "problem.dataset", f"one of {datasets} for problem.kind=completion", self.dataset)
        if self.dataset == "razin_cohen_2x2":
            require(
                (self.m, self.n, self.observations, self.rank) == (2, 2, 3, 1),
                "problem.m/n/observations/rank",
                "2, 2, 3 and 1 for dataset razin_cohen_2x2",
                (self.m, self.n, self.observations, self.rank),
            )


@dataclass(frozen=True)
class SensingConfig:
    """Gaussian matrix sensing (see the module docstring)."""

    m: int = 100
    n: int = 100
    rank: int = 5
    observations: int = 2000
    seed: int = 0
    loss_convention: str = "mean"

    def __post_init__(self) -> None:
        _check_low_rank(self)
        require(self.observations >= 1, "problem.observations", "an integer >= 1 (number of measurements)", self.observations)


@dataclass(frozen=True)
class RegressionConfig:
    """l_p regression (see the module docstring)."""

    m: int = 1
    n: int = 10
    observations: int = 442
    seed: int = 0
    p: float = 2.0
    dataset: str = "synthetic"
    path: str | None = None

    def __post_init__(self) -> None:
        _check_shape(self)
        require(self.observations >= 1, "problem.observations", "an integer >= 1 (samples)", self.observations)
        require(self.p >= 1, "problem.p", "a number >= 1", self.p)
        datasets = ("synthetic", "diabetes", "csv")
        require(self.dataset in datasets, "problem.dataset", f"one of {datasets} for problem.kind=regression", self.dataset)
        require(self.path is None or isinstance(self.path, str), "problem.path", "a string (a CSV file path) or null", self.path)
        if self.dataset == "csv":
            require(bool(self.path), "problem.path", "a CSV file path when problem.dataset=csv", self.path)
        if self.dataset == "diabetes":
            require(self.n == 10, "problem.n", "10 for dataset diabetes (its number of features)", self.n)
            require(self.m == 1, "problem.m", "1 for dataset diabetes (one target)", self.m)
            require(self.observations <= 442, "problem.observations", "at most 442 for dataset diabetes", self.observations)


@dataclass(frozen=True)
class WhitenedConfig:
    """Whitened regression to a target Phi (see the module docstring)."""

    m: int = 4
    n: int = 6
    seed: int = 0
    target_singular_values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_shape(self)
        values = self.target_singular_values
        require(
            len(values) <= min(self.m, self.n) and all(v > 0 for v in values),
            "problem.target_singular_values",
            f"at most min(m, n) = {min(self.m, self.n)} positive numbers",
            values,
        )


def _matrix_data(config):
    from trajlab.problems.matrix import make_matrix_problem

    return make_matrix_problem(config)


def _squared_error_loss(config):
    """Mean squared error over the observations, or 1/2 their sum (``loss_convention=half_sum``)."""
    from trajlab.problems.matrix import train_loss

    if config.loss_convention == "half_sum":
        observations = config.observations
        return lambda w, data: 0.5 * observations * train_loss(w, data)
    return train_loss


def _regression_data(config):
    from trajlab.problems.regression import make_regression

    return make_regression(config)


def _lp_loss(config):
    from trajlab.problems.regression import lp_loss

    p = config.p
    return lambda w, data: lp_loss(w, data.inputs, data.outputs, p)


def _whitened_data(config):
    from trajlab.problems.regression import make_whitened

    return make_whitened(config)


def _whitened_loss(config):
    from trajlab.problems.regression import whitened_loss

    return lambda w, data: whitened_loss(w, data.target)


# --- memory of the data (bytes, float64 on the host, at the peak of drawing it), for the checks
# made before any run (trajlab.engine.memory); computed from the fields, nothing drawn.

_F64, _I32 = 8, 4


def _target_nbytes(m: int, n: int, rank: int) -> int:
    """W* = U V^T / sqrt(rank), rescaled: U, V, and about three m x n temporaries."""
    return _F64 * ((m + n) * rank + 3 * m * n)


def completion_nbytes(config) -> int:
    """Target, observed indices and values; drawing M of m n entries without replacement may
    permute all m n indices (numpy's Generator.choice)."""
    if getattr(config, "dataset", "synthetic") == "razin_cohen_2x2":
        return 1024
    m, n, observations = config.m, config.n, config.observations
    return _target_nbytes(m, n, config.rank) + _F64 * m * n + (2 * _I32 + 2 * _F64) * observations


def sensing_nbytes(config) -> int:
    """Target and the (observations, m n) measurement matrix (drawn, then scaled: two copies)."""
    m, n, observations = config.m, config.n, config.observations
    return _target_nbytes(m, n, config.rank) + 2 * _F64 * observations * m * n + 2 * _F64 * observations


def regression_nbytes(config) -> int:
    """Synthetic: W*, inputs (S, n) and outputs (S, m). A CSV: its text, the parsed table and the
    standardized copies (at most one number per two bytes of the file)."""
    samples = config.observations
    if config.dataset == "csv":
        try:
            size = os.path.getsize(config.path)
        except (OSError, TypeError, ValueError):
            size = 0
        return 2 * size + 2 * _F64 * (size // 2 + 1)  # bytes and text; the table and its standardized copy
    if config.dataset == "diabetes":
        return 442 * 11 * _F64 * 4
    return _F64 * (config.m * config.n + samples * (config.n + config.m) * 2)


def whitened_nbytes(config) -> int:
    """Phi (m x n) and the orthogonal factors (QR of m x m and n x n Gaussian matrices)."""
    m, n = config.m, config.n
    return _F64 * (3 * m * n + 3 * (m * m + n * n))


def regression_files(config) -> tuple[str, ...]:
    """The CSV file of ``dataset=csv`` (its content hash is part of the run id)."""
    return (config.path,) if config.dataset == "csv" and isinstance(config.path, str) and config.path else ()


register_problem(Problem("completion", CompletionConfig, _matrix_data, _squared_error_loss, "matrix completion",
                         nbytes=completion_nbytes))
register_problem(Problem("sensing", SensingConfig, _matrix_data, _squared_error_loss, "Gaussian matrix sensing",
                         nbytes=sensing_nbytes))
register_problem(Problem("regression", RegressionConfig, _regression_data, _lp_loss, "l_p regression",
                         nbytes=regression_nbytes, data_files=regression_files))
register_problem(Problem("whitened", WhitenedConfig, _whitened_data, _whitened_loss, "whitened regression",
                         nbytes=whitened_nbytes))

"""Tensor problems (Razin, Maman, Cohen, ICML 2021 / 2022): an order-``order`` tensor W* of shape
(dim, ..., dim) with CP rank ``rank`` (``target=cp``) or hierarchical rank ``rank`` at every node
of the mode tree (``target=hierarchical``), rescaled to ||W*||_F^2 = dim^order (mean squared entry
1); ``tensor_completion`` observes ``observations`` entries (stored as index arrays),
``tensor_sensing`` takes ``observations`` Gaussian measurements (see :mod:`trajlab.problems.tensor`).

``matricized_tensor_completion`` is the ``tensor_completion`` problem of the same fields (same W*,
same observed entries) as completion of the matrix W*.reshape(m, n) with m = dim^row_modes rows
(the first ``row_modes`` modes) and n = dim^(order - row_modes) columns: what a matrix family (deep
linear) solves on the same observations as the tensor factorizations.
"""

from __future__ import annotations

from dataclasses import dataclass

from trajlab.config import require
from trajlab.families.matrix_problems import LOSS_CONVENTIONS, _squared_error_loss
from trajlab.registry import Problem, register_problem

TENSOR_TARGETS = ("cp", "hierarchical")


@dataclass(frozen=True)
class TensorCompletionConfig:
    """Tensor completion (see the module docstring)."""

    order: int = 4
    dim: int = 10
    rank: int = 5
    observations: int = 2000
    seed: int = 0
    target: str = "cp"
    loss_convention: str = "mean"

    def _limit(self) -> int:
        return self.dim**self.order

    def __post_init__(self) -> None:
        require(2 <= self.order <= 12, "problem.order", "an integer in [2, 12]", self.order)
        require(self.dim >= 1, "problem.dim", "an integer >= 1", self.dim)
        size = self.dim**self.order
        require(size <= 10**7, "problem.dim", f"such that dim^order <= 1e7 (got {size} entries)", self.dim)
        require(self.rank >= 1, "problem.rank", "an integer >= 1", self.rank)
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(self.target in TENSOR_TARGETS, "problem.target", f"one of {TENSOR_TARGETS}", self.target)
        require(self.loss_convention in LOSS_CONVENTIONS, "problem.loss_convention", f"one of {LOSS_CONVENTIONS}", self.loss_convention)
        limit = self._limit()
        require(
            1 <= self.observations <= limit,
            "problem.observations",
            f"an integer in [1, {limit}] for problem.kind={getattr(type(self), 'kind', 'tensor_completion')}",
            self.observations,
        )


@dataclass(frozen=True)
class TensorSensingConfig(TensorCompletionConfig):
    """Tensor sensing: Gaussian measurements (see the module docstring)."""

    def _limit(self) -> int:
        return 10**6


@dataclass(frozen=True)
class MatricizedTensorCompletionConfig(TensorCompletionConfig):
    """Tensor completion seen as completion of the dim^row_modes x dim^(order - row_modes) matricization."""

    row_modes: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            1 <= self.row_modes < self.order, "problem.row_modes", f"an integer in [1, order - 1] = [1, {self.order - 1}]",
            self.row_modes,
        )

    @property
    def m(self) -> int:
        return self.dim**self.row_modes

    @property
    def n(self) -> int:
        return self.dim ** (self.order - self.row_modes)


def _tensor_data(config):
    from trajlab.problems.tensor import make_tensor_problem

    return make_tensor_problem(config)


def _matricized_data(config):
    from trajlab.problems.tensor import make_matricized_tensor_completion

    return make_matricized_tensor_completion(config)


def _target_nbytes(config) -> int:
    """W* (dense, float64) with the temporaries of drawing and rescaling it (about three copies)."""
    entries = config.dim**config.order
    return 8 * (3 * entries + config.order * config.dim * config.rank * config.rank)


def completion_nbytes(config) -> int:
    """Target, a permutation of its entries (numpy's choice without replacement), the observed
    multi-indices (int32 and the int64 temporaries of unravel_index) and values."""
    entries, observations = config.dim**config.order, config.observations
    return _target_nbytes(config) + 8 * entries + observations * (12 * config.order + 16)


def sensing_nbytes(config) -> int:
    """Target and the (observations, dim^order) measurement matrix (drawn, then scaled: two copies)."""
    return _target_nbytes(config) + 2 * 8 * config.observations * config.dim**config.order + 16 * config.observations


def matricized_nbytes(config) -> int:
    """The tensor completion data plus the rows, columns and flat indices of the matrix."""
    return completion_nbytes(config) + 24 * config.observations


register_problem(Problem("tensor_completion", TensorCompletionConfig, _tensor_data, description="tensor completion",
                         nbytes=completion_nbytes))
register_problem(Problem("tensor_sensing", TensorSensingConfig, _tensor_data, description="tensor sensing",
                         nbytes=sensing_nbytes))
register_problem(
    Problem(
        "matricized_tensor_completion", MatricizedTensorCompletionConfig, _matricized_data, _squared_error_loss,
        "tensor completion as completion of a matricization", nbytes=matricized_nbytes,
    )
)

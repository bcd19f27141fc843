"""Problems: data + loss + test error."""

from trajlab.problems.matrix import (
    MatrixData,
    completion_loss,
    low_rank_target,
    make_matrix_problem,
    reconstruction_error,
    sensing_loss,
    train_loss,
)
from trajlab.problems.registry import loss_function, make_data, test_error
from trajlab.problems.regression import (
    RegressionData,
    WhitenedData,
    load_csv,
    lp_loss,
    make_regression,
    make_whitened,
    whitened_loss,
)

__all__ = [
    "MatrixData",
    "RegressionData",
    "WhitenedData",
    "completion_loss",
    "load_csv",
    "loss_function",
    "low_rank_target",
    "lp_loss",
    "make_data",
    "make_matrix_problem",
    "make_regression",
    "make_whitened",
    "reconstruction_error",
    "sensing_loss",
    "test_error",
    "train_loss",
    "whitened_loss",
]

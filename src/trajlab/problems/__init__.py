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

__all__ = [
    "MatrixData",
    "completion_loss",
    "low_rank_target",
    "make_matrix_problem",
    "reconstruction_error",
    "sensing_loss",
    "train_loss",
]

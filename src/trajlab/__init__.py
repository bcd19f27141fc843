"""trajlab: a laboratory for the trajectories of gradient descent."""

import os as _os

# The metrics' SVDs go through scipy's OpenBLAS; its threads fight XLA's on small matrices and
# made 100 x 100 SVDs 200x slower on a busy 2-core machine (docs/benchmarks.md). Set before
# anything loads OpenBLAS; a value the user set wins.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

from trajlab.config import (
    ModelConfig,
    OptimizerConfig,
    ProblemConfig,
    RunConfig,
    TrainConfig,
    run_id,
)
from trajlab.errors import ConfigError, TrajlabError
from trajlab.store import SweepData, load

__all__ = [
    "ConfigError",
    "ModelConfig",
    "OptimizerConfig",
    "ProblemConfig",
    "RunConfig",
    "SweepData",
    "TrainConfig",
    "TrajlabError",
    "load",
    "run_id",
]

"""trajlab: a laboratory for the trajectories of gradient descent."""

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

"""Problems of small nonlinear networks (see :mod:`trajlab.problems.classification` for the data).

- ``classification``: ``dataset`` ``digits`` (scikit-learn's bundled 8 x 8 digits, 64 features, 10
  classes; ``observations`` training images and ``test_samples`` held-out ones) or ``separable_2d``
  (Soudry et al. 2018's separable set in R^2, one output, labels +-1; ``observations`` points in
  all, its 4 support vectors among them). ``loss``: ``cross_entropy`` (softmax, mean over
  samples), ``logistic`` (labels +-1, mean log(1 + exp(-y f))) or ``squared`` (mean over samples of
  the squared error to one-hot targets, summed over outputs).
- ``teacher_student``: inputs x ~ N(0, I_n), targets y = f_teacher(x) of a random two-layer ReLU
  teacher with ``teacher_width`` hidden units (orthonormal rows when teacher_width <= n, else
  Gaussian rows; one output), squared loss (mean over samples); ``observations`` training samples
  and ``test_samples`` held-out ones.

``seed`` draws the data (digits: a seeded permutation picks the samples).
"""

from __future__ import annotations

from dataclasses import dataclass

from trajlab.config import require
from trajlab.registry import Problem, register_problem

NETWORK_DATASETS = ("digits", "separable_2d")
NETWORK_LOSSES = ("cross_entropy", "logistic", "squared")


@dataclass(frozen=True)
class ClassificationConfig:
    """Classification on digits or the separable 2-D set (see the module docstring)."""

    dataset: str = "digits"
    observations: int = 500
    test_samples: int = 0
    seed: int = 0
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(self.dataset in NETWORK_DATASETS, "problem.dataset", f"one of {NETWORK_DATASETS} for problem.kind=classification", self.dataset)
        require(self.loss in NETWORK_LOSSES, "problem.loss", f"one of {NETWORK_LOSSES}", self.loss)
        require(self.observations >= 1, "problem.observations", "an integer >= 1 (training samples)", self.observations)
        require(self.test_samples >= 0, "problem.test_samples", "an integer >= 0", self.test_samples)
        if self.dataset == "digits":
            require(
                self.observations + self.test_samples <= 1797,
                "problem.observations",
                "at most 1797 - problem.test_samples for dataset digits (1797 images)",
                self.observations,
            )
            require(self.loss != "logistic", "problem.loss", "cross_entropy or squared for dataset digits (10 classes)", self.loss)
        else:
            require(self.observations >= 4, "problem.observations", "an integer >= 4 for dataset separable_2d (its 4 support vectors)", self.observations)
            require(self.observations <= 10**6, "problem.observations", "at most 10^6 for dataset separable_2d", self.observations)
            require(self.loss != "cross_entropy", "problem.loss", "logistic or squared for dataset separable_2d (one output)", self.loss)


@dataclass(frozen=True)
class TeacherStudentConfig:
    """Regression on a two-layer ReLU teacher (see the module docstring)."""

    n: int = 50
    teacher_width: int = 50
    observations: int = 1000
    test_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require(0 <= self.seed < 2**63, "problem.seed", "an integer in [0, 2^63)", self.seed)
        require(1 <= self.n <= 10**5, "problem.n", "an integer in [1, 10^5] (input dimension)", self.n)
        require(self.teacher_width >= 1, "problem.teacher_width", "an integer >= 1", self.teacher_width)
        require(self.observations >= 1, "problem.observations", "an integer >= 1 (training samples)", self.observations)
        require(self.test_samples >= 0, "problem.test_samples", "an integer >= 0", self.test_samples)


def network_data(config):
    """The data of a ``classification`` / ``teacher_student`` section (see the module docstring)."""
    from trajlab.problems import classification

    if config.kind == "teacher_student":
        teacher = "orthonormal" if config.teacher_width <= config.n else "gaussian"
        return classification.make_teacher_student(
            config.n, config.teacher_width, config.observations, config.test_samples, seed=config.seed, teacher=teacher
        )
    if config.dataset == "digits":
        size = config.observations + config.test_samples
        return classification.make_digits(size, config.test_samples / size, seed=config.seed)
    return classification.make_soudry_separable(config.observations - 4, seed=config.seed)


def network_nbytes(config) -> int:
    """Train and test inputs and targets (float64, with the temporaries of drawing them); digits:
    the bundled 1797 x 64 images; teacher-student: also the teacher's weights (an orthonormal
    teacher: the QR of an n x n Gaussian matrix)."""
    samples = config.observations + config.test_samples
    if config.kind == "teacher_student":
        orthonormal = 3 * config.n * config.n if config.teacher_width <= config.n else 0  # QR of n x n
        return 8 * (3 * samples * (config.n + 1) + 3 * config.teacher_width * (config.n + 1) + orthonormal)
    if config.dataset == "digits":
        return 8 * 4 * 1797 * 65
    return 8 * 3 * samples * 3


register_problem(Problem("classification", ClassificationConfig, network_data, description="digits or the separable 2-D set",
                         nbytes=network_nbytes))
register_problem(Problem("teacher_student", TeacherStudentConfig, network_data, description="two-layer ReLU teacher",
                         nbytes=network_nbytes))

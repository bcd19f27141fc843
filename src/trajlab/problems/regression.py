"""Regression problems for deep linear networks.

- l_p regression (Arora, Cohen, Hazan, ICML 2018, Section 5): loss (1/S) sum_i ||y_i - W x_i||_p^p
  over S samples, W of shape (m, n); p = 4 is where depth accelerates gradient descent.
- Whitened regression (Arora, Cohen, Golowich, Hu, ICLR 2019; Saxe, McClelland, Ganguli, ICLR
  2014): with whitened inputs the squared loss is, up to a constant, 1/2 ||W - Phi||_F^2.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from trajlab.config import ProblemConfig
from trajlab.errors import ConfigError


class RegressionData(NamedTuple):
    inputs: np.ndarray  # X, (S, n)
    outputs: np.ndarray  # Y, (S, m)
    target: np.ndarray | None  # W* for synthetic data, (m, n); None for real data


class WhitenedData(NamedTuple):
    target: np.ndarray  # Phi, (m, n)


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1)


def _check_path(path) -> Path:
    """``problem.path`` as a Path: a string (or os.PathLike) naming an existing regular file."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"problem.path must be a string (a CSV file path), got {path!r}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"problem.path: no such file {str(path)!r}")
    return path


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"problem.path: cannot read {str(path)!r} ({error.strerror or error})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"problem.path: {str(path)!r} is not a text CSV file (byte {error.start} is not UTF-8)"
        ) from None


def load_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, target) from a numeric CSV: last column the target; a header row is skipped.

    Every cell must be a finite number: a file that is not UTF-8 text, a ragged or non-numeric
    row, or a NaN / inf cell is a one-line :class:`~trajlab.errors.ConfigError` naming the file
    (and the row and column of the first bad cell), raised before any run.

    Suits e.g. the UCI "Gas Sensor Array Drift at Different Concentrations" ethanol task
    exported as 128 feature columns and one concentration column.
    """
    path = _check_path(path)
    text = _read_text(path)
    if "\x00" in text:
        raise ConfigError(f"problem.path: {str(path)!r} is not a text CSV file (it contains NUL bytes)")
    lines = text.splitlines()
    first = lines[0] if lines else ""
    try:
        [float(v) for v in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1
    header = [v.strip() for v in first.split(",")] if skip else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: reported below
            table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except (ValueError, TypeError, IndexError, OverflowError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise ConfigError(f"problem.path: {str(path)!r} is not a numeric CSV ({reason})") from None
    if table.shape[0] == 0:
        raise ConfigError(f"problem.path: {str(path)!r} has no data rows")
    if table.shape[1] < 2:
        raise ConfigError(f"problem.path: {str(path)!r} needs at least one feature column and a target column")
    finite = np.isfinite(table)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        name = f" ({header[column]!r})" if header and column < len(header) else ""
        line = _line_of_row(lines, skip, row)
        raise ConfigError(
            f"problem.path: {str(path)!r} has a non-finite value ({float(table[row, column])}) at data row {row + 1} "
            f"(line {line}), column {column + 1}{name}; every cell must be a finite number"
        )
    return table[:, :-1], table[:, -1]


def _line_of_row(lines: list[str], skip: int, row: int) -> int:
    """1-based line number of data row ``row`` (0-based), skipping the header and blank or comment
    lines as np.loadtxt does."""
    seen = -1
    for number, line in enumerate(lines[skip:], start=skip + 1):
        content = line.split("#", 1)[0].strip()
        if content:
            seen += 1
            if seen == row:
                return number
    return row + skip + 1


def make_regression(config: ProblemConfig) -> RegressionData:
    """Samples of ``config.dataset`` (see :class:`trajlab.config.ProblemConfig`)."""
    rng = np.random.default_rng(config.seed)
    if config.dataset == "synthetic":
        target = rng.standard_normal((config.m, config.n)) / np.sqrt(config.n)
        inputs = rng.standard_normal((config.observations, config.n))
        return RegressionData(inputs, inputs @ target.T, target)
    if config.dataset == "diabetes":
        from sklearn.datasets import load_diabetes

        features, values = load_diabetes(return_X_y=True)
    else:
        features, values = load_csv(config.path)
    if features.shape[1] != config.n:
        raise ConfigError(f"problem.n must equal the number of features ({features.shape[1]}) of the data set")
    if config.m != 1:
        raise ConfigError("problem.m must be 1 for a data set with one target column")
    if config.observations > features.shape[0]:
        raise ConfigError(f"problem.observations must be at most the number of samples ({features.shape[0]})")
    chosen = np.sort(rng.permutation(features.shape[0])[: config.observations])
    inputs, outputs = _standardize(features[chosen]), _standardize(values[chosen])[:, None]
    if not (np.all(np.isfinite(inputs)) and np.all(np.isfinite(outputs))):
        where = f"problem.path: {str(config.path)!r}" if config.dataset == "csv" else f"problem.dataset={config.dataset}"
        raise ConfigError(f"{where}: values too large to standardize (overflow to inf); rescale the data")
    return RegressionData(inputs, outputs, None)


def make_whitened(config: ProblemConfig) -> WhitenedData:
    """Phi with the given singular values on random orthogonal modes, or i.i.d. N(0, 1/n) entries."""
    rng = np.random.default_rng(config.seed)
    values = np.asarray(config.target_singular_values, float)
    if values.size == 0:
        return WhitenedData(rng.standard_normal((config.m, config.n)) / np.sqrt(config.n))
    left, _ = np.linalg.qr(rng.standard_normal((config.m, config.m)))
    right, _ = np.linalg.qr(rng.standard_normal((config.n, config.n)))
    k = values.size
    return WhitenedData((left[:, :k] * values[None, :]) @ right[:, :k].T)


def lp_loss(w, inputs, outputs, p: float):
    """(1/S) sum_i sum_k |Y_ik - (X W^T)_ik|^p."""
    residual = outputs - inputs @ w.T
    return jnp.sum(jnp.abs(residual) ** p) / inputs.shape[0]


def whitened_loss(w, target):
    """1/2 ||W - Phi||_F^2."""
    return 0.5 * jnp.sum((w - target) ** 2)

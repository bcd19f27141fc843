"""Classification and teacher-student regression: losses (pure JAX) and data sets (numpy).

Data are drawn with numpy from ``seed`` (float64), so a problem is the same whatever the JAX backend
or precision; losses and accuracies are pure JAX functions of the network outputs.

Losses (all means over the S samples; Soudry et al. 2018 write the logistic loss as a sum, which is
S times the mean here, i.e. the same trajectory with the step size multiplied by S):

- :func:`softmax_cross_entropy`: (1/S) sum_i -log softmax(f(x_i))_{y_i}, integer labels.
- :func:`logistic_loss`: (1/S) sum_i log(1 + exp(-y_i f(x_i))), labels +-1, evaluated as
  softplus(-y f) = logaddexp(0, -y f), finite for any |f| (no overflow of exp).
- :func:`squared_loss`: (1/S) sum_i ||f(x_i) - y_i||^2 (no factor 1/2, as the matrix problems).

Data sets (:class:`ClassificationData`, :class:`TeacherStudentData`):

- :func:`make_digits`: scikit-learn's bundled handwritten digits (UCI optdigits test part), 1797
  images of 8 x 8 pixels with values 0..16, flattened to 64 features and divided by 16 (so in
  [0, 1]); labels 0..9. A seeded permutation picks an optional subset, then the last
  round(test_fraction * size) samples of it form the test split.
- :func:`make_soudry_separable`: the 2-D separable set of Soudry, Hoffer, Nacson, Gunasekar, Srebro
  (JMLR 2018, Fig. 1): support vectors (0.5, 1.5) and (1.5, 0.5) labelled +1, their negatives
  labelled -1, so the hard-margin (no bias) SVM solution is w_svm = (1/2, 1/2) with
  ||w_svm|| = 1/sqrt(2) and normalized margin min_i y_i <w_svm, x_i> / ||w_svm|| = sqrt(2) (derivation
  in the function's docstring). Extra points are drawn off the margin by rejection (rule in the
  docstring), which leaves w_svm unchanged.
- :func:`make_teacher_student`: Gaussian inputs x ~ N(0, I_d) and a two-layer ReLU teacher
  y = sum_{r=1}^k relu(<w*_r, x>) with unit output weights and orthonormal rows w*_r (Safran & Shamir,
  ICML 2018), or Gaussian rows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ClassificationData(NamedTuple):
    """Train and test samples; labels are int class indices (multi-class) or +-1 floats (binary)."""

    inputs: np.ndarray  # (S, d)
    labels: np.ndarray  # (S,)
    test_inputs: np.ndarray  # (T, d); T = 0 when there is no test split
    test_labels: np.ndarray  # (T,)


class TeacherStudentData(NamedTuple):
    """Regression samples of a two-layer ReLU teacher y = sum_r a*_r relu(<w*_r, x>)."""

    inputs: np.ndarray  # (S, d)
    outputs: np.ndarray  # (S,), with label noise if any
    test_inputs: np.ndarray  # (T, d)
    test_outputs: np.ndarray  # (T,), noiseless
    teacher_hidden: np.ndarray  # rows w*_r, (k, d)
    teacher_output: np.ndarray  # a*_r, (k,)


# --- losses ---------------------------------------------------------------------------------


def softmax_cross_entropy(logits, labels):
    """(1/S) sum_i [logsumexp(z_i) - z_i[y_i]] for logits z (S, C) and integer labels y (S,)."""
    log_probabilities = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probabilities, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return -jnp.mean(picked)


def logistic_loss(outputs, labels):
    """(1/S) sum_i log(1 + exp(-y_i f_i)) for labels y in {-1, +1}; ``outputs`` (S,) or (S, 1).

    Computed as logaddexp(0, -y f), exact to rounding for any finite margin (e.g. y f = -1000 gives
    1000, y f = 1000 gives exp(-1000) ~ 0 without overflow).
    """
    margins = labels * outputs.reshape(labels.shape)
    return jnp.mean(jnp.logaddexp(0.0, -margins))


def squared_loss(outputs, targets):
    """(1/S) sum_i ||f_i - y_i||^2 over the leading (sample) axis; shapes must match."""
    residual = outputs - targets
    return jnp.sum(residual**2) / residual.shape[0]


def accuracy(logits, labels):
    """Fraction of samples with argmax_c z_ic == y_i (multi-class; ties go to the first class)."""
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))


def binary_accuracy(outputs, labels):
    """Fraction of samples with y_i f_i > 0 (labels +-1; f_i = 0 counts as an error)."""
    return jnp.mean((labels * outputs.reshape(labels.shape) > 0).astype(outputs.dtype))


# --- data -----------------------------------------------------------------------------------


def make_digits(subset: int | None = None, test_fraction: float = 0.2, seed: int = 0) -> ClassificationData:
    """scikit-learn's digits (1797 x 64, features / 16 in [0, 1], labels 0..9 as int32).

    A permutation drawn from ``seed`` orders the samples; the first ``subset`` (all when None) are
    used, of which the last round(test_fraction * subset) form the test split.
    """
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    total = features.shape[0]
    size = total if subset is None else int(subset)
    if not 1 <= size <= total:
        raise ValueError(f"subset must be in [1, {total}], got {subset}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(total)[:size]
    test = int(round(test_fraction * size))
    train_index, test_index = order[: size - test], order[size - test :]
    x = features.astype(np.float64) / 16.0
    y = labels.astype(np.int32)
    return ClassificationData(x[train_index], y[train_index], x[test_index], y[test_index])


SOUDRY_SUPPORT_VECTORS = np.array([[0.5, 1.5], [1.5, 0.5], [-0.5, -1.5], [-1.5, -0.5]])
SOUDRY_SUPPORT_LABELS = np.array([1.0, 1.0, -1.0, -1.0])
SOUDRY_MAX_MARGIN = np.array([0.5, 0.5])  # w_svm = argmin ||w|| s.t. y_i <w, x_i> >= 1
SOUDRY_MARGIN = float(np.sqrt(2.0))  # min_i y_i <w_svm, x_i> / ||w_svm||


def make_soudry_separable(extra_points: int = 0, delta: float = 0.5, spread: float = 2.0,
                          seed: int = 0) -> ClassificationData:
    """Soudry et al. (2018, Fig. 1) 2-D separable set: 4 support vectors plus ``extra_points``.

    Max-margin direction: the constraints y_i <w, x_i> >= 1 read 0.5 w_1 + 1.5 w_2 >= 1 and
    1.5 w_1 + 0.5 w_2 >= 1 (the negatives give the same). The KKT point w = sum_i lambda_i y_i x_i
    with lambda_1 = lambda_2 = 1/4 (both active) is w_svm = (1/2, 1/2): ||w_svm|| = 1/sqrt(2), unit
    direction w_hat = (1, 1)/sqrt(2), normalized margin y <w_hat, x> = 2/sqrt(2) = sqrt(2).

    Extra points (rule): x ~ N(0, spread^2 I_2) drawn from ``seed``, kept only when
    |<w_hat, x>| >= sqrt(2) + delta (``delta`` > 0: off the margin), labelled y = sign(<w_hat, x>),
    until ``extra_points`` are kept. They satisfy y <w_svm, x> >= 1 + delta / sqrt(2) > 1, so w_svm
    stays feasible and, the feasible set only shrinking, optimal. Labels are +-1 float64; no test
    split (empty arrays).
    """
    if delta <= 0:
        raise ValueError(f"delta must be > 0 (points strictly off the margin), got {delta}")
    rng = np.random.default_rng(seed)
    direction = SOUDRY_MAX_MARGIN / np.linalg.norm(SOUDRY_MAX_MARGIN)
    kept = []
    count = 0
    while count < extra_points:
        draw = spread * rng.standard_normal((max(2 * extra_points, 16), 2))
        draw = draw[np.abs(draw @ direction) >= SOUDRY_MARGIN + delta]
        kept.append(draw)
        count += draw.shape[0]
    extra = np.concatenate(kept)[:extra_points] if kept else np.zeros((0, 2))
    inputs = np.concatenate([SOUDRY_SUPPORT_VECTORS, extra])
    labels = np.concatenate([SOUDRY_SUPPORT_LABELS, np.sign(extra @ direction)])
    return ClassificationData(inputs, labels, np.zeros((0, 2)), np.zeros((0,)))


def make_teacher_student(input_dim: int, teacher_hidden: int, train_size: int, test_size: int = 1000,
                         seed: int = 0, noise: float = 0.0, teacher: str = "orthonormal") -> TeacherStudentData:
    """Teacher-student regression with a two-layer ReLU teacher and Gaussian inputs.

    y = sum_{r=1}^k relu(<w*_r, x>) (a*_r = 1), x ~ N(0, I_d). ``teacher``: ``orthonormal`` rows w*_r
    (the first k rows of a Haar-random orthogonal matrix, k <= d; Safran & Shamir 2018) or
    ``gaussian`` rows with i.i.d. N(0, 1/d) entries. Train outputs get i.i.d. N(0, noise^2) noise;
    test outputs are noiseless.
    """
    rng = np.random.default_rng(seed)
    if teacher == "orthonormal":
        if teacher_hidden > input_dim:
            raise ValueError(
                f"an orthonormal teacher needs teacher_hidden <= input_dim, got {teacher_hidden} > {input_dim}"
            )
        q, r = np.linalg.qr(rng.standard_normal((input_dim, input_dim)))
        q = q * np.sign(np.diag(r))[None, :]  # Haar measure (Mezzadri 2007)
        hidden = q.T[:teacher_hidden]
    elif teacher == "gaussian":
        hidden = rng.standard_normal((teacher_hidden, input_dim)) / np.sqrt(input_dim)
    else:
        raise ValueError(f"teacher must be 'orthonormal' or 'gaussian', got {teacher!r}")
    output = np.ones(teacher_hidden)
    inputs = rng.standard_normal((train_size, input_dim))
    test_inputs = rng.standard_normal((test_size, input_dim))

    def teach(x):
        return np.maximum(x @ hidden.T, 0.0) @ output

    outputs = teach(inputs) + noise * rng.standard_normal(train_size)
    return TeacherStudentData(inputs, outputs, test_inputs, teach(test_inputs), hidden, output)

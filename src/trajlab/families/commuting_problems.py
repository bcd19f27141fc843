"""Matrix sensing with symmetric, pairwise commuting measurement matrices (``problem.kind=commuting_sensing``).

The setting of Gunasekar, Woodworth, Bhojanapalli, Neyshabur & Srebro ("Implicit Regularization in
Matrix Factorization", NeurIPS 2017, Sec. 3) and of Arora, Cohen, Hu & Luo ("Implicit
Regularization in Deep Matrix Factorization", NeurIPS 2019, Sec. 3): every measurement matrix is
diagonal in one orthonormal basis Q (d x d, drawn from ``seed`` as the QR factor of a Gaussian
matrix, column signs fixed),

    A_i = Q diag(a_i) Q^T,   y_i = <A_i, X_ref>,   loss(W) = (1/M) sum_i (<A_i, W> - y_i)^2

(the ``mean`` convention of :mod:`trajlab.problems.matrix`; A is stored row-major as an (M, d^2)
sensing matrix, so the loss, test error and every deep-linear metric are those of ``sensing``).
Since <A_i, W> = sum_k a_ik (Q^T W Q)_kk, the measurements see only the *spectral coordinates*
z(W) = diag(Q^T W Q): the problem is the linear system A z = y with A = [a_ik] (M x d), and for a
Q-diagonal W = Q diag(z) Q^T the nuclear norm is ||z||_1 (the trace when z >= 0) and the
Schatten-p quasi-norm is ||z||_p.

The data's ``target`` is X_ref = Q diag(z_ref) Q^T, a minimum nuclear-norm solution (so
``test_error`` = ||W - X_ref||_F^2 / ||X_ref||_F^2 measures the distance to it). Two instances:

- ``instance=certified`` (``dim`` = d, ``observations`` = M random measurements, ``rank`` = r <= M):
  z_ref has r nonzero entries, uniform in [1, 2], on a random support S. A dual certificate is
  built in: draw A0 with i.i.d. N(0, 1/d) entries and nu ~ N(0, I_M), set c_k = 1 on S and c_k
  uniform in [-CERTIFICATE_MARGIN, CERTIFICATE_MARGIN] off S, and A = A0 + nu (c - A0^T nu)^T / |nu|^2,
  so that A^T nu = c. Then sum_i nu_i A_i = Q diag(c) Q^T has operator norm 1, and for every X with
  A(X) = y, ||X||_* >= <Q diag(c) Q^T, X> = nu^T y = c^T z_ref = ||X_ref||_*: X_ref is a minimum
  nuclear-norm solution over *all* d x d matrices, and (|c_k| < 1 off S, A_S of full column rank)
  the unique one among the matrices diagonal in Q (the l1 minimizer of A z = y is unique). For
  r >= 2 it is not unique among all matrices: every PSD Z with diag(Q^T Z Q) = z_ref and support in
  the S x S block has the same trace; but X_ref is the point of that set closest to any Q-diagonal
  matrix, so ||W - X_ref||_F is the distance from a Q-diagonal W to the whole set of minimizers
  (and an upper bound on it for any W).
- ``instance=symmetric_face`` (``dim`` = d = 2k even, k >= 2; ``observations`` = d - 1; ``rank`` =
  d): the swap sigma of the coordinate pairs (0 1)(2 3)... is a symmetry of the instance. The
  measurements are the trace, a_0 = (1, ..., 1) / sqrt(d), and k - 1 pairs (e_j + f_j, e_j - f_j) / sqrt(2)
  with e_j orthonormal sigma-invariant vectors orthogonal to a_0 and f_j orthonormal
  sigma-anti-invariant ones (QR of Gaussian draws projected on the two subspaces), so the d - 1 rows
  are orthonormal (A A^T = I: no slow direction) and sigma swaps the two rows of a pair; z_ref = z°
  is sigma-invariant with pair values uniform in [1, 2], y = A z°.
  Because the trace is measured, ||X||_* >= tr X = sqrt(d) y_0 for every feasible X, with equality
  for every PSD feasible X: the minimum nuclear-norm solutions are (among others) the whole *face*
  F = {Q diag(z) Q^T : z >= 0, A z = y}, here a segment z° + t v, |t| <= t_max, where v spans the
  null space of A (sigma v = -v) and t_max = min_k z°_k / |v_k|. z° is the only sigma-invariant
  point of A z = y (the k x k system on sigma-invariant vectors is nonsingular, checked) and lies in
  the relative interior of F. See :mod:`trajlab.presets.commuting` for why it minimizes no
  Schatten quasi-norm, not even locally.

:func:`commuting_instance` returns the whole construction (basis, spectra, certificate, face);
the registered ``data`` returns the :class:`~trajlab.problems.matrix.MatrixData` the loss reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from trajlab.config import require
from trajlab.errors import ConfigError
from trajlab.registry import Problem, register_problem

INSTANCES = ("certified", "symmetric_face")
#: Off the support the certificate c = A^T nu has |c_k| <= this (< 1: z_ref is the unique l1 minimizer).
CERTIFICATE_MARGIN = 0.5
#: The largest dimension (d x d matrices; the sensing matrix is M x d^2 dense).
MAX_DIM = 200
_F64 = 8


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class CommutingSensingConfig:
    """Sensing with commuting measurements A_i = Q diag(a_i) Q^T (see :mod:`trajlab.families.commuting_problems`).

    ``dim``: d (the matrix is d x d); ``instance``: ``certified`` or ``symmetric_face``;
    ``observations``: M (``symmetric_face``: d - 1); ``rank``: the rank of the reference minimizer
    X_ref (``symmetric_face``: d); ``seed`` draws Q and the instance.
    """

    dim: int = 10
    instance: str = "certified"
    observations: int = 6
    rank: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        require(_is_int(self.dim) and 2 <= self.dim <= MAX_DIM, "problem.dim", f"an integer in [2, {MAX_DIM}]", self.dim)
        require(
            self.instance in INSTANCES, "problem.instance", f"one of {INSTANCES} for problem.kind=commuting_sensing",
            self.instance,
        )
        require(_is_int(self.seed) and 0 <= self.seed < 2**32, "problem.seed", "an integer in [0, 2^32)", self.seed)
        d = self.dim
        if self.instance == "certified":
            require(
                _is_int(self.observations) and 1 <= self.observations <= d, "problem.observations",
                f"an integer in [1, dim] = [1, {d}] for instance certified", self.observations,
            )
            require(
                _is_int(self.rank) and 1 <= self.rank <= self.observations, "problem.rank",
                f"an integer in [1, observations] = [1, {self.observations}] for instance certified", self.rank,
            )
        else:
            require(d % 2 == 0 and d >= 4, "problem.dim", "an even integer >= 4 for instance symmetric_face", d)
            require(
                self.observations == d - 1, "problem.observations", f"dim - 1 = {d - 1} for instance symmetric_face",
                self.observations,
            )
            require(self.rank == d, "problem.rank", f"dim = {d} for instance symmetric_face (z° > 0)", self.rank)

    # the deep linear family reads the shape of W as problem.m x problem.n
    @property
    def m(self) -> int:
        return self.dim

    @property
    def n(self) -> int:
        return self.dim


class CommutingInstance(NamedTuple):
    """The construction of one ``commuting_sensing`` section (numpy float64).

    basis: Q (d, d), orthogonal; spectra: A (M, d), row i = a_i; values: y (M,);
    reference_spectrum: z_ref (d,); reference: X_ref = Q diag(z_ref) Q^T;
    certificate: nu (M,) with A^T nu = c, ``dual``: c (d,) (``symmetric_face``: nu = sqrt(d) e_0, c = all ones);
    face_direction: v (d,), unit, A v = 0, its largest even-indexed entry positive (``symmetric_face``
    only, else None); face_extent: t_max
    (z_ref + t v >= 0 for |t| <= t_max; NaN for ``certified``).
    """

    basis: np.ndarray
    spectra: np.ndarray
    values: np.ndarray
    reference_spectrum: np.ndarray
    reference: np.ndarray
    certificate: np.ndarray
    dual: np.ndarray
    face_direction: np.ndarray | None
    face_extent: float


def _basis(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def _pair_swap(d: int) -> np.ndarray:
    """sigma as an index array: 0<->1, 2<->3, ..."""
    return np.arange(d) ^ 1


def commuting_instance(config: CommutingSensingConfig) -> CommutingInstance:
    """Draw the instance of ``config`` (deterministic in its fields; see the module docstring)."""
    d = config.dim
    rng = np.random.default_rng(config.seed)
    basis = _basis(d, rng)
    if config.instance == "certified":
        m, r = config.observations, config.rank
        support = np.sort(rng.choice(d, size=r, replace=False))
        z = np.zeros(d)
        z[support] = rng.uniform(1.0, 2.0, size=r)
        a0 = rng.standard_normal((m, d)) / np.sqrt(d)
        nu = rng.standard_normal(m)
        c = rng.uniform(-CERTIFICATE_MARGIN, CERTIFICATE_MARGIN, size=d)
        c[support] = 1.0
        spectra = a0 + np.outer(nu, c - a0.T @ nu) / (nu @ nu)
        if np.linalg.matrix_rank(spectra[:, support]) < r:  # probability 0
            raise ConfigError(f"problem.seed must draw measurements of full rank on the support, got {config.seed!r}")
        direction, extent = None, float("nan")
    else:
        k = d // 2
        swap = _pair_swap(d)
        pairs = rng.uniform(1.0, 2.0, size=k)
        z = np.repeat(pairs, 2)
        # orthonormal sigma-invariant e_j (orthogonal to the all-ones vector) and sigma-anti-invariant f_j
        draws = rng.standard_normal((2, d, k - 1))
        invariant_part = np.column_stack([np.ones(d), (draws[0] + draws[0][swap]) / 2])
        even = np.linalg.qr(invariant_part)[0][:, 1:]
        odd = np.linalg.qr((draws[1] - draws[1][swap]) / 2)[0]
        rows = [np.ones(d) / np.sqrt(d)]
        for j in range(k - 1):
            rows += [(even[:, j] + odd[:, j]) / np.sqrt(2), (even[:, j] - odd[:, j]) / np.sqrt(2)]
        spectra = np.array(rows)  # orthonormal rows; sigma swaps the two rows of a pair
        # on sigma-invariant vectors z = P w (P repeats each pair value) the system is (A P) w = y
        # (the two rows of a pair agree there: keep the trace and the first row of each pair)
        invariant = (spectra @ np.repeat(np.eye(k), 2, axis=0))[[0, *range(1, d - 1, 2)]]
        _, _, vt = np.linalg.svd(spectra)
        if np.linalg.matrix_rank(spectra) != d - 1 or np.linalg.cond(invariant) > 1e8:  # probability 0
            raise ConfigError(f"problem.seed must draw a non-degenerate symmetric instance, got {config.seed!r}")
        lead = 2 * int(np.argmax(np.abs(vt[-1][0::2])))  # v_sigma(k) = -v_k: fix the sign on even entries
        direction = vt[-1] * np.sign(vt[-1][lead])
        nu = np.zeros(len(rows))
        nu[0] = np.sqrt(d)  # sum_i nu_i A_i = I
        c = np.ones(d)
        moving = np.abs(direction) > 1e-12
        extent = float(np.min(z[moving] / np.abs(direction[moving])))
    values = spectra @ z
    reference = (basis * z[None, :]) @ basis.T
    return CommutingInstance(basis, spectra, values, z, reference, nu, c, direction, extent)


def measurement_matrices(instance: CommutingInstance) -> np.ndarray:
    """A_i = Q diag(a_i) Q^T, shape (M, d, d)."""
    q = instance.basis
    return np.einsum("ik,mk,jk->mij", q, instance.spectra, q)


def spectral_matrix(instance: CommutingInstance, spectrum) -> np.ndarray:
    """Q diag(spectrum) Q^T."""
    q = instance.basis
    return (q * np.asarray(spectrum, dtype=np.float64)[None, :]) @ q.T


def _data(config: CommutingSensingConfig):
    from trajlab.problems.matrix import MatrixData

    instance = commuting_instance(config)
    matrices = measurement_matrices(instance)
    sensing = matrices.reshape(matrices.shape[0], -1)  # row-major vec: <A_i, W> = sensing[i] @ W.ravel()
    return MatrixData(instance.reference, None, None, sensing, instance.values)


def _loss(config: CommutingSensingConfig):
    from trajlab.problems.matrix import train_loss

    return train_loss


def commuting_nbytes(config: CommutingSensingConfig) -> int:
    """Q, the spectra, the (M, d, d) measurement matrices and their (M, d^2) copy, X_ref."""
    d, m = config.dim, (config.observations if config.instance == "certified" else config.dim - 1)
    return _F64 * (4 * d * d + 3 * m * d * d + 4 * m * d)


register_problem(
    Problem(
        "commuting_sensing", CommutingSensingConfig, _data, _loss,
        "matrix sensing with commuting measurements A_i = Q diag(a_i) Q^T", nbytes=commuting_nbytes,
        families=("deep_linear",),
    )
)

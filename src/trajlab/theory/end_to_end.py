"""End-to-end dynamics of deep linear networks (Arora, Cohen, Hazan, ICML 2018).

For a depth-N linear network with balanced layers (W_{j+1}^T W_{j+1} = W_j W_j^T), gradient flow
on the layers induces on the end-to-end matrix W = W_N ... W_1 the dynamics (their Theorem 1)

    dW/dt = -P_W(grad L(W)),
    P_W(G) = sum_{j=1..N} (W W^T)^((j-1)/N) G (W^T W)^((N-j)/N),

and the discrete version W <- W - eta P_W(grad L(W)) (their Eq. (10)). Fractional powers of the
positive semi-definite factors are taken by symmetric eigendecomposition, with eigenvalues
clamped at 0 (round-off) and the convention A^0 = I.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def psd_power(a, power: float):
    """A^power for symmetric positive semi-definite A, by eigendecomposition (A^0 = I).

    Values are exact up to round-off; derivatives are not defined where A is singular and
    0 < power < 1 (x^power has infinite slope at 0) and come out NaN there, which is the honest
    answer: e.g. the end-to-end field of a rectangular W is not differentiable in W.
    """
    if power == 0:
        return jnp.eye(a.shape[0], dtype=a.dtype)
    values, vectors = jnp.linalg.eigh((a + a.T) / 2)
    values = jnp.clip(values, 0, None) ** power
    return (vectors * values[None, :]) @ vectors.T


def preconditioner_apply(w, g, depth: int):
    """P_W(G) = sum_{j=1..N} (W W^T)^((j-1)/N) G (W^T W)^((N-j)/N); P_W = identity for N = 1."""
    left = w @ w.T
    right = w.T @ w
    total = jnp.zeros_like(g)
    for j in range(1, depth + 1):
        total = total + psd_power(left, (j - 1) / depth) @ g @ psd_power(right, (depth - j) / depth)
    return total


def preconditioner_matrix(w, depth: int):
    """P_W as a dense (m n) x (m n) matrix acting on row-major vec(G); for small sizes only.

    P_W is symmetric positive semi-definite (Arora et al. 2018, Claim 1 / Eq. (12)).
    """
    m, n = w.shape
    basis = jnp.eye(m * n, dtype=w.dtype).reshape(m * n, m, n)
    columns = jax.vmap(lambda e: preconditioner_apply(w, e, depth).reshape(-1))(basis)
    return columns.T


def end_to_end_step(w, grad, depth: int, lr):
    """One step of the discrete end-to-end dynamics: W - lr P_W(grad)."""
    return w - lr * preconditioner_apply(w, grad, depth)


def singular_value_velocity(w, grad, depth: int):
    """Predicted d sigma_r / dt = -N sigma_r^(2 - 2/N) <grad L(W), u_r v_r^T> for every r.

    Arora, Cohen, Hu, Luo (NeurIPS 2019), Theorem 3, valid along gradient flow from a balanced
    initialization while the singular values are distinct. Returns one value per singular value
    of the thin SVD, in descending order of sigma.
    """
    u, sigma, vt = jnp.linalg.svd(w, full_matrices=False)
    projections = jnp.einsum("ir,ij,rj->r", u, grad, vt)
    return -depth * sigma ** (2 - 2 / depth) * projections


def deficiency_margin(w, target):
    """c = sigma_min(Phi) - ||W - Phi||_F: the largest c with ||W - Phi||_F <= sigma_min(Phi) - c.

    W has deficiency margin c > 0 with respect to the target Phi when this is positive (Arora,
    Cohen, Golowich, Hu, ICLR 2019, Definition 2); sigma_min is the min(m, n)-th singular value.
    """
    sigma_min = jnp.linalg.svd(target, compute_uv=False)[-1]
    return sigma_min - jnp.sqrt(jnp.sum((w - target) ** 2))


def is_delta_balanced(layers, delta: float):
    """True when ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F <= delta for every j (ICLR 2019, Definition 1)."""
    from trajlab.metrics.balancedness import balancedness

    return balancedness(layers) <= delta


def linear_convergence_bound(loss0, lr, margin, depth: int, steps):
    """loss(0) (1 - eta c^(2(N-1)/N))^t: the linear rate of Arora et al. (ICLR 2019), Theorem 1.

    For whitened regression loss 1/2 ||W - Phi||_F^2, balanced init with deficiency margin c and
    a small enough step size eta.
    """
    return loss0 * (1 - lr * margin ** (2 * (depth - 1) / depth)) ** steps

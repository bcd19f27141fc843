"""Spectral functions of a matrix, from its singular values sigma_1 >= sigma_2 >= ... >= 0."""

from __future__ import annotations

import jax.numpy as jnp


def singular_values(w):
    """Singular values of W in descending order."""
    return jnp.linalg.svd(w, compute_uv=False)


def top_singular_values(sigma, k: int):
    """The k largest singular values, zero-padded when W has fewer than k."""
    if sigma.shape[-1] >= k:
        return sigma[..., :k]
    pad = [(0, 0)] * (sigma.ndim - 1) + [(0, k - sigma.shape[-1])]
    return jnp.pad(sigma, pad)


def effective_rank(sigma):
    """exp(H(p)), p_i = sigma_i / sum_j sigma_j, H the Shannon entropy (0 log 0 = 0).

    Roy & Vetterli, "The effective rank", EUSIPCO 2007; used as the rank measure of Arora, Cohen,
    Hu, Luo (NeurIPS 2019). Between 1 (rank one) and rank(W); k for k equal nonzero values.
    The zero matrix gets effective rank 0 by convention.
    """
    total = jnp.sum(sigma, axis=-1, keepdims=True)
    p = sigma / jnp.where(total > 0, total, 1)
    safe = jnp.where(p > 0, p, 1)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0), axis=-1)
    return jnp.where(total[..., 0] > 0, jnp.exp(entropy), 0)


def nuclear_norm(sigma):
    """||W||_* = sum_i sigma_i (Schatten-1 norm)."""
    return jnp.sum(sigma, axis=-1)


def schatten_quasi_norm(sigma, p: float):
    """||W||_{S_p} = (sum_i sigma_i^p)^(1/p); a quasi-norm for 0 < p < 1 (p = 1: nuclear norm)."""
    return jnp.sum(sigma**p, axis=-1) ** (1.0 / p)


def frobenius_norm(w):
    """||W||_F = sqrt(sum_ij W_ij^2)."""
    return jnp.sqrt(jnp.sum(w**2))

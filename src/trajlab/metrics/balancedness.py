"""Balancedness of a deep linear network and distances in parameter space.

Arora, Cohen, Hazan (ICML 2018), Theorem 1: under gradient flow on a deep linear network the
differences D_j = W_{j+1}^T W_{j+1} - W_j W_j^T (j = 1, ..., N-1) are constant in time; they are
zero for a balanced initialization.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def balancedness_gaps(layers):
    """||W_{j+1}^T W_{j+1} - W_j W_j^T||_F for j = 1..N-1 (an empty array for N = 1)."""
    gaps = [
        jnp.sqrt(jnp.sum((upper.T @ upper - lower @ lower.T) ** 2))
        for lower, upper in zip(layers[:-1], layers[1:])
    ]
    if not gaps:
        return jnp.zeros((0,), layers[0].dtype)
    return jnp.stack(gaps)


def balancedness(layers):
    """max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F (0 for depth 1)."""
    gaps = balancedness_gaps(layers)
    return jnp.max(gaps) if gaps.shape[0] else jnp.zeros((), layers[0].dtype)


def balancedness_relative(layers):
    """max_j ||W_{j+1}^T W_{j+1} - W_j W_j^T||_F / ((||W_{j+1}||_F^2 + ||W_j||_F^2) / 2).

    Scale-free: 0 for balanced layers, at most 2 (since ||A^T A||_F <= ||A||_F^2). 0 for depth 1.
    """
    if len(layers) == 1:
        return jnp.zeros((), layers[0].dtype)
    gaps = balancedness_gaps(layers)
    squared = jnp.stack([jnp.sum(layer**2) for layer in layers])
    mean_sq = (squared[:-1] + squared[1:]) / 2
    return jnp.max(gaps / jnp.where(mean_sq > 0, mean_sq, 1))


def distance_from_init(layers, initial_layers):
    """sqrt(sum_j ||W_j - W_j(0)||_F^2): Euclidean distance in parameter space.

    Any two parameter pytrees of the same structure (layers, tensor factors, network weights).
    """
    squares = jax.tree_util.tree_map(lambda w, w0: jnp.sum((w - w0) ** 2), layers, initial_layers)
    return jnp.sqrt(sum(jax.tree_util.tree_leaves(squares)))

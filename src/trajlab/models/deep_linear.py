"""Deep linear networks / deep matrix factorization (Arora, Cohen, Hu, Luo, NeurIPS 2019).

Convention: parameters are a tuple of layers (W_1, ..., W_N) with W_j of shape (d_j, d_{j-1}),
d_0 = n (input), d_N = m (output), hidden widths d_1 = ... = d_{N-1} = ``width`` (default
max(m, n)). The end-to-end matrix is W_e = W_N W_{N-1} ... W_1, of shape (m, n); depth N = 1 is
the plain (unfactorized) matrix.

Initializations (``scale`` > 0 is the ``model.scale`` config field):

- ``gaussian_e2e``: the end-to-end-scale convention of the published deep matrix factorization
  code: every layer i.i.d. N(0, std^2) with std = scale^(1/N) / sqrt(width), so that
  ||W_e||_F is about scale * sqrt(n) for square layers. For N = 1 the same formula is used with
  ``width`` = the configured hidden width (default max(m, n)).
- ``gaussian``: raw per-layer std, every layer i.i.d. N(0, scale^2).
- ``identity``: W_j = scale^(1/N) I (rectangular identity), so W_e = scale I on the leading block.
- ``orthogonal``: W_j = scale^(1/N) Q_j with Q_j a uniformly random semi-orthogonal matrix.
- ``balanced_random``: draw A with i.i.d. N(0, scale^2 / m) entries (so ||A||_F is about
  scale * sqrt(n), as for ``gaussian_e2e``), then :func:`balanced_from_end_to_end` (Arora, Cohen,
  Golowich, Hu, ICLR 2019, Procedure 1). The same seed and scale give the same A, hence the same
  initial end-to-end matrix, at every depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from trajlab.errors import ConfigError


def end_to_end(layers):
    """W_e = W_N ... W_1 for layers (W_1, ..., W_N)."""
    product = layers[0]
    for layer in layers[1:]:
        product = layer @ product
    return product


def _pad(block, shape):
    out = jnp.zeros(shape, dtype=block.dtype)
    return out.at[: block.shape[0], : block.shape[1]].set(block)


def balanced_from_end_to_end(a, shapes):
    """Balanced layers with product ``a`` (Arora et al., ICLR 2019, Procedure 1).

    With the thin SVD a = U diag(s) V^T (k = min(m, n) values): W_1 = diag(s^(1/N)) V^T,
    W_j = diag(s^(1/N)) for 1 < j < N, W_N = U diag(s^(1/N)), each zero-padded to its shape.
    Then W_{j+1}^T W_{j+1} = W_j W_j^T = diag(s^(2/N)) (padded) exactly, and W_N ... W_1 = a.
    Requires every hidden width >= k.
    """
    depth = len(shapes)
    if depth == 1:
        return (a,)
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    k = s.shape[0]
    if min(shape[0] for shape in shapes[:-1]) < k:
        raise ConfigError(f"model.width must be >= min(m, n) = {k} for a balanced initialization")
    root = s ** (1.0 / depth)
    layers = [_pad(root[:, None] * vt, shapes[0])]
    layers += [_pad(jnp.diag(root), shape) for shape in shapes[1:-1]]
    layers.append(_pad(u * root[None, :], shapes[-1]))
    return tuple(layers)


@dataclass(frozen=True)
class DeepLinear:
    """Static structure of a deep linear network: output m, input n, depth, hidden width."""

    m: int
    n: int
    depth: int
    width: int | None = None

    @property
    def hidden_width(self) -> int:
        return self.width if self.width is not None else max(self.m, self.n)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        dims = [self.n] + [self.hidden_width] * (self.depth - 1) + [self.m]
        return tuple((dims[j + 1], dims[j]) for j in range(self.depth))

    def check_init(self, scheme: str) -> None:
        """Raise ConfigError if ``scheme`` cannot be built for this structure."""
        if scheme == "balanced_random" and self.depth > 1 and self.hidden_width < min(self.m, self.n):
            raise ConfigError(
                f"model.width must be >= min(m, n) = {min(self.m, self.n)} for init balanced_random"
            )

    def init(self, key, scale, scheme: str, dtype=jnp.float32, condition: str = "none"):
        """Layers (W_1, ..., W_N) drawn by ``scheme`` (module docstring); jit/vmap-safe in key, scale.

        condition ``positive_det``: a draw with det(W_e) < 0 gets the first column of W_1 negated
        (W_e -> W_e diag(-1, 1, ...)), a measure-preserving map for these schemes, so the result
        follows the law conditioned on det(W_e) > 0 (Razin & Cohen, NeurIPS 2020).
        """
        layers = self._draw(key, scale, scheme, dtype)
        if condition == "positive_det":
            flip = jnp.where(jnp.linalg.det(end_to_end(layers)) < 0, -1.0, 1.0).astype(dtype)
            first = layers[0].at[:, 0].multiply(flip)
            layers = (first, *layers[1:])
        return layers

    def _draw(self, key, scale, scheme: str, dtype):
        self.check_init(scheme)
        depth = self.depth
        scale = jnp.asarray(scale, dtype)
        per_layer = scale ** (1.0 / depth)
        keys = jax.random.split(key, depth)
        if scheme == "gaussian_e2e":
            std = per_layer / jnp.sqrt(jnp.asarray(self.hidden_width, dtype))
            return tuple(std * jax.random.normal(k, s, dtype) for k, s in zip(keys, self.shapes))
        if scheme == "gaussian":
            return tuple(scale * jax.random.normal(k, s, dtype) for k, s in zip(keys, self.shapes))
        if scheme == "identity":
            return tuple(per_layer * jnp.eye(*s, dtype=dtype) for s in self.shapes)
        if scheme == "orthogonal":
            ortho = jax.nn.initializers.orthogonal()
            return tuple(per_layer * ortho(k, s, dtype) for k, s in zip(keys, self.shapes))
        if scheme == "balanced_random":
            # Drawn from ``key`` itself, so one seed gives the same end-to-end matrix at every depth.
            a = scale / jnp.sqrt(jnp.asarray(self.m, dtype)) * jax.random.normal(key, (self.m, self.n), dtype)
            return balanced_from_end_to_end(a, self.shapes)
        raise ConfigError(f"model.init must be a known scheme, got {scheme!r}")

"""Curvature suite: Hessian eigenpairs, spectral density, trace estimators, Gauss-Newton sharpness.

Matrix-free (Hessian-vector products only, see :mod:`trajlab.metrics.curvature`), fixed shapes and
iteration counts (static Python ints), so everything jits and vmaps over a batch of params and keys.
``loss_fn(params) -> scalar`` is any differentiable function of a params pytree.

- :func:`lanczos_eigenpairs`: the k largest Ritz pairs (value, unit vector) after m Lanczos steps
  with full reorthogonalization (Golub & Van Loan, Matrix Computations, Sec. 10.1), optionally
  started from a given vector (a warm start: e.g. the top eigenvector at the previous recording).
  Exact (to rounding) for m = n. :func:`dense_eigenpairs` is the same from the dense Hessian.
- Stochastic Lanczos quadrature (Golub & Meurant 1994; Ghorbani, Krishnan, Xiao, "An Investigation
  into Neural Net Optimization via Hessian Eigenvalue Density", ICML 2019, Sec. 3): for a unit
  probe v, m Lanczos steps from v give T = Y diag(theta) Y^T and v^T f(H) v ~ sum_l tau_l^2
  f(theta_l) with tau_l = Y[0, l] (Gauss quadrature: exact for polynomials f of degree <= 2m - 1).
  Averaging over probes, the spectral density phi(t) = (1/n) sum_i delta(t - lambda_i) is
  estimated by sum_l tau_l^2 g_s(t - theta_l), g_s a Gaussian of width s
  (:func:`slq_quadrature`, :func:`slq_density`).
- Hutchinson's estimator (Hutchinson 1990) with its sample variance, and Hutch++ (Meyer, Musco,
  Musco, Woodruff, "Hutch++: Optimal Stochastic Trace Estimation", SOSA 2021, Algorithm 1): with
  m products, S (n x m/3) and G (n x m/3) Rademacher, Q = orth(H S), tr H ~ tr(Q^T H Q) +
  (3/m) tr(G^T (I - QQ^T) H (I - QQ^T) G): exact when rank H <= m/3; its variance is that of the
  Hutchinson part on the deflated matrix (:func:`hutch_plus_plus`).
- Gauss-Newton sharpness: the top eigenvalue of G = J^T H_out J (J the Jacobian of the model's
  outputs, H_out the Hessian of the loss of the outputs), by Lanczos on Gauss-Newton-vector
  products (Schraudolph 2002: jvp, then the output Hessian, then vjp) (:func:`gauss_newton_top_eigenvalue`).

Generic metrics (:data:`CURVATURE_SUITE_METRICS`, for any family, reading the run's
``train.lanczos_iterations`` and ``train.hutchinson_probes``; added to
:data:`trajlab.metrics.generic.GENERIC_METRIC_FUNCTIONS`. A config can name them once their names
are also in :data:`trajlab.registry.GENERIC_METRICS`, which a RunConfig's ``metrics`` is checked
against; until then a family can list these functions in its own ``metrics``):

- ``hessian_density`` -> ``hdens_0..hdens_{G-1}``: the SLQ density of u = asinh(lambda / s) on the
  fixed grid :data:`DENSITY_GRID` (G = 65 points, u in [-17, 17], s = :data:`DENSITY_SCALE` = 1e-3,
  so the grid covers |lambda| from 0 to ~1.2e4: linear below 1e-3, logarithmic above), Gaussian
  kernel of width one grid spacing in u, :data:`DENSITY_PROBES` probes (keys 2, 3, ...). A fixed grid in
  u keeps columns comparable along a trajectory however the spectrum spreads; the density of lambda
  is phi_u(asinh(lambda/s)) / sqrt(lambda^2 + s^2). (Choice of ours: Ghorbani et al. plot each
  density on its own range.)
- ``hessian_trace_suite`` -> ``trace_hutchinson``, ``trace_hutchinson_var`` (the variance of that
  mean: sample variance / P), ``trace_hutchpp``, ``trace_hutchpp_var`` (same for the Hutch++
  residual part), with P = ``train.hutchinson_probes`` (Hutch++ uses 3P products: P to sketch, P to
  apply, P probes).
- ``gauss_newton_sharpness``: only for families whose metric context has ``model_output(params,
  data)`` (or ``predict(params, data, "train")``) and ``output_loss(outputs, data)``; families
  without them record no column.
- ``leaf_sharpness`` -> ``leaf_sharpness_<i>``: per parameter leaf (layer), the top eigenvalue of
  the leaf's diagonal Hessian block H_ii = d^2 L / d theta_i^2 (the other leaves held fixed), by
  Lanczos on the block's products (the gradient of the leaf alone, linearized in that leaf: only
  that leaf is perturbed), m = min(``train.lanczos_iterations``, size of the leaf) steps, start key
  fold_in(0, i). ``<i>`` is the leaf's position in the flattened pytree (tree order, as
  ``sv_<leaf>_<i>`` and ``erank_<leaf>``); :func:`leaf_paths` gives the pytree path of each
  position. By Cauchy interlacing max_i lambda_max(H_ii) <= lambda_max(H).
- ``edge_eigenvalues`` -> ``edge_eig_0..edge_eig_{k-1}``, k = min(``train.top_k``,
  ``train.lanczos_iterations``): the top-k Hessian eigenvalues (Lanczos, start key 0: the same
  computation as ``hessian_eigenvalues``, shared when both are recorded; NaN-padded when the
  model has fewer than k parameters). :func:`edge_counts` counts, after the run, the stored ones
  above the edge-of-stability threshold 1.5 / lr (centralflows' default for the eigenvalues it
  tracks, as issue 14 states it; Cohen et al., ICLR 2025) with each run's lr; ``edge_tracking``
  below records that count as a column. Exact while fewer than k eigenvalues are above the
  threshold and the Ritz values have converged (a count of k means "at least k"; Ritz values interlace, the j-th is at
  most the j-th eigenvalue, so an unconverged count is a lower bound).
- ``edge_tracking`` -> ``track_eig_0..track_eig_{k-1}`` and ``edge_count``: the top-k Hessian
  eigenpairs *tracked along the trajectory*, each recording warm-started from the previous
  recording's Ritz vectors (a :class:`~trajlab.metrics.carried.CarriedMetric`; the first recording
  starts from a Gaussian block, key 0), by one block Krylov Rayleigh-Ritz step
  (:func:`block_krylov_eigenpairs`: q = max(1, min(lanczos_iterations // k, n // k)) blocks of k
  Hessian-vector products, the same budget as the cold Lanczos of ``edge_eigenvalues``), as
  centralflows tracks its eigenvectors with warm-started LOBPCG (Cohen et al., ICLR 2025; their
  solver is LOBPCG, ours the simpler block Krylov step, assumed equivalent for slowly moving
  eigenvectors). ``edge_count`` is the number of them above :data:`EDGE_FACTOR` / lr with the run's
  own lr (``ctx.lr``, passed by the engine; the batch representative's ``optimizer.lr`` when called
  without an engine): a count of k means "at least k" (raise ``train.top_k``). Ritz values are
  lower bounds of the eigenvalues (Cauchy interlacing), so an unconverged count is a lower bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from trajlab.metrics.carried import CarriedMetric
from trajlab.metrics.curvature import _flat_hvp, _orthogonalize

#: Width of the linear region of the density grid's coordinate u = asinh(lambda / s).
DENSITY_SCALE = 1e-3
#: The fixed grid of u = asinh(lambda / DENSITY_SCALE) on which ``hessian_density`` is recorded.
DENSITY_GRID = np.linspace(-17.0, 17.0, 65)
#: Probes of the ``hessian_density`` metric.
DENSITY_PROBES = 4


# ---------------------------------------------------------------------------------------------
# Lanczos with Ritz vectors


def _lanczos_basis(product, n: int, dtype, start, draws, m: int):
    """(alpha (m,), beta (m,), basis (m + 1, n)): m Lanczos steps with full reorthogonalization from the
    unit vector ``start``; row j + 1 of ``draws`` restarts an invariant Krylov space (as in
    :func:`trajlab.metrics.curvature.lanczos_tridiagonal`, whose scheme this follows)."""
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(start)
    alpha = jnp.zeros((m,), dtype)
    beta = jnp.zeros((m,), dtype)
    threshold = 10.0 * n**0.5 * float(jnp.finfo(dtype).eps)

    def step(j, carry):
        basis, alpha, beta, size = carry
        q = basis[j]
        w = product(q)
        size = jnp.maximum(size, jnp.linalg.norm(w))
        a = jnp.dot(q, w)
        w = w - a * q - jnp.where(j > 0, beta[j - 1], 0.0) * basis[jnp.maximum(j - 1, 0)]
        w = _orthogonalize(w, basis)
        b = jnp.linalg.norm(w)
        invariant = b <= threshold * size
        fresh = _orthogonalize(draws[j + 1], basis)
        fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), jnp.finfo(dtype).tiny)
        next_q = jnp.where(invariant, fresh, w / jnp.where(invariant, 1.0, b))
        return basis.at[j + 1].set(next_q), alpha.at[j].set(a), beta.at[j].set(jnp.where(invariant, 0.0, b)), size

    basis, alpha, beta, _ = jax.lax.fori_loop(0, m, step, (basis, alpha, beta, jnp.zeros((), dtype)))
    return alpha, beta, basis


def _tridiagonal(alpha, beta):
    return jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)


def flat_lanczos_eigenpairs(product, n: int, dtype, key, k: int, iterations: int, start=None):
    """Top-k Ritz pairs of the symmetric operator ``product`` on R^n: (values (k,) descending,
    vectors (k, n) orthonormal rows). ``start``: the first Lanczos vector (normalized here; a random
    Gaussian one from ``key`` when None)."""
    m = min(int(iterations), n)
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, min(iterations, n) = {m}], got {k}")
    draws = jax.random.normal(key, (m + 1, n), dtype)
    first = draws[0] if start is None else jnp.asarray(start, dtype) + 1e-3 * draws[0] / n**0.5
    alpha, beta, basis = _lanczos_basis(product, n, dtype, first / jnp.linalg.norm(first), draws, m)
    values, vectors = jnp.linalg.eigh(_tridiagonal(alpha, beta))
    order = jnp.argsort(-values)[:k]
    return values[order], vectors[:, order].T @ basis[:m]


def _orthogonal_to(z, basis):
    """z (n, b) minus its projection on the orthonormal columns of ``basis`` (n, c), twice."""
    z = z - basis @ (basis.T @ z)
    return z - basis @ (basis.T @ z)


def block_krylov_eigenpairs(product, n: int, dtype, start, key, k: int, products: int):
    """Top-k Ritz pairs (values (k,) descending, vectors (k, n) orthonormal rows) of the symmetric
    operator ``product`` on R^n from the block Krylov space span[X, H X, ..., H^(q-1) X], X = the
    rows of ``start`` (k, n) (a warm start: the previous Ritz vectors), q = max(1, min(products // k,
    n // k)) blocks, q k products (Rayleigh-Ritz: Golub & Van Loan, Matrix Computations, Sec. 10.3;
    "block Lanczos" without the three-term recursion, every block orthogonalized twice against all
    earlier ones). A block that has (nearly) left the space (an invariant subspace) is refilled by a
    Gaussian draw of relative size sqrt(eps), which moves the Ritz values by O(eps). Exact (to
    rounding) when q k = n, or when the rows of ``start`` span an invariant subspace that holds the
    top k eigenvectors.
    """
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n = {n}], got {k}")
    blocks = max(1, min(int(products) // k, n // k))
    apply = jax.vmap(product, in_axes=1, out_axes=1)
    noise = jax.random.normal(key, (blocks, n, k), dtype)
    small = jnp.sqrt(jnp.finfo(dtype).eps)
    q, _ = jnp.linalg.qr(jnp.asarray(start, dtype).T)
    basis, images = [q], []
    for j in range(1, blocks):
        image = apply(basis[-1])
        images.append(image)
        everything = jnp.concatenate(basis, axis=1)
        z = _orthogonal_to(image, everything)
        size = jnp.maximum(jnp.max(jnp.linalg.norm(image, axis=0)), jnp.finfo(dtype).tiny)
        z = z + small * size * noise[j] / n**0.5
        q, _ = jnp.linalg.qr(_orthogonal_to(z, everything))
        q, _ = jnp.linalg.qr(_orthogonal_to(q, everything))
        basis.append(q)
    images.append(apply(basis[-1]))
    basis, images = jnp.concatenate(basis, axis=1), jnp.concatenate(images, axis=1)
    projected = basis.T @ images
    values, vectors = jnp.linalg.eigh(0.5 * (projected + projected.T))
    order = jnp.argsort(-values)[:k]
    return values[order], (basis @ vectors[:, order]).T


def lanczos_eigenpairs(loss_fn, params, key, k: int = 1, iterations: int = 20, start=None):
    """Top-k Hessian eigenpairs by Lanczos: (values (k,), vectors (k, n)) over the raveled params
    (``ravel_pytree`` order). ``start`` (flat, optional): a warm start, e.g. the previous top
    eigenvector (a small random part is added so that a start exactly orthogonal to the sought
    vectors still finds them)."""
    product, n, dtype = _flat_hvp(loss_fn, params)
    return flat_lanczos_eigenpairs(product, n, dtype, key, k, iterations, start)


def dense_eigenpairs(loss_fn, params, k: int = 1):
    """Top-k eigenpairs of the dense Hessian (``jax.hessian`` on the raveled params, ``eigh``)."""
    flat, unravel = ravel_pytree(params)
    values, vectors = jnp.linalg.eigh(jax.hessian(lambda x: loss_fn(unravel(x)))(flat))
    return values[::-1][:k], vectors[:, ::-1][:, :k].T


# ---------------------------------------------------------------------------------------------
# stochastic Lanczos quadrature


def slq_quadrature(loss_fn, params, key, probes: int = 4, iterations: int = 30):
    """(nodes (probes, m), weights (probes, m)): per probe v_p (Rademacher, normalized; from
    fold_in(key, p)) the Gauss quadrature of v_p^T f(H) v_p: nodes theta_l (Ritz values of m =
    min(iterations, n) Lanczos steps from v_p), weights tau_l^2 (squared first entries of T's
    eigenvectors; they sum to 1)."""
    product, n, dtype = _flat_hvp(loss_fn, params)
    m = min(int(iterations), n)

    def one(p):
        k = jax.random.fold_in(key, p)
        v = jax.random.rademacher(k, (n,), dtype)
        draws = jax.random.normal(jax.random.fold_in(k, 1), (m + 1, n), dtype)
        alpha, beta, _ = _lanczos_basis(product, n, dtype, v / jnp.sqrt(n), draws, m)
        theta, y = jnp.linalg.eigh(_tridiagonal(alpha, beta))
        return theta, y[0] ** 2

    return jax.lax.map(one, jnp.arange(int(probes)))


def slq_density(nodes, weights, grid, width):
    """sum over probes and nodes of weights * N(grid; node, width^2) / probes: the smoothed spectral
    density (it integrates to ~1 over a grid that covers the nodes), shape grid.shape."""
    grid = jnp.asarray(grid, nodes.dtype)
    z = (grid[:, None, None] - nodes[None]) / width
    kernel = jnp.exp(-0.5 * z**2) / (width * jnp.sqrt(2.0 * jnp.pi))
    return jnp.sum(kernel * weights[None], axis=(1, 2)) / nodes.shape[0]


def hessian_density(loss_fn, params, key, probes: int = DENSITY_PROBES, iterations: int = 30,
                    grid=DENSITY_GRID, scale: float = DENSITY_SCALE):
    """SLQ density of u = asinh(lambda / scale) on ``grid`` (Gaussian width: the grid spacing)."""
    nodes, weights = slq_quadrature(loss_fn, params, key, probes, iterations)
    grid = np.asarray(grid, float)
    return slq_density(jnp.arcsinh(nodes / scale), weights, grid, float(grid[1] - grid[0]))


# ---------------------------------------------------------------------------------------------
# trace estimators


def hutchinson_with_variance(loss_fn, params, key, probes: int = 10):
    """(mean of z_p^T H z_p over P Rademacher probes, its variance estimate: sample variance / P)."""
    product, n, dtype = _flat_hvp(loss_fn, params)
    z = jax.random.rademacher(key, (int(probes), n), dtype)
    samples = jnp.sum(z * jax.vmap(product)(z), axis=1)
    return jnp.mean(samples), jnp.var(samples, ddof=1) / probes if probes > 1 else jnp.zeros((), dtype)


def hutch_plus_plus(loss_fn, params, key, probes: int = 10):
    """(Hutch++ estimate of tr H with 3P products, variance of its residual part: sample variance / P).

    Meyer et al. 2021, Algorithm 1 with S, G of P columns each: Q = orth(H S) (QR), tr(Q^T H Q) exactly
    plus Hutchinson on (I - QQ^T) H (I - QQ^T) with the columns of G.
    """
    product, n, dtype = _flat_hvp(loss_fn, params)
    p = int(probes)
    sketch_key, probe_key = jax.random.split(key)
    s = jax.random.rademacher(sketch_key, (p, n), dtype)
    q, _ = jnp.linalg.qr(jax.vmap(product)(s).T)  # (n, p), orthonormal columns
    low_rank = jnp.trace(q.T @ jax.vmap(product)(q.T).T)
    g = jax.random.rademacher(probe_key, (p, n), dtype)
    g = g - (g @ q) @ q.T
    samples = jnp.sum(g * jax.vmap(product)(g), axis=1)
    variance = jnp.var(samples, ddof=1) / p if p > 1 else jnp.zeros((), dtype)
    return low_rank + jnp.mean(samples), variance


# ---------------------------------------------------------------------------------------------
# Gauss-Newton


def gauss_newton_top_eigenvalue(model_output, output_loss, params, key, iterations: int = 20):
    """Top eigenvalue of G = J^T H_out J by Lanczos, J = d model_output / d params, H_out the Hessian of
    ``output_loss`` at the outputs (Gauss-Newton-vector product: jvp, output HVP, vjp)."""
    flat, unravel = ravel_pytree(params)

    def outputs_of(x):
        return model_output(unravel(x))

    out, jvp_fn = jax.linearize(outputs_of, flat)
    _, vjp_fn = jax.vjp(outputs_of, flat)
    _, out_hvp = jax.linearize(jax.grad(output_loss), out)

    def product(v):
        return vjp_fn(out_hvp(jvp_fn(v)))[0]

    values, _ = flat_lanczos_eigenpairs(product, flat.shape[0], flat.dtype, key, 1, iterations)
    return values[0]


# ---------------------------------------------------------------------------------------------
# per-leaf (per-layer) Hessian blocks and the eigenvalues at the edge of stability


def leaf_paths(params) -> list[str]:
    """The pytree path of every leaf in tree order (``jax.tree_util.keystr``): position i of the
    ``leaf_sharpness_<i>`` columns is ``leaf_paths(params)[i]``."""
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def leaf_block_product(loss_fn, params, index: int):
    """(v -> H_ii v on the flattened leaf ``index``, n_i, dtype): the diagonal Hessian block of one
    leaf, matrix-free: the gradient of the loss with respect to that leaf alone (the other leaves
    fixed), linearized once in that leaf (forward-over-reverse)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaf = leaves[index]

    def leaf_gradient(x):
        def of_leaf(y):
            moved = list(leaves)
            moved[index] = y.reshape(leaf.shape)
            return loss_fn(jax.tree_util.tree_unflatten(treedef, moved))

        return jax.grad(of_leaf)(x)

    _, product = jax.linearize(leaf_gradient, jnp.ravel(leaf))
    return product, int(np.prod(leaf.shape, dtype=int)), leaf.dtype


def leaf_top_eigenvalues(loss_fn, params, key, iterations: int = 20):
    """The top eigenvalue of every leaf's diagonal Hessian block, in tree order (a list of scalars;
    NaN for an empty leaf): Lanczos with m = min(iterations, leaf size) steps from fold_in(key, i)."""
    out = []
    for i, leaf in enumerate(jax.tree_util.tree_leaves(params)):
        product, n, dtype = leaf_block_product(loss_fn, params, i)
        if n == 0:
            out.append(jnp.asarray(jnp.nan, dtype))
            continue
        values, _ = flat_lanczos_eigenpairs(product, n, dtype, jax.random.fold_in(key, i), 1, min(int(iterations), n))
        out.append(values[0])
    return out


def leaf_sharpness_metric(ctx):
    """``leaf_sharpness``: {leaf_sharpness_<i>: top eigenvalue of the Hessian block of leaf i}."""
    values = leaf_top_eigenvalues(_bound_loss(ctx), ctx.params, jax.random.PRNGKey(0),
                                  _train(ctx, "lanczos_iterations", 20))
    return {f"leaf_sharpness_{i}": v for i, v in enumerate(values)}


def edge_eigenvalues_metric(ctx):
    """``edge_eigenvalues``: {edge_eig_<j>: the j-th largest Hessian eigenvalue}, j < k =
    min(train.top_k, train.lanczos_iterations); see :func:`edge_counts` for the count above 1.5 / lr."""
    iterations = _train(ctx, "lanczos_iterations", 20)
    k = min(_train(ctx, "top_k", 10), iterations)
    flat, _ = ravel_pytree(ctx.params)
    n = flat.shape[0]
    from trajlab.metrics.generic import MetricContext

    if n >= k and getattr(type(ctx), "hessian_eigenvalues", None) is MetricContext.__dict__["hessian_eigenvalues"]:
        values = ctx.hessian_eigenvalues  # the same Lanczos run (key 0, k, iterations), computed once
    else:
        from trajlab.metrics.curvature import lanczos_top_eigenvalues

        values = lanczos_top_eigenvalues(_bound_loss(ctx), ctx.params, jax.random.PRNGKey(0), k=min(k, n),
                                         iterations=iterations)
        values = jnp.concatenate([values, jnp.full((k - values.shape[0],), jnp.nan, values.dtype)])
    return {f"edge_eig_{j}": values[j] for j in range(k)}


#: centralflows' default edge threshold factor: eigenvalues above EDGE_FACTOR / lr are tracked.
EDGE_FACTOR = 1.5


def edge_counts(data, factor: float = EDGE_FACTOR):
    """The number of recorded ``edge_eig_<j>`` columns above ``factor`` / lr at every trajectory row
    of a loaded sweep (lr: the run's ``optimizer.lr``); a pandas Series aligned with
    ``data.trajectories``. A count equal to the number of columns means "at least that many"."""
    import pandas as pd

    trajectories = data.trajectories
    columns = sorted((c for c in trajectories.columns if c.startswith("edge_eig_")),
                     key=lambda c: int(c.rsplit("_", 1)[1]))
    if not columns:
        raise ValueError("edge_counts: the sweep records no edge_eigenvalues (columns edge_eig_<j>)")
    lr = _run_lrs(data)
    threshold = float(factor) / trajectories["run_id"].map(lr).to_numpy(float)
    values = trajectories[columns].to_numpy(float)
    return pd.Series(np.sum(values > threshold[:, None], axis=1), index=trajectories.index, name="edge_count")


def _run_lrs(data) -> dict:
    runs = data.runs
    for column in ("optimizer.lr", "lr"):
        if column in runs.columns:
            return dict(zip(runs["run_id"], runs[column].astype(float)))
    from trajlab.config import from_flat

    return {rid: float(from_flat(flat).optimizer.lr) for rid, flat in data.manifest.get("configs", {}).items()}


# ---------------------------------------------------------------------------------------------
# generic metrics


def _train(ctx, name: str, default: int) -> int:
    return getattr(getattr(ctx.config, "train", None), name, default)


def _bound_loss(ctx):
    return lambda p: ctx.loss(p, ctx.data)


def density_metric(ctx):
    """``hessian_density``: see the module docstring."""
    return hessian_density(_bound_loss(ctx), ctx.params, jax.random.PRNGKey(2),
                           iterations=_train(ctx, "lanczos_iterations", 20))


def trace_metric(ctx):
    """``hessian_trace_suite``: Hutchinson and Hutch++ estimates with their variances."""
    probes = max(2, _train(ctx, "hutchinson_probes", 10))
    loss = _bound_loss(ctx)
    mean, variance = hutchinson_with_variance(loss, ctx.params, jax.random.PRNGKey(1), probes)
    plus, plus_variance = hutch_plus_plus(loss, ctx.params, jax.random.PRNGKey(1), probes)
    return {"trace_hutchinson": mean, "trace_hutchinson_var": variance, "trace_hutchpp": plus,
            "trace_hutchpp_var": plus_variance}


def gauss_newton_metric(ctx):
    """``gauss_newton_sharpness``: {} (no column) unless the context exposes the model's outputs:
    ``ctx.model_output(params, data)`` or ``ctx.predict(params, data, "train")`` (the
    :attr:`FamilyParts.predict` convention), and ``ctx.output_loss(outputs, data)``."""
    model_output = getattr(ctx, "model_output", None)
    predict = getattr(ctx, "predict", None)
    if not callable(model_output) and callable(predict):
        model_output = lambda params, data: predict(params, data, "train")  # noqa: E731
    output_loss = getattr(ctx, "output_loss", None)
    if not (callable(model_output) and callable(output_loss)):
        return {}
    value = gauss_newton_top_eigenvalue(
        lambda p: model_output(p, ctx.data), lambda out: output_loss(out, ctx.data), ctx.params,
        jax.random.PRNGKey(0), _train(ctx, "lanczos_iterations", 20))
    return {"gauss_newton_sharpness": value}


def _tracking_size(ctx) -> tuple[int, int, int]:
    """(k columns, k solved = min(k, n), Hessian-vector products) of ``edge_tracking``."""
    iterations = _train(ctx, "lanczos_iterations", 20)
    k = min(_train(ctx, "top_k", 10), iterations)
    n = ravel_pytree(ctx.params)[0].shape[0]
    return k, min(k, n), iterations


def _tracking_start(params, k_solved: int):
    flat = ravel_pytree(params)[0]
    return jax.random.normal(jax.random.PRNGKey(0), (k_solved, flat.shape[0]), flat.dtype)


def edge_tracking_compute(ctx, previous):
    """``edge_tracking`` (see the module docstring): ({track_eig_<j>, edge_count}, Ritz vectors)."""
    k, solved, products = _tracking_size(ctx)
    product, n, dtype = _flat_hvp(_bound_loss(ctx), ctx.params)
    start = _tracking_start(ctx.params, solved) if previous is None else previous
    values, vectors = block_krylov_eigenpairs(product, n, dtype, start, jax.random.PRNGKey(1), solved, products)
    lr = ctx.lr if getattr(ctx, "lr", None) is not None else getattr(getattr(ctx.config, "optimizer", None), "lr", jnp.nan)
    threshold = EDGE_FACTOR / jnp.asarray(lr, dtype)
    out = {f"track_eig_{j}": values[j] if j < solved else jnp.asarray(jnp.nan, dtype) for j in range(k)}
    out["edge_count"] = jnp.sum(values > threshold).astype(dtype)
    return out, jax.lax.stop_gradient(vectors)


def edge_tracking_init(ctx):
    """The carry of ``edge_tracking`` at init: a Gaussian block (k, n), key 0."""
    _, solved, _ = _tracking_size(ctx)
    return _tracking_start(ctx.params, solved)


#: The suite's generic metrics (registered in :mod:`trajlab.metrics.generic`).
CURVATURE_SUITE_METRICS = {
    "hessian_density": density_metric,
    "hessian_trace_suite": trace_metric,
    "gauss_newton_sharpness": gauss_newton_metric,
    "leaf_sharpness": leaf_sharpness_metric,
    "edge_eigenvalues": edge_eigenvalues_metric,
    "edge_tracking": CarriedMetric(edge_tracking_compute, edge_tracking_init),
}
#: Column prefix of the vector metric.
CURVATURE_SUITE_COLUMNS = {"hessian_density": "hdens"}

__all__ = [
    "CURVATURE_SUITE_COLUMNS",
    "CURVATURE_SUITE_METRICS",
    "DENSITY_GRID",
    "DENSITY_SCALE",
    "EDGE_FACTOR",
    "block_krylov_eigenpairs",
    "dense_eigenpairs",
    "edge_counts",
    "flat_lanczos_eigenpairs",
    "gauss_newton_top_eigenvalue",
    "hessian_density",
    "hutch_plus_plus",
    "hutchinson_with_variance",
    "lanczos_eigenpairs",
    "leaf_block_product",
    "leaf_paths",
    "leaf_top_eigenvalues",
    "slq_density",
    "slq_quadrature",
]

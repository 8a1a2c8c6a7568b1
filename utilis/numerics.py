"""Numeric kernels in log-space: Gaussians and their mixtures, log-sum-exp, the trapezoid, samplers.

Every density in the repository multiplies and normalises through these, so that nothing underflows
to 0/0 far from the data and no query that is finite gives NaN. Shapes broadcast numpy-style; a
trailing axis of length K is the mixture's components.

Example:
    >>> import numpy as np
    >>> bool(normal_logpdf(0.0, 0.0, 1.0) == -0.5 * np.log(2 * np.pi))
    True
    >>> log_w = log_gaussian_posterior(np.array([1e300]), np.log([0.5, 0.5]), np.array([0.0, 1.0]), 1.0)
    >>> np.exp(log_w).round(6).tolist()  # far out, the nearer component takes all the weight, no NaN
    [[0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "CannotSample",
    "log_gaussian_mixture",
    "log_gaussian_posterior",
    "log_histogram",
    "log_isotropic_posterior",
    "log_mvn_mixture",
    "log_trapezoid",
    "logsumexp_last",
    "normal_logpdf",
    "sample_categorical",
    "sample_from_grid",
    "sample_gaussian_mixture",
    "sample_histogram",
    "sample_mvn_mixture",
    "sample_rows_from_grid",
]

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
NEGLIGIBLE = -60.0
"""Log-terms this far below a sum's largest are raised to it before they are exponentiated:
exp(-60) < 1e-26 is below the last bit of a sum that holds a 1, so the sum is unchanged to the bit,
and exp never meets the very negative arguments (and subnormal results) that make it ten to forty
times slower."""


class CannotSample(ValueError):
    """There is nothing to draw from: every weight is 0, or the density underflows everywhere."""


def _exp_below_peak(shifted: np.ndarray) -> np.ndarray:
    """exp of log-terms already shifted by their peak (<= 0), in place, negligible ones floored."""
    np.maximum(shifted, NEGLIGIBLE, out=shifted)
    return np.exp(shifted, out=shifted)


def normal_logpdf(value: ArrayLike, mean: ArrayLike, sd: ArrayLike) -> np.ndarray:
    """log N(value; mean, sd^2), elementwise and broadcast (scipy.stats.norm.logpdf without its overhead).

    Where (value - mean) / sd overflows the square, the result is -inf: the true value lies below
    -1.8e308, so -inf is its nearest float64.
    """
    with np.errstate(over="ignore"):
        z = (np.asarray(value) - mean) / sd
        return -0.5 * z * z - np.log(sd) - LOG_SQRT_2PI


def logsumexp_last(terms: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis, exact for rows of -inf (gives -inf, never NaN).

    Leaner than ``scipy.special.logsumexp`` for the short component axes of mixtures on big grids.
    """
    peak = terms.max(axis=-1, keepdims=True)
    empty = np.isneginf(peak[..., 0])  # every term -inf: the sum is 0 and its log -inf (NaN stays NaN)
    peak = np.where(empty[..., None], 0.0, peak)
    total = _exp_below_peak(terms - peak).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return np.where(empty, -np.inf, np.log(total) + peak[..., 0])


def log_trapezoid(log_values: np.ndarray, step: float | np.ndarray) -> np.ndarray:
    """log of the trapezoidal rule over the last axis, for nodes ``step`` apart: log sum_i w_i f_i h.

    ``log_values`` holds log f at the nodes; the end nodes get half weight. -inf where f is 0 throughout.
    """
    peak = log_values.max(axis=-1, keepdims=True)
    empty = np.isneginf(peak[..., 0])  # f is 0 throughout: the integral is 0 and its log -inf
    peak = np.where(empty[..., None], 0.0, peak)
    f = _exp_below_peak(log_values - peak)
    total = f.sum(axis=-1) - 0.5 * (f[..., 0] + f[..., -1])
    with np.errstate(divide="ignore"):
        return np.where(empty, -np.inf, np.log(total) + peak[..., 0] + np.log(step))


def log_gaussian_mixture(x: ArrayLike, log_a: np.ndarray, mean_x: np.ndarray, sd: float | np.ndarray) -> np.ndarray:
    """log sum_c exp(log_a[..., c]) N(x; mean_x[..., c], sd[..., c]^2), in place and in float64.

    Every mixture density in the repository has this form: the datasets' and the generative model's
    joints, with ``log_a`` = log p(c) + log p(y | c) and ``mean_x``, ``sd`` the Gaussian each
    component puts on x given y; and every Gaussian mixture over y given x (the MDN, the linear
    set's exact conditional), with the roles of x and y exchanged. The parameters depend on one
    variable alone (shape ``v.shape + (K,)``, or ``(K,)``), so on a grid they cost little, and the
    work over the grid is a few in-place passes per component (log-sum-exp with a running maximum):
    what makes large heat maps fast. ``x`` broadcasts against ``log_a[..., 0]``; a component with
    ``log_a = -inf`` contributes exactly nothing.
    """
    x, log_a, mean_x = np.asarray(x, dtype=np.float64), np.asarray(log_a, np.float64), np.asarray(mean_x, np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    sd = sd if sd.ndim else np.broadcast_to(sd, log_a.shape[-1:])
    if np.isneginf(log_a).any():  # weight 0: nothing from this component, even where its mean is not finite
        mean_x = np.where(np.isneginf(log_a), 0.0, mean_x)
    scale, constant = -0.5 / sd**2, -np.log(sd) - LOG_SQRT_2PI
    shape = np.broadcast_shapes(x.shape, log_a.shape[:-1], mean_x.shape[:-1], sd.shape[:-1])
    terms, peak = [], None
    with np.errstate(over="ignore"):  # a square that overflows is a density that underflows: -inf
        for c in range(log_a.shape[-1]):
            term = np.subtract(x, mean_x[..., c])
            if not isinstance(term, np.ndarray) or term.shape != shape:  # a fresh array of the full shape
                term = np.broadcast_to(term, shape).copy()
            np.square(term, out=term)
            term *= scale[..., c]
            term += log_a[..., c] + constant[..., c]
            terms.append(term)
            peak = term.copy() if peak is None else np.maximum(peak, term, out=peak)
    if len(terms) == 1:
        return terms[0]
    empty = np.isneginf(peak)  # every term -inf: the sum is exactly 0 and its log -inf (NaN stays NaN)
    peak[empty] = 0.0
    total = np.zeros_like(peak)
    for term in terms:
        term -= peak
        total += _exp_below_peak(term)
    np.log(total, out=total)
    total += peak
    total[empty] = -np.inf
    return total


def _excess_squares(x: np.ndarray, mean: np.ndarray, sd: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """z_c^2 - z_r^2 for every component c against the ``reference`` r (indices, shape s + (1,)), where
    z_c = (x - mean_c) / sd_c; +-inf where it lies beyond float64.

    Components with the reference's sd use the factorisation (m_r - m_c)(2x - m_c - m_r) / sd^2, which
    keeps the difference of the means even where x - m_c and x - m_r round to one float (|x| >> m);
    the others use (z_c - z_r)(z_c + z_r), and where both z overflow, compare log z.
    """
    mean_r = np.take_along_axis(mean, reference, axis=-1)
    sd_r = np.take_along_axis(sd, reference, axis=-1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z, z_r = np.abs(x - mean) / sd, np.abs(x - mean_r) / sd_r
        general = (z - z_r) * (z + z_r)
        both_overflow = np.isinf(z) & np.isinf(z_r)
        if both_overflow.any():
            log_gap = np.log(np.abs(x - mean)) - np.log(sd) - (np.log(np.abs(x - mean_r)) - np.log(sd_r))
            general = np.where(both_overflow, np.sign(log_gap) * np.inf, general)
        same_sd = (mean_r - mean) * ((x - mean) + (x - mean_r)) / sd**2
        excess = np.where(sd == sd_r, same_sd, general)
    return np.where(np.isnan(excess), 0.0, excess)  # 0 * inf: the same component, or an exact tie


def log_gaussian_posterior(x: ArrayLike, log_prior: ArrayLike, mean: ArrayLike, sd: ArrayLike) -> np.ndarray:
    """log p(c | x) = log softmax_c [log_prior_c + log N(x; mean_c, sd_c^2)] over the last axis.

    Exact however far x lies from every component: the squares enter as differences
    z_c^2 - z_r^2 against the component r nearest to x in standard deviations (found in two passes,
    the second with the exact differences), so the normaliser never becomes -inf - (-inf), and where
    x - m rounds to the same float for two components of equal sd, their difference of means still
    decides. ``x`` has shape ``s``; the others ``s + (K,)`` or ``(K,)``. Returns shape ``s + (K,)``.
    """
    x = np.asarray(x, dtype=np.float64)[..., None]
    log_prior = np.asarray(log_prior, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, np.shape(log_prior), np.shape(mean), np.shape(sd))
    mean, sd = (np.broadcast_to(np.asarray(v, dtype=np.float64), shape) for v in (mean, sd))
    impossible = np.broadcast_to(np.isneginf(log_prior), shape)  # weight 0: never the reference
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.where(impossible, np.inf, np.abs(x - mean) / sd)
    reference = np.argmin(z, axis=-1)[..., None]
    excess = _excess_squares(x, mean, sd, reference)
    reference = np.argmin(np.where(impossible, np.inf, excess), axis=-1)[..., None]
    excess = _excess_squares(x, mean, sd, reference)
    logits = log_prior - np.log(sd) - 0.5 * np.maximum(excess, 0.0)  # >= 0 but for rounding
    peak = logits.max(axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return logits - peak - logsumexp_last(logits - peak)[..., None]


def log_mvn_mixture(y: ArrayLike, log_weights: ArrayLike, means: ArrayLike, scale_tril: ArrayLike) -> np.ndarray:
    """log sum_k w_k N(y; mu_k, L_k L_k^T) for a vector y, in log-space.

    ``y`` (..., d) broadcasts against the parameters' batch shape: ``log_weights`` (..., K), ``means``
    (..., K, d), ``scale_tril`` (..., K, d, d), each L_k lower-triangular with a positive diagonal.
    log N = -|L^-1 (y - mu)|^2 / 2 - sum_i log L_ii - d log(2 pi) / 2; the inverse factors are taken
    once per parameter set, not once per y. Where y lies so far out that its distance overflows, the
    density underflows: -inf, never NaN.
    """
    y, log_weights = np.asarray(y, dtype=np.float64), np.asarray(log_weights, dtype=np.float64)
    means, scale_tril = np.asarray(means, dtype=np.float64), np.asarray(scale_tril, dtype=np.float64)
    d = means.shape[-1]
    inverse = np.linalg.inv(scale_tril)  # (..., K, d, d)
    log_det = np.log(np.diagonal(scale_tril, axis1=-2, axis2=-1)).sum(axis=-1)  # (..., K)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.einsum("...ij,...j->...i", inverse, y[..., None, :] - means)  # (..., K, d)
        squares = (z * z).sum(axis=-1)
    squares = np.where(np.isnan(squares), np.inf, squares)  # inf - inf far out: beyond float64
    return logsumexp_last(log_weights - 0.5 * squares - log_det - d * LOG_SQRT_2PI)


def sample_mvn_mixture(
    log_weights: np.ndarray, means: np.ndarray, scale_tril: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws from each row's mixture sum_k w_k N(mu_k, L_k L_k^T): inputs (m, K), (m, K, d),
    (m, K, d, d); output (n, m, d)."""
    k = sample_categorical(log_weights, n, rng)  # (n, m)
    columns = np.arange(len(log_weights))[None, :]
    noise = rng.standard_normal(k.shape + means.shape[-1:])
    return means[columns, k] + np.einsum("...ij,...j->...i", scale_tril[columns, k], noise)


def log_isotropic_posterior(x: ArrayLike, log_prior: ArrayLike, means: ArrayLike, sd: float) -> np.ndarray:
    """log p(c | x) = log softmax_c [log_prior_c + log N(x; means_c, sd^2 I)] for a vector x.

    The vector form of :func:`log_gaussian_posterior` for components that share one isotropic sd:
    the squares enter as |x - m_c|^2 - |x - m_r|^2 = sum_j (m_rj - m_cj)((x_j - m_cj) + (x_j - m_rj))
    against the component r nearest to x, so the normaliser is never inf - inf and the weights stay
    finite and sum to 1 however far x lies. The differences of the means decide while (x_j - m_cj) +
    (x_j - m_rj) still tells the components apart; where x is so far out that it rounds to one float
    for all of them (|x| near 1e16 times the means' spread), the prior decides instead.
    ``x`` has shape ``s + (d,)``, ``log_prior`` ``(K,)``, ``means`` ``(K, d)``. Returns ``s + (K,)``.
    """
    x = np.asarray(x, dtype=np.float64)[..., None, :]  # (..., 1, d) against the components (K, d)
    means, log_prior = np.asarray(means, dtype=np.float64), np.asarray(log_prior, dtype=np.float64)
    means_here = np.broadcast_to(means, x.shape[:-2] + means.shape)
    impossible = np.isneginf(log_prior)  # weight 0: never the reference

    def excess_over(reference: np.ndarray) -> np.ndarray:
        mean_r = np.take_along_axis(means_here, reference[..., None, None], axis=-2)
        with np.errstate(over="ignore", invalid="ignore"):
            excess = ((mean_r - means) * ((x - means) + (x - mean_r))).sum(axis=-1) / sd**2
        return np.where(np.isnan(excess), 0.0, excess)  # 0 * inf, or inf - inf across axes far out: a tie

    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1.0)  # squares of x / scale never overflow
        distance = (((x - means) / scale) ** 2).sum(axis=-1)
    excess = excess_over(np.argmin(np.where(impossible, np.inf, distance), axis=-1))
    excess = excess_over(np.argmin(np.where(impossible, np.inf, excess), axis=-1))  # the nearest, exactly
    logits = log_prior - 0.5 * np.maximum(excess, 0.0)  # >= 0 but for rounding
    peak = logits.max(axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return logits - peak - logsumexp_last(logits - peak)[..., None]


def _bin_of(y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bin of each value on increasing ``edges`` (the last bin closed), and whether it lies within them."""
    inside = (y >= edges[0]) & (y <= edges[-1])
    return np.clip(np.searchsorted(edges, y, side="right") - 1, 0, len(edges) - 2), inside


def log_histogram(y: np.ndarray, log_weights: np.ndarray, edges: np.ndarray | tuple[np.ndarray, ...]) -> np.ndarray:
    """log p(y) of a mixture of uniforms over adjacent bins: log w_b(y) - log volume_b, -inf outside.

    ``edges`` (B + 1,) increasing, for a scalar y; or, for y in R^d (shape (..., d)), a tuple of d such
    arrays, the cells their product, numbered in C order (the last axis' bin fastest, as ``np.ravel_multi_index``).
    ``log_weights`` (..., B) (B the number of cells) broadcasts against y's batch shape + (B,).
    """
    if isinstance(edges, np.ndarray):
        bins, inside = _bin_of(y, edges)
        log_volume = np.log(np.diff(edges))[bins]
        batch = y.shape
    else:
        per_axis = [_bin_of(y[..., i], axis_edges) for i, axis_edges in enumerate(edges)]
        bins = np.ravel_multi_index(tuple(b for b, _ in per_axis), tuple(len(e) - 1 for e in edges))
        inside = np.logical_and.reduce([within for _, within in per_axis])
        log_volume = sum(np.log(np.diff(e))[b] for e, (b, _) in zip(edges, per_axis))
        batch = y.shape[:-1]
    shape = np.broadcast_shapes(batch, log_weights.shape[:-1])
    log_weights = np.broadcast_to(log_weights, shape + log_weights.shape[-1:])
    picked = np.take_along_axis(log_weights, np.broadcast_to(bins, shape)[..., None], axis=-1)[..., 0]
    return np.where(inside, picked - log_volume, -np.inf)


def sample_categorical(log_weights: ArrayLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """For each row of ``log_weights`` (m, K), unnormalised, n indices drawn from its softmax: shape (n, m)."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    peak = log_weights.max(axis=-1, keepdims=True)
    if not np.all(np.isfinite(peak)):
        row = int(np.flatnonzero(~np.isfinite(peak[..., 0]))[0])
        raise CannotSample(f"cannot sample: every weight of row {row} is 0 (its density underflows there)")
    weights = np.exp(log_weights - peak)
    cumulative = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)  # (m, K)
    u = rng.random((n, log_weights.shape[0]))
    return (u[..., None] > cumulative[None, :, :-1]).sum(axis=-1)


def sample_gaussian_mixture(
    log_weights: np.ndarray, means: np.ndarray, sds: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws from each row's mixture sum_k w_k N(means_k, sds_k^2); inputs (m, K), output (n, m)."""
    k = sample_categorical(log_weights, n, rng)  # (n, m)
    columns = np.arange(len(log_weights))[None, :]
    return means[columns, k] + sds[columns, k] * rng.standard_normal(k.shape)


def sample_histogram(
    log_weights: np.ndarray, edges: np.ndarray | tuple[np.ndarray, ...], n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws per row of a mixture of uniforms over bins: a bin from the weights (m, B), then uniformly in it.
    (n, m) for ``edges`` (B + 1,); (n, m, d) for a tuple of d edges, the cells numbered as
    :func:`log_histogram` does."""
    bins = sample_categorical(log_weights, n, rng)  # (n, m)
    if isinstance(edges, np.ndarray):
        return edges[bins] + rng.random(bins.shape) * np.diff(edges)[bins]
    # unravelled flat: numpy 2.4.6's unravel_index gives wrong indices for a 2-D input of 20,000 rows (one column)
    per_axis = [b.reshape(bins.shape) for b in np.unravel_index(bins.ravel(), tuple(len(e) - 1 for e in edges))]
    u = rng.random((*bins.shape, len(edges)))
    return np.stack([e[b] + u[..., i] * np.diff(e)[b] for i, (e, b) in enumerate(zip(edges, per_axis))], axis=-1)


def sample_product_grid(
    log_mass: ArrayLike, axes: tuple[np.ndarray, ...], n: int, rng: np.random.Generator
) -> np.ndarray:
    """n draws from unnormalised log masses on the nodes of a product grid (its ``axes``, the nodes in C
    order): a node by its mass, then a uniform point in its cell (the half step around it, within the
    grid's ends). Shape (n, d)."""
    log_mass = np.asarray(log_mass, dtype=np.float64)
    peak = log_mass.max()
    if not np.isfinite(peak):
        raise CannotSample("cannot sample: the density is 0 (or underflows) at every node of the grid")
    cumulative = np.cumsum(np.exp(log_mass - peak))
    picked = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
    index = np.unravel_index(np.minimum(picked, len(log_mass) - 1), tuple(len(nodes) for nodes in axes))
    out = []
    for nodes, i in zip(axes, index):
        half = 0.5 * (nodes[1] - nodes[0])
        low, high = np.maximum(nodes[i] - half, nodes[0]), np.minimum(nodes[i] + half, nodes[-1])
        out.append(low + rng.random(n) * (high - low))
    return np.stack(out, axis=-1)


def sample_from_grid(log_density: ArrayLike, nodes: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from a density known on increasing ``nodes``: the CDF is the cumulative
    trapezoid of exp(log_density), normalised; ``u`` are uniform draws, one per output."""
    log_density = np.asarray(log_density, dtype=np.float64)
    if not np.isfinite(log_density.max()):
        raise CannotSample("cannot sample: the density is 0 (or underflows) at every node of the grid")
    p = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(nodes))])
    return np.interp(u * cdf[-1], cdf, nodes)


def sample_rows_from_grid(log_density: ArrayLike, nodes: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One inverse-CDF draw per row, as :func:`sample_from_grid` draws: row i of ``log_density`` (r, N)
    is a density on the increasing ``nodes[i]`` (r, N), and ``u`` (r,) are uniform draws. Rows whose
    density is 0 at every node raise :class:`CannotSample`."""
    log_density = np.asarray(log_density, dtype=np.float64)
    peak = log_density.max(axis=1, keepdims=True)
    if not np.all(np.isfinite(peak)):
        raise CannotSample("cannot sample: the density is 0 (or underflows) at every node of a grid")
    p = np.exp(log_density - peak)
    cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(0.5 * (p[:, 1:] + p[:, :-1]) * np.diff(nodes), axis=1)], 1)
    target = u * cdf[:, -1]
    upper = np.clip((cdf < target[:, None]).sum(axis=1), 1, cdf.shape[1] - 1)  # the first node at or past it
    rows = np.arange(len(p))
    low, high = cdf[rows, upper - 1], cdf[rows, upper]
    share = np.divide(target - low, high - low, out=np.zeros_like(target), where=high > low)
    return nodes[rows, upper - 1] + share * (nodes[rows, upper] - nodes[rows, upper - 1])

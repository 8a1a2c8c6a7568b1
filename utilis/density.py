"""Evaluate any conditional density on grids: curves p(y|x*), conditional and joint heat maps.

Everything here needs only the conditional-density protocol (``log_prob(y, x)``), so a dataset's
exact density (``data.truth``) and every trained model go through the same code. Results are
log-densities (exponentiate to plot densities), laid out as images: rows are y, columns are x.

Grids are evaluated in blocks of columns, so memory stays bounded whatever the grid size, and the
blocks run on a small thread pool (numpy and torch release the GIL in their kernels), so both cores
of a laptop work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike

from utilis.protocol import ConditionalDensity, finite_array

__all__ = [
    "check_grid",
    "conditional_mean",
    "log_conditional_curves",
    "log_conditional_grid",
    "log_gaussian_mixture",
    "log_joint_grid",
    "normal_logpdf",
    "sample_categorical",
    "sample_from_grid",
]

DEFAULT_BLOCK_ELEMENTS = 2**20  # grid points evaluated in one call: 8 MiB per float64 temporary
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def normal_logpdf(value: ArrayLike, mean: ArrayLike, sd: ArrayLike) -> np.ndarray:
    """log N(value; mean, sd^2), elementwise and broadcast (scipy.stats.norm.logpdf without its overhead)."""
    z = (np.asarray(value) - mean) / sd
    return -0.5 * z * z - np.log(sd) - _LOG_SQRT_2PI


def log_gaussian_mixture(x: ArrayLike, log_a: np.ndarray, mean_x: np.ndarray, sd: float | np.ndarray) -> np.ndarray:
    """log sum_c exp(log_a[..., c]) N(x; mean_x[..., c], sd[..., c]^2), in place and in float64.

    Every joint density in the repository has this form: the datasets' and the generative model's,
    with ``log_a`` = log p(c) + log p(y | c) and ``mean_x``, ``sd`` the Gaussian each component puts
    on x given y. Those depend on y alone (shape ``y.shape + (K,)``, or ``(K,)``), so on a grid they
    cost little, and the work over the (x, y) grid is a few in-place passes per component
    (log-sum-exp with a running maximum): what makes large heat maps fast. ``x`` broadcasts against
    ``log_a[..., 0]``; a component with ``log_a = -inf`` contributes exactly nothing.
    """
    x, log_a, mean_x = np.asarray(x, dtype=np.float64), np.asarray(log_a, np.float64), np.asarray(mean_x, np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    sd = sd if sd.ndim else np.broadcast_to(sd, log_a.shape[-1:])
    scale, constant = -0.5 / sd**2, -np.log(sd) - _LOG_SQRT_2PI
    shape = np.broadcast_shapes(x.shape, log_a.shape[:-1], mean_x.shape[:-1], sd.shape[:-1])
    terms, peak = [], None
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
    peak[~np.isfinite(peak)] = 0.0  # every term -inf: the sum stays exactly 0 and its log -inf
    total = np.zeros_like(peak)
    for term in terms:
        term -= peak
        total += np.exp(term, out=term)
    with np.errstate(divide="ignore"):
        np.log(total, out=total)
    return np.add(total, peak, out=total)


def sample_categorical(log_weights: ArrayLike, n: int, rng: np.random.Generator) -> np.ndarray:
    """For each row of ``log_weights`` (m, K), unnormalised, n indices drawn from its softmax: shape (n, m)."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    peak = log_weights.max(axis=-1, keepdims=True)
    weights = np.exp(log_weights - peak)
    cumulative = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)  # (m, K)
    u = rng.random((n, log_weights.shape[0]))
    return (u[..., None] > cumulative[None, :, :-1]).sum(axis=-1)


def sample_from_grid(log_density: ArrayLike, nodes: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from a density known on increasing ``nodes``: the CDF is the cumulative
    trapezoid of exp(log_density), normalised; ``u`` are uniform draws, one per output."""
    log_density = np.asarray(log_density, dtype=np.float64)
    p = np.exp(log_density - log_density.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(nodes))])
    return np.interp(u * cdf[-1], cdf, nodes)


def check_grid(grid: ArrayLike, name: str) -> np.ndarray:
    """A grid as a 1-D float64 array: non-empty, finite and strictly increasing, else ``ValueError``."""
    array = finite_array(grid, name)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if array.size > 1 and not np.all(np.diff(array) > 0):
        first = int(np.flatnonzero(np.diff(array) <= 0)[0])
        raise ValueError(
            f"{name} must be strictly increasing, but {name}[{first + 1}] = {array[first + 1]} <= {array[first]}"
        )
    return array


def _check_points(x: ArrayLike, name: str) -> np.ndarray:
    array = np.atleast_1d(finite_array(x, name))
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    return array


def _blocks(function: Callable[[slice], np.ndarray], n_x: int, n_y: int, block_elements: int) -> np.ndarray:
    """Evaluate ``function`` on column blocks of an (n_y, n_x) grid and put the blocks together."""
    if block_elements < 1:
        raise ValueError(f"block_elements must be >= 1, got {block_elements}")
    width = max(1, min(n_x, block_elements // n_y))
    # At least two blocks per worker when the grid is big enough, so both cores get work.
    workers = min(os.cpu_count() or 1, 4)
    if n_x * n_y >= 2**18 and n_x // width < 2 * workers:
        width = max(1, -(-n_x // (2 * workers)))
    slices = [slice(start, start + width) for start in range(0, n_x, width)]
    out = np.empty((n_y, n_x))
    if len(slices) == 1 or workers == 1:
        for s in slices:
            out[:, s] = function(s)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for s, block in zip(slices, pool.map(function, slices)):
                out[:, s] = block
    if np.isnan(out).any():
        row, column = np.argwhere(np.isnan(out))[0]
        raise ValueError(f"the density returned NaN at grid point (y index {row}, x index {column})")
    return out


def log_conditional_curves(density: ConditionalDensity, y_grid: ArrayLike, x_star: ArrayLike) -> np.ndarray:
    """log p(y | x*) along ``y_grid`` for each x*: shape ``(len(x_star), len(y_grid))``, a curve per x*."""
    y = check_grid(y_grid, "y_grid")
    x = _check_points(x_star, "x_star")
    curves = np.asarray(density.log_prob(y[None, :], x[:, None]), dtype=np.float64)
    if np.isnan(curves).any():
        raise ValueError(f"the density returned NaN for x* = {x[np.isnan(curves).any(axis=1)][0]}")
    return curves


def log_conditional_grid(
    density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> np.ndarray:
    """The conditional heat map: log p(y | x) with shape ``(len(y_grid), len(x_grid))``.

    Each column is the density p(. | x) on the y grid, as the density itself normalises it (it is
    not renormalised over the grid, so mass a model puts outside the grid stays visible as missing).
    """
    x = check_grid(x_grid, "x_grid")
    y = check_grid(y_grid, "y_grid")
    return _blocks(lambda s: density.log_prob(y[:, None], x[None, s]), len(x), len(y), block_elements)


def log_joint_grid(
    density: ConditionalDensity,
    x_grid: ArrayLike,
    y_grid: ArrayLike,
    log_marginal_x: Callable[[np.ndarray], ArrayLike] | ArrayLike | None = None,
    *,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> np.ndarray:
    """The joint heat map: log p(x, y) = log p(y | x) + log p(x), shape ``(len(y_grid), len(x_grid))``.

    p(x) comes from the caller (``log_marginal_x``: a function of x, or its values on ``x_grid``) or,
    when not given, from the density itself: its ``log_joint(x, y)`` where it has one (the truth, a
    generative model: exact, and no normalisation over y needed), else its ``log_marginal_x(x)``.
    """
    x = check_grid(x_grid, "x_grid")
    y = check_grid(y_grid, "y_grid")
    if log_marginal_x is None and hasattr(density, "log_joint"):
        return _blocks(lambda s: density.log_joint(x[None, s], y[:, None]), len(x), len(y), block_elements)
    if log_marginal_x is None:
        if not hasattr(density, "log_marginal_x"):
            raise ValueError(
                "log_marginal_x must be given: the density has no p(x) of its own (no log_marginal_x or log_joint)"
            )
        log_marginal_x = density.log_marginal_x
    log_px = finite_array(log_marginal_x(x) if callable(log_marginal_x) else log_marginal_x, "log_marginal_x")
    if log_px.shape != x.shape:
        raise ValueError(f"log_marginal_x must have one value per x_grid point, shape {x.shape}, got {log_px.shape}")
    return log_conditional_grid(density, x, y, block_elements=block_elements) + log_px[None, :]


def conditional_mean(density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike) -> np.ndarray:
    """E[y | x] at each x by the trapezoidal rule over ``y_grid`` (which must hold p(y|x)'s mass).

    This is what a regression trained on squared error converges to: on a one-to-many problem, a
    point between the branches.
    """
    y = check_grid(y_grid, "y_grid")
    if len(y) < 2:
        raise ValueError(f"y_grid needs at least 2 points, got {len(y)}")
    p = np.exp(log_conditional_grid(density, x_grid, y))
    return np.trapezoid(y[:, None] * p, y, axis=0) / np.trapezoid(p, y, axis=0)

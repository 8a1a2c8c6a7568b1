"""Evaluate any conditional density on grids: curves p(y|x*), conditional and joint heat maps, modes.

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

from utilis.protocol import (
    ConditionalDensity,
    JointDensity,
    check_inputs,
    finite_array,
    require_density,
    require_scalar,
    x_dim_of,
    y_space_of,
)
from utilis.spaces import Grid, line_modes

__all__ = [
    "check_grid",
    "conditional_mean",
    "conditional_moments",
    "count_modes",
    "find_modes",
    "log_conditional_curves",
    "log_conditional_grid",
    "log_joint_grid",
    "log_prob_on_grid",
    "moments_on_grid",
    "multimodal_inputs",
    "multimodality_summary",
]

DEFAULT_BLOCK_ELEMENTS = 2**16  # grid points a block: 512 KiB a float64 temporary, a mixture's few stay in cache


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


def _blocks(
    function: Callable[[slice], np.ndarray], n_x: int, n_y: int, block_elements: int, by: str = "columns"
) -> np.ndarray:
    """Evaluate ``function`` on blocks of an (n_y, n_x) grid, each worker writing its block in place.

    ``by="columns"``: ``function(s)`` gives the columns ``s`` (what depends on x is then evaluated
    once per x: a conditional); ``by="rows"``: the rows ``s`` (once per y: a joint). A block holds
    about ``block_elements`` values, small enough that a mixture's per-component temporaries stay in
    the cache; memory beyond the output is a block's temporaries per worker, whatever the grid's size.
    """
    if block_elements < 1:
        raise ValueError(f"block_elements must be >= 1, got {block_elements}")
    assert by in ("columns", "rows"), by
    n_lines, line = (n_x, n_y) if by == "columns" else (n_y, n_x)
    width = max(1, min(n_lines, block_elements // line))
    slices = [slice(start, start + width) for start in range(0, n_lines, width)]
    out = np.empty((n_y, n_x))

    def run(s: slice) -> None:
        block = function(s)
        if np.isnan(block).any():
            row, column = np.argwhere(np.isnan(block))[0]
            row, column = (row, column + s.start) if by == "columns" else (row + s.start, column)
            raise ValueError(f"the density returned NaN at grid point (y index {row}, x index {column})")
        if by == "columns":
            out[:, s] = block
        else:
            out[s, :] = block

    workers = min(os.cpu_count() or 1, 4, len(slices))
    if workers == 1:
        for s in slices:
            run(s)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(run, slices):  # re-raises a worker's error
                pass
    return out


def log_conditional_curves(density: ConditionalDensity, y_grid: ArrayLike, x_star: ArrayLike) -> np.ndarray:
    """log p(y | x*) along ``y_grid`` for each x*: shape ``(len(x_star), len(y_grid))``, a curve per x*."""
    require_scalar(density, "log_conditional_curves")
    density = require_density(density)
    y = check_grid(y_grid, "y_grid")
    x = _check_points(x_star, "x_star")
    curves = np.asarray(density.log_prob(y[None, :], x[:, None]), dtype=np.float64)
    if np.isnan(curves).any():
        raise ValueError(f"the density returned NaN for x* = {x[np.isnan(curves).any(axis=1)][0]}")
    return curves


def log_prob_on_grid(
    density: ConditionalDensity, x: ArrayLike, grid: Grid, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> np.ndarray:
    """log p(y | x) at every node of a :class:`~utilis.spaces.Grid` of y, for each of m inputs x:
    shape ``(len(grid), m)``, a column per x (``values[:, j].reshape(grid.shape)`` is an image).

    Works in any space that offers a grid (``density.y_space.grid(ranges, n)``): the real line and the
    plane today. ``x`` holds m inputs, shape ``(m,)`` or ``(m, x_dim)``. As
    :func:`log_conditional_grid`, nothing is renormalised over the grid, and the columns are evaluated
    in blocks on a small thread pool.
    """
    density = require_density(density)
    space = y_space_of(density)
    if not isinstance(grid, Grid) or grid.dim != space.dim:
        raise ValueError(f"grid must be a Grid over the density's {space!r}, got {grid!r}")
    points = check_inputs(x, "x", x_dim_of(density))
    if len(points) == 0:
        raise ValueError("x must hold at least one input, got none")
    nodes = grid.points[:, None] if space.dim == 1 else grid.points[:, None, :]  # against x[None, s]
    return _blocks(lambda s: density.log_prob(nodes, points[None, s]), len(points), len(grid), block_elements)


def log_conditional_grid(
    density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> np.ndarray:
    """The conditional heat map: log p(y | x) with shape ``(len(y_grid), len(x_grid))``.

    Each column is the density p(. | x) on the y grid, as the density itself normalises it (it is
    not renormalised over the grid, so mass a model puts outside the grid stays visible as missing).
    """
    require_scalar(density, "log_conditional_grid")
    density = require_density(density)
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
    when not given, from the density itself if it speaks the joint interface
    (:class:`~utilis.protocol.JointDensity`: the truth, a generative model), through its exact
    ``log_joint(x, y)``.
    """
    require_scalar(density, "log_joint_grid")
    density = require_density(density)
    x = check_grid(x_grid, "x_grid")
    y = check_grid(y_grid, "y_grid")
    if log_marginal_x is None:
        if not isinstance(density, JointDensity):
            raise ValueError(
                "log_marginal_x must be given: the density has no p(x) of its own (no log_joint and log_marginal_x)"
            )
        return _blocks(lambda s: density.log_joint(x[None, :], y[s, None]), len(x), len(y), block_elements, "rows")
    log_px = finite_array(log_marginal_x(x) if callable(log_marginal_x) else log_marginal_x, "log_marginal_x")
    if log_px.shape != x.shape:
        raise ValueError(f"log_marginal_x must have one value per x_grid point, shape {x.shape}, got {log_px.shape}")
    return log_conditional_grid(density, x, y, block_elements=block_elements) + log_px[None, :]


def conditional_moments(
    density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """E[y | x] and Var[y | x] at each x of an increasing ``x_grid``, by the trapezoidal rule over
    ``y_grid`` (which must hold p(y|x)'s mass and resolve its narrowest peak).

    Each column is scaled by its own maximum before it is exponentiated, so x far from the data
    does not underflow to 0/0. ``ValueError`` if the density has no mass on the grid at some x.
    """
    y = check_grid(y_grid, "y_grid")
    if len(y) < 2:
        raise ValueError(f"y_grid needs at least 2 points, got {len(y)}")
    mean, variance, empty = moments_on_grid(log_conditional_grid(density, x_grid, y), y)
    if empty.any():
        raise ValueError(f"the density has no mass on y_grid at x = {check_grid(x_grid, 'x_grid')[empty][0]}")
    return mean, variance


def moments_on_grid(log_p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance of each column of a log-density on the grid ``y`` (rows), by the trapezoidal
    rule, and which columns are empty (-inf throughout; their moments are 0 and 1)."""
    peak = log_p.max(axis=0)
    empty = np.isneginf(peak)
    p = np.exp(log_p - np.where(empty, 0.0, peak))
    p[:, empty] = 1.0
    # the trapezoidal rule as one weight per node, so each integral is a product with the columns
    # (faster than three np.trapezoid calls and their temporaries; the same to rounding)
    half_steps = np.diff(y) / 2
    weights = np.zeros(len(y))
    weights[:-1] += half_steps
    weights[1:] += half_steps
    mass = weights @ p
    mean = (weights * y) @ p / mass
    spread = y[:, None] - mean  # centred on each column's mean, so nothing cancels
    spread *= spread
    spread *= p
    variance = weights @ spread / mass
    return np.where(empty, 0.0, mean), np.where(empty, 1.0, variance), empty


def conditional_mean(density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike) -> np.ndarray:
    """E[y | x] at each x by the trapezoidal rule over ``y_grid`` (see :func:`conditional_moments`).

    This is what a regression trained on squared error converges to: on a one-to-many problem, a
    point between the branches.
    """
    return conditional_moments(density, x_grid, y_grid)[0]


def find_modes(log_density: ArrayLike, y_grid: ArrayLike, min_mass: float = 0.05) -> np.ndarray:
    """The modes of one density on a grid: peaks whose basin holds at least ``min_mass`` of the mass.

    A peak's basin runs to the lowest points between it and its neighbouring peaks. A flat peak (a
    plateau, as a uniform density has) counts once, at its middle. Peaks lower than 1e-6 of the
    highest, numerical ripples, are ignored. Returns the y of each mode, increasing.
    """
    y = check_grid(y_grid, "y_grid")
    log_p = np.asarray(log_density, dtype=np.float64)
    if log_p.shape != y.shape:
        raise ValueError(f"log_density must have the shape of y_grid, {y.shape}, got {log_p.shape}")
    return line_modes(log_p, y, min_mass)


def count_modes(
    density: ConditionalDensity, x_grid: ArrayLike, y_grid: ArrayLike, min_mass: float = 0.05
) -> np.ndarray:
    """The number of modes of p(y | x) (peaks holding ``min_mass``, see :func:`find_modes`) at each x."""
    y = check_grid(y_grid, "y_grid")
    log_p = log_conditional_grid(density, x_grid, y)
    return np.array([len(find_modes(log_p[:, column], y, min_mass)) for column in range(log_p.shape[1])])


def multimodal_inputs(truth, x_range: tuple[float, float], n: int = 3, n_x: int = 400, n_y: int = 3000) -> np.ndarray:
    """``n`` inputs x* that show a one-to-many problem at its hardest: where p(y|x) has the most modes.

    ``truth`` must also know p(x) (a :class:`~utilis.protocol.JointDensity`, as every dataset's
    ``truth`` does). Candidates are the x of an ``n_x`` grid over ``x_range`` where p(x) is at least a
    tenth of its peak (so the data is there); they are ranked by their number of modes (peaks holding
    5% of the mass), then by p(x), and taken greedily at least a tenth of the range apart. Returns
    the x* increasing, rounded to 3 significant digits so they read well in titles.
    """
    require_scalar(truth, "multimodal_inputs")
    if not isinstance(truth, JointDensity):
        raise ValueError(f"truth must also give p(x) (log_marginal_x), got {type(truth).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    lo, hi = (float(v) for v in x_range)
    if not lo < hi:
        raise ValueError(f"x_range must be increasing, got {x_range}")
    x = np.linspace(lo, hi, n_x)
    log_px = np.asarray(truth.log_marginal_x(x))
    candidates = np.flatnonzero(log_px >= log_px.max() - np.log(10.0))
    modes = count_modes(truth, x[candidates], np.linspace(*_mass_range(truth, x[candidates], lo, hi), n_y))
    order = candidates[np.lexsort((-log_px[candidates], -modes))]
    chosen: list[float] = []
    for index in order:
        if all(abs(x[index] - other) >= 0.1 * (hi - lo) for other in chosen):
            chosen.append(float(x[index]))
        if len(chosen) == n:
            break
    return np.sort([float(f"{value:.3g}") for value in chosen])


def _mass_range(truth, x: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The y interval where p(y|x) has its mass at these x, from samples of the truth (widened a little)."""
    draws = truth.sample(x, 200, seed=0)
    low, high = np.quantile(draws, [0.0005, 0.9995])
    pad = 0.05 * (high - low)
    return float(low - pad), float(high + pad)


def multimodality_summary(data, n_x: int = 300, n_y: int = 3000, seed: int = 1, min_mass: float = 0.05) -> dict:
    """How often a dataset's answer is a set: over ``n_x`` inputs drawn from p(x), the share where
    p(y|x) has two or more modes (peaks holding ``min_mass``), the most modes seen, and the median
    distance from E[y|x] (the squared-error answer) to the nearest true mode where there are several.
    """
    require_scalar(data, "multimodality_summary")
    x = np.unique(data.sample(n_x, seed=seed)[0])  # inputs drawn from p(x), sorted
    y = np.linspace(*data.y_range, n_y)
    log_p = log_conditional_grid(data.truth, x, y)
    modes = [find_modes(log_p[:, i], y, min_mass) for i in range(len(x))]
    several = np.array([len(m) >= 2 for m in modes])
    mean = moments_on_grid(log_p, y)[0]
    misses = [np.abs(m - mu).min() for m, mu, s in zip(modes, mean, several) if s]
    return {
        "share with several modes": float(several.mean()),
        "most modes": max(map(len, modes)),
        "E[y|x] to nearest mode (median)": float(np.median(misses)) if misses else 0.0,
    }

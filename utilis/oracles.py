"""References computed from the truth, for every model to stand beside.

They are what a model family could reach at best, so they split a model's gap into what its family
cannot represent and what training failed to learn:

- :class:`BestSingleGaussian`: N(y; E[y|x], Var[y|x]), the Gaussian closest to the truth in KL at
  each x (in the plane N(y; E[y|x], Cov[y|x])). No single-Gaussian model (MSE regression read as a
  density) can beat it.
- :class:`BinnedTruth`: the truth's own mass in each bin of a histogram, spread uniformly over the
  bin: the resolution floor of a softmax over those bins.

Both speak the conditional-density protocol, so every metric and plot takes them as it takes a model.

Example:
    >>> from generate_dataset import linear_mixture
    >>> data = linear_mixture(n_samples=200, seed=0)
    >>> oracle = BestSingleGaussian.for_dataset(data)
    >>> oracle.sample(data.x_test[:4], 3, seed=0).shape
    (3, 4)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike

from utilis.density import check_grid, moments_on_grid
from utilis.mixtures import GaussianMixtureDensity, HistogramDensity
from utilis.numerics import CannotSample, logsumexp_last
from utilis.protocol import ConditionalDensity, check_count, require_density, x_dim_of, y_space_of
from utilis.spaces import Grid, OutputSpace

__all__ = ["BestSingleGaussian", "BinnedTruth", "oracles_for"]

_BLOCK_ELEMENTS = 2**18
"""Truth evaluations at once: 2 MiB a float64 temporary, small enough to stay in the cache while a
block is evaluated and integrated (larger blocks spill out of it and run slower)."""


def _over_blocks(function: Callable[[slice], object], n: int, width: int) -> list:
    """``function`` on each block of ``width`` inputs out of ``n``, in order, on one thread per core.

    Each block is a few large numpy passes, which release the GIL, so the blocks run side by side
    (1.7 times faster on 2 cores); every block is computed exactly as it would be alone, so the
    result is the same to the bit as a loop's."""
    blocks = [slice(s, s + width) for s in range(0, n, width)]
    workers = min(len(blocks), os.cpu_count() or 1)
    if workers <= 1:
        return [function(block) for block in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, blocks))


def _scalar_truth(truth: object) -> ConditionalDensity:
    """``truth`` if it is a density over a scalar y: both oracles integrate the truth on a 1-D grid."""
    truth = require_density(truth, "truth")
    if y_space_of(truth).dim != 1:
        raise ValueError(
            f"the oracles integrate the truth on a grid of a scalar y; this truth's y lives in {y_space_of(truth)!r}"
        )
    return truth


def _dataset_grid(data, n_grid: int) -> np.ndarray:
    """A y grid over the dataset's range widened by half its width on each side: p(y | x) can put
    a little mass beyond where p(y) has practically all of its own, and a variance feels it."""
    lo, hi = data.y_range
    return np.linspace(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo), check_count(n_grid, "n_grid", minimum=2))


class BestSingleGaussian(GaussianMixtureDensity):
    """N(y; E[y|x], Var[y|x]) of the truth, its moments by the trapezoidal rule on ``y_grid``.

    The grid must hold the truth's mass and resolve its narrowest peak, which it does wherever p(x)
    has mass; the sd is floored at half the grid's step, where the grid can no longer tell a
    narrower peak apart. For a y in the plane, ``y_grid`` is a :class:`~utilis.spaces.Grid` and the
    oracle is N(y; E[y|x], Cov[y|x]), the moments by the grid's weights and each eigenvalue of the
    covariance floored at (half the smaller spacing of nodes)^2.
    """

    def __init__(self, truth: ConditionalDensity, y_grid: ArrayLike | Grid):
        self.truth = require_density(truth, "truth")
        dim = y_space_of(self.truth).dim
        if dim == 1:
            self.y_grid = check_grid(y_grid, "y_grid")
            if len(self.y_grid) < 2:
                raise ValueError(f"y_grid needs at least 2 points, got {len(self.y_grid)}")
        elif dim == 2 and isinstance(y_grid, Grid) and y_grid.dim == 2:
            self.y_grid = y_grid
        else:
            raise ValueError(
                f"y_grid must be a Grid of the truth's y, {y_space_of(self.truth)!r}, as its y_space.grid "
                f"makes (the plane at most), got {y_grid!r}"
            )

    @property
    def x_dim(self) -> int:
        return x_dim_of(self.truth)

    @property
    def y_space(self) -> OutputSpace:
        return y_space_of(self.truth)

    @classmethod
    def for_dataset(cls, data, n_grid: int | None = None) -> BestSingleGaussian:
        """The oracle of ``data.truth`` on ``n_grid`` points: on the line, 4000 over the data's y range
        widened by half its width; in the plane, the centres of 200 cells an axis over the data's box of y
        (the midpoint rule, exact where p(y|x) is constant on the cells, as the room's is), which holds all
        of p(y|x) for the planar datasets (their p(y) is uniform on it)."""
        if data.y_space.dim == 1:
            return cls(data.truth, _dataset_grid(data, 4000 if n_grid is None else n_grid))
        return cls(data.truth, data.y_space.grid(data.y_range, 200 if n_grid is None else n_grid, rule="midpoint"))

    def _given_x(self, x):
        if self.y_dim > 1:
            return self._given_x_in_the_plane(x)
        # each block of columns evaluated and integrated as one, in cache
        y, width = self.y_grid, max(1, _BLOCK_ELEMENTS // len(self.y_grid))
        moments = _over_blocks(
            lambda block: moments_on_grid(self.truth.log_prob(y[:, None], x[None, block]), y), len(x), width
        )
        mean, variance, empty = (np.concatenate(parts) for parts in zip(*moments))
        sd = np.maximum(np.sqrt(variance), 0.5 * np.min(np.diff(self.y_grid)))
        # Where the truth has no mass on the grid (x where p(x) underflows), the oracle has none either.
        log_weight = np.where(empty, -np.inf, 0.0)
        return log_weight[:, None], mean[:, None], sd[:, None]

    def _given_x_in_the_plane(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log w (m, 1), E[y|x] (m, 1, 2) and the Cholesky factor of Cov[y|x] (m, 1, 2, 2)."""
        grid, width = self.y_grid, max(1, _BLOCK_ELEMENTS // len(self.y_grid))

        def moments(block: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            log_p = self.truth.log_prob(grid.points[:, None, :], x[None, block])  # (N, block)
            peak = log_p.max(axis=0)
            empty = np.isneginf(peak)
            p = np.exp(log_p - np.where(empty, 0.0, peak)) * grid.weights[:, None]
            mass = np.where(empty, 1.0, p.sum(axis=0))
            mean = (grid.points.T @ p / mass).T  # (block, 2)
            centred = grid.points[:, None, :] - mean[None]  # (N, block, 2)
            return mean, np.einsum("nbi,nbj,nb->bij", centred, centred, p) / mass[:, None, None], empty

        # each block of inputs evaluated and integrated before its memory is reused
        mean, covariance, empty = (np.concatenate(parts) for parts in zip(*_over_blocks(moments, len(x), width)))
        floor = (0.5 * min(np.min(np.diff(axis)) for axis in grid.axes)) ** 2
        values, vectors = np.linalg.eigh(covariance)
        covariance = np.einsum("mij,mj,mkj->mik", vectors, np.maximum(values, floor), vectors)
        covariance[empty] = floor * np.eye(2)
        # Where the truth has no mass on the grid (x where p(x) underflows), the oracle has none either.
        log_weight = np.where(empty, -np.inf, 0.0)
        return log_weight[:, None], mean[:, None, :], np.linalg.cholesky(covariance)[:, None]

    def _sample(self, x, n, rng, log_weights, means, scales):
        if np.isneginf(log_weights).any():
            bad = x[np.isneginf(log_weights[:, 0])][0]
            raise CannotSample(f"cannot sample: the truth has no mass on the oracle's y_grid at x = {bad}")
        return super()._sample(x, n, rng, log_weights, means, scales)


class BinnedTruth(HistogramDensity):
    """The truth binned: p(y | x) = P(y in bin b | x) / width_b, P by Simpson's rule within each bin.

    Each bin gets ``nodes_per_bin`` + 1 nodes (an even count of intervals), both edges included. The
    bin masses are normalised over the bins, as a softmax over them is; mass the truth puts outside
    the bins is lost to both.
    """

    def __init__(self, truth: ConditionalDensity, edges: ArrayLike, nodes_per_bin: int = 128):
        self.truth = _scalar_truth(truth)
        self.edges = check_grid(edges, "edges")
        if len(self.edges) < 2:
            raise ValueError(f"edges needs at least 2 values (one bin), got {len(self.edges)}")
        self.nodes_per_bin = check_count(nodes_per_bin, "nodes_per_bin", minimum=2)
        if self.nodes_per_bin % 2:
            raise ValueError(f"nodes_per_bin must be even (Simpson's rule), got {nodes_per_bin}")

    @classmethod
    def like(cls, histogram: HistogramDensity, truth: ConditionalDensity, nodes_per_bin: int = 128) -> BinnedTruth:
        """The truth on the same bins as ``histogram`` (a fitted :class:`~utilis.baselines.BinnedClassifier`)."""
        return cls(truth, histogram.bin_edges, nodes_per_bin)

    @property
    def bin_edges(self) -> np.ndarray:
        return self.edges

    def _given_x(self, x):
        steps = np.diff(self.edges) / self.nodes_per_bin  # (B,)
        nodes = self.edges[:-1, None] + steps[:, None] * np.arange(self.nodes_per_bin + 1)  # (B, nodes)
        simpson = np.ones(self.nodes_per_bin + 1)
        simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
        log_weights = np.log(simpson / 3) + np.log(steps)[:, None]  # (B, nodes)
        rows = max(1, _BLOCK_ELEMENTS // nodes.size)
        masses = _over_blocks(
            lambda block: logsumexp_last(self.truth.log_prob(nodes, x[block, None, None]) + log_weights), len(x), rows
        )
        log_mass = np.concatenate(masses) if masses else np.empty((0, len(steps)))
        # Where the truth has no mass in the bins (x where p(x) underflows), the oracle has none either.
        peak = log_mass.max(axis=1, keepdims=True)
        empty = np.isneginf(peak)
        log_mass -= np.where(empty, 0.0, peak)
        with np.errstate(divide="ignore", invalid="ignore"):
            normalised = log_mass - np.log(np.exp(log_mass).sum(axis=1, keepdims=True))
        return (np.where(empty, -np.inf, normalised),)


def oracles_for(data, bin_edges: ArrayLike) -> dict[str, ConditionalDensity]:
    """The two references for a dataset, labelled as the notebooks' tables show them: the best single
    Gaussian, and the truth binned on ``bin_edges`` (those of the softmax over bins it stands beside)."""
    return {
        "best single Gaussian (oracle)": BestSingleGaussian.for_dataset(data),
        "binned truth (oracle)": BinnedTruth(data.truth, check_grid(bin_edges, "bin_edges")),
    }

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


def _simpson_nodes(edges: np.ndarray, nodes_per_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """Simpson's rule within each bin of ``edges``: its nodes, (B, nodes_per_bin + 1) with both edges,
    and the log of their weights."""
    steps = np.diff(edges) / nodes_per_bin  # (B,)
    nodes = edges[:-1, None] + steps[:, None] * np.arange(nodes_per_bin + 1)
    simpson = np.ones(nodes_per_bin + 1)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    return nodes, np.log(simpson / 3) + np.log(steps)[:, None]


class BinnedTruth(HistogramDensity):
    """The truth binned: p(y | x) = P(y in bin b | x) / width_b, P by Simpson's rule within each bin.

    Each bin gets ``nodes_per_bin`` + 1 nodes (an even count of intervals), both edges included; in the
    plane (``edges`` a pair of per-axis edges, the bins their cells) the product rule on
    (``nodes_per_bin`` + 1)^2 nodes a cell. The bin masses are normalised over the bins, as a softmax over
    them is; mass the truth puts outside the bins is lost to both. ``nodes_per_bin`` defaults to 128 on a
    line and 8 in the plane, where a cell's nodes are squared (on the robot arm's 50 x 50 cells, the gap of
    8 differs from 16's by less than its standard error: ``tests/test_oracles.py``).
    """

    def __init__(self, truth: ConditionalDensity, edges: ArrayLike, nodes_per_bin: int | None = None):
        self.truth = require_density(truth, "truth")
        self.x_dim, self.y_space = x_dim_of(truth), y_space_of(truth)
        dim = self.y_space.dim
        if dim > 2:
            raise ValueError(
                f"the binned truth serves a scalar y or the plane; this truth's y lives in {self.y_space!r}, "
                f"whose cells would need (nodes_per_bin + 1)^{dim} truth evaluations each"
            )
        if dim == 2 and (isinstance(edges, np.ndarray) or len(edges) != 2):
            raise ValueError(f"edges must be a pair of per-axis edges for a truth over the plane, got {edges!r:.80}")
        if dim == 1 and isinstance(edges, tuple):
            raise ValueError(
                f"edges must be one array (B + 1,) for a truth over a scalar y, got a tuple of {len(edges)}"
            )
        per_axis = [check_grid(e, "edges") for e in (edges if dim == 2 else [edges])]
        for axis_edges in per_axis:
            if len(axis_edges) < 2:
                raise ValueError(f"edges needs at least 2 values (one bin), got {len(axis_edges)}")
        self.edges = per_axis[0] if dim == 1 else tuple(per_axis)
        self.nodes_per_bin = check_count((128 if dim == 1 else 8) if nodes_per_bin is None else nodes_per_bin,
                                         "nodes_per_bin", minimum=2)  # fmt: skip
        if self.nodes_per_bin % 2:
            raise ValueError(f"nodes_per_bin must be even (Simpson's rule), got {nodes_per_bin}")

    @classmethod
    def like(
        cls, histogram: HistogramDensity, truth: ConditionalDensity, nodes_per_bin: int | None = None
    ) -> BinnedTruth:
        """The truth on the same bins as ``histogram`` (a fitted :class:`~utilis.baselines.BinnedClassifier`)."""
        return cls(truth, histogram.bin_edges, nodes_per_bin)

    @property
    def bin_edges(self) -> np.ndarray | tuple[np.ndarray, ...]:
        return self.edges

    def _log_masses(self, x: np.ndarray) -> np.ndarray:
        """log P(y in bin b | x) by Simpson's rule, unnormalised: (len(x), B) (B the cells, in the plane)."""
        if self.y_space.dim == 1:
            nodes, log_weights = _simpson_nodes(self.edges, self.nodes_per_bin)  # (B, nodes)
            rows = max(1, _BLOCK_ELEMENTS // nodes.size)
            masses = _over_blocks(
                lambda block: logsumexp_last(self.truth.log_prob(nodes, x[block, None, None]) + log_weights),
                len(x),
                rows,
            )
            return np.concatenate(masses) if masses else np.empty((0, len(log_weights)))
        (n1, w1), (n2, w2) = (_simpson_nodes(e, self.nodes_per_bin) for e in self.edges)
        b1, b2, k = len(n1), len(n2), self.nodes_per_bin + 1
        plane = np.stack(np.meshgrid(n1.ravel(), n2.ravel(), indexing="ij"), axis=-1)  # (B1 k, B2 k, 2)
        log_weights = (w1[:, :, None, None] + w2[None, None, :, :]).transpose(0, 2, 1, 3).reshape(b1 * b2, k * k)
        x_rows = x if self.x_dim == 1 else x[:, None, None, :]

        def block_masses(block: slice) -> np.ndarray:
            log_p = self.truth.log_prob(plane, x_rows[block, None, None] if self.x_dim == 1 else x_rows[block])
            cells = log_p.reshape(-1, b1, k, b2, k).transpose(0, 1, 3, 2, 4).reshape(-1, b1 * b2, k * k)
            return logsumexp_last(cells + log_weights)

        masses = _over_blocks(block_masses, len(x), max(1, _BLOCK_ELEMENTS // plane[..., 0].size))
        return np.concatenate(masses) if masses else np.empty((0, b1 * b2))

    def _given_x(self, x):
        log_mass = self._log_masses(x)
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

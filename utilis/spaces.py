"""Output spaces: where y lives, asked by every helper instead of assuming a scalar.

A conditional density declares the space of its y (``density.y_space``) and the dimension of its x
(``density.x_dim``). The space answers what the helpers need to know about y:

- ``dim``: the length of y's event axis (1: y is a scalar and carries no event axis);
- ``distance(a, b)``: the distance between points, for best-of-k and winner-takes-all;
- ``standardisation(y)``: the shift and scale that z-score training targets;
- ``grid(ranges, n)``: an evaluation :class:`Grid` with quadrature weights of the reference measure;
- ``find_modes(log_density, grid, min_mass)``: the modes of a density evaluated on such a grid;
- ``bounds`` and ``reference_measure``: where y can be, and what the density is a density against.

Shapes follow ``torch.distributions`` and sbi: batch axes first, then one event axis of length
``dim``; for ``dim == 1`` the event axis is left out, so a scalar y is a plain array. Today the space
is the Euclidean R^d (:class:`Euclidean`). The circle (an angle in [-pi, pi), density against arc
length), products such as SE(2), and SO(3) (density against the Haar measure of total volume pi^2)
are the next spaces: each brings its own distance, grid (equal-volume cells) and neighbourhood for
mode finding (a periodic axis wraps in :func:`grid_modes`), while the helpers stay as they are.

Example:
    >>> import numpy as np
    >>> plane = Euclidean(2)
    >>> float(plane.distance(np.array([0.0, 0.0]), np.array([3.0, 4.0])))
    5.0
    >>> grid = plane.grid([(-1.0, 1.0), (0.0, 2.0)], 101)
    >>> grid.points.shape, grid.shape, round(float(grid.weights.sum()), 12)
    ((10201, 2), (101, 101), 4.0)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, ndimage, signal

__all__ = ["EUCLIDEAN_LINE", "Euclidean", "Grid", "OutputSpace", "grid_modes", "line_modes"]


@dataclass(frozen=True, eq=False)
class Grid:
    """An evaluation grid over an output space: nodes, their layout and their quadrature weights.

    Attributes:
        axes: the nodes along each axis, increasing (one array per dimension).
        points: every node, shape ``(N,)`` in one dimension and ``(N, d)`` otherwise, the axes
            flattened in C order (the last axis fastest), so ``values.reshape(grid.shape)`` is an image.
        weights: trapezoidal weights of the reference measure, shape ``(N,)``: the integral of f
            is ``weights @ f(points)``.
    """

    axes: tuple[np.ndarray, ...]
    points: np.ndarray
    weights: np.ndarray

    @classmethod
    def on_line(cls, nodes: np.ndarray) -> Grid:
        """The 1-D grid of increasing ``nodes``, with trapezoidal weights."""
        return cls((nodes,), nodes, trapezoid_weights(nodes))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(axis) for axis in self.axes)

    @property
    def dim(self) -> int:
        return len(self.axes)

    def __len__(self) -> int:
        return len(self.weights)


def trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Weights w with w @ f(nodes) the trapezoidal rule on increasing ``nodes`` (0 for a single node)."""
    half_steps = np.diff(nodes) / 2
    weights = np.zeros(len(nodes))
    weights[:-1] += half_steps
    weights[1:] += half_steps
    return weights


class OutputSpace(ABC):
    """The space y lives in: its dimension, distance, standardisation, grids, modes and bounds."""

    dim: int
    reference_measure: str

    @property
    @abstractmethod
    def bounds(self) -> np.ndarray:
        """Where y can be: shape ``(dim, 2)``, each row (low, high), infinite for an unbounded axis."""

    @abstractmethod
    def distance(self, a: ArrayLike, b: ArrayLike) -> np.ndarray:
        """The distance between points ``a`` and ``b`` (broadcast over their batch axes)."""

    @abstractmethod
    def standardisation(self, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """The shift and scale, each of shape ``(dim,)``, that z-score training targets ``y``."""

    @abstractmethod
    def grid(self, ranges: ArrayLike, n: int | Sequence[int], rule: str = "trapezoid") -> Grid:
        """An evaluation grid of ``n`` nodes an axis over ``ranges`` (``(low, high)`` an axis), with
        the quadrature weights of ``rule``."""

    @abstractmethod
    def find_modes(self, log_density: ArrayLike, grid: Grid, min_mass: float = 0.05) -> np.ndarray:
        """The modes of one density evaluated at ``grid.points``: shape ``(k,)`` or ``(k, dim)``."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.dim == other.dim

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.dim))


def event_batch_shape(values: np.ndarray, dim: int, name: str) -> tuple[int, ...]:
    """The batch shape of ``values`` whose last axis is an event axis of length ``dim`` (none when
    ``dim == 1``); a ``ValueError`` that states the shape expected and the shape given otherwise."""
    if dim == 1:
        return values.shape
    if values.ndim == 0 or values.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape (..., {dim}): its last axis holds the {dim} coordinates, got shape {values.shape}"
        )
    return values.shape[:-1]


class Euclidean(OutputSpace):
    """R^d with the Euclidean distance and the Lebesgue measure.

    z-scoring shifts and scales each axis by the training targets' mean and standard deviation (an
    axis that does not vary keeps a scale of 1). Grids are regular on each axis with trapezoidal
    weights; modes on a grid are the peaks of :func:`line_modes` (d = 1) or :func:`grid_modes`
    (d = 2). No grid is offered beyond two dimensions, where a regular grid no longer fits in memory
    at a useful resolution: scores that need one are for d <= 2, the rest (gap, best-of-k,
    calibration) hold in any dimension.
    """

    reference_measure = "Lebesgue"

    def __init__(self, dim: int = 1):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = int(dim)

    def __repr__(self) -> str:
        return f"Euclidean({self.dim})"

    @property
    def bounds(self) -> np.ndarray:
        return np.tile([-np.inf, np.inf], (self.dim, 1))

    def distance(self, a: ArrayLike, b: ArrayLike) -> np.ndarray:
        difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        if self.dim == 1:
            return np.abs(difference)
        return np.sqrt(np.sum(difference * difference, axis=-1))

    def standardisation(self, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(y, dtype=np.float64).reshape(-1, self.dim)
        scale = values.std(axis=0)
        return values.mean(axis=0), np.where(scale > 0, scale, 1.0)

    def grid(self, ranges: ArrayLike, n: int | Sequence[int], rule: str = "trapezoid") -> Grid:
        """``rule="trapezoid"``: n nodes an axis from low to high, the ends included, trapezoidal
        weights. ``rule="midpoint"``: the centres of n equal cells an axis, each weighing its cell's
        volume; exact for a density that is constant on cells whose edges are the grid's (a histogram,
        the room's tiles), where the trapezoid's nodes on a jump cost it an error of the order of a step."""
        if rule not in ("trapezoid", "midpoint"):
            raise ValueError(f"rule must be 'trapezoid' or 'midpoint', got {rule!r}")
        if self.dim > 2:
            raise ValueError(f"a regular grid serves d <= 2; this space has d = {self.dim}: use scores without a grid")
        bounds = np.asarray(ranges, dtype=np.float64).reshape(-1, 2) if np.size(ranges) else np.empty((0, 2))
        if bounds.shape != (self.dim, 2) or not np.all(np.isfinite(bounds)) or not np.all(bounds[:, 0] < bounds[:, 1]):
            raise ValueError(f"ranges must be {self.dim} finite increasing (low, high) pairs, got {ranges!r}")
        counts = np.broadcast_to(np.asarray(n), (self.dim,))
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 2 for c in counts.tolist()):
            raise ValueError(f"n must be an integer >= 2 (or one an axis), got {n!r}")
        if rule == "trapezoid":
            axes = tuple(np.linspace(low, high, int(c)) for (low, high), c in zip(bounds, counts))
            axis_weights = [trapezoid_weights(axis) for axis in axes]
        else:
            steps = [(high - low) / int(c) for (low, high), c in zip(bounds, counts)]
            axes = tuple(low + step * (np.arange(int(c)) + 0.5) for (low, _), step, c in zip(bounds, steps, counts))
            axis_weights = [np.full(len(axis), step) for axis, step in zip(axes, steps)]
        if self.dim == 1:
            return Grid(axes, axes[0], axis_weights[0])
        mesh = np.meshgrid(*axes, indexing="ij")
        points = np.stack([m.ravel() for m in mesh], axis=-1)
        return Grid(axes, points, np.multiply.outer(*axis_weights).ravel())

    def find_modes(self, log_density: ArrayLike, grid: Grid, min_mass: float = 0.05) -> np.ndarray:
        log_p = np.asarray(log_density, dtype=np.float64)
        if log_p.shape not in ((len(grid),), grid.shape):
            raise ValueError(f"log_density must hold one value per grid node, shape {grid.shape}, got {log_p.shape}")
        if self.dim == 1:
            return line_modes(log_p.ravel(), grid.axes[0], min_mass)
        return grid_modes(log_p.reshape(grid.shape), grid.axes, min_mass, grid.weights.reshape(grid.shape))


EUCLIDEAN_LINE = Euclidean(1)
"""The real line: the space of every scalar density (the default of the checked base)."""


def _check_log_density(log_p: np.ndarray, min_mass: float) -> None:
    if np.isnan(log_p).any() or np.all(log_p == -np.inf):
        raise ValueError("log_density must be a density on the grid: no NaN, not -inf everywhere")
    if not 0 <= min_mass < 1:
        raise ValueError(f"min_mass must be in [0, 1), got {min_mass}")


def line_modes(log_p: np.ndarray, y: np.ndarray, min_mass: float = 0.05) -> np.ndarray:
    """The modes of a density on an increasing 1-D grid ``y``: peaks whose basin holds ``min_mass``.

    A peak's basin runs to the lowest points between it and its neighbouring peaks. A flat peak (a
    plateau, as a uniform density has) counts once, at its middle. Peaks lower than 1e-6 of the
    highest, numerical ripples, are ignored. Returns the y of each mode, increasing.
    """
    _check_log_density(log_p, min_mass)
    p = np.exp(log_p - log_p.max())
    padded = np.concatenate([[0.0], p, [0.0]])  # so that peaks at the grid's ends are found
    peaks, _ = signal.find_peaks(padded, prominence=1e-6)
    peaks -= 1
    if len(peaks) == 0:
        return np.empty(0)
    cuts = [0] + [a + int(np.argmin(p[a : b + 1])) for a, b in zip(peaks[:-1], peaks[1:])] + [len(p) - 1]
    masses = np.array([integrate.trapezoid(p[lo : hi + 1], y[lo : hi + 1]) for lo, hi in zip(cuts[:-1], cuts[1:])])
    masses /= integrate.trapezoid(p, y)
    return y[peaks[masses >= min_mass]]


_NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


SHALLOW_DIP = 0.1
"""A peak counts as a mode in 2-D only if the pass to any higher peak dips at least this share below
it. A narrow ridge that lies across the grid's lines reaches each node at a different distance from
its crest, so its nodes ripple: local maxima a few per cent apart along one peak. The 1-D rule (a
prominence of 1e-6 of the highest) resolves peaks along the line; in the plane the grid cannot."""


def _merge_shallow_peaks(p: np.ndarray, basin: np.ndarray, labels: np.ndarray, n_plateaus: int) -> np.ndarray:
    """Which peak owns each basin's mass: ``owner[label]``, after the peaks whose pass to a higher peak
    dips less than ``SHALLOW_DIP`` below them give their basins to that peak (0-dimensional
    persistence: passes taken from the highest down, a union-find over the basins)."""
    height = np.zeros(n_plateaus + 1)
    top = labels.ravel() > 0
    height[labels.ravel()[top]] = p.ravel()[top]  # each plateau's height (label 0, no plateau, stays 0)
    pairs, passes = [], []
    for di, dj in ((0, 1), (1, 0), (1, 1), (1, -1)):  # every pair of neighbouring nodes once
        rows = slice(0, basin.shape[0] - di)
        first = (rows, slice(max(0, -dj), basin.shape[1] - max(0, dj)))
        second = (slice(di, None), slice(max(0, dj), basin.shape[1] - max(0, -dj) or None))
        a, b = basin[first].ravel(), basin[second].ravel()
        across = a != b
        pairs.append(np.stack([a[across], b[across]], axis=-1))
        passes.append(np.minimum(p[first].ravel()[across], p[second].ravel()[across]))
    pairs, passes = np.concatenate(pairs), np.concatenate(passes)
    owner = np.arange(n_plateaus + 1)
    if len(pairs) == 0:
        return owner
    pairs.sort(axis=1)
    order = np.lexsort((-passes, pairs[:, 1], pairs[:, 0]))
    pairs, passes = pairs[order], passes[order]
    first_of_pair = np.ones(len(pairs), dtype=bool)
    first_of_pair[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    pairs, passes = pairs[first_of_pair], passes[first_of_pair]  # the highest pass between two basins

    component = np.arange(n_plateaus + 1)  # union-find over basins; a root is its component's highest peak

    def root(a: int) -> int:
        while component[a] != a:
            component[a] = component[component[a]]
            a = component[a]
        return a

    for (a, b), level in zip(pairs[np.argsort(-passes, kind="stable")], np.sort(passes)[::-1]):
        ra, rb = root(int(a)), root(int(b))
        if ra == rb:
            continue
        if height[ra] < height[rb]:
            ra, rb, a, b = rb, ra, b, a
        if height[rb] - level < SHALLOW_DIP * height[rb]:  # a shallow dip: rb's peak is part of ra's side
            owner[owner == owner[rb]] = owner[int(a)]
        component[rb] = ra
    return owner


def grid_modes(
    log_p: np.ndarray, axes: Sequence[np.ndarray], min_mass: float = 0.05, weights: np.ndarray | None = None
) -> np.ndarray:
    """The modes of a density on a 2-D grid (an image over ``axes``): peaks whose basin holds ``min_mass``.

    The 2-D reading of :func:`line_modes`. Every node climbs to its highest neighbour (of eight) until
    it reaches a peak, and a peak's basin is every node that climbs to it, so basins meet along the
    valleys between peaks. A peak is a node no neighbour exceeds; a plateau of such nodes (a uniform
    density's) counts once, at its node nearest its centroid, and only if every node around it is
    lower (a flat shoulder beside higher ground drains into it, as in 1-D). A peak whose pass to a
    higher one dips less than ``SHALLOW_DIP`` (a tenth) below it gives its basin to that peak: the
    ripples of a ridge across the grid's lines are not modes, though the grid must still resolve the
    ridge's width. A basin's mass is its share of the integral, by ``weights`` (an image like
    ``log_p``; trapezoidal weights on ``axes`` by default). Returns the modes' coordinates, shape
    ``(k, 2)``, in the order of their nodes. (On a circle's axis the first and last nodes would be
    neighbours too: the padding below is where a periodic axis wraps.)
    """
    _check_log_density(log_p, min_mass)
    n1, n2 = log_p.shape
    p = np.exp(log_p - log_p.max())

    def around(values: np.ndarray, off_grid: object) -> np.ndarray:
        """(8, n1, n2): each node's eight neighbours' values (``off_grid`` beyond the grid's edges)."""
        padded = np.pad(values, 1, constant_values=off_grid)
        return np.stack([padded[1 + di : 1 + di + n1, 1 + dj : 1 + dj + n2] for di, dj in _NEIGHBOURS])

    index = np.arange(n1 * n2).reshape(n1, n2)
    neighbour_index = around(index, 0)  # off-grid neighbours are never chosen: their value is -1 < p
    neighbour_values = around(p, -1.0)
    is_top = p >= neighbour_values.max(axis=0)  # no neighbour is higher
    steepest = np.take_along_axis(neighbour_index, neighbour_values.argmax(axis=0)[None], axis=0)[0]
    parent = np.where(is_top, index, steepest).ravel()

    # Plateaus of top nodes; one beside an equal node that is not a top (it has higher ground) is a
    # shoulder and drains through such nodes.
    structure = np.ones((3, 3))
    labels, n_plateaus = ndimage.label(is_top, structure=structure)
    equal = neighbour_values == p
    shoulders = np.unique(labels[is_top & (equal & ~around(is_top, True)).any(axis=0)])
    boxes = ndimage.find_objects(labels)
    for shoulder in shoulders:  # each shoulder's nodes hand on to the nearest node it drains through
        rows, columns = boxes[shoulder - 1]
        rows = slice(max(rows.start - 1, 0), min(rows.stop + 1, n1))  # the box and the ring around it
        columns = slice(max(columns.start - 1, 0), min(columns.stop + 1, n2))
        inside = labels[rows, columns] == shoulder
        level = p[rows, columns][inside][0]
        exits = ndimage.binary_dilation(inside, structure) & ~inside & (p[rows, columns] == level)
        exits &= ~is_top[rows, columns]  # its own exits only: equal nodes beside it with higher ground
        nearest = ndimage.distance_transform_edt(~exits, return_distances=False, return_indices=True)
        offset = np.array([rows.start, columns.start])[:, None]
        parent[index[rows, columns][inside]] = np.ravel_multi_index(tuple(nearest[:, inside] + offset), (n1, n2))

    for _ in range(n1 * n2):  # pointer jumping: about log2(longest climb) rounds
        grandparent = parent[parent]
        if np.array_equal(grandparent, parent):
            break
        parent = grandparent
    assert is_top.ravel()[parent].all(), "every climb ends on a peak"
    peak_labels = labels.ravel()[parent]  # the plateau each node climbs to
    owner = _merge_shallow_peaks(p, peak_labels.reshape(n1, n2), labels, n_plateaus)
    if weights is None:
        weights = np.multiply.outer(trapezoid_weights(axes[0]), trapezoid_weights(axes[1]))
    mass = np.bincount(owner[peak_labels], weights=np.ravel(weights) * p.ravel(), minlength=n_plateaus + 1)
    mass /= mass.sum()
    found = []
    for label in range(1, n_plateaus + 1):
        if label in shoulders or owner[label] != label or mass[label] < min_mass:
            continue
        rows, columns = np.nonzero(labels == label)
        middle = np.argmin((rows - rows.mean()) ** 2 + (columns - columns.mean()) ** 2)
        found.append((axes[0][rows[middle]], axes[1][columns[middle]]))
    return np.array(found, dtype=np.float64).reshape(-1, 2)

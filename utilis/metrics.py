"""Scores of a conditional density against the truth.

Every function takes densities that speak the conditional-density protocol and points (x, y), so a
dataset's exact density and any trained model are scored by the same code.

- :func:`nll`: mean negative log-likelihood, in nats.
- :func:`bayes_gap`: a model's NLL minus the truth's on the same points (the Bayes floor), with a
  standard error; it estimates the mean KL(truth || model) over p(x), and 0 is the limit.
- :func:`kl_divergence`: KL(truth || model) on a y grid at each x.
- :func:`mode_recall_precision`: the modes of p(y|x) a model finds and invents
  (:func:`utilis.density.find_modes` finds them).
- :func:`best_of_k_error`: the oracle error of k samples, as multiple-hypothesis papers report it,
  in the output space's distance.
- :func:`calibration_ranks` and :func:`ks_from_uniform`: calibration, by the probability integral
  transform for a scalar y and by the coverage of the model's highest-density regions in any dimension.

The gap, best-of-k and calibration hold in any dimension of x and y; KL and modes need a grid of y,
which the output space offers on the line and in the plane (:mod:`utilis.spaces`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike
from scipy import integrate

from utilis.density import check_grid, log_conditional_grid, log_prob_on_grid
from utilis.protocol import (
    ConditionalDensity,
    as_generator,
    check_count,
    check_inputs,
    check_jobs,
    check_positive,
    finite_array,
    require_density,
    same_dimensions,
    x_dim_of,
    y_space_of,
)
from utilis.spaces import EUCLIDEAN_LINE, Grid, OutputSpace

K = TypeVar("K")

__all__ = [
    "Gap",
    "ModeScores",
    "bayes_gap",
    "bayes_gaps",
    "best_of_k_error",
    "calibration_ranks",
    "fresh_seed",
    "kl_divergence",
    "ks_from_uniform",
    "mode_recall_precision",
    "nll",
    "score",
    "score_table",
]


def _check_points(x: ArrayLike, y: ArrayLike, x_dim: int = 1, y_dim: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """n points (x_i, y_i): x of shape (n,) or (n, x_dim), y of shape (n,) or (n, y_dim), n >= 1."""
    arrays = []
    for name, values, dim in (("x", x, x_dim), ("y", y, y_dim)):
        array = finite_array(values, name)
        array = np.atleast_1d(array) if dim == 1 else array
        expected = "(n,)" if dim == 1 else f"(n, {dim})"
        if array.ndim != (1 if dim == 1 else 2) or array.shape[0] == 0 or array.shape[1:] not in ((), (dim,)):
            raise ValueError(f"{name} must be non-empty points of shape {expected}, got shape {array.shape}")
        arrays.append(array)
    if len(arrays[1]) != len(arrays[0]):
        raise ValueError(f"y must hold one point per x, {len(arrays[0])}, got {len(arrays[1])}")
    return arrays[0], arrays[1]


def _points_of(density: ConditionalDensity, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return _check_points(x, y, x_dim_of(density), y_space_of(density).dim)


def _log_likelihoods(density: ConditionalDensity, x: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    require_density(density, name)
    log_p = np.asarray(density.log_prob(y, x), dtype=np.float64)
    if log_p.shape != (len(x),):
        raise ValueError(f"{name}.log_prob returned shape {log_p.shape} for {len(x)} points")
    if np.isnan(log_p).any():
        raise ValueError(f"{name}.log_prob returned NaN at x = {x[np.isnan(log_p)][0]}")
    return log_p


def nll(density: ConditionalDensity, x: ArrayLike, y: ArrayLike) -> float:
    """Mean negative log-likelihood -1/n sum_i log p(y_i | x_i), in nats (inf if a point has density 0)."""
    x, y = _points_of(density, x, y)
    return float(-_log_likelihoods(density, x, y, "density").mean())


@dataclass(frozen=True)
class Gap:
    """A model's NLL minus the truth's on the same points, with the standard error of that mean."""

    gap: float
    stderr: float
    model_nll: float
    truth_nll: float

    def __str__(self) -> str:
        return f"{self.gap:.4f} ± {self.stderr:.4f} nats (model {self.model_nll:.4f}, Bayes floor {self.truth_nll:.4f})"


def bayes_gap(model: ConditionalDensity, truth: ConditionalDensity, x: ArrayLike, y: ArrayLike) -> Gap:
    """The gap to the Bayes floor: mean over points of log p(y|x) - log q(y|x), with its standard error.

    Use a large fresh sample from the dataset (``x, y, _ = data.sample(20_000)``): the mean of the
    paired differences is an unbiased estimate of E_x KL(p(.|x) || q(.|x)), and pairing removes most
    of the noise that the two NLLs carry on their own. In any dimension: x of shape (n,) or (n, d_x),
    y of shape (n,) or (n, d_y), as the two densities (which must agree) declare.
    """
    return _gaps({"model": model}, truth, x, y, label=str)["model"]


def bayes_gaps(
    models: Mapping[K, ConditionalDensity], truth: ConditionalDensity, x: ArrayLike, y: ArrayLike, n_jobs: int = 1
) -> dict[K, Gap]:
    """:func:`bayes_gap` of each model on the same points, the truth's log-density computed once.

    The truth is the dearer density on some datasets (the robot arm's sums over its inverse solutions
    and integrates p(x)), so a table of many models on one test set asks it once. ``n_jobs`` other than 1
    computes each density's log-likelihoods in joblib's worker processes (-1: one a usable core); the
    gaps are the same.
    """
    return _gaps(models, truth, x, y, label=lambda name: f"models[{name!r}]", n_jobs=n_jobs)


def _gaps(models: Mapping[K, ConditionalDensity], truth, x, y, label: Callable[[K], str], n_jobs=1) -> dict[K, Gap]:
    n_jobs = check_jobs(n_jobs)
    for name, model in models.items():
        require_density(model, label(name))
    require_density(truth, "truth")
    for name, model in models.items():
        same_dimensions(model, truth, (label(name), "truth"))
    x, y = _points_of(truth, x, y)
    asked = [(truth, "truth"), *((model, label(name)) for name, model in models.items())]
    if n_jobs == 1:
        log_p, *log_q = (_log_likelihoods(density, x, y, name) for density, name in asked)
    else:
        each = Parallel(n_jobs=n_jobs, batch_size=1)(delayed(_log_likelihoods)(d, x, y, name) for d, name in asked)
        log_p, *log_q = each
    return {name: _gap(log_q_i, log_p) for name, log_q_i in zip(models, log_q)}


def _gap(log_q: np.ndarray, log_p: np.ndarray) -> Gap:
    difference = log_p - log_q
    if not np.all(np.isfinite(difference)):  # the model gives some point density 0: an infinite gap
        return Gap(float(difference.mean()), float("inf"), float(-log_q.mean()), float(-log_p.mean()))
    stderr = float(difference.std(ddof=1) / np.sqrt(len(log_p))) if len(log_p) > 1 else float("nan")
    return Gap(float(difference.mean()), stderr, float(-log_q.mean()), float(-log_p.mean()))


def kl_divergence(truth: ConditionalDensity, model: ConditionalDensity, x: ArrayLike, y_grid: ArrayLike) -> np.ndarray:
    """KL(truth(.|x) || model(.|x)) at each x, by the trapezoidal rule on ``y_grid``: shape (len(x),).

    The grid must hold the truth's mass and resolve its narrowest peak; where the truth is 0 the
    integrand is 0. Average the result over x drawn from p(x) for the mean KL. For a y in the plane,
    ``y_grid`` is a :class:`~utilis.spaces.Grid` (``truth.y_space.grid(ranges, n)``), integrated by
    its weights, and x holds points of the truth's x.
    """
    require_density(truth, "truth"), require_density(model, "model")
    if isinstance(y_grid, Grid):
        unique, inverse, _ = _inputs_for_grid(truth, model, x, y_grid)
        log_p, log_q = log_prob_on_grid(truth, unique, y_grid), log_prob_on_grid(model, unique, y_grid)
        return _kl_with_weights(log_p, log_q, y_grid.weights)[inverse]
    x_points = np.atleast_1d(finite_array(x, "x"))
    if x_points.ndim != 1 or x_points.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x_points.shape}")
    y = check_grid(y_grid, "y_grid")
    if len(y) < 2:
        raise ValueError(f"y_grid needs at least 2 points, got {len(y)}")
    unique, inverse = np.unique(x_points, return_inverse=True)  # the grid helpers need increasing x
    log_p = log_conditional_grid(truth, unique, y)  # (n_y, n_unique)
    log_q = log_conditional_grid(model, unique, y)
    return _kl_on_grid(log_p, log_q, y)[inverse]


def _inputs_for_grid(truth, model, x: ArrayLike, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct inputs among ``x`` (of the truth's dimension), the index of each x among them and
    their counts; ``ValueError`` unless both densities share dimensions and the grid is of their y."""
    same_dimensions(model, truth)
    if grid.dim != y_space_of(truth).dim:
        raise ValueError(f"y_grid must be a grid of the truth's y, {y_space_of(truth)!r}, got {grid.dim} axes")
    points = check_inputs(x, "x", x_dim_of(truth))
    axis = None if points.ndim == 1 else 0
    unique, inverse, counts = np.unique(points, axis=axis, return_inverse=True, return_counts=True)
    return unique, inverse.ravel(), counts


def _kl_on_grid(log_p: np.ndarray, log_q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KL(p || q) in each column of two log-density grids (n_y, n_x), by the trapezoidal rule on y."""
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        integrand = np.where(p > 0, p * (log_p - log_q), 0.0)
    return integrate.trapezoid(integrand, y, axis=0)


@dataclass(frozen=True)
class ModeScores:
    """Pooled over the x points: the share of true modes the model finds, and of its modes that are true."""

    recall: float
    precision: float
    true_modes: int
    model_modes: int


def mode_recall_precision(
    truth: ConditionalDensity,
    model: ConditionalDensity,
    x: ArrayLike,
    y_grid: ArrayLike,
    tolerance: float,
    min_mass: float = 0.05,
) -> ModeScores:
    """Mode recall (true modes with a model mode within ``tolerance``) and precision (model modes with a
    true mode within ``tolerance``), counted over all x. Modes are peaks holding ``min_mass``
    (:func:`find_modes`). A density with no modes at any x scores 1 on what it has nothing to miss.
    For a y in the plane, ``y_grid`` is a :class:`~utilis.spaces.Grid`; modes are then found by the
    space (``truth.y_space.find_modes``) and matched in its distance.
    """
    require_density(truth, "truth"), require_density(model, "model")
    tolerance = check_positive(tolerance, "tolerance")
    if isinstance(y_grid, Grid):
        unique, _, counts = _inputs_for_grid(truth, model, x, y_grid)
        log_p, log_q = log_prob_on_grid(truth, unique, y_grid), log_prob_on_grid(model, unique, y_grid)
        return _modes_in_space(y_space_of(truth), y_grid, log_p, log_q, counts, tolerance, min_mass)
    x_points = np.atleast_1d(finite_array(x, "x"))
    y = check_grid(y_grid, "y_grid")
    unique, counts = np.unique(x_points, return_counts=True)  # a repeated x counts as often as it appears
    log_p = log_conditional_grid(truth, unique, y)
    log_q = log_conditional_grid(model, unique, y)
    return _modes_on_grid(log_p, log_q, y, counts, tolerance, min_mass)


def _modes_on_grid(
    log_p: np.ndarray, log_q: np.ndarray, y: np.ndarray, counts: np.ndarray, tolerance: float, min_mass: float
) -> ModeScores:
    """:func:`mode_recall_precision` on two log-density grids (n_y, n_x), column j counted counts[j] times."""
    return _modes_in_space(EUCLIDEAN_LINE, Grid.on_line(y), log_p, log_q, counts, tolerance, min_mass)


def _draws(model: ConditionalDensity, x: np.ndarray, k: int, seed) -> np.ndarray:
    """k draws of y at each x, checked: shape (k, n) or (k, n, d_y)."""
    space = y_space_of(model)
    samples = np.asarray(model.sample(x, k, seed=as_generator(seed)), dtype=np.float64)
    expected = (k, len(x)) + ((space.dim,) if space.dim > 1 else ())
    if samples.shape != expected:
        raise ValueError(f"model.sample returned shape {samples.shape}, expected {expected}")
    return samples


def best_of_k_error(
    model: ConditionalDensity, x: ArrayLike, y: ArrayLike, k: int, seed: int | np.random.Generator | None = None
) -> float:
    """The oracle (best-of-k) error: mean over points of min_j d(y_i, s_ij) for k samples s_ij ~ q(.|x_i),
    d the distance of the model's output space (|y - s| on the line, Euclidean in R^d)."""
    require_density(model, "model")
    x, y = _points_of(model, x, y)
    samples = _draws(model, x, check_count(k, "k"), seed)
    return float(y_space_of(model).distance(samples, y[None]).min(axis=0).mean())


def calibration_ranks(
    model: ConditionalDensity, x: ArrayLike, y: ArrayLike, k: int = 200, seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """For each point, where y_i falls among k draws s_ij ~ q(.|x_i): uniform on (0, 1) for a calibrated model.

    For a scalar y, the probability integral transform: the share of draws below y_i. In any
    dimension, the coverage of the model's highest-density regions (the expected-coverage diagnostic
    of simulation-based inference, as sbi computes it): the share of draws that q finds less likely
    than y_i, log q(s_ij | x_i) < log q(y_i | x_i). A y_i in the model's most likely region ranks near
    1; one the model thinks improbable near 0. The result is (rank + 1/2) / (k + 1), strictly inside
    (0, 1). In the PIT a tie counts a half (as the leaderboard has always counted it: ties have
    probability 0 for a continuous y); in the coverage, ties are the rule where the density is
    piecewise constant (a histogram, the room), so y_i takes a uniformly random place among the draws
    it ties with, which keeps the rank uniform. Returns ``(pit, coverage)`` stacked as shape (2, n) for
    a scalar y and shape (1, n), the coverage alone, otherwise.
    """
    require_density(model, "model")
    x, y = _points_of(model, x, y)
    k, rng = check_count(k, "k"), as_generator(seed)
    samples = _draws(model, x, k, rng)
    log_y = _log_likelihoods(model, x, y, "model")
    log_s = np.asarray(model.log_prob(samples, x[None]), dtype=np.float64)  # (k, n)
    ties = (log_s == log_y[None]).sum(axis=0)
    coverage = ((log_s < log_y[None]).sum(axis=0) + rng.integers(0, ties + 1) + 0.5) / (k + 1)
    if y_space_of(model).dim > 1:
        return coverage[None]
    pit = ((samples < y[None]).sum(axis=0) + 0.5 * (samples == y[None]).sum(axis=0) + 0.5) / (k + 1)
    return np.stack([pit, coverage])


def ks_from_uniform(u: ArrayLike) -> float:
    """sup_u |F(u) - u|, the Kolmogorov-Smirnov distance of the values' empirical CDF from uniform."""
    u = np.sort(finite_array(u, "u").ravel())
    if u.size == 0:
        raise ValueError("u must hold at least one value, got none")
    n = len(u)
    return float(max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n)))


def fresh_seed(seed: int) -> int:
    """The seed of the fresh points a model trained on a dataset drawn from ``seed`` is scored on: ``10,000 +
    seed``, a seed no dataset of the repository's runs is drawn from (they use 0 to 9,999), so the test
    points are never the training points."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return 10_000 + int(seed)


def score(
    model: ConditionalDensity,
    data,
    n_points: int = 20_000,
    n_x: int = 200,
    seed: int = 0,
    tolerance: float | None = None,
) -> dict[str, float]:
    """The standard scores of a model against a dataset's truth, on fresh points from ``data.sample``.

    gap (± stderr) on ``n_points`` points, and the Bayes floor it is measured from (the truth's NLL on
    them: negative where the density exceeds 1, as narrow peaks do); mean KL(truth || model) and mode
    recall/precision on the first ``n_x`` of them, over a 4000-point grid spanning ``data.y_range``; modes match within
    ``tolerance`` (default 2% of the y range).
    """
    require_density(model, "model")
    same_dimensions(model, data.truth)
    space = y_space_of(data.truth)
    if space.dim > 1:
        return _score_in_space(model, data, space, n_points, n_x, seed, tolerance)
    x, y, _ = data.sample(check_count(n_points, "n_points"), seed=seed)
    y_grid = np.linspace(*data.y_range, 4000)
    tolerance = 0.02 * (data.y_range[1] - data.y_range[0]) if tolerance is None else tolerance
    gap = bayes_gap(model, data.truth, x, y)
    # KL and modes share one pair of grids: the model's is the costliest part of a score
    unique, counts = np.unique(x[: check_count(n_x, "n_x")], return_counts=True)
    log_p = log_conditional_grid(data.truth, unique, y_grid)
    log_q = log_conditional_grid(model, unique, y_grid)
    modes = _modes_on_grid(log_p, log_q, y_grid, counts, check_positive(tolerance, "tolerance"), 0.05)
    return {
        "gap": gap.gap,
        "gap stderr": gap.stderr,
        "Bayes floor": gap.truth_nll,
        "KL": float(np.average(_kl_on_grid(log_p, log_q, y_grid), weights=counts)),
        "mode recall": modes.recall,
        "mode precision": modes.precision,
    }


GRID_NODES_2D = 200
"""Cells an axis of the grid that KL and modes use in the plane: 40,000 cell centres, resolving a peak
a 200th of the data's range wide; the midpoint rule is exact where a density is constant on the cells
(a tiling whose edges are the cells', as the room's)."""


def _score_in_space(
    model: ConditionalDensity, data, space: OutputSpace, n_points: int, n_x: int, seed: int, tolerance: float | None
) -> dict[str, float]:
    """:func:`score` for a vector y: the gap on ``n_points`` points; KL and modes on the first ``n_x``
    inputs over a grid of the data's y range where the space offers one (the plane), else omitted."""
    x, y, _ = data.sample(check_count(n_points, "n_points"), seed=seed)
    gap = bayes_gap(model, data.truth, x, y)
    scores = {"gap": gap.gap, "gap stderr": gap.stderr, "Bayes floor": gap.truth_nll}
    if space.dim > 2:
        return scores
    grid = space.grid(data.y_range, GRID_NODES_2D, rule="midpoint")
    diagonal = float(np.linalg.norm(np.ptp(np.asarray(data.y_range, dtype=np.float64), axis=1)))
    tolerance = check_positive(0.02 * diagonal if tolerance is None else tolerance, "tolerance")
    unique, _, counts = _inputs_for_grid(data.truth, model, x[: check_count(n_x, "n_x")], grid)
    log_p, log_q = log_prob_on_grid(data.truth, unique, grid), log_prob_on_grid(model, unique, grid)
    modes = _modes_in_space(space, grid, log_p, log_q, counts, tolerance, 0.05)
    kl = _kl_with_weights(log_p, log_q, grid.weights)
    return {**scores, "KL": float(np.average(kl, weights=counts)), "mode recall": modes.recall,
            "mode precision": modes.precision}  # fmt: skip


def _kl_with_weights(log_p: np.ndarray, log_q: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """KL(p || q) in each column of two log-density grids (N, n_x), by a quadrature rule's weights (N,)."""
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        integrand = np.where(p > 0, p * (log_p - log_q), 0.0)
    return weights @ integrand


def _modes_in_space(
    space: OutputSpace, grid: Grid, log_p: np.ndarray, log_q: np.ndarray, counts, tolerance: float, min_mass: float
) -> ModeScores:
    """:func:`mode_recall_precision` on grids of any space: modes by ``space.find_modes``, matched in its distance."""
    found = n_true = matched = n_model = 0
    for column, weight in enumerate(counts):
        true_modes = space.find_modes(log_p[:, column], grid, min_mass)
        model_modes = space.find_modes(log_q[:, column], grid, min_mass)
        distance = space.distance(true_modes[:, None], model_modes[None, :])  # (true, model)
        found += weight * int((distance <= tolerance).any(axis=1).sum())
        matched += weight * int((distance <= tolerance).any(axis=0).sum())
        n_true += weight * len(true_modes)
        n_model += weight * len(model_modes)
    return ModeScores(
        recall=float(found / n_true) if n_true else 1.0,
        precision=float(matched / n_model) if n_model else 1.0,
        true_modes=int(n_true),
        model_modes=int(n_model),
    )


def score_table(scores: dict[str, dict[str, float]]) -> str:
    """Rows of :func:`score` results, one per model label, as an aligned text table."""
    header = (
        f"{'model':<40} {'gap (nats)':>16} {'Bayes floor':>11} {'KL (nats)':>10} {'mode recall':>12} "
        f"{'mode precision':>15}"
    )
    rows = [
        f"{label:<40} {s['gap']:>9.4f} ± {s['gap stderr']:.4f} {s['Bayes floor']:>11.4f} {s['KL']:>10.4f} "
        f"{s['mode recall']:>12.2f} {s['mode precision']:>15.2f}"
        for label, s in scores.items()
    ]
    return "\n".join([header, *rows])

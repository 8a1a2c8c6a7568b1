"""The conditional-density protocol and the input checks every part of the repository shares.

Anything that has a p(y|x) speaks this protocol (see ``shared/design.md``):

- ``log_prob(y, x)``: log p(y | x) for arrays that broadcast against each other (numpy in, numpy out),
  never NaN for a finite query;
- ``sample(x, n, seed=None)``: ``n`` draws of y for each x, shape ``(n, len(x))``.

The helpers in ``utilis/`` rely on nothing else, so a dataset's exact density and every trained model
go through the same plotting and scoring code.
"""

from __future__ import annotations

import numbers
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike


@runtime_checkable
class ConditionalDensity(Protocol):
    """A conditional density p(y | x) over a scalar y given a scalar x."""

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x), broadcast over ``y`` and ``x``."""
        ...

    def sample(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of y for each x: shape ``(n, len(x))``."""
        ...


def finite_array(value: ArrayLike, name: str) -> np.ndarray:
    """``value`` as a float64 array; ``ValueError`` naming ``name`` if it is not numeric or not finite."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {value!r}") from error
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].ravel()[0]
        raise ValueError(f"{name} must be finite, got {bad} among its values")
    return array


def broadcast_query(y: ArrayLike, x: ArrayLike) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Check a (y, x) query: both as float64 arrays, *not* broadcast, and their broadcast shape.

    Leaving the arrays un-broadcast lets a density compute what depends on x alone once per x (and
    on y alone once per y) when the query is a grid, ``y[:, None]`` against ``x[None, :]``.
    """
    y_array, x_array = finite_array(y, "y"), finite_array(x, "x")
    try:
        shape = np.broadcast_shapes(y_array.shape, x_array.shape)
    except ValueError as error:
        raise ValueError(f"y of shape {y_array.shape} and x of shape {x_array.shape} do not broadcast") from error
    return y_array, x_array, shape


def logsumexp_last(terms: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis, exact for rows of -inf (gives -inf, never NaN).

    Leaner than ``scipy.special.logsumexp`` for the short component axes of mixtures on big grids.
    """
    peak = terms.max(axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(terms - peak).sum(axis=-1)) + peak[..., 0]


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``; ``ValueError`` naming ``name`` otherwise (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(value: object, name: str) -> float:
    """``value`` as a finite ``float`` > 0; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)

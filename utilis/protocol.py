"""The conditional-density protocol, its checked base class, and the input checks every part shares.

Anything that has a p(y|x) speaks this protocol (see ``shared/design.md``):

- ``log_prob(y, x)``: log p(y | x) for arrays that broadcast against each other (numpy in, numpy out),
  never NaN for a finite query;
- ``sample(x, n, seed=None)``: ``n`` draws of y for each x, shape ``(n, len(x))``.

The helpers in ``utilis/`` rely on nothing else, so a dataset's exact density and every trained model
go through the same plotting and scoring code. :class:`CheckedDensity` implements both methods once
(argument checks, broadcasting, what depends on x computed once per distinct x, shapes, numpy out),
so a new density writes only its maths:

Example:
    >>> import numpy as np
    >>> class Shifted(CheckedDensity):
    ...     '''y | x ~ N(x, 1), written as maths on checked arrays.'''
    ...     def _given_x(self, x):  # once per distinct x: the mean
    ...         return (x,)
    ...     def _log_prob(self, y, x, mean):
    ...         return -0.5 * (y - mean) ** 2 - 0.5 * np.log(2 * np.pi)
    ...     def _sample(self, x, n, rng, mean):
    ...         return mean + rng.standard_normal((n, len(x)))
    >>> density = Shifted()
    >>> density.log_prob(np.zeros((3, 1)), np.arange(4.0)).shape, density.sample(2.0, 5, seed=0).shape
    ((3, 4), (5, 1))
    >>> density.log_prob(0.0, np.nan)
    Traceback (most recent call last):
    ...
    ValueError: x must be finite, got nan among its values
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from utilis.numerics import CannotSample

__all__ = [
    "CheckedDensity",
    "ConditionalDensity",
    "JointDensity",
    "NotFittedError",
    "as_generator",
    "broadcast_query",
    "check_count",
    "check_inputs",
    "check_positive",
    "finite_array",
    "require_density",
]

Seed = int | np.random.Generator | None


@runtime_checkable
class ConditionalDensity(Protocol):
    """A conditional density p(y | x) over a scalar y given a scalar x."""

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x), broadcast over ``y`` and ``x``."""
        ...

    def sample(self, x: ArrayLike, n: int, seed: Seed = None) -> np.ndarray:
        """``n`` draws of y for each x: shape ``(n, len(x))``."""
        ...


@runtime_checkable
class JointDensity(Protocol):
    """The optional joint interface: a density that also knows p(x) (a dataset's truth, a generative model).

    Helpers that draw the joint p(x, y) (:func:`utilis.density.log_joint_grid`) use it when present.
    """

    def log_joint(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """log p(x, y), broadcast over ``x`` and ``y``."""
        ...

    def log_marginal_x(self, x: ArrayLike) -> np.ndarray:
        """log p(x), same shape as ``x``."""
        ...


class NotFittedError(ValueError):
    """A model was asked for a density or samples before :meth:`fit` set its parameters."""


# ---- input checks ---------------------------------------------------------------------------------
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


def check_inputs(x: ArrayLike, name: str = "x") -> np.ndarray:
    """A scalar or 1-D array of finite inputs, as a 1-D float64 array (the x of ``sample``)."""
    array = np.atleast_1d(finite_array(x, name))
    if array.ndim != 1:
        raise ValueError(f"{name} must be a scalar or 1-D array, got shape {array.shape}")
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


def as_generator(seed: Seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


def require_density(density: object, name: str = "density") -> ConditionalDensity:
    """``density`` if it speaks the protocol; a ``ValueError`` that says what to pass otherwise.

    A dataset has a ``log_prob`` but its ``sample(n)`` draws (x, y, c): its conditional is ``data.truth``.
    """
    if hasattr(density, "x_train") and isinstance(getattr(density, "truth", None), ConditionalDensity):
        raise ValueError(
            f"{name} must be a conditional density, got the dataset {type(density).__name__}: "
            f"pass its exact conditional, data.truth"
        )
    if not isinstance(density, ConditionalDensity):
        raise ValueError(
            f"{name} must be a conditional density with log_prob(y, x) and sample(x, n, seed), "
            f"got {type(density).__name__}"
        )
    return density


# ---- the checked base -----------------------------------------------------------------------------
class CheckedDensity(ABC):
    """The conditional-density protocol implemented once; a subclass writes only the maths.

    The public :meth:`log_prob` and :meth:`sample` check their arguments (finite, broadcastable,
    ``n >= 1``, a valid seed), ask :meth:`_check_ready` (a model that was never fitted refuses),
    compute what depends on x alone once per distinct x (:meth:`_given_x`), and return float64
    numpy arrays of the right shape, never NaN (``sample`` raises ``CannotSample``, a ``ValueError``, where p(y|x)
    underflows and there is nothing to draw from). A subclass implements:

    - ``_given_x(x)``, optional: for a 1-D array of distinct x, a tuple of arrays whose first axis
      runs over x (mixture weights, means, log p(x), ...); default ``()``;
    - ``_log_prob(y, x, *given)``: log p(y | x) for float64 arrays that broadcast (``y`` and ``x`` as
      the caller shaped them; each ``given`` array indexed to ``x.shape + its trailing shape``);
    - ``_sample(x, n, rng, *given)``: an ``(n, len(x))`` array of draws for a 1-D ``x``.
    """

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x); ``y`` and ``x`` broadcast, and the result has their broadcast shape."""
        y_array, x_array, shape = broadcast_query(y, x)
        self._check_ready()
        out = np.asarray(self._log_prob(y_array, x_array, *self._given_at(x_array)), dtype=np.float64)
        if out.shape != shape:
            out = np.broadcast_to(out, shape).copy()
        if np.isnan(out).any():
            index = np.argwhere(np.isnan(out))[0]
            y_bad, x_bad = np.broadcast_to(y_array, shape)[tuple(index)], np.broadcast_to(x_array, shape)[tuple(index)]
            raise FloatingPointError(f"{type(self).__name__}.log_prob gave NaN at y = {y_bad}, x = {x_bad}")
        return out

    def sample(self, x: ArrayLike, n: int, seed: Seed = None) -> np.ndarray:
        """``n`` draws of y from p(y | x) for each x (a scalar or 1-D array): shape ``(n, len(x))``."""
        x_array, n, rng = check_inputs(x), check_count(n, "n"), as_generator(seed)
        self._check_ready()
        try:
            out = np.asarray(self._sample(x_array, n, rng, *self._given_at(x_array)), dtype=np.float64)
        except CannotSample as error:  # a kernel with nothing to sample from: say where
            raise CannotSample(f"{error}; x ranges over [{x_array.min()}, {x_array.max()}]") from error
        assert out.shape == (n, len(x_array)), f"_sample gave shape {out.shape}, not {(n, len(x_array))}"
        if np.isnan(out).any():
            raise FloatingPointError(f"{type(self).__name__}.sample gave NaN at x = {x_array[np.isnan(out).any(0)][0]}")
        if np.isinf(out).any():
            bad = x_array[np.isinf(out).any(0)][0]
            raise CannotSample(f"cannot sample: at x = {bad} the draws of y lie beyond the range of float64")
        return out

    def _given_at(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """``_given_x`` evaluated once per distinct x, then indexed back to x's shape."""
        unique, inverse = np.unique(x, return_inverse=True)
        index = inverse.reshape(x.shape)
        return tuple(np.asarray(values)[index] for values in self._given_x(unique))

    def _check_ready(self) -> None:
        """Raise :class:`NotFittedError` if the density cannot answer yet (a model not fitted)."""
        return None

    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return ()

    @abstractmethod
    def _log_prob(self, y: np.ndarray, x: np.ndarray, *given: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _sample(self, x: np.ndarray, n: int, rng: np.random.Generator, *given: np.ndarray) -> np.ndarray: ...

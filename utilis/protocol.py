"""The conditional-density protocol, its checked base class, and the input checks every part shares.

Anything that has a p(y|x) speaks this protocol (see ``docs/design.md``):

- ``log_prob(y, x)``: log p(y | x) for arrays that broadcast against each other (numpy in, numpy out),
  never NaN for a finite query;
- ``sample(x, n, seed=None)``: ``n`` draws of y for each x, shape ``(n, m)`` for m inputs, and
  ``(n, m, d_y)`` when y is a vector;
- optionally ``x_dim`` and ``y_space`` (:mod:`utilis.spaces`): the dimension of x and the space y
  lives in. A density without them is scalar: ``x_dim = 1`` and y on the real line.

Shapes follow ``torch.distributions`` and sbi: batch axes first, then one event axis. A vector y has
shape ``(..., d_y)`` and a vector x ``(..., d_x)``, broadcast over the batch axes; where d = 1 there is
no event axis, so every scalar call reads as plain numpy broadcasting. A last axis that does not match
the density's dimension is a ``ValueError`` naming the shape expected and the shape given.

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

A density over the plane declares its space; queries carry the event axis last:

    >>> from utilis.spaces import Euclidean
    >>> class Around(CheckedDensity):
    ...     '''y | x ~ N((x, -x), I) in the plane, for a scalar x.'''
    ...     y_space = Euclidean(2)
    ...     def _log_prob(self, y, x):
    ...         mean = np.stack([x, -x], axis=-1)
    ...         return -0.5 * ((y - mean) ** 2).sum(-1) - np.log(2 * np.pi)
    ...     def _sample(self, x, n, rng):
    ...         return np.stack([x, -x], axis=-1) + rng.standard_normal((n, len(x), 2))
    >>> plane = Around()
    >>> plane.log_prob(np.zeros((3, 1, 2)), np.arange(4.0)).shape, plane.sample([0.0, 1.0], 5).shape
    ((3, 4), (5, 2, 2))
    >>> plane.log_prob(np.zeros(3), 0.0)
    Traceback (most recent call last):
    ...
    ValueError: y must have shape (..., 2): its last axis holds the 2 coordinates, got shape (3,)
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from utilis.numerics import CannotSample
from utilis.spaces import EUCLIDEAN_LINE, OutputSpace, event_batch_shape

__all__ = [
    "CheckedDensity",
    "ConditionalDensity",
    "JointDensity",
    "NotFittedError",
    "as_generator",
    "broadcast_query",
    "check_count",
    "check_inputs",
    "check_jobs",
    "check_positive",
    "finite_array",
    "require_density",
    "require_scalar",
    "same_dimensions",
    "x_dim_of",
    "y_space_of",
]

Seed = int | np.random.Generator | None


@runtime_checkable
class ConditionalDensity(Protocol):
    """A conditional density p(y | x); its dimensions are read by :func:`x_dim_of` and :func:`y_space_of`."""

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x), broadcast over ``y`` and ``x``."""
        ...

    def sample(self, x: ArrayLike, n: int, seed: Seed = None) -> np.ndarray:
        """``n`` draws of y for each x: shape ``(n, len(x))``, or ``(n, len(x), d_y)`` for a vector y."""
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


def check_inputs(x: ArrayLike, name: str = "x", dim: int = 1) -> np.ndarray:
    """Finite inputs as a float64 array of m points (the x of ``sample``): shape ``(m,)`` for ``dim = 1``
    (from a scalar or a 1-D array), ``(m, dim)`` otherwise (from one point ``(dim,)`` or rows ``(m, dim)``)."""
    array = finite_array(x, name)
    if dim == 1:
        array = np.atleast_1d(array)
        if array.ndim != 1:
            raise ValueError(f"{name} must be a scalar or 1-D array, got shape {array.shape}")
        return array
    if array.ndim not in (1, 2) or array.shape[-1] != dim:
        raise ValueError(
            f"{name} must be one point of shape ({dim},) or rows of shape (m, {dim}), got shape {array.shape}"
        )
    return array.reshape(-1, dim)


def broadcast_query(
    y: ArrayLike, x: ArrayLike, y_dim: int = 1, x_dim: int = 1
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Check a (y, x) query: both as float64 arrays, *not* broadcast, and their broadcast batch shape.

    ``y`` has shape ``(..., y_dim)`` and ``x`` shape ``(..., x_dim)``, with no event axis where the
    dimension is 1. Leaving the arrays un-broadcast lets a density compute what depends on x alone once
    per x (and on y alone once per y) when the query is a grid, ``y[:, None]`` against ``x[None, :]``.
    """
    y_array, x_array = finite_array(y, "y"), finite_array(x, "x")
    y_batch, x_batch = event_batch_shape(y_array, y_dim, "y"), event_batch_shape(x_array, x_dim, "x")
    try:
        shape = np.broadcast_shapes(y_batch, x_batch)
    except ValueError as error:
        batches = f" (batch shapes {y_batch} and {x_batch})" if (y_dim, x_dim) != (1, 1) else ""
        raise ValueError(
            f"y of shape {y_array.shape} and x of shape {x_array.shape} do not broadcast{batches}"
        ) from error
    return y_array, x_array, shape


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``; ``ValueError`` naming ``name`` otherwise (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_jobs(value: object, name: str = "n_jobs") -> int:
    """``value`` as joblib's count of worker processes: an ``int`` >= 1, or -1 for one a usable core."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (value >= 1 or value == -1):
        raise ValueError(f"{name} must be an integer >= 1, or -1 for one process a core, got {value!r}")
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


def y_space_of(density: object) -> OutputSpace:
    """The space y lives in: the density's ``y_space``, or the real line for a density that declares none."""
    return getattr(density, "y_space", None) or EUCLIDEAN_LINE


def x_dim_of(density: object) -> int:
    """The dimension of x: the density's ``x_dim``, or 1 for a density that declares none."""
    return int(getattr(density, "x_dim", 1))


def same_dimensions(first: object, second: object, names: tuple[str, str] = ("model", "truth")) -> None:
    """``ValueError`` unless two densities share x's dimension and y's space (a model beside its truth)."""
    a, b = (x_dim_of(first), y_space_of(first)), (x_dim_of(second), y_space_of(second))
    if a != b:
        raise ValueError(
            f"{names[0]} has x of dimension {a[0]} and y in {a[1]!r}, but {names[1]} has x of dimension {b[0]} "
            f"and y in {b[1]!r}: they are not densities over the same (x, y)"
        )


def require_scalar(density: object, what: str) -> None:
    """``ValueError`` unless ``density`` (or a dataset's truth) has a scalar x and a scalar y: for the
    helpers that draw or integrate along a line of y and x (curves, 1-D heat maps, the x-y scatter)."""
    truth = getattr(density, "truth", density)
    d_x, space = x_dim_of(truth), y_space_of(truth)
    if d_x != 1 or space.dim != 1:
        raise ValueError(
            f"{what} serves a scalar x and a scalar y; this one has x of dimension {d_x} and y in {space!r} "
            "(for a y in the plane: utilis.density.log_prob_on_grid, utilis.plotting.plot_conditional_image)"
        )


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

    The public :meth:`log_prob` and :meth:`sample` check their arguments (finite, of the density's
    dimensions, broadcastable,
    ``n >= 1``, a valid seed), ask :meth:`_check_ready` (a model that was never fitted refuses),
    compute what depends on x alone once per distinct x (:meth:`_given_x`), and return float64
    numpy arrays of the right shape, never NaN (``sample`` raises ``CannotSample``, a ``ValueError``, where p(y|x)
    underflows and there is nothing to draw from). A subclass implements:

    - ``x_dim`` and ``y_space``, class or instance attributes, where x or y is a vector (default 1
      and the real line);
    - ``_given_x(x)``, optional: for distinct x (shape ``(m,)``, or ``(m, x_dim)``), a tuple of arrays
      whose first axis runs over x (mixture weights, means, log p(x), ...); default ``()``;
    - ``_log_prob(y, x, *given)``: log p(y | x) for float64 arrays that broadcast over their batch
      axes (``y`` and ``x`` as the caller shaped them, event axis last; each ``given`` array indexed
      to x's batch shape + its trailing shape), returning an array of the batch shape;
    - ``_sample(x, n, rng, *given)``: draws for m inputs, shape ``(n, m)`` or ``(n, m, d_y)``.
    """

    x_dim: int = 1
    y_space: OutputSpace = EUCLIDEAN_LINE

    @property
    def y_dim(self) -> int:
        """The length of y's event axis (1: a scalar y, with no event axis)."""
        return self.y_space.dim

    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """log p(y | x); ``y`` and ``x`` broadcast over their batch axes, and the result has that shape."""
        self._check_ready()  # first: a model learns its dimensions from the data it is fitted on
        y_array, x_array, shape = broadcast_query(y, x, self.y_dim, self.x_dim)
        out = np.asarray(self._log_prob(y_array, x_array, *self._given_at(x_array)), dtype=np.float64)
        if out.shape != shape:
            out = np.broadcast_to(out, shape).copy()
        if np.isnan(out).any():
            index = tuple(np.argwhere(np.isnan(out))[0])
            y_bad = self._event_at(y_array, self.y_dim, shape, index)
            x_bad = self._event_at(x_array, self.x_dim, shape, index)
            raise FloatingPointError(f"{type(self).__name__}.log_prob gave NaN at y = {y_bad}, x = {x_bad}")
        return out

    def sample(self, x: ArrayLike, n: int, seed: Seed = None) -> np.ndarray:
        """``n`` draws of y from p(y | x) for each of m inputs: shape ``(n, m)``, or ``(n, m, d_y)`` for a
        vector y. x is a scalar or 1-D array where ``x_dim = 1``, else one point ``(x_dim,)`` or rows
        ``(m, x_dim)``."""
        self._check_ready()
        x_array, n, rng = check_inputs(x, "x", self.x_dim), check_count(n, "n"), as_generator(seed)
        try:
            out = np.asarray(self._sample(x_array, n, rng, *self._given_at(x_array)), dtype=np.float64)
        except CannotSample as error:  # a kernel with nothing to sample from: say where
            raise CannotSample(f"{error}; x ranges over [{x_array.min()}, {x_array.max()}]") from error
        expected = (n, len(x_array)) + ((self.y_dim,) if self.y_dim > 1 else ())
        if out.shape != expected:  # the subclass's own bug, but a check that survives python -O
            raise RuntimeError(f"{type(self).__name__}._sample gave shape {out.shape}, not {expected}")
        by_x = out.reshape(n, len(x_array), -1)  # (n, m, d_y), also for a scalar y
        if np.isnan(by_x).any():
            bad = x_array[np.isnan(by_x).any(axis=(0, 2))][0]
            raise FloatingPointError(f"{type(self).__name__}.sample gave NaN at x = {bad}")
        if np.isinf(by_x).any():
            bad = x_array[np.isinf(by_x).any(axis=(0, 2))][0]
            raise CannotSample(f"cannot sample: at x = {bad} the draws of y lie beyond the range of float64")
        return out

    def _given_at(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """``_given_x`` evaluated once per distinct x, then indexed back to x's batch shape."""
        if self.x_dim == 1:
            unique, inverse = np.unique(x, return_inverse=True)
            index = inverse.reshape(x.shape)
        else:
            unique, inverse = np.unique(x.reshape(-1, self.x_dim), axis=0, return_inverse=True)
            index = inverse.reshape(x.shape[:-1])
        return tuple(np.asarray(values)[index] for values in self._given_x(unique))

    @staticmethod
    def _event_at(values: np.ndarray, dim: int, shape: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
        """The point of ``values`` (event axis last unless ``dim == 1``) at batch ``index`` of ``shape``."""
        event = values.shape[-1:] if dim > 1 else ()
        return np.broadcast_to(values, shape + event)[index]

    def _check_ready(self) -> None:
        """Raise :class:`NotFittedError` if the density cannot answer yet (a model not fitted)."""
        return None

    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return ()

    @abstractmethod
    def _log_prob(self, y: np.ndarray, x: np.ndarray, *given: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _sample(self, x: np.ndarray, n: int, rng: np.random.Generator, *given: np.ndarray) -> np.ndarray: ...

"""Three toy datasets for one-to-many regression, each with its exact density.

Import them in a notebook at the repository root::

    from generate_dataset import linear_mixture, inverted_sinusoid_mixture, camera_relocalisation

Each generator draws the generative parameters first and the points second from one seeded
``numpy.random.Generator``, so one seed gives the same problem at every ``n_samples``. It returns a
dataset object holding the parameters (readable by name), the train and test splits, and the exact
densities ``log_prob(y, x)`` = log p(y|x), ``log_joint(x, y)`` = log p(x, y) and
``log_marginal_x(x)`` = log p(x), all in log-space so that they stay finite far from the data.
``dataset.truth`` is the exact p(y|x) as a :class:`~utilis.protocol.ConditionalDensity`: it also
samples y given x, so every helper and metric treats it like any trained model.

The processes (see ``shared/design.md``):

1. linear mixture: c ~ U{1..K}; y | c ~ N(mu_c, 1); x = s_c y + o_c + N(0, noise^2).
2. inverted sinusoid mixture: c ~ U{1..K}; y | c ~ N(mu_c, 1);
   x = A_c sin(w_c y) + o_c + y / 2 + N(0, noise^2).
3. camera relocalisation: y ~ U(-T, T) is a camera position, c = k(y) the nearest of K location
   centres, x = pattern_c + N(0, noise^2) is what the camera sees; several locations can show the
   same pattern, so one x has several y.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from utilis.numerics import (
    log_gaussian_mixture,
    log_gaussian_posterior,
    log_histogram,
    log_trapezoid,
    logsumexp_last,
    normal_logpdf,
    sample_categorical,
    sample_from_grid,
    sample_gaussian_mixture,
    sample_histogram,
)
from utilis.protocol import CheckedDensity, as_generator, broadcast_query, check_count, check_positive, finite_array

__all__ = [
    "DATASETS",
    "CameraRelocalisation",
    "ExactConditional",
    "InvertedSinusoidMixture",
    "LinearMixture",
    "ToyDataset",
    "camera_relocalisation",
    "inverted_sinusoid_mixture",
    "linear_mixture",
]


def _check_n(n: object, name: str = "n") -> int:
    return check_count(n, name, minimum=1)


@dataclass(frozen=True, kw_only=True, eq=False)
class ToyDataset(ABC):
    """A toy one-to-many dataset: the drawn parameters, the train/test points and the exact densities.

    Attributes:
        x_train, y_train, c_train: training inputs, targets and generating component, shape ``(n_train,)``.
        x_test, y_test, c_test: the held-out split, shape ``(n_test,)``.
        noise: standard deviation of the Gaussian noise on x.
    """

    noise: float
    x_train: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    y_train: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    c_train: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    x_test: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    y_test: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    c_test: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    name: ClassVar[str] = ""
    # The Bayesian network of the process, as GenerativeModel.for_dataset builds it: the family of
    # p(y | c) ("gaussian" or "uniform" cells) and the parents of x ("y,c" or "c").
    y_family: ClassVar[str] = "gaussian"
    x_parents: ClassVar[str] = "y,c"

    # ---- what each process defines -------------------------------------------------------------
    @property
    @abstractmethod
    def n_components(self) -> int:
        """Number of components (mixture components or locations)."""

    @abstractmethod
    def _sample_joint(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n fresh (x, y, c) from the generative process."""

    @abstractmethod
    def _log_joint(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """log p(x, y) for checked arrays of one shape."""

    @abstractmethod
    def _log_marginal_x(self, x: np.ndarray) -> np.ndarray:
        """log p(x) for a checked array."""

    @abstractmethod
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """What p(y | x) needs from x alone, for distinct x: arrays whose first axis runs over x."""

    @abstractmethod
    def _log_prob(self, y: np.ndarray, x: np.ndarray, *given: np.ndarray) -> np.ndarray:
        """log p(y | x) for checked arrays that broadcast, with ``_given_x`` indexed to x's shape."""

    @abstractmethod
    def _sample_conditional(self, x: np.ndarray, n: int, rng: np.random.Generator, *given: np.ndarray) -> np.ndarray:
        """(n, len(x)) draws of y from p(y | x) for a checked 1-D x."""

    @property
    @abstractmethod
    def x_range(self) -> tuple[float, float]:
        """Plotting bounds on x that hold practically all of p(x)."""

    @property
    @abstractmethod
    def y_range(self) -> tuple[float, float]:
        """Plotting bounds on y that hold practically all of p(y)."""

    # ---- the public, checked interface ---------------------------------------------------------
    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """Exact log p(y | x). ``y`` and ``x`` broadcast; the result has their broadcast shape."""
        return self.truth.log_prob(y, x)

    def log_joint(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Exact log p(x, y). ``x`` and ``y`` broadcast; the result has their broadcast shape."""
        y_array, x_array, shape = broadcast_query(y, x)
        out = self._log_joint(x_array, y_array)
        return out if out.shape == shape else np.broadcast_to(out, shape).copy()

    def log_marginal_x(self, x: ArrayLike) -> np.ndarray:
        """Exact log p(x), same shape as ``x``."""
        return self._log_marginal_x(finite_array(x, "x"))

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` fresh points (x, y, c) from the same parameters, e.g. a large evaluation set."""
        return self._sample_joint(_check_n(n), as_generator(seed))

    def sample_conditional(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of y from the exact p(y | x) for each x: shape ``(n, len(x))``."""
        return self.truth.sample(x, n, seed)

    @property
    def truth(self) -> ExactConditional:
        """The exact p(y | x) as a conditional density (``log_prob(y, x)``, ``sample(x, n, seed)``)."""
        return ExactConditional(self)

    # ---- splitting -----------------------------------------------------------------------------
    def _with_points(self, n_samples: int, test_fraction: float, rng: np.random.Generator) -> ToyDataset:
        x, y, c = self._sample_joint(n_samples, rng)
        # The draws are i.i.d., so they come in random order: the first n_test are a random test split.
        n_test = _n_test(n_samples, test_fraction)
        return dataclasses.replace(
            self,
            x_train=x[n_test:], y_train=y[n_test:], c_train=c[n_test:],
            x_test=x[:n_test], y_test=y[:n_test], c_test=c[:n_test],
        )  # fmt: skip


@dataclass(frozen=True)
class ExactConditional(CheckedDensity):
    """A dataset's exact p(y | x), speaking the conditional-density protocol through the checked base.

    Besides ``log_prob`` and ``sample`` it gives ``log_marginal_x`` and ``log_joint`` (the joint
    interface, :class:`~utilis.protocol.JointDensity`), as a generative model does, so helpers can
    draw the joint p(x, y) from it.
    """

    dataset: ToyDataset

    def _given_x(self, x):
        return self.dataset._given_x(x)

    def _log_prob(self, y, x, *given):
        return self.dataset._log_prob(y, x, *given)

    def _sample(self, x, n, rng, *given):
        return self.dataset._sample_conditional(x, n, rng, *given)

    def log_marginal_x(self, x: ArrayLike) -> np.ndarray:
        return self.dataset.log_marginal_x(x)

    def log_joint(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        return self.dataset.log_joint(x, y)


def _n_test(n_samples: int, test_fraction: object) -> int:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n_samples * test_fraction))
    if n_test == 0 or n_test == n_samples:
        split = "test" if n_test == 0 else "training"
        raise ValueError(f"test_fraction={test_fraction} with n_samples={n_samples} leaves an empty {split} split")
    return n_test


def _curve_mixture(cls, draws, n_components, n_samples, noise, test_fraction, seed):
    """A curve mixture with K equally likely components: each parameter ``name: (low, high)`` in ``draws``
    drawn from U(low, high), one per component, in order, then the points."""
    k = check_count(n_components, "n_components")
    n_samples, noise, rng = _checked_common(n_samples, noise, test_fraction, seed)
    parameters = {name: rng.uniform(low, high, k) for name, (low, high) in draws.items()}
    dataset = cls(**parameters, weights=np.full(k, 1.0 / k), noise=noise)
    return dataset._with_points(n_samples, test_fraction, rng)


def _checked_common(
    n_samples: object, noise: object, test_fraction: object, seed: int | np.random.Generator | None
) -> tuple[int, float, np.random.Generator]:
    """The arguments every generator shares, checked: n_samples, noise, test_fraction (and the generator)."""
    n_samples = _check_n(n_samples, "n_samples")
    noise = check_positive(noise, "noise")
    _n_test(n_samples, test_fraction)
    return n_samples, noise, as_generator(seed)


@dataclass(frozen=True, kw_only=True, eq=False)
class _CurveMixture(ToyDataset):
    """What the linear and sinusoid processes share: c ~ p(c), y | c ~ N(mu_c, 1), x = f_c(y) + N(0, noise^2).

    The joint and the sampler are written once through the curve f_c(y), which each process defines.
    """

    means: np.ndarray
    weights: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.means)

    @abstractmethod
    def _curve(self, y: np.ndarray) -> np.ndarray:
        """f_c(y) for y of shape (..., 1) (or (..., K), one y per component): shape (..., K)."""

    def _sample_joint(self, n, rng):
        c = rng.choice(self.n_components, size=n, p=self.weights)
        y = self.means[c] + rng.standard_normal(n)
        x = self._curve(y[:, None])[np.arange(n), c] + self.noise * rng.standard_normal(n)
        return x, y, c

    def _log_joint(self, x, y):
        y_ = y[..., None]  # (..., 1) against the components (K,)
        log_a = np.log(self.weights) + normal_logpdf(y_, self.means, 1.0)
        return log_gaussian_mixture(x, log_a, self._curve(y_), self.noise)

    @property
    def y_range(self):
        return float(self.means.min() - 4), float(self.means.max() + 4)


# =================================================================================================
# 1. Mixture of linear functions
# =================================================================================================
@dataclass(frozen=True, kw_only=True, eq=False)
class LinearMixture(_CurveMixture):
    """c ~ U{1..K}; y | c ~ N(mu_c, 1); x = s_c y + o_c + N(0, noise^2).

    Each component is jointly Gaussian in (x, y), so everything is closed form:
    p(x | c) = N(x; s_c mu_c + o_c, s_c^2 + noise^2) and p(y | x, c) = N(y; m_c(x), v_c) with
    v_c = noise^2 / (noise^2 + s_c^2), m_c(x) = (noise^2 mu_c + s_c (x - o_c)) / (noise^2 + s_c^2),
    so p(y | x) = sum_c w_c(x) N(y; m_c(x), v_c), w_c(x) proportional to p(c) p(x | c).

    Attributes:
        means: mu_c, shape (K,). slopes: s_c. offsets: o_c. weights: p(c) (uniform).
    """

    slopes: np.ndarray
    offsets: np.ndarray
    name: ClassVar[str] = "linear"

    def _curve(self, y):
        return self.slopes * y + self.offsets

    def _x_given_c(self) -> tuple[np.ndarray, np.ndarray]:
        return self.slopes * self.means + self.offsets, np.sqrt(self.slopes**2 + self.noise**2)

    def _log_marginal_x(self, x):
        mean, sd = self._x_given_c()
        return logsumexp_last(np.log(self.weights) + normal_logpdf(x[..., None], mean, sd))

    def _posterior_sd(self) -> np.ndarray:
        """sqrt(v_c), the sd of y given x and c: shape (K,)."""
        return self.noise / np.sqrt(self.noise**2 + self.slopes**2)

    def _given_x(self, x):
        """log w_c(x) and m_c(x), each (len(x), K)."""
        mean, sd = self._x_given_c()
        log_w = log_gaussian_posterior(x, np.log(self.weights), mean, sd)
        with np.errstate(over="ignore"):  # |x| near 1e308: a mean beyond float64, whose density underflows
            m = self.noise**2 * self.means + self.slopes * (x[:, None] - self.offsets)
            m /= self.noise**2 + self.slopes**2
        return log_w, m

    def _log_prob(self, y, x, log_w, m):
        # The posterior form, not log_joint - log_marginal_x: far from the data both of those are
        # about -x^2 / 2 and their difference would lose every digit.
        return log_gaussian_mixture(y, log_w, m, self._posterior_sd())  # a Gaussian mixture in y, given x

    def _sample_conditional(self, x, n, rng, log_w, m):
        return sample_gaussian_mixture(log_w, m, np.broadcast_to(self._posterior_sd(), m.shape), n, rng)

    @property
    def x_range(self):
        mean, sd = self._x_given_c()
        return float(np.min(mean - 4 * sd)), float(np.max(mean + 4 * sd))


def linear_mixture(
    n_samples: int = 1000,
    n_components: int = 3,
    noise: float = 0.1,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator | None = None,
) -> LinearMixture:
    """A mixture of K noisy linear functions x = s_c y + o_c, with y | c ~ N(mu_c, 1).

    Parameters are drawn first: mu_c ~ U(-10, 10), s_c ~ U(-2, 2), o_c ~ U(-5, 5).

    Example:
        >>> data = linear_mixture(n_samples=500, seed=0)
        >>> data.x_train.shape, data.means.shape
        ((450,), (3,))
    """
    draws = {"means": (-10, 10), "slopes": (-2, 2), "offsets": (-5, 5)}
    return _curve_mixture(LinearMixture, draws, n_components, n_samples, noise, test_fraction, seed)


# =================================================================================================
# 2. Mixture of inverted sinusoids
# =================================================================================================
SINUSOID_SLOPE = 0.5  # the linear trend y / 2 in f_c(y) = A_c sin(w_c y) + o_c + y / 2
_CHUNK_ELEMENTS = 2**21  # quadrature nodes evaluated at once (16 MiB of float64)
_MAX_QUADRATURE_NODES = 2**18  # per x; reached only ~1e4 data widths out, where p(x) is ~exp(-1e6)


@dataclass(frozen=True, kw_only=True, eq=False)
class InvertedSinusoidMixture(_CurveMixture):
    """c ~ U{1..K}; y | c ~ N(mu_c, 1); x = f_c(y) + N(0, noise^2), f_c(y) = A_c sin(w_c y) + o_c + y/2.

    p(x, y) = sum_c p(c) N(y; mu_c, 1) N(x; f_c(y), noise^2) is closed form; p(x) is not, so
    p(x | c) = integral of N(y; mu_c, 1) N(x; f_c(y), noise^2) dy is computed by the trapezoidal rule.
    The integrand peaks where f_c(y) = x with width noise / |f_c'(y)| >= noise / (A_c w_c + 1/2); the
    step is that width divided by ``quad_oversample``, at which the rule's error on a smooth peak,
    about exp(-2 pi^2 oversample^2), is far below double precision. The nodes span the window where
    the posterior of y can sit: between the linear-Gaussian posterior modes for x shifted by -A_c and
    +A_c, widened by half a period of the sine and 12 posterior standard deviations. Its width does
    not depend on x, so the cost is the same at every x. Within the data and several of its widths
    beyond, halving the step changes log p by < 1e-6 (tested); hundreds of widths out, the integrand
    becomes a comb of ever narrower peaks and the result, though finite, is only approximate.

    Attributes:
        means: mu_c, shape (K,). amplitudes: A_c. frequencies: w_c. offsets: o_c. weights: p(c).
        quad_oversample: nodes per narrowest peak width in the quadrature (default 1.5).
    """

    amplitudes: np.ndarray
    frequencies: np.ndarray
    offsets: np.ndarray
    quad_oversample: float = 1.5
    name: ClassVar[str] = "sinusoid"

    def _curve(self, y):
        with np.errstate(over="ignore", invalid="ignore"):  # |y| near 1e308, where p(y | c) is 0 anyway
            return self.amplitudes * np.sin(self.frequencies * y) + self.offsets + SINUSOID_SLOPE * y

    # ---- quadrature ----------------------------------------------------------------------------
    def _quadrature_window(self, x: np.ndarray, c: int) -> tuple[np.ndarray, float, np.ndarray]:
        """Start of the window (len(x),), its width, and the step each x needs (len(x),), for p(x | c)."""
        a, variance = SINUSOID_SLOPE, self.noise**2
        amplitude, frequency = self.amplitudes[c], self.frequencies[c]
        precision = 1.0 + a * a / variance  # of the linear-Gaussian posterior of y given x
        half_shift = amplitude * a / variance / precision  # its mode moves this much for x -+ A_c
        # Where sin(w_c y) = -1 or +1 the curve reaches furthest; such a point lies within half a
        # period of any y, so the mass can sit up to pi / w_c beyond the shifted modes, plus 12
        # posterior sds (exp(-72) of the peak) of spread.
        margin = np.pi / frequency + 12.0 / np.sqrt(precision)
        centre = (self.means[c] + a * (x - self.offsets[c]) / variance) / precision
        # The peaks' curvature: f'^2 / noise^2 near the data; outside it, the prior pulls y off the
        # curve and leaves a residual r, and r f'' / noise^2 (|f''| <= A w^2) sharpens them further.
        residual = np.maximum(np.abs(x - self.offsets[c] - a * self.means[c]) - amplitude, 0.0)
        residual *= variance / (variance + a * a)
        curvature = (amplitude * frequency + a) ** 2 + residual * amplitude * frequency**2
        step = self.noise / (self.quad_oversample * np.sqrt(curvature))
        return centre - half_shift - margin, 2 * (half_shift + margin), step

    def _node_counts(self, x: np.ndarray, c: int) -> np.ndarray:
        """Nodes each x needs for p(x | c), rounded up to quarter octaves so that x alike share a count.

        The count depends on x alone, never on the other x in a query, so log p(x) is the same
        number however a grid is cut into blocks.
        """
        _, width, step = self._quadrature_window(x, c)
        needed = np.ceil(width / step) + 1
        return np.minimum(2.0 ** (np.ceil(4 * np.log2(needed)) / 4), _MAX_QUADRATURE_NODES).astype(np.int64)

    def _quadrature_nodes(self, x: np.ndarray, c: int, n_nodes: int) -> tuple[np.ndarray, float]:
        """``n_nodes`` evenly spaced nodes per x over its window: (len(x), n_nodes), and their spacing h."""
        start, width, _ = self._quadrature_window(x, c)
        h = width / (n_nodes - 1)
        return start[:, None] + h * np.arange(n_nodes), h

    def _log_integrand(self, x: np.ndarray, nodes: np.ndarray, c: int) -> np.ndarray:
        """log N(y; mu_c, 1) + log N(x; f_c(y), noise^2) at the nodes (len(x), N)."""
        f = self.amplitudes[c] * np.sin(self.frequencies[c] * nodes) + self.offsets[c] + SINUSOID_SLOPE * nodes
        return normal_logpdf(nodes, self.means[c], 1.0) + normal_logpdf(x[:, None], f, self.noise)

    def _log_x_given_c(self, x: np.ndarray) -> np.ndarray:
        """log p(x | c) for a 1-D x: shape (len(x), K), in chunks so memory stays bounded."""
        out = np.empty((len(x), self.n_components))
        with np.errstate(over="ignore", invalid="ignore"):
            self._fill_log_x_given_c(x, out)
        # |x| near 1e308 puts the window beyond float64 (NaN nodes); p(x | c) is then far below the
        # smallest float, and -inf is its nearest value.
        out[np.isnan(out)] = -np.inf
        return out

    def _fill_log_x_given_c(self, x: np.ndarray, out: np.ndarray) -> None:
        for c in range(self.n_components):
            counts = self._node_counts(x, c)
            for n_nodes in np.unique(counts):
                index = np.flatnonzero(counts == n_nodes)
                rows = max(1, _CHUNK_ELEMENTS // int(n_nodes))
                for chunk in np.array_split(index, -(-len(index) // rows)):
                    nodes, h = self._quadrature_nodes(x[chunk], c, int(n_nodes))
                    out[chunk, c] = log_trapezoid(self._log_integrand(x[chunk], nodes, c), h)
        return out

    def _log_marginal_x(self, x):
        unique, inverse = np.unique(x, return_inverse=True)
        log_px = logsumexp_last(np.log(self.weights) + self._log_x_given_c(unique))
        return log_px[inverse].reshape(x.shape)

    def _given_x(self, x):
        return (self._log_marginal_x(x),)

    def _log_prob(self, y, x, log_px):
        # Where p(x) underflows (|x| beyond about 1e150), so does p(x, y) for every float64 y: the
        # posterior's peak is then narrower than the spacing of floats there, and -inf is the answer.
        log_joint = self._log_joint(x, y)
        with np.errstate(invalid="ignore"):
            return np.where(np.isneginf(log_px), -np.inf, log_joint - log_px)

    def _sample_conditional(self, x, n, rng, log_px):
        # Component by p(c | x), then y by inverting the cumulative trapezoid over that component's nodes.
        log_w = np.log(self.weights) + self._log_x_given_c(x)  # (m, K)
        components = sample_categorical(log_w, n, rng)  # (n, m)
        u = rng.random((n, len(x)))
        out = np.empty((n, len(x)))
        for c in range(self.n_components):
            columns = np.flatnonzero((components == c).any(axis=0))
            for i in columns:
                nodes, _ = self._quadrature_nodes(x[i : i + 1], c, int(self._node_counts(x[i : i + 1], c)[0]))
                rows = components[:, i] == c
                out[rows, i] = sample_from_grid(self._log_integrand(x[i : i + 1], nodes, c)[0], nodes[0], u[rows, i])
        return out

    @property
    def x_range(self):
        f = self._curve(np.linspace(self.means - 4, self.means + 4, 2001))  # (2001, K): each curve over its y
        return float(f.min() - 4 * self.noise), float(f.max() + 4 * self.noise)


def inverted_sinusoid_mixture(
    n_samples: int = 1000,
    n_components: int = 2,
    noise: float = 0.1,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator | None = None,
) -> InvertedSinusoidMixture:
    """A mixture of K inverted sinusoids x = A_c sin(w_c y) + o_c + y/2, with y | c ~ N(mu_c, 1).

    Parameters are drawn first: mu_c ~ U(-5, 5), A_c ~ U(1, 5), w_c ~ U(0.5, 2), o_c ~ U(-15, 15).
    Where A_c w_c > 1/2 the curve folds back, so one x has several y even within one component.

    Example:
        >>> data = inverted_sinusoid_mixture(n_samples=500, seed=0)
        >>> data.y_test.shape, data.amplitudes.shape
        ((50,), (2,))
    """
    draws = {"means": (-5, 5), "amplitudes": (1, 5), "frequencies": (0.5, 2), "offsets": (-15, 15)}
    return _curve_mixture(InvertedSinusoidMixture, draws, n_components, n_samples, noise, test_fraction, seed)


# =================================================================================================
# 3. Toy camera relocalisation
# =================================================================================================
@dataclass(frozen=True, kw_only=True, eq=False)
class CameraRelocalisation(ToyDataset):
    """y ~ U(-T, T) a camera position; c = k(y) its nearest location centre; x = pattern_c + N(0, noise^2).

    Location c owns the cell of positions nearer to its centre than to any other (cells meet at the
    midpoints between sorted centres and tile [-T, T]). Then p(x, y) = N(x; pattern_k(y), noise^2) / 2T,
    p(x) = sum_c |cell_c| / 2T N(x; pattern_c, noise^2), and
    p(y | x) = sum_c w_c(x) Uniform(y; cell_c), w_c(x) proportional to |cell_c| N(x; pattern_c, noise^2).
    p(y | x) is exactly 0 (log_prob = -inf) for y outside [-T, T].

    Attributes:
        centres: sorted location centres t_c, shape (K,). patterns: the pattern value each location
        shows. edges: cell boundaries, shape (K + 1,), from -T to T. half_width: T.
    """

    centres: np.ndarray
    patterns: np.ndarray
    half_width: float
    name: ClassVar[str] = "camera"
    y_family: ClassVar[str] = "uniform"
    x_parents: ClassVar[str] = "c"

    @property
    def n_components(self) -> int:
        return len(self.centres)

    @property
    def edges(self) -> np.ndarray:
        midpoints = 0.5 * (self.centres[1:] + self.centres[:-1])
        return np.concatenate([[-self.half_width], midpoints, [self.half_width]])

    @property
    def cell_widths(self) -> np.ndarray:
        return np.diff(self.edges)

    def location(self, y: ArrayLike) -> np.ndarray:
        """k(y): index of the location whose cell holds y (clipped to the end cells outside [-T, T])."""
        y_array = finite_array(y, "y")
        return np.clip(np.searchsorted(self.edges, y_array, side="right") - 1, 0, self.n_components - 1)

    def _sample_joint(self, n, rng):
        y = rng.uniform(-self.half_width, self.half_width, n)
        c = self.location(y)
        x = self.patterns[c] + self.noise * rng.standard_normal(n)
        return x, y, c

    def _inside(self, y: np.ndarray) -> np.ndarray:
        return (y >= -self.half_width) & (y <= self.half_width)

    def _log_joint(self, x, y):
        with np.errstate(divide="ignore"):
            log_py = np.log(self._inside(y) / (2 * self.half_width))  # uniform: -inf outside [-T, T]
        return log_gaussian_mixture(x, log_py[..., None], self.patterns[self.location(y)][..., None], self.noise)

    def _log_cell_mass(self) -> np.ndarray:
        """log p(c) = log |cell_c| / 2T: shape (K,)."""
        return np.log(self.cell_widths / (2 * self.half_width))

    def _log_marginal_x(self, x):
        return logsumexp_last(self._log_cell_mass() + normal_logpdf(x[..., None], self.patterns, self.noise))

    def _given_x(self, x):
        """log p(c | x), (len(x), K): the cells tile [-T, T], so p(y | x) is a histogram on them."""
        return (log_gaussian_posterior(x, self._log_cell_mass(), self.patterns, self.noise),)

    def _log_prob(self, y, x, log_w):
        return log_histogram(y, log_w, self.edges)

    def _sample_conditional(self, x, n, rng, log_w):
        return sample_histogram(log_w, self.edges, n, rng)

    @property
    def x_range(self):
        return float(self.patterns.min() - 4 * self.noise), float(self.patterns.max() + 4 * self.noise)

    @property
    def y_range(self):
        return -self.half_width, self.half_width


def camera_relocalisation(
    n_samples: int = 1000,
    n_locations: int = 10,
    n_patterns: int = 100,
    one_to_many: bool = True,
    noise: float = 0.1,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator | None = None,
) -> CameraRelocalisation:
    """A 1-D caricature of camera relocalisation in a scene with repeated structure.

    Location centres t_c ~ U(-T, T) with T = 10 n_locations; each location shows one of the
    n_patterns + 1 evenly spaced values on [-1, 1], drawn with replacement when ``one_to_many`` (so
    several places can look alike) and without replacement otherwise (each place looks different,
    which needs n_locations <= n_patterns + 1).

    Example:
        >>> data = camera_relocalisation(n_samples=500, seed=0)
        >>> data.half_width, data.patterns.shape
        (100.0, (10,))
    """
    k = check_count(n_locations, "n_locations")
    n_patterns = check_count(n_patterns, "n_patterns")
    if not isinstance(one_to_many, (bool, np.bool_)):
        raise ValueError(f"one_to_many must be True or False, got {one_to_many!r}")
    if not one_to_many and k > n_patterns + 1:
        raise ValueError(
            f"one_to_many=False needs a distinct pattern per location, but n_locations={k} exceeds "
            f"the n_patterns + 1 = {n_patterns + 1} pattern values"
        )
    n_samples, noise, rng = _checked_common(n_samples, noise, test_fraction, seed)
    half_width = 10.0 * k
    centres = np.sort(rng.uniform(-half_width, half_width, k))
    values = np.linspace(-1.0, 1.0, n_patterns + 1)
    patterns = values[rng.choice(n_patterns + 1, size=k, replace=bool(one_to_many))]
    dataset = CameraRelocalisation(centres=centres, patterns=patterns, half_width=half_width, noise=noise)
    return dataset._with_points(n_samples, test_fraction, rng)


DATASETS: dict[str, Callable[..., ToyDataset]] = {
    "linear": linear_mixture,
    "sinusoid": inverted_sinusoid_mixture,
    "camera": camera_relocalisation,
}
"""Short name -> generator, for loops over all three datasets."""

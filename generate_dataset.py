"""Five toy datasets for one-to-many regression, each with its exact density.

Import them in a notebook at the repository root::

    from generate_dataset import linear_mixture, robot_arm, planar_relocalisation, DATASETS

Each generator draws the generative parameters first and the points second from one seeded
``numpy.random.Generator``, so one seed gives the same problem at every ``n_samples``. It returns a
dataset object holding the parameters (readable by name), the train and test splits, and the exact
densities ``log_prob(y, x)`` = log p(y|x), ``log_joint(x, y)`` = log p(x, y) and
``log_marginal_x(x)`` = log p(x), all in log-space so that they stay finite far from the data.
``dataset.truth`` is the exact p(y|x) as a :class:`~utilis.protocol.ConditionalDensity`: it also
samples y given x, so every helper and metric treats it like any trained model.

The processes (see ``docs/design.md``):

1. linear mixture: c ~ U{1..K}; y | c ~ N(mu_c, 1); x = s_c y + o_c + N(0, noise^2).
2. inverted sinusoid mixture: c ~ U{1..K}; y | c ~ N(mu_c, 1);
   x = A_c sin(w_c y) + o_c + y / 2 + N(0, noise^2).
3. camera relocalisation: y ~ U(-T, T) is a camera position, c = k(y) the nearest of K location
   centres, x = pattern_c + N(0, noise^2) is what the camera sees; several locations can show the
   same pattern, so one x has several y.
4. robot arm (Bishop 1994; PRML §5.6, Fig. 5.18): y = (theta1, theta2) the joint angles of a
   two-link arm, uniform on a box; x = the end effector's position in the plane + N(0, noise^2 I).
   One position is reached elbow up and elbow down.
5. planar relocalisation: y ~ U([-T, T]^2) a camera's position in a room tiled K x K; c the tile
   it stands on; x = pattern_c + N(0, noise^2 I_m), a pattern vector in R^m from a small palette
   that several tiles share.

The first three have a scalar x and a scalar y (1-D arrays); the last two a vector y of shape
(n, 2) and a vector x of shape (n, d_x). ``dataset.x_dim`` and ``dataset.y_space`` (and the same
on ``dataset.truth``) say which, as every conditional density does (:mod:`utilis.protocol`).
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
    CannotSample,
    log_gaussian_mixture,
    log_gaussian_posterior,
    log_histogram,
    log_isotropic_posterior,
    log_trapezoid,
    logsumexp_last,
    normal_logpdf,
    sample_categorical,
    sample_from_grid,
    sample_gaussian_mixture,
    sample_histogram,
    sample_rows_from_grid,
)
from utilis.protocol import CheckedDensity, as_generator, broadcast_query, check_count, check_positive, finite_array
from utilis.spaces import EUCLIDEAN_LINE, Euclidean, OutputSpace, event_batch_shape

__all__ = [
    "DATASETS",
    "SCALAR_DATASETS",
    "CameraRelocalisation",
    "ExactConditional",
    "InvertedSinusoidMixture",
    "LinearMixture",
    "PlanarRelocalisation",
    "RobotArm",
    "ToyDataset",
    "camera_relocalisation",
    "inverted_sinusoid_mixture",
    "linear_mixture",
    "planar_relocalisation",
    "robot_arm",
]


def _check_n(n: object, name: str = "n") -> int:
    return check_count(n, name, minimum=1)


@dataclass(frozen=True, kw_only=True, eq=False)
class ToyDataset(ABC):
    """A toy one-to-many dataset: the drawn parameters, the train/test points and the exact densities.

    Attributes:
        x_train, y_train, c_train: training inputs, targets and generating component, shape ``(n_train,)``
            (``(n_train, d)`` for a vector x or y).
        x_test, y_test, c_test: the held-out split, shape ``(n_test,)`` (or ``(n_test, d)``).
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
    def x_dim(self) -> int:
        """The dimension of x (1: a scalar, with no event axis)."""
        return 1

    @property
    def y_space(self) -> OutputSpace:
        """The space y lives in (the real line unless the process says otherwise)."""
        return EUCLIDEAN_LINE

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
    def x_range(self) -> tuple:
        """Plotting bounds on x that hold practically all of p(x): (low, high), one pair an axis for a vector."""

    @property
    @abstractmethod
    def y_range(self) -> tuple:
        """Plotting bounds on y that hold practically all of p(y): (low, high), one pair an axis for a vector."""

    # ---- the public, checked interface ---------------------------------------------------------
    def log_prob(self, y: ArrayLike, x: ArrayLike) -> np.ndarray:
        """Exact log p(y | x). ``y`` and ``x`` broadcast; the result has their broadcast shape."""
        return self.truth.log_prob(y, x)

    def log_joint(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Exact log p(x, y). ``x`` and ``y`` broadcast over their batch axes; the result has that shape."""
        y_array, x_array, shape = broadcast_query(y, x, self.y_space.dim, self.x_dim)
        out = self._log_joint(x_array, y_array)
        return out if out.shape == shape else np.broadcast_to(out, shape).copy()

    def log_marginal_x(self, x: ArrayLike) -> np.ndarray:
        """Exact log p(x): the shape of ``x``, or its batch shape ``x.shape[:-1]`` for a vector x."""
        x_array = finite_array(x, "x")
        event_batch_shape(x_array, self.x_dim, "x")
        return self._log_marginal_x(x_array)

    def sample(
        self, n: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` fresh points (x, y, c) from the same parameters, e.g. a large evaluation set."""
        return self._sample_joint(_check_n(n), as_generator(seed))

    def sample_conditional(self, x: ArrayLike, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` draws of y from the exact p(y | x) for each x: shape ``(n, m)`` (``(n, m, d_y)`` for a vector y)."""
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

    @property
    def x_dim(self) -> int:
        return self.dataset.x_dim

    @property
    def y_space(self) -> OutputSpace:
        return self.dataset.y_space

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


# =================================================================================================
# 4. Robot arm
# =================================================================================================
_GAUSS_NODES = 48  # Gauss-Legendre nodes per stretch of each axis: a peak spans 24 widths of one stretch
_GAP_NODES = 16  # and per stretch of theta2 between and beside the peaks' (the rule's nodes crowd its ends)
_SAMPLING_NODES = 1024  # nodes per stretch of the grids the sampler inverts (24 peak widths: 40 a width)
_PEAK_WIDTHS = 12.0  # a stretch runs this many widths either side of a peak (exp(-72) of its height)
_TAIL_FOLDS = 40.0  # where a peak lies beyond the box, a stretch at its edge holds this many e-folds


def _gauss_legendre(lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and log weights on [lo, hi] (arrays of one shape s): each of shape s + (n,)."""
    t, w = np.polynomial.legendre.leggauss(n)
    half = (0.5 * (hi - lo))[..., None]
    with np.errstate(divide="ignore"):
        return 0.5 * (hi + lo)[..., None] + half * t, np.log(half * w)


def _stretch(centre, half, slope, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Where to integrate a peak at ``centre`` of half-width ``half`` inside [lo, hi]: the peak's
    stretch clipped to the box; where the peak lies beyond the box, the stretch at the nearer edge over
    which its tail falls by ``_TAIL_FOLDS`` e-folds (``slope``: the tail's log-slope at that edge)."""
    a, b = np.clip(centre - half, lo, hi), np.clip(centre + half, lo, hi)
    with np.errstate(divide="ignore"):
        tail = np.minimum(hi - lo, _TAIL_FOLDS / slope + half)
    below, above = centre + half <= lo, centre - half >= hi
    a, b = np.where(above, np.maximum(lo, hi - tail), a), np.where(below, np.minimum(hi, lo + tail), b)
    return np.where(below, lo, a), np.where(above, hi, b)


@dataclass(frozen=True, kw_only=True, eq=False)
class RobotArm(ToyDataset):
    """A two-link planar arm: y = (theta1, theta2) ~ U(box); x = f(y) + N(0, noise^2 I).

    The forward kinematics of Bishop (1994) and PRML §5.6 (Fig. 5.18), with links L1, L2:
    f(y) = (L1 cos theta1 - L2 cos(theta1 + theta2), L1 sin theta1 - L2 sin(theta1 + theta2)),
    in complex form f = e^{i theta1} (L1 - L2 e^{i theta2}) = r(theta2) e^{i (theta1 + alpha(theta2))},
    with r^2 = L1^2 + L2^2 - 2 L1 L2 cos theta2 and alpha = arg(L1 - L2 e^{i theta2}). Writing
    x = rho e^{i psi}, the inverse kinematics is closed form: r(theta2) = rho at theta2 = pi -+ a,
    a = arccos((rho^2 - L1^2 - L2^2) / (2 L1 L2)) (elbow one way, the other), then
    theta1 = psi - alpha(theta2). Both lie in the box where theta1 does; near its edges one does.

    p(x, y) = N(x; f(y), noise^2 I) / |box|, and p(y | x) = p(x, y) / p(x) with
    p(x) = integral over the box of N(x; f(y), noise^2 I) dy / |box|, a 2-D integral done by
    Gauss-Legendre quadrature placed around the inverse-kinematics solutions: in theta2, a stretch of
    ``_PEAK_WIDTHS`` peak widths either side of each solution (merged where they overlap), the width
    noise / sqrt(r'^2 + (|rho - r| + noise) L1 L2 / r) so that it holds at the fold r' = 0 and beyond
    reach, and coarser rules over the rest of the box (where the shoulder angle of both solutions
    falls outside its range, the mass moves to the box's corners); in theta1, at each theta2 node, a
    stretch around the von Mises-shaped peak at psi - alpha(theta2), of width noise / sqrt(rho r).
    Stretches end at the box's edges, where the integrand is cut, so each rule integrates a smooth
    function; a peak beyond the box is integrated over the stretch where its tail falls. Over the data
    this is exact to rounding (doubling every rule's nodes moves log p(x) by about 1e-13 nats,
    ``benchmarks/bench_datasets.py``; a brute-force grid agrees to its own accuracy, tested); far
    outside the workspace, where log p(x) is below about -100, it is approximate but finite.

    Attributes:
        lengths: (L1, L2). theta1_range, theta2_range: the box of joint angles. c: 1 where the elbow
        bends one way (theta2 > pi), 0 the other, the two branches of the inverse.
    """

    lengths: tuple[float, float] = (0.8, 0.2)
    theta1_range: tuple[float, float] = (0.3, 1.2)
    theta2_range: tuple[float, float] = (np.pi / 2, 3 * np.pi / 2)
    name: ClassVar[str] = "robot_arm"
    y_family: ClassVar[str] = "uniform"
    x_parents: ClassVar[str] = "y"

    @property
    def x_dim(self) -> int:
        return 2

    @property
    def y_space(self) -> OutputSpace:
        return Euclidean(2)

    @property
    def n_components(self) -> int:
        return 2

    # ---- kinematics ----------------------------------------------------------------------------
    def forward(self, y: ArrayLike) -> np.ndarray:
        """The end effector's position f(y) for joint angles ``y`` of shape (..., 2): shape (..., 2)."""
        y = finite_array(y, "y")
        event_batch_shape(y, 2, "y")
        return self._forward(y[..., 0], y[..., 1])

    def elbow(self, y: ArrayLike) -> np.ndarray:
        """The elbow's position L1 (cos theta1, sin theta1) for joint angles ``y`` (..., 2): shape (..., 2)."""
        y = finite_array(y, "y")
        event_batch_shape(y, 2, "y")
        return self.lengths[0] * np.stack([np.cos(y[..., 0]), np.sin(y[..., 0])], axis=-1)

    def inverse(self, x: ArrayLike) -> np.ndarray:
        """Both closed-form solutions of f(y) = x for positions ``x`` (..., 2): shape (..., 2, 2), the
        branch theta2 < pi first. Beyond reach, the configuration that comes nearest (twice). Angles
        theta1 are taken in (-pi, pi] around the box; a solution may lie outside the box."""
        x = finite_array(x, "x")
        event_batch_shape(x, 2, "x")
        with np.errstate(over="ignore"):  # beyond 1e308 away: rho = inf, the arm stretched towards x
            theta2 = self._branches(np.hypot(x[..., 0], x[..., 1]))
        theta1 = self._theta1(np.arctan2(x[..., 1], x[..., 0])[..., None], theta2)
        return np.stack([theta1, theta2], axis=-1)

    def _forward(self, theta1: np.ndarray, theta2: np.ndarray) -> np.ndarray:
        l1, l2 = self.lengths
        with np.errstate(over="ignore", invalid="ignore"):  # angles near 1e308: NaN, outside the box anyway
            elbow_turn = theta1 + theta2
            return np.stack(
                [l1 * np.cos(theta1) - l2 * np.cos(elbow_turn), l1 * np.sin(theta1) - l2 * np.sin(elbow_turn)],
                axis=-1,
            )

    def _reach(self, theta2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """r(theta2) and alpha(theta2): f = r e^{i (theta1 + alpha)}."""
        l1, l2 = self.lengths
        real, imag = l1 - l2 * np.cos(theta2), -l2 * np.sin(theta2)
        return np.hypot(real, imag), np.arctan2(imag, real)

    def _branches(self, rho: np.ndarray) -> np.ndarray:
        """theta2 = pi -+ a where r(theta2) = rho (a clipped to [0, pi] beyond reach): shape rho.shape + (2,)."""
        l1, l2 = self.lengths
        with np.errstate(over="ignore", invalid="ignore"):
            cosine = np.clip((rho * rho - l1 * l1 - l2 * l2) / (2 * l1 * l2), -1.0, 1.0)
        a = np.arccos(np.where(np.isnan(cosine), 1.0, cosine))  # rho overflowing: beyond reach
        return np.stack([np.pi - a, np.pi + a], axis=-1)

    def _theta1(self, psi: np.ndarray, theta2: np.ndarray) -> np.ndarray:
        """theta1 = psi - alpha(theta2), the turn of 2 pi nearest the middle of the box."""
        middle = 0.5 * sum(self.theta1_range)
        theta1 = psi - self._reach(theta2)[1]
        return theta1 - 2 * np.pi * np.round((theta1 - middle) / (2 * np.pi))

    @property
    def _log_box(self) -> float:
        return float(np.log(np.ptp(self.theta1_range) * np.ptp(self.theta2_range)))

    def _inside(self, y: np.ndarray) -> np.ndarray:
        (a1, b1), (a2, b2) = self.theta1_range, self.theta2_range
        return (y[..., 0] >= a1) & (y[..., 0] <= b1) & (y[..., 1] >= a2) & (y[..., 1] <= b2)

    def _log_likelihood(self, x: np.ndarray, theta1: np.ndarray, theta2: np.ndarray) -> np.ndarray:
        """log N(x; f(theta1, theta2), noise^2 I), x of shape s + (2,) against angles of shape s."""
        f = self._forward(theta1, theta2)
        with np.errstate(over="ignore", invalid="ignore"):
            squares = ((x - f) ** 2).sum(axis=-1)
        return -0.5 * squares / self.noise**2 - np.log(2 * np.pi * self.noise**2)

    # ---- the process ---------------------------------------------------------------------------
    def _sample_joint(self, n, rng):
        theta1 = rng.uniform(*self.theta1_range, n)
        theta2 = rng.uniform(*self.theta2_range, n)
        x = self._forward(theta1, theta2) + self.noise * rng.standard_normal((n, 2))
        return x, np.stack([theta1, theta2], axis=-1), (theta2 > np.pi).astype(np.int64)

    def _log_joint(self, x, y):
        inside = self._inside(y)
        with np.errstate(invalid="ignore"):
            return np.where(inside, self._log_likelihood(x, y[..., 0], y[..., 1]) - self._log_box, -np.inf)

    # ---- the quadrature ------------------------------------------------------------------------
    def _theta2_stretches(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where to integrate over theta2 for m positions (m, 2): the starts and ends of the two peaks'
        stretches, each (m, 2), and of the three gaps before, between and after them, each (m, 3);
        together they tile the box."""
        l1, l2 = self.lengths
        lo, hi = self.theta2_range
        with np.errstate(over="ignore"):
            rho = np.hypot(x[:, 0], x[:, 1])
        centres = self._branches(rho)  # (m, 2)
        r, _ = self._reach(centres)
        derivative = l1 * l2 * np.sin(centres) / r
        # beyond the box's edge the log-integrand falls at (rho - r) r' / noise^2 (at least one width's
        # fall); rho beyond float64 gives stretches of no width, and p(x) = 0
        edge = np.where(centres < lo, lo, hi)
        r_edge, _ = self._reach(edge)
        with np.errstate(over="ignore", divide="ignore"):
            curvature = derivative**2 + (np.abs(rho[:, None] - r) + self.noise) * l1 * l2 / r
            half = _PEAK_WIDTHS * self.noise / np.sqrt(curvature)
            slope = np.abs(rho[:, None] - r_edge) * np.abs(l1 * l2 * np.sin(edge) / r_edge) / self.noise**2
            slope = np.fmax(slope, 1.0 / half)
        a, b = _stretch(centres, half, slope, lo, hi)  # (m, 2): the two branches' stretches
        overlap = a[:, 1] <= b[:, 0]
        merged_a, merged_b = np.minimum(a[:, 0], a[:, 1]), np.maximum(b[:, 0], b[:, 1])
        middle = 0.5 * (merged_a + merged_b)
        # where the two stretches overlap, one stretch over both, cut in two halves
        a = np.where(overlap[:, None], np.stack([merged_a, middle], axis=-1), a)
        b = np.where(overlap[:, None], np.stack([middle, merged_b], axis=-1), b)
        # the rest of the box, before, between and after the stretches, with fewer nodes: where the
        # shoulder angle of both solutions falls outside the box, the mass moves towards its corners
        gap_a = np.stack([np.full(len(x), lo), b[:, 0], b[:, 1]], axis=-1)
        gap_b = np.maximum(np.stack([a[:, 0], a[:, 1], np.full(len(x), hi)], axis=-1), gap_a)
        return a, b, gap_a, gap_b

    def _theta2_nodes(self, x: np.ndarray, refine: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """theta2 nodes and log weights for m positions (m, 2), over the whole box: each of shape
        (m, refine * (2 * _GAUSS_NODES + 3 * _GAP_NODES))."""
        a, b, gap_a, gap_b = self._theta2_stretches(x)
        nodes, log_weights = _gauss_legendre(a, b, refine * _GAUSS_NODES)  # (m, 2, n)
        gap_nodes, gap_log_weights = _gauss_legendre(gap_a, gap_b, refine * _GAP_NODES)  # (m, 3, n_gap)
        return (
            np.concatenate([nodes.reshape(len(x), -1), gap_nodes.reshape(len(x), -1)], axis=1),
            np.concatenate([log_weights.reshape(len(x), -1), gap_log_weights.reshape(len(x), -1)], axis=1),
        )

    def _log_inner(self, x: np.ndarray, theta2: np.ndarray, refine: int = 1) -> np.ndarray:
        """log of the integral over theta1 in the box of N(x; f(theta1, theta2), noise^2 I), for each
        theta2 node: x (m, 2), theta2 (m, N) -> (m, N)."""
        a, b, log_likelihood = self._theta1_stretch(x, theta2)
        theta1, log_weights = _gauss_legendre(a, b, refine * _GAUSS_NODES)  # (m, N, n)
        return logsumexp_last(log_weights + log_likelihood(theta1))

    def _theta1_stretch(self, x: np.ndarray, theta2: np.ndarray):
        """For positions x (m, 2) and theta2 of shape (m, N): where the theta1 integrand lies, (a, b)
        each (m, N), and log N(x; f(theta1, theta2), noise^2 I) as a function of theta1 (m, N, n)."""
        lo, hi = self.theta1_range
        with np.errstate(over="ignore"):
            rho, psi = np.hypot(x[:, 0], x[:, 1])[:, None], np.arctan2(x[:, 1], x[:, 0])[:, None]
        r, _ = self._reach(theta2)
        centre = self._theta1(psi, theta2)
        with np.errstate(over="ignore", divide="ignore"):
            kappa = rho * r / self.noise**2  # the peak is exp(kappa (cos(theta1 - centre) - 1))
            half = np.minimum(_PEAK_WIDTHS / np.sqrt(kappa), hi - lo)
        distance = np.where(centre < lo, lo - centre, centre - hi)
        with np.errstate(invalid="ignore", divide="ignore"):  # kappa = inf at a peak: fmax drops the NaN
            slope = np.fmax(kappa * np.abs(np.sin(np.clip(distance, 0.0, np.pi))), 1.0 / half)
        a, b = _stretch(centre, half, slope, lo, hi)

        def log_likelihood(theta1: np.ndarray) -> np.ndarray:
            # |x - f|^2 = (rho - r)^2 + 4 rho r sin^2((theta1 - centre) / 2): one sine a node, not four
            # trigonometric functions, and no cancellation where the peak is narrow
            half_turn = np.sin(0.5 * (theta1 - centre[..., None]))
            with np.errstate(over="ignore", invalid="ignore"):
                squares = (rho - r)[..., None] ** 2 + (4 * rho * r)[..., None] * half_turn * half_turn
            terms = -0.5 * squares / self.noise**2 - np.log(2 * np.pi * self.noise**2)
            return np.where(np.isnan(terms), -np.inf, terms)

        return a, b, log_likelihood

    def _log_x_integral(self, x: np.ndarray, refine: int = 1) -> np.ndarray:
        """log of the integral over the box of N(x; f(y), noise^2 I) dy, for x (m, 2): shape (m,)."""
        out = np.empty(len(x))
        rows = max(1, _CHUNK_ELEMENTS // (2 * refine * _GAUSS_NODES) ** 2)
        for start in range(0, len(x), rows):
            chunk = x[start : start + rows]
            theta2, log_weights = self._theta2_nodes(chunk, refine)
            out[start : start + rows] = logsumexp_last(self._log_inner(chunk, theta2, refine) + log_weights)
        return out

    def _log_marginal_x(self, x):
        flat = x.reshape(-1, 2)
        unique, inverse = np.unique(flat, axis=0, return_inverse=True)
        return (self._log_x_integral(unique) - self._log_box)[inverse].reshape(x.shape[:-1])

    def _given_x(self, x):
        return (self._log_x_integral(x) - self._log_box,)

    def _log_prob(self, y, x, log_px):
        # where p(x) underflows (positions some 1e150 away), so does p(x, y): -inf is the answer
        log_joint = self._log_joint(x, y)
        with np.errstate(invalid="ignore"):
            return np.where(np.isneginf(log_px), -np.inf, log_joint - log_px)

    def _sample_conditional(self, x, n, rng, log_px):
        # theta2 by inverting the cumulative trapezoid of its marginal on a grid fine over the peaks'
        # stretches and coarser over the gaps; then each draw's theta1 given its theta2 the same way,
        # on a fine grid over the stretch where that theta1 lies
        out = np.empty((n, len(x), 2))
        for i in range(len(x)):
            point = x[i : i + 1]
            a, b, gap_a, gap_b = (v[0] for v in self._theta2_stretches(point))
            parts = [np.linspace(lo, hi, _SAMPLING_NODES) for lo, hi in zip(a, b)]
            parts += [np.linspace(lo, hi, _SAMPLING_NODES // 8) for lo, hi in zip(gap_a, gap_b)]
            theta2_grid = np.unique(np.concatenate(parts))
            log_marginal = self._log_inner(point, theta2_grid[None])[0]
            if np.isneginf(log_marginal).all():
                raise CannotSample(f"cannot sample: p(y | x) underflows at every node for x = {point[0]}")
            theta2 = sample_from_grid(log_marginal, theta2_grid, rng.random(n))  # (n,)
            lo1, hi1, log_likelihood = self._theta1_stretch(point, theta2[None])  # each (1, n)
            theta1_grid = lo1[0, :, None] + (hi1 - lo1)[0, :, None] * np.linspace(0.0, 1.0, _SAMPLING_NODES)
            out[:, i, 0] = sample_rows_from_grid(log_likelihood(theta1_grid[None])[0], theta1_grid, rng.random(n))
            out[:, i, 1] = theta2
        return out

    @property
    def x_range(self):
        reach = sum(self.lengths) + 4 * self.noise
        return (-reach, reach), (-reach, reach)

    @property
    def y_range(self):
        return tuple(self.theta1_range), tuple(self.theta2_range)


def robot_arm(
    n_samples: int = 1000,
    noise: float = 0.02,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator | None = None,
) -> RobotArm:
    """The two-link robot arm of Bishop (1994) and PRML Fig. 5.18: joint angles from positions.

    y = (theta1, theta2) uniform on (0.3, 1.2) x (pi/2, 3 pi/2), links L1 = 0.8 and L2 = 0.2, and
    x = the end effector's position + N(0, noise^2 I). The forward problem (y to x) is single-valued;
    the inverse is two-valued where the elbow can bend either way within the box. The default noise
    (0.02, a tenth of the short link) keeps the two branches apart across most of the workspace.

    Example:
        >>> data = robot_arm(n_samples=500, seed=0)
        >>> data.x_train.shape, data.y_train.shape, data.inverse([0.5, 0.7]).shape
        ((450, 2), (450, 2), (2, 2))
    """
    n_samples, noise, rng = _checked_common(n_samples, noise, test_fraction, seed)
    return RobotArm(noise=noise)._with_points(n_samples, test_fraction, rng)


# =================================================================================================
# 5. Planar relocalisation
# =================================================================================================
@dataclass(frozen=True, kw_only=True, eq=False)
class PlanarRelocalisation(ToyDataset):
    """y ~ U([-T, T]^2) a camera's position in a room tiled K x K; c the tile it stands on;
    x = pattern_c + N(0, noise^2 I_m), the pattern vector that tile shows.

    The camera set in the plane with a vector observation. Tiles are equal squares, so
    p(c) = 1 / K^2, p(x) = sum_c N(x; pattern_c, noise^2 I) / K^2, and
    p(y | x) = sum_c w_c(x) U(y; tile_c), w_c(x) proportional to N(x; pattern_c, noise^2 I): a mixture of
    uniforms over the tiles, in closed form; 0 (log_prob = -inf) outside the room.

    Attributes:
        palette: the pattern vectors, shape (P, m). tile_patterns: the palette entry each tile shows,
        shape (K^2,), tile c = (row i, column j) at c = i K + j, row i along the first coordinate of y.
        half_width: T. tiles_per_side: K.
    """

    palette: np.ndarray
    tile_patterns: np.ndarray
    half_width: float
    tiles_per_side: int
    name: ClassVar[str] = "room"
    y_family: ClassVar[str] = "uniform"
    x_parents: ClassVar[str] = "c"

    @property
    def x_dim(self) -> int:
        return self.palette.shape[1]

    @property
    def y_space(self) -> OutputSpace:
        return Euclidean(2)

    @property
    def n_components(self) -> int:
        return self.tiles_per_side**2

    @property
    def patterns(self) -> np.ndarray:
        """The pattern each tile shows: shape (K^2, m)."""
        return self.palette[self.tile_patterns]

    @property
    def edges(self) -> np.ndarray:
        """The tiles' edges along each axis: shape (K + 1,), from -T to T."""
        return np.linspace(-self.half_width, self.half_width, self.tiles_per_side + 1)

    @property
    def tile_centres(self) -> np.ndarray:
        """The centre of each tile: shape (K^2, 2)."""
        middles = 0.5 * (self.edges[1:] + self.edges[:-1])
        return np.stack(np.meshgrid(middles, middles, indexing="ij"), axis=-1).reshape(-1, 2)

    def tile(self, y: ArrayLike) -> np.ndarray:
        """The tile c holding each position ``y`` (..., 2), clipped to the border tiles outside the room."""
        y = finite_array(y, "y")
        event_batch_shape(y, 2, "y")
        return self._tile(y)

    def _tile(self, y: np.ndarray) -> np.ndarray:
        k = self.tiles_per_side
        index = np.clip(np.floor((y + self.half_width) / (2 * self.half_width) * k), 0, k - 1).astype(np.int64)
        return index[..., 0] * k + index[..., 1]

    def _inside(self, y: np.ndarray) -> np.ndarray:
        return np.all(np.abs(y) <= self.half_width, axis=-1)

    @property
    def _log_tile_area(self) -> float:
        return float(2 * np.log(2 * self.half_width / self.tiles_per_side))

    def _log_x_given_c(self, x: np.ndarray, patterns: np.ndarray) -> np.ndarray:
        """log N(x; patterns, noise^2 I) with x (..., m) against patterns of shape (..., m)."""
        with np.errstate(over="ignore"):
            squares = ((x - patterns) ** 2).sum(axis=-1)
        return -0.5 * squares / self.noise**2 - 0.5 * self.x_dim * np.log(2 * np.pi * self.noise**2)

    def _sample_joint(self, n, rng):
        y = rng.uniform(-self.half_width, self.half_width, (n, 2))
        c = self._tile(y)
        return self.patterns[c] + self.noise * rng.standard_normal((n, self.x_dim)), y, c

    def _log_joint(self, x, y):
        with np.errstate(divide="ignore"):
            log_py = np.log(self._inside(y).astype(np.float64)) - 2 * np.log(2 * self.half_width)
        return log_py + self._log_x_given_c(x, self.patterns[self._tile(y)])

    def _log_marginal_x(self, x):
        log_c = -np.log(self.n_components)
        return logsumexp_last(log_c + self._log_x_given_c(x[..., None, :], self.patterns))

    def _given_x(self, x):
        """log p(c | x), (len(x), K^2)."""
        return (
            log_isotropic_posterior(
                x, np.full(self.n_components, -np.log(self.n_components)), self.patterns, self.noise
            ),
        )

    def _log_prob(self, y, x, log_w):
        tile = np.broadcast_to(self._tile(y), np.broadcast_shapes(y.shape[:-1], log_w.shape[:-1]))
        picked = np.take_along_axis(np.broadcast_to(log_w, tile.shape + log_w.shape[-1:]), tile[..., None], -1)
        return np.where(self._inside(y), picked[..., 0] - self._log_tile_area, -np.inf)

    def _sample_conditional(self, x, n, rng, log_w):
        tiles = sample_categorical(log_w, n, rng)  # (n, m)
        side = 2 * self.half_width / self.tiles_per_side
        corner = self.tile_centres[tiles] - side / 2  # (n, m, 2)
        return corner + side * rng.random(corner.shape)

    @property
    def x_range(self):
        return tuple(
            (float(low - 4 * self.noise), float(high + 4 * self.noise))
            for low, high in zip(self.palette.min(axis=0), self.palette.max(axis=0))
        )

    @property
    def y_range(self):
        return (-self.half_width, self.half_width), (-self.half_width, self.half_width)


def planar_relocalisation(
    n_samples: int = 1000,
    tiles_per_side: int = 4,
    n_patterns: int = 4,
    pattern_dim: int = 3,
    one_to_many: bool = True,
    noise: float = 0.1,
    test_fraction: float = 0.1,
    seed: int | np.random.Generator | None = None,
) -> PlanarRelocalisation:
    """A camera relocalising in a square room whose floor tiles repeat a few patterns.

    The room is [-T, T]^2 with T = 5 K (tiles of side 10), cut into K x K tiles. A palette of
    ``n_patterns`` vectors is drawn from U([-1, 1]^m), m = ``pattern_dim``; each tile shows one,
    drawn with replacement when ``one_to_many`` (so several places look alike) and without
    replacement otherwise (which needs K^2 <= n_patterns).

    Example:
        >>> data = planar_relocalisation(n_samples=500, seed=0)
        >>> data.x_train.shape, data.y_train.shape, data.patterns.shape
        ((450, 3), (450, 2), (16, 3))
    """
    k = check_count(tiles_per_side, "tiles_per_side")
    n_patterns = check_count(n_patterns, "n_patterns")
    pattern_dim = check_count(pattern_dim, "pattern_dim")
    if not isinstance(one_to_many, (bool, np.bool_)):
        raise ValueError(f"one_to_many must be True or False, got {one_to_many!r}")
    if not one_to_many and k * k > n_patterns:
        raise ValueError(
            f"one_to_many=False needs a distinct pattern per tile, but tiles_per_side={k} gives {k * k} tiles "
            f"for n_patterns={n_patterns}"
        )
    n_samples, noise, rng = _checked_common(n_samples, noise, test_fraction, seed)
    palette = rng.uniform(-1.0, 1.0, (n_patterns, pattern_dim))
    tile_patterns = rng.choice(n_patterns, size=k * k, replace=bool(one_to_many))
    dataset = PlanarRelocalisation(
        palette=palette, tile_patterns=tile_patterns, half_width=5.0 * k, tiles_per_side=k, noise=noise
    )
    return dataset._with_points(n_samples, test_fraction, rng)


DATASETS: dict[str, Callable[..., ToyDataset]] = {
    "linear": linear_mixture,
    "sinusoid": inverted_sinusoid_mixture,
    "camera": camera_relocalisation,
    "robot_arm": robot_arm,
    "room": planar_relocalisation,
}
"""Short name -> generator, for loops over all five datasets."""

SCALAR_DATASETS: dict[str, Callable[..., ToyDataset]] = {
    name: DATASETS[name] for name in ("linear", "sinusoid", "camera")
}
"""The datasets with a scalar x and a scalar y: the ones every model family serves."""

"""Two classical references for p(y | x), no neural network in either: Gaussian mixture regression
and the conditional kernel density estimate.

**Gaussian mixture regression** (Ghahramani and Jordan 1994; Sung 2004) fits a Gaussian mixture to the
joint (x, y) by EM (scikit-learn's ``GaussianMixture``) and conditions it on x in closed form:

.. math::
    p(y \\mid x) = \\sum_k w_k(x)\\, \\mathcal{N}\\big(y;\\, \\mu_{y,k} + \\tfrac{\\Sigma_{yx,k}}{\\Sigma_{xx,k}}
    (x - \\mu_{x,k}),\\; \\Sigma_{yy,k} - \\tfrac{\\Sigma_{yx,k}^2}{\\Sigma_{xx,k}}\\big),
    \\qquad w_k(x) \\propto \\pi_k\\, \\mathcal{N}(x; \\mu_{x,k}, \\Sigma_{xx,k}).

Each component of the linear dataset is jointly Gaussian in (x, y), so with K = 3 this family holds
that dataset's truth exactly; the sinusoid and the camera need many components to tile their curves
and flat cells. For a vector x and y the same conditioning goes block-wise (Bishop, PRML eqs. 2.81-2.82):
the weights use N(x; μ_x, Σ_xx), the means μ_y + Σ_yx Σ_xx⁻¹ (x − μ_x), the covariances
Σ_yy − Σ_yx Σ_xx⁻¹ Σ_xy, passed on as Cholesky factors. The dimensions are those of the data it is fitted on.

**The conditional kernel density estimate** (Rosenblatt 1969; Hyndman, Bashtannyk and Grunwald 1996)
puts a product of Gaussian kernels on every training point and conditions on x:

.. math::
    p(y \\mid x) = \\frac{\\sum_i K_h(x - x_i)\\, K_g(y - y_i)}{\\sum_i K_h(x - x_i)}
    = \\sum_i w_i(x)\\, \\mathcal{N}(y; y_i, g^2),

a Gaussian mixture with one component per training point, whose weights are the kernel weights in x.
Both bandwidths are chosen by leave-one-out likelihood. For a vector x and y the kernels are products
of Gaussians with a bandwidth per axis, h (d_x,) and g (d_y,): w_i(x) ∝ prod_j N(x_j; x_ij, h_j²) and
p(y|x) = sum_i w_i(x) N(y; y_i, diag(g²)); chosen ones are one common factor for the x axes and one for
the y axes, each times the axis' standard deviation (the bandwidths of the z-scored data, Silverman-style).

Both speak the conditional-density protocol (:mod:`utilis.protocol`), in log-space: the weights are
exact posteriors however far x lies (:func:`utilis.numerics.log_gaussian_posterior`).

Example:
    >>> from generate_dataset import linear_mixture
    >>> data = linear_mixture(n_samples=600, seed=0)
    >>> gmr = GaussianMixtureRegression(n_components=3).fit(data.x_train, data.y_train, seed=0)
    >>> gmr.log_prob(data.y_test[:4], data.x_test[:4]).shape
    (4,)
    >>> kde = ConditionalKDE().fit(data.x_train, data.y_train, seed=0)
    >>> kde.sample(data.x_test[:3], 5, seed=0).shape
    (5, 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, spatial
from sklearn.mixture import GaussianMixture

from utilis.mixtures import GaussianMixtureDensity
from utilis.networks import check_paired
from utilis.numerics import LOG_SQRT_2PI, log_gaussian_posterior, logsumexp_last, sample_categorical
from utilis.protocol import CheckedDensity, NotFittedError, check_count, check_positive, finite_array
from utilis.spaces import Euclidean

__all__ = ["ConditionalKDE", "GaussianMixtureRegression"]

DEFAULT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""The numbers of components Gaussian mixture regression chooses among, by held-out likelihood."""


def _split(n: int, seed: int | None, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a held-out ``fraction`` of n points (at least one) and of the rest, seeded."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(fraction * n))
    return order[:n_val], order[n_val:]


class GaussianMixtureRegression(GaussianMixtureDensity):
    """A Gaussian mixture over (x, y) fitted by EM, conditioned on x in closed form; x and y scalars or
    vectors of any dimension (x (n,) or (n, d_x), y (n,) or (n, d_y), each axis z-scored before EM).

    Args:
        n_components: K, or a sequence of candidate K among which ``fit`` chooses the one with the
            best conditional log-likelihood on a held-out tenth of the points (then refits on all),
            trying them in increasing order until two in a row do no better than the best so far.
        n_init: EM restarts per fit (scikit-learn keeps the best).
        reg_covar: added to the diagonal of every covariance, in z-scored units (a floor on widths).
    """

    def __init__(
        self, n_components: int | Sequence[int] = DEFAULT_CANDIDATES, n_init: int = 1, reg_covar: float = 1e-6
    ):
        candidates = (n_components,) if isinstance(n_components, (int, np.integer)) else tuple(n_components)
        if not candidates:
            raise ValueError("n_components must name at least one number of components, got an empty sequence")
        self.candidates = tuple(check_count(k, "n_components") for k in candidates)
        self.n_init = check_count(n_init, "n_init")
        self.reg_covar = check_positive(reg_covar, "reg_covar")
        self.mixture: GaussianMixture | None = None
        self.validation_nll: dict[int, float] = {}

    @property
    def n_components(self) -> int:
        """The K of the fitted mixture."""
        self._check_ready()
        return int(self.mixture.n_components)

    def fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None = 0) -> GaussianMixtureRegression:
        """Fit by EM (seeded), choosing K among the candidates by held-out likelihood if there are several.

        ``x`` is (n,) or (n, d_x) and ``y`` (n,) or (n, d_y), in any dimensions: the joint is a mixture
        over R^(d_x + d_y) with full covariances, and each axis is z-scored before EM."""
        x, y = check_paired(_columns(x, "x"), _columns(y, "y"))
        seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self.x_dim, self.y_space = x.shape[1], Euclidean(y.shape[1])
        points = np.column_stack([x, y])
        columns = [np.ascontiguousarray(column) for column in points.T]  # each summed as a 1-D array
        self._centre = np.array([column.mean() for column in columns])
        self._spread = np.array([column.std() or 1.0 for column in columns])
        points = (points - self._centre) / self._spread
        x = x[:, 0] if self.x_dim == 1 else x
        y = y[:, 0] if self.y_dim == 1 else y
        k_best = self.candidates[0]
        if len(self.candidates) > 1:
            val, train = _split(len(x), seed)
            self.validation_nll = {}
            for k in sorted(self.candidates):
                if k > len(train):
                    break
                self.mixture = self._em(points[train], k, seed)
                self.validation_nll[k] = float(-self.log_prob(y[val], x[val]).mean())
                k_best = min(self.validation_nll, key=self.validation_nll.get)
                if sorted(self.validation_nll).index(k_best) < len(self.validation_nll) - 2:
                    break  # two larger candidates in a row did no better: more will not either
        if k_best > len(x):
            raise ValueError(f"n_components={k_best} exceeds the {len(x)} training points")
        self.mixture = self._em(points, k_best, seed)
        return self

    def _em(self, points: np.ndarray, k: int, seed: int | None) -> GaussianMixture:
        mixture = GaussianMixture(k, covariance_type="full", reg_covar=self.reg_covar, n_init=self.n_init,
                                  random_state=seed, max_iter=500)  # fmt: skip
        return mixture.fit(points)

    def _check_ready(self) -> None:
        if self.mixture is None:
            raise NotFittedError("this GaussianMixtureRegression is not fitted yet: call fit(x, y) first")

    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if (self.x_dim, self.y_dim) != (1, 1):
            return self._given_vector_x(x)
        x_mean, y_mean = self._centre
        x_sd, y_sd = self._spread
        mean, cov = self.mixture.means_, self.mixture.covariances_  # (K, 2), (K, 2, 2), z-scored
        sxx, syx, syy = cov[:, 0, 0], cov[:, 1, 0], cov[:, 1, 1]
        z = np.clip((x - x_mean) / x_sd, -1e150, 1e150)  # beyond, every square overflows alike
        log_w = log_gaussian_posterior(z, np.log(self.mixture.weights_), mean[:, 0], np.sqrt(sxx))  # (m, K)
        with np.errstate(over="ignore"):
            means = y_mean + y_sd * (mean[:, 1] + (syx / sxx) * (z[:, None] - mean[:, 0]))
        means = np.clip(means, -1e300, 1e300)  # a slope times 1e150 sds: beyond float64 where it overflows
        sds = np.broadcast_to(y_sd * np.sqrt(np.maximum(syy - syx**2 / sxx, 1e-300)), log_w.shape)
        return log_w, means, sds

    def _given_vector_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The block-wise conditioning of the joint, for any d_x and d_y (Bishop, PRML eqs. 2.81-2.82):

        w_k(x) ∝ π_k N(x; μ_x, Σ_xx),  μ_{y|x} = μ_y + Σ_yx Σ_xx⁻¹ (x - μ_x),  Σ_{y|x} = Σ_yy - Σ_yx Σ_xx⁻¹ Σ_xy,

        all in z-scored units, then scaled back per axis. Returns log w (m, K) and, for a scalar y, the
        means and sds (m, K); else the means (m, K, d_y) and the Cholesky factors (m, K, d_y, d_y)."""
        d_x = self.x_dim
        x = x.reshape(len(x), d_x)
        mean, cov = self.mixture.means_, self.mixture.covariances_  # (K, d), (K, d, d), z-scored
        sxx, syx, syy = cov[:, :d_x, :d_x], cov[:, d_x:, :d_x], cov[:, d_x:, d_x:]
        lxx = np.linalg.cholesky(sxx)  # (K, d_x, d_x)
        # x beyond 1e100 sds: every distance is then astronomically large alike, and still finite
        with np.errstate(over="ignore"):
            z = np.clip((x - self._centre[:d_x]) / self._spread[:d_x], -1e100, 1e100)
        offset = z[:, None, :] - mean[None, :, :d_x]  # (m, K, d_x)
        whitened = np.linalg.solve(lxx[None], offset[..., None])[..., 0]  # L_xx⁻¹ (x - μ_x)
        log_det = np.log(np.diagonal(lxx, axis1=-2, axis2=-1)).sum(-1)  # (K,)
        logits = np.log(self.mixture.weights_) - log_det - 0.5 * np.einsum("mki,mki->mk", whitened, whitened)
        log_w = logits - logits.max(axis=1, keepdims=True)
        log_w -= logsumexp_last(log_w)[:, None]
        gain = np.linalg.solve(sxx, np.swapaxes(syx, -1, -2)).swapaxes(-1, -2)  # Σ_yx Σ_xx⁻¹, (K, d_y, d_x)
        y_centre, y_spread = self._centre[d_x:], self._spread[d_x:]
        means = y_centre + y_spread * (mean[None, :, d_x:] + np.einsum("kij,mkj->mki", gain, offset))
        conditional = syy - gain @ np.swapaxes(syx, -1, -2)  # (K, d_y, d_y)
        conditional = y_spread[:, None] * conditional * y_spread[None, :]
        conditional = 0.5 * (conditional + np.swapaxes(conditional, -1, -2))  # symmetric to the last bit
        floor = 1e-300 if self.y_dim == 1 else 1e-12 * np.max(np.abs(conditional))
        values, vectors = np.linalg.eigh(conditional)
        conditional = np.einsum("kij,kj,klj->kil", vectors, np.maximum(values, floor), vectors)
        if self.y_dim == 1:
            sds = np.broadcast_to(np.sqrt(conditional[:, 0, 0]), log_w.shape)
            return log_w, means[..., 0], sds
        tril = np.broadcast_to(np.linalg.cholesky(conditional), (len(x), *conditional.shape))
        return log_w, means, tril


def _columns(values: ArrayLike, name: str) -> np.ndarray:
    """Training ``x`` or ``y`` as rows (n, d): a 1-D array is one column."""
    array = finite_array(values, name)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{name} must be 1-D (n,) or rows (n, d), got shape {array.shape}")
    return array


def _bandwidth_option(value: float | Sequence[float] | None, name: str) -> float | tuple[float, ...] | None:
    """A bandwidth as :class:`ConditionalKDE` takes it: None, one number > 0 (for every axis), or a
    1-D sequence of them (one per axis, its length checked at fit)."""
    if value is None:
        return None
    try:
        factors = tuple(value)
    except TypeError:
        return check_positive(value, name)
    if not factors or np.ndim(value) != 1:
        raise ValueError(f"{name} must be a number > 0 or a 1-D sequence of them, one per axis, got {value!r}")
    return tuple(check_positive(factor, f"{name}[{j}]") for j, factor in enumerate(factors))


def _axis_factors(option: float | tuple[float, ...] | None, dim: int, scalar: bool, name: str):
    """A bandwidth option for data with ``dim`` axes: None; a float for a scalar x and y (the scalar
    path); else an array (dim,). A sequence must hold one number per axis."""
    if option is None:
        return None
    if isinstance(option, tuple) and len(option) != dim:
        raise ValueError(f"{name} must be one number or {dim} (one per axis of {name[0]}), got {len(option)}: {option}")
    if scalar:
        return option if isinstance(option, float) else option[0]
    return np.broadcast_to(np.array(option, dtype=np.float64), (dim,)).copy()


def _segment_logsumexp(terms: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """log sum exp over each segment of ``terms`` (each non-empty, beginning at ``starts``), finite terms."""
    sizes = np.diff(np.append(starts, len(terms)))
    peak = np.maximum.reduceat(terms, starts)
    return peak + np.log(np.add.reduceat(np.exp(terms - np.repeat(peak, sizes)), starts))


class ConditionalKDE(CheckedDensity):
    """The conditional kernel density estimate, bandwidths chosen by leave-one-out likelihood; x and y
    scalars or vectors of any dimension (x (n,) or (n, d_x), y (n,) or (n, d_y)), a bandwidth per axis.

    Args:
        x_bandwidth, y_bandwidth: h and g in units of the training data's standard deviations of x and
            y: one number for every axis, or one per axis; None (the default) chooses them in ``fit``
            by leave-one-out log-likelihood.
        max_validation: training points scored by leave-one-out per trial bandwidth (a random
            subset of the points beyond it).

    For a vector x or y the kernels are products over the axes, a Gaussian of its own width on each:

        p(y|x) = sum_i w_i(x) N(y; y_i, diag(g²)),   w_i(x) ∝ prod_j N(x_j; x_ij, h_j²),

    h of shape (d_x,) and g of shape (d_y,). Chosen bandwidths are Silverman-style per axis: one common
    factor for the x axes and one for the y axes, each times the axis' standard deviation (the factors
    are those that are best in the data's z-scored space); a scalar x and y keep their scalar h and g.

    Each term of the sum is exp(-D_i² / 2) up to a factor that x sets, D_i the distance from the query
    to training point i in units of the bandwidths, (x/h, y/g). Evaluation sums, for each query, the
    points within sqrt(D_0² + 2 (36 + log n)) of it, D_0 the nearest one's distance (a k-d tree finds
    both): every point left out is below e^-36 / n of the largest term, so together they are below the
    sum's last bit and the result is the formula's to rounding, in the data and in its far tails alike,
    at a cost of the few points near each query instead of every point within reach of x. A query farther
    than ``FAR`` bandwidths from every point, where the tree's distances would lose those digits, sums
    over every point. The weights' normaliser sums over the points whose weight is above
    exp(-``NEGLIGIBLE``) of the largest (for a vector x, those a k-d tree over x/h finds within
    sqrt(D_0² + 2 ``NEGLIGIBLE``)); the weights are exact posteriors at every x: far from the data
    the nearest training points take them (for a vector x, those farthest out in the query's direction;
    a query beyond ``LIMIT`` bandwidths is moved along its ray from the origin to ``LIMIT``, where they
    already hold all the weight). Where ``MANY`` queries share one x (a grid of y), the terms are not
    searched query by query but cell by cell in y/g, with the same bound on what is left out
    (:meth:`_cell_sums`).
    """

    NEGLIGIBLE = 60.0  # log-weights below the largest by more are left out of the normaliser
    FAR = 1e4  # bandwidths from every training point: beyond, a query sums over every point
    BLOCK = 2**21  # (query, point) pairs evaluated at a time
    LIMIT = 1e100  # bandwidths from the origin: a vector x beyond is moved back along its ray
    MANY = 1024  # queries sharing one x (a grid of y): from these, its y are summed cell by cell
    CELL = 2.0  # bandwidths: the side of those cells, in y/g
    CELL_REACH = 1e6  # bandwidths: a y beyond, at such an x, sums over every point

    def __init__(
        self,
        x_bandwidth: float | Sequence[float] | None = None,
        y_bandwidth: float | Sequence[float] | None = None,
        max_validation: int = 1000,
    ):
        self.bandwidths = (_bandwidth_option(x_bandwidth, "x_bandwidth"), _bandwidth_option(y_bandwidth, "y_bandwidth"))
        self.max_validation = check_count(max_validation, "max_validation")
        self.x_train: np.ndarray | None = None
        self._tree: spatial.cKDTree | None = None  # built at the first evaluation after fit
        self._trees: tuple[np.ndarray, spatial.cKDTree, spatial.cKDTree] | None = None  # the same, for vectors

    _vector = False  # _vector: fitted by the vector path (any x or y not both scalars)

    def fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None = 0) -> ConditionalKDE:
        """Keep the points; choose the missing bandwidths by leave-one-out log-likelihood (Nelder-Mead on logs).

        ``x`` is (n,) or (n, d_x) and ``y`` (n,) or (n, d_y), in any dimensions (a single column is a scalar)."""
        x, y = check_paired(_columns(x, "x"), _columns(y, "y"))
        seed = None if seed is None else check_count(seed, "seed", minimum=0)
        scalar = x.shape[1] == y.shape[1] == 1
        h, g = (_axis_factors(option, values.shape[1], scalar, name)
                for option, values, name in zip(self.bandwidths, (x, y), ("x_bandwidth", "y_bandwidth")))  # fmt: skip
        if not scalar:
            return self._fit_vector(x, y, seed, h, g)
        x, y = np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(y[:, 0])
        self.scale = (x.std() or 1.0, y.std() or 1.0)
        if h is None or g is None:
            h, g = self._choose(x, y, seed, h, g)
        self.h, self.g = h * self.scale[0], g * self.scale[1]
        order = np.argsort(x, kind="stable")
        self.x_train, self.y_train = x[order], y[order]
        self.x_dim, self.y_space, self._vector = 1, Euclidean(1), False
        self._tree = self._trees = None
        return self

    def _kd_tree(self) -> spatial.cKDTree:
        """The training points in units of the bandwidths, (x/h, y/g), for the neighbour searches."""
        if self._tree is None:
            self._tree = spatial.cKDTree(np.column_stack([self.x_train / self.h, self.y_train / self.g]))
        return self._tree

    def _choose(self, x, y, seed: int | None, h: float | None, g: float | None) -> tuple[float, float]:
        """Bandwidths (in sds) maximising the leave-one-out log-likelihood of up to ``max_validation``
        training points (each scored by the estimate from all the others), from Scott's rule n^(-1/6).

        Leave-one-out rather than a held-out split: a split of a few hundred points rarely holds the
        tail points on which a too narrow g is catastrophic, and then chooses it (measured on the
        sinusoid at 1,350 points: a held-out tenth chose a g that doubled gave a gap 0.3 nats smaller).
        """
        sx, sy = self.scale
        targets = np.random.default_rng(seed).permutation(len(x))[: self.max_validation]
        # float32: these only rank bandwidths, and a 1,000 x 30,000 matrix is 120 MB in it
        dx = (((x[targets, None] - x[None, :]) / sx) ** 2).astype(np.float32)  # (targets, n), squared sds
        dy = (((y[targets, None] - y[None, :]) / sy) ** 2).astype(np.float32)
        dx[np.arange(len(targets)), targets] = np.inf  # leave each target out of its own estimate
        start = len(x) ** (-1 / 6)

        def nll(log_bandwidths: np.ndarray) -> float:
            hh = np.exp(log_bandwidths[0]) if h is None else h
            gg = np.exp(log_bandwidths[-1]) if g is None else g
            log_w = dx * np.float32(-0.5 / hh**2)
            log_w -= logsumexp_last(log_w)[:, None]
            log_w -= dy * np.float32(0.5 / gg**2)
            return float(-(logsumexp_last(log_w).astype(np.float64) - np.log(gg * sy)).mean() + LOG_SQRT_2PI)

        free = [np.log(start)] * ((h is None) + (g is None))
        best = optimize.minimize(nll, free, method="Nelder-Mead", options={"xatol": 0.02, "fatol": 1e-4})
        chosen = iter(np.exp(best.x))
        return (next(chosen) if h is None else h), (next(chosen) if g is None else g)

    def _check_ready(self) -> None:
        if self.x_train is None:
            raise NotFittedError("this ConditionalKDE is not fitted yet: call fit(x, y) first")

    def _nearest(self, x: np.ndarray) -> np.ndarray:
        """The training x nearest to each x."""
        xs = self.x_train
        right = np.searchsorted(xs, x)
        left, right = xs[np.maximum(right - 1, 0)], xs[np.minimum(right, len(xs) - 1)]
        return np.where(np.abs(x - left) <= np.abs(x - right), left, right)

    def _shifted_log_weights(self, x, near, xw):
        """log K_h(x - x_i) - log K_h(x - near) for the training x ``xw``, written as
        -(near - x_i)((x - x_i) + (x - near)) / 2h^2: exact however far x lies (0 at the nearest point)."""
        with np.errstate(over="ignore", invalid="ignore"):  # ends beyond float64 are +-inf; inf * 0 is NaN, below
            log_w = -(near - xw) * ((x - xw) + (x - near)) / (2 * self.h**2)
        return np.where(xw == near, 0.0, np.nan_to_num(log_w, nan=-np.inf, posinf=-np.inf, neginf=-np.inf))

    def _weights(self, x: float, everything: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Normalised log w_i(x) of the training points that matter at x (:meth:`_window`; ``everything``:
        all of them), and their y."""
        near = float(self._nearest(np.float64(x)))
        window = slice(None) if everything else self._window(x, near)
        log_w = self._shifted_log_weights(x, near, self.x_train[window])
        return log_w - logsumexp_last(log_w), self.y_train[window]

    def _log_prob(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self._vector:
            return self._vector_log_prob(y, x)
        y_all, x_all = np.broadcast_arrays(y, x)
        flat_y, flat_x = y_all.ravel(), x_all.ravel()
        out = np.empty(flat_y.shape)
        unique, inverse = np.unique(flat_x, return_inverse=True)
        near = self._nearest(unique)
        # log of the weights' normaliser at each distinct x, in the shifted form
        log_norm = np.array([logsumexp_last(self._shifted_log_weights(u, v, self.x_train[self._window(u, v)]))
                             for u, v in zip(unique, near)])  # fmt: skip
        tree = self._kd_tree()
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = np.column_stack([flat_x / self.h, flat_y / self.g])
        close = np.isfinite(scaled).all(axis=1)
        distance = np.full(len(flat_y), np.inf)
        if close.any():
            distance[close] = tree.query(scaled[close])[0]
        close &= distance < self.FAR
        queries = np.flatnonzero(close)
        radius = np.sqrt(distance[queries] ** 2 + 2 * (36.0 + np.log(len(self.x_train))))
        counts = tree.query_ball_point(scaled[queries], radius, return_length=True) if len(queries) else queries
        # chunks of about BLOCK (query, point) pairs
        bounds = np.unique(np.searchsorted(np.cumsum(counts), np.arange(0, counts.sum(), self.BLOCK), side="right"))
        for lo, hi in zip(bounds, [*bounds[1:], len(queries)]):
            chunk = queries[lo:hi]
            points = tree.query_ball_point(scaled[chunk], radius[lo:hi], return_sorted=False)
            sizes = counts[lo:hi]
            index = np.fromiter(itertools.chain.from_iterable(points), dtype=np.intp, count=int(sizes.sum()))
            rows = np.repeat(chunk, sizes)
            z = (flat_y[rows] - self.y_train[index]) / self.g
            terms = self._shifted_log_weights(flat_x[rows], near[inverse[rows]], self.x_train[index]) - 0.5 * z * z
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            peak = np.maximum.reduceat(terms, starts)
            out[chunk] = peak + np.log(np.add.reduceat(np.exp(terms - np.repeat(peak, sizes)), starts))
        out[close] -= log_norm[inverse[close]] + np.log(self.g) + LOG_SQRT_2PI
        far = np.flatnonzero(~close)  # far from every point: the sum over all of them
        for j in np.unique(inverse[far]):
            at = far[inverse[far] == j]
            out[at] = self._mixture(flat_y[at], *self._weights(unique[j], everything=True))
        return out.reshape(y_all.shape)

    def _window(self, x: float, near: float) -> slice:
        """The training points (in sorted x) whose weight at x is above exp(-NEGLIGIBLE) of the largest."""
        xs = self.x_train
        with np.errstate(over="ignore", invalid="ignore"):  # x beyond float64's squares: the nearest point alone
            d = abs(x - near)
            reach = 2 * self.NEGLIGIBLE * self.h**2
            radius = d + 0.5 * reach / d if d > self.h else np.sqrt(d**2 + reach)
            return slice(int(np.searchsorted(xs, x - radius)), int(np.searchsorted(xs, x + radius, side="right")))

    def _mixture(self, y: np.ndarray, log_w: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """log sum_i w_i N(y; centres_i, g^2) for each y, in blocks of about 2^20 terms."""
        out = np.empty(len(y))
        block = max(1, 2**20 // max(len(centres), 1))
        for start in range(0, len(y), block):
            with np.errstate(over="ignore"):  # a square beyond float64: a density below it, -inf
                z = (y[start : start + block, None] - centres) / self.g
                out[start : start + block] = logsumexp_last(log_w - 0.5 * z * z)
        return out - np.log(self.g) - LOG_SQRT_2PI

    def _sample(self, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._vector:
            return self._vector_sample(x, n, rng)
        out = np.empty((n, len(x)))
        for j, xj in enumerate(x):
            log_w, centres = self._weights(xj, everything=True)
            out[:, j] = centres[sample_categorical(log_w[None, :], n, rng)[:, 0]] + self.g * rng.standard_normal(n)
        return out

    # ---- a vector x or y: the same estimate, a bandwidth per axis -------------------------------------
    def _fit_vector(self, x: np.ndarray, y: np.ndarray, seed: int | None, h, g) -> ConditionalKDE:
        """The fit for rows x (n, d_x) and y (n, d_y), not both scalars; ``h`` and ``g`` the given
        bandwidths per axis in sds, or None to choose."""
        self.scale = tuple(np.array([np.ascontiguousarray(column).std() or 1.0 for column in values.T])
                           for values in (x, y))  # fmt: skip
        if h is None or g is None:
            h, g = self._choose_vector(x, y, seed, h, g)
        self.h, self.g = h * self.scale[0], g * self.scale[1]
        self.x_train, self.y_train = x.copy(), y.copy()
        self.x_dim, self.y_space, self._vector = x.shape[1], Euclidean(y.shape[1]), True
        self._tree = self._trees = None
        return self

    def _choose_vector(self, x, y, seed: int | None, h, g) -> tuple[np.ndarray, np.ndarray]:
        """Bandwidths per axis (in sds) by leave-one-out log-likelihood, as :meth:`_choose`: a common
        factor for the x axes and one for the y axes (the bandwidths of the z-scored data, so each axis'
        bandwidth is the factor times its sd), from Scott's rule n^(-1/(d_x + d_y + 4)). A given h or g
        (per axis) stays as it is."""
        targets = np.random.default_rng(seed).permutation(len(x))[: self.max_validation]

        def squared(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
            """Squared distances (targets, n) in units of ``widths`` per axis, float32 (as in :meth:`_choose`)."""
            total = np.zeros((len(targets), len(values)), dtype=np.float32)
            for column, width in zip(values.T, widths):
                column = np.ascontiguousarray(column)
                total += (((column[targets, None] - column[None, :]) / width) ** 2).astype(np.float32)
            return total

        (sx, sy), d_y = self.scale, y.shape[1]
        dx = squared(x, sx if h is None else sx * h)
        dy = squared(y, sy if g is None else sy * g)
        dx[np.arange(len(targets)), targets] = np.inf  # leave each target out of its own estimate
        log_widths = np.log(sy if g is None else sy * g).sum()
        start = len(x) ** (-1 / (x.shape[1] + d_y + 4))

        def nll(log_factors: np.ndarray) -> float:
            a = np.exp(log_factors[0]) if h is None else 1.0
            b = np.exp(log_factors[-1]) if g is None else 1.0
            log_w = dx * np.float32(-0.5 / a**2)
            log_w -= logsumexp_last(log_w)[:, None]
            log_w -= dy * np.float32(0.5 / b**2)
            log_k = logsumexp_last(log_w).astype(np.float64) - d_y * np.log(b) - log_widths
            return float(-log_k.mean() + d_y * LOG_SQRT_2PI)

        free = [np.log(start)] * ((h is None) + (g is None))
        best = optimize.minimize(nll, free, method="Nelder-Mead", options={"xatol": 0.02, "fatol": 1e-4})
        chosen = iter(np.exp(best.x))
        h = np.full(x.shape[1], next(chosen)) if h is None else h
        return h, (np.full(d_y, next(chosen)) if g is None else g)

    def _vector_trees(self) -> tuple[np.ndarray, spatial.cKDTree, spatial.cKDTree]:
        """The training x in units of the bandwidths, x/h, a k-d tree over them, and one over (x/h, y/g)."""
        if self._trees is None:
            scaled = self.x_train / self.h
            joint = spatial.cKDTree(np.column_stack([scaled, self.y_train / self.g]))
            self._trees = (scaled, spatial.cKDTree(scaled), joint)
        return self._trees

    def _scaled(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows x (m, d_x) in units of the bandwidths, x/h, and which lay beyond ``LIMIT``: those are moved
        back along their ray from the origin to ``LIMIT`` (out there the weights no longer change)."""
        with np.errstate(over="ignore"):  # beyond float64: moved back below
            scaled = x / self.h
        beyond = ~np.isfinite(scaled).all(axis=1) | (np.abs(scaled).max(axis=1) > self.LIMIT)
        if beyond.any():
            direction = (x[beyond] / np.abs(x[beyond]).max(axis=1, keepdims=True)) / self.h
            scaled[beyond] = direction * (self.LIMIT / np.abs(direction).max(axis=1, keepdims=True))
        return scaled, beyond

    @staticmethod
    def _excess(q: np.ndarray, reference: np.ndarray, points: np.ndarray) -> np.ndarray:
        """|q - p|² - |q - r|² for points p and a reference r (in units of the bandwidths), written as
        sum_j (r_j - p_j)((q_j - p_j) + (q_j - r_j)): exact however far q lies (0 at the reference)."""
        return ((reference - points) * ((q - points) + (q - reference))).sum(axis=-1)

    def _all_log_weights(self, q: np.ndarray) -> np.ndarray:
        """Normalised log w_i(x) of every training point, for one x in units of the bandwidths (d_x,):
        relative to the point nearest to it, found in two passes (the second with the exact differences)."""
        points = self._vector_trees()[0]
        reference = points[np.argmin(((q - points) ** 2).sum(axis=1))]
        reference = points[np.argmin(self._excess(q, reference, points))]
        log_w = -0.5 * self._excess(q, reference, points)
        return log_w - logsumexp_last(log_w)

    def _balls(self, tree: spatial.cKDTree, points: np.ndarray, radius: np.ndarray):
        """The training points within ``radius`` of each of ``points``, in chunks of about ``BLOCK`` pairs:
        for each chunk, its points' positions, each pair's point's position, each pair's training point,
        and where each point's pairs start (every ball holds at least the nearest point)."""
        if not len(points):
            return
        counts = tree.query_ball_point(points, radius, return_length=True)
        bounds = np.unique(np.searchsorted(np.cumsum(counts), np.arange(0, counts.sum(), self.BLOCK), side="right"))
        for lo, hi in zip(bounds, [*bounds[1:], len(points)]):
            found = tree.query_ball_point(points[lo:hi], radius[lo:hi], return_sorted=False)
            sizes = counts[lo:hi]
            index = np.fromiter(itertools.chain.from_iterable(found), dtype=np.intp, count=int(sizes.sum()))
            chunk = np.arange(lo, hi)
            yield chunk, np.repeat(chunk, sizes), index, np.concatenate([[0], np.cumsum(sizes)[:-1]])

    def _vector_log_prob(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """log p(y|x) for a vector x or y. At an x that few queries share, as the scalar path: the
        weights' normaliser over the points a k-d tree in x/h finds near it, the sum over the points a
        k-d tree in (x/h, y/g) finds near each query (:meth:`_tree_sums`). At an x that ``MANY``
        queries share (a grid of y), the weights of every point once, and the sum over each cell's
        candidates (:meth:`_cell_sums`). A query far from every point sums over all of them."""
        d_x, d_y = self.x_dim, self.y_dim
        y = y[..., None] if d_y == 1 else y
        x = x[..., None] if d_x == 1 else x
        shape = np.broadcast_shapes(y.shape[:-1], x.shape[:-1])
        flat_y = np.broadcast_to(y, (*shape, d_y)).reshape(-1, d_y)
        unique, inverse = np.unique(x.reshape(-1, d_x), axis=0, return_inverse=True)
        of_x = np.broadcast_to(inverse.reshape(x.shape[:-1]), shape).ravel()  # each query's distinct x
        q = self._scaled(unique)[0]
        with np.errstate(over="ignore"):  # y beyond float64 in units of g: far
            scaled_y = flat_y / self.g
        reach = np.where(np.isfinite(scaled_y).all(axis=1), np.abs(scaled_y).max(axis=1), np.inf)
        out = np.full(len(flat_y), np.nan)
        per_x = np.bincount(of_x, minlength=len(q))
        many = per_x >= self.MANY
        far = self._tree_sums(out, flat_y, scaled_y, q, of_x, ~many)
        by_x = np.argsort(of_x, kind="stable")
        ends = np.cumsum(per_x)
        for j in np.flatnonzero(many):
            at = by_x[ends[j] - per_x[j] : ends[j]]
            cells = reach[at] <= self.CELL_REACH
            log_w = self._all_log_weights(q[j])
            out[at[cells]] = self._cell_sums(scaled_y[at[cells]], log_w)
            out[at[~cells]] = self._vector_mixture(flat_y[at[~cells]], log_w)
        for j in np.unique(of_x[far]):  # far from every point: the sum over all of them
            at = far[of_x[far] == j]
            out[at] = self._vector_mixture(flat_y[at], self._all_log_weights(q[j]))
        return (out - np.log(self.g).sum() - d_y * LOG_SQRT_2PI).reshape(shape)

    def _tree_sums(self, out, flat_y, scaled_y, q, of_x, chosen) -> np.ndarray:
        """log sum_i w_i(x) exp(-|(y - y_i)/g|² / 2) into ``out`` for the queries whose distinct x is
        ``chosen``, by the k-d trees; returns the queries among them far from every point (left to the caller)."""
        points, x_tree, tree = self._vector_trees()
        # at each chosen x near the data: the nearest point, and the log of the weights' normaliser
        near, distance = np.zeros(len(q), dtype=np.intp), np.full(len(q), np.inf)
        nearby = chosen & (np.abs(q).max(axis=1) < self.LIMIT)  # beyond: moved back, and far from every point
        if nearby.any():
            distance[nearby], near[nearby] = x_tree.query(q[nearby])
        x_close = distance < self.FAR
        log_norm = np.zeros(len(q))
        queries = np.flatnonzero(x_close)
        radius = np.sqrt(distance[queries] ** 2 + 2 * self.NEGLIGIBLE)
        for chunk, rows, index, starts in self._balls(x_tree, q[queries], radius):
            at = queries[rows]
            terms = -0.5 * self._excess(q[at], points[near[at]], points[index])
            log_norm[queries[chunk]] = _segment_logsumexp(terms, starts)
        # the kernel sum at each query near a training point in (x/h, y/g)
        close = x_close[of_x] & np.isfinite(scaled_y).all(axis=1)
        joint = np.column_stack([q[of_x[close]], scaled_y[close]])
        distance = np.full(len(flat_y), np.inf)
        if len(joint):
            distance[close] = tree.query(joint)[0]
        inside = distance[close] < self.FAR
        close[close] = inside
        queries = np.flatnonzero(close)
        radius = np.sqrt(distance[queries] ** 2 + 2 * (36.0 + np.log(len(self.x_train))))
        for chunk, rows, index, starts in self._balls(tree, joint[inside], radius):
            at, x_at = queries[rows], of_x[queries[rows]]
            z = (flat_y[at] - self.y_train[index]) / self.g
            terms = -0.5 * (self._excess(q[x_at], points[near[x_at]], points[index]) + (z * z).sum(axis=1))
            out[queries[chunk]] = _segment_logsumexp(terms, starts)
        out[close] -= log_norm[of_x[close]]
        return np.flatnonzero(chosen[of_x] & ~close)

    def _cell_sums(self, scaled_y: np.ndarray, log_w: np.ndarray) -> np.ndarray:
        """log sum_i w_i exp(-|y/g - y_i/g|² / 2) for many rows y/g (k, d_y) at one x, with log w over
        every point: each query sums over the candidates of its cell, a cube of side ``CELL`` in y/g.

        The terms t_i(y) = log w_i - |y/g - y_i/g|² / 2 of two points differ by a function linear in y,
        so over a cell of centre c, t_i(y) - t_k(y) <= t_i(c) - t_k(c) + CELL/2 ||(y_i - y_k)/g||_1; with k
        the largest term at c, a point for which this is below -(36 + log n) is below e^-36 / n of the
        largest term at every y of the cell (as the trees' balls): it is left out, and the rest summed."""
        points = self.y_train / self.g
        margin = 36.0 + np.log(len(points))
        cells = np.floor(scaled_y / self.CELL).astype(np.int64)  # |y/g| <= CELL_REACH: a few digits
        order = np.lexsort(cells.T[::-1])  # the queries cell by cell
        new = np.concatenate([[True], (cells[order[1:]] != cells[order[:-1]]).any(axis=1)])
        cell_of = np.cumsum(new) - 1  # of each query in that order
        centres = (cells[order[new]] + 0.5) * self.CELL  # (C, d_y)
        # each cell's candidates: t_i(c) - t_k(c) from b_i + c·y_i/g (the common -|c|²/2 cancels), first
        # against a looser slack through the points' median (||u - v||_1 <= ||u - m||_1 + ||v - m||_1)
        b = log_w - 0.5 * (points**2).sum(axis=1)
        spread = 0.5 * self.CELL * np.abs(points - np.median(points, axis=0)).sum(axis=1)
        found_cell, found_point = [], []
        step = max(1, self.BLOCK // len(points))
        for lo in range(0, len(centres), step):
            s = b + centres[lo : lo + step] @ points.T  # (cells, n)
            best = np.argmax(s, axis=1)
            s -= s[np.arange(len(best)), best][:, None]
            cell, point = np.nonzero(s + spread + spread[best][:, None] >= -margin)
            slack = 0.5 * self.CELL * np.abs(points[point] - points[best[cell]]).sum(axis=1)
            keep = s[cell, point] + slack >= -margin
            found_cell.append(cell[keep] + lo)
            found_point.append(point[keep])
        candidate_cell, candidates = np.concatenate(found_cell), np.concatenate(found_point)
        counts = np.bincount(candidate_cell, minlength=len(centres))  # >= 1: the best is a candidate
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # where each cell's candidates begin
        weight, axes = log_w[candidates], [np.ascontiguousarray(points[candidates, j]) for j in range(points.shape[1])]
        queries = [np.ascontiguousarray(scaled_y[order, j]) for j in range(points.shape[1])]
        sizes, shift = counts[cell_of], first[cell_of]
        out = np.empty(len(scaled_y))
        bounds = np.unique(np.searchsorted(np.cumsum(sizes), np.arange(0, sizes.sum(), self.BLOCK), side="right"))
        for lo, hi in zip(bounds, [*bounds[1:], len(scaled_y)]):
            chunk = sizes[lo:hi]
            starts = np.concatenate([[0], np.cumsum(chunk)[:-1]])
            pair = np.arange(chunk.sum()) + np.repeat(shift[lo:hi] - starts, chunk)  # into the candidates
            squares = np.zeros(len(pair))
            for query, axis in zip(queries, axes):
                z = np.repeat(query[lo:hi], chunk) - axis[pair]
                squares += z * z
            out[order[lo:hi]] = _segment_logsumexp(weight[pair] - 0.5 * squares, starts)
        return out

    def _vector_mixture(self, y: np.ndarray, log_w: np.ndarray) -> np.ndarray:
        """log sum_i w_i exp(-|(y - y_i) / g|² / 2) for rows y (k, d_y), in blocks of about 2^20 terms."""
        out = np.empty(len(y))
        block = max(1, 2**20 // len(log_w))
        for start in range(0, len(y), block):
            with np.errstate(over="ignore"):  # a square beyond float64: a density below it, -inf
                z = (y[start : start + block, None, :] - self.y_train) / self.g
                out[start : start + block] = logsumexp_last(log_w - 0.5 * (z * z).sum(axis=-1))
        return out

    def _vector_sample(self, x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """For each x, n picks of a training point by w_i(x), each its y plus g times a standard normal."""
        q = self._scaled(x.reshape(len(x), self.x_dim))[0]
        out = np.empty((n, len(x), self.y_dim))
        for j in range(len(x)):
            pick = sample_categorical(self._all_log_weights(q[j])[None, :], n, rng)[:, 0]
            out[:, j] = self.y_train[pick] + self.g * rng.standard_normal((n, self.y_dim))
        return out if self.y_dim > 1 else out[..., 0]

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
Both bandwidths are chosen by leave-one-out likelihood.

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
from utilis.networks import check_fit_data
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

    @property
    def x_dim(self) -> int:
        """The dimension of x the fit saw (1 before a fit)."""
        return self._x_dim

    @property
    def y_space(self) -> Euclidean:
        """R^d for the d of the y the fit saw (the line before a fit)."""
        return Euclidean(self._y_dim)

    _x_dim, _y_dim = 1, 1

    def fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None = 0) -> GaussianMixtureRegression:
        """Fit by EM (seeded), choosing K among the candidates by held-out likelihood if there are several.

        ``x`` is (n,) or (n, d_x) and ``y`` (n,) or (n, d_y), in any dimensions: the joint is a mixture
        over R^(d_x + d_y) with full covariances, and each axis is z-scored before EM."""
        x, y = _columns(x, "x"), _columns(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x and y must hold the same number of points, got {len(x)} and {len(y)}")
        if len(x) < 2:
            raise ValueError(f"fitting needs at least 2 points, got {len(x)}")
        seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self._x_dim, self._y_dim = x.shape[1], y.shape[1]
        points = np.column_stack([x, y])
        columns = [np.ascontiguousarray(column) for column in points.T]  # each summed as a 1-D array
        self._centre = np.array([column.mean() for column in columns])
        self._spread = np.array([column.std() or 1.0 for column in columns])
        points = (points - self._centre) / self._spread
        x = x[:, 0] if self._x_dim == 1 else x
        y = y[:, 0] if self._y_dim == 1 else y
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
        if (self._x_dim, self._y_dim) != (1, 1):
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
        d_x = self._x_dim
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
        floor = 1e-300 if self._y_dim == 1 else 1e-12 * np.max(np.abs(conditional))
        values, vectors = np.linalg.eigh(conditional)
        conditional = np.einsum("kij,kj,klj->kil", vectors, np.maximum(values, floor), vectors)
        if self._y_dim == 1:
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


class ConditionalKDE(CheckedDensity):
    """The conditional kernel density estimate, bandwidths chosen by leave-one-out likelihood.

    Args:
        x_bandwidth, y_bandwidth: h and g in units of the training data's standard deviations of x and
            y; None (the default) chooses them in ``fit`` by leave-one-out log-likelihood.
        max_validation: training points scored by leave-one-out per trial bandwidth (a random
            subset of the points beyond it).

    Each term of the sum is exp(-D_i² / 2) up to a factor that x sets, D_i the distance from the query
    to training point i in units of the bandwidths, (x/h, y/g). Evaluation sums, for each query, the
    points within sqrt(D_0² + 2 (36 + log n)) of it, D_0 the nearest one's distance (a k-d tree finds
    both): every point left out is below e^-36 / n of the largest term, so together they are below the
    sum's last bit and the result is the formula's to rounding, in the data and in its far tails alike,
    at a cost of the few points near each query instead of every point within reach of x. A query farther
    than ``FAR`` bandwidths from every point, where the tree's distances would lose those digits, sums
    over every point. The weights' normaliser sums over the points whose weight is above
    exp(-``NEGLIGIBLE``) of the largest; the weights are exact posteriors at every x: far from the data
    the nearest training points take them.
    """

    NEGLIGIBLE = 60.0  # log-weights below the largest by more are left out of the normaliser
    FAR = 1e4  # bandwidths from every training point: beyond, a query sums over every point
    BLOCK = 2**21  # (query, point) pairs evaluated at a time

    def __init__(self, x_bandwidth: float | None = None, y_bandwidth: float | None = None, max_validation: int = 1000):
        self.bandwidths = tuple(None if b is None else check_positive(b, name) for b, name in
                                ((x_bandwidth, "x_bandwidth"), (y_bandwidth, "y_bandwidth")))  # fmt: skip
        self.max_validation = check_count(max_validation, "max_validation")
        self.x_train: np.ndarray | None = None
        self._tree: spatial.cKDTree | None = None  # built at the first evaluation after fit

    def fit(self, x: ArrayLike, y: ArrayLike, *, seed: int | None = 0) -> ConditionalKDE:
        """Keep the points; choose the missing bandwidths by leave-one-out log-likelihood (Nelder-Mead on logs)."""
        x, y = check_fit_data(x, y)
        seed = None if seed is None else check_count(seed, "seed", minimum=0)
        self.scale = (x.std() or 1.0, y.std() or 1.0)
        h, g = self.bandwidths
        if h is None or g is None:
            h, g = self._choose(x, y, seed, h, g)
        self.h, self.g = h * self.scale[0], g * self.scale[1]
        order = np.argsort(x, kind="stable")
        self.x_train, self.y_train = x[order], y[order]
        self._tree = None
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
        out = np.empty((n, len(x)))
        for j, xj in enumerate(x):
            log_w, centres = self._weights(xj, everything=True)
            out[:, j] = centres[sample_categorical(log_w[None, :], n, rng)[:, 0]] + self.g * rng.standard_normal(n)
        return out

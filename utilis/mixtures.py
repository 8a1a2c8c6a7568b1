"""Two families of conditional density whose parameters depend on x: Gaussian mixtures and histograms.

Several densities here differ only in how x sets the parameters of the same family, so the family's
density and sampler are written once:

- :class:`GaussianMixtureDensity`: p(y | x) = sum_k w_k(x) N(y; mu_k(x), sigma_k(x)^2). The MDN
  (K Gaussians), MSE regression read as a density and the best-single-Gaussian oracle (K = 1). For
  a y in R^d the components carry full covariances, N(y; mu_k(x), L_k(x) L_k(x)^T), through their
  Cholesky factors (as ``torch.distributions.MultivariateNormal(scale_tril=...)`` takes them).
- :class:`HistogramDensity`: p(y | x) = w_b(x) / width_b for y in bin b, 0 outside the bins (in the
  plane, cells of a product of edges). The softmax over bins of y and the truth binned on the same bins.

A subclass gives ``_given_x(x)`` (the family's parameters for distinct x) and inherits ``log_prob``
and ``sample`` from :class:`~utilis.protocol.CheckedDensity`.

Example:
    >>> import numpy as np
    >>> class Standard(GaussianMixtureDensity):
    ...     def _given_x(self, x):  # log weights, means, sds: (len(x), K)
    ...         ones = np.ones((len(x), 1))
    ...         return np.zeros_like(ones), 0.0 * ones, ones
    >>> round(float(Standard().log_prob(0.0, 3.0)), 6)
    -0.918939
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from utilis.numerics import (
    log_gaussian_mixture,
    log_histogram,
    log_mvn_mixture,
    sample_gaussian_mixture,
    sample_histogram,
    sample_mvn_mixture,
)
from utilis.protocol import CheckedDensity

__all__ = ["GaussianMixtureDensity", "HistogramDensity"]


class GaussianMixtureDensity(CheckedDensity):
    """p(y | x) = sum_k w_k(x) N(y; mu_k(x), Sigma_k(x)); ``_given_x`` gives log w (m, K) and, for a
    scalar y, mu and sigma (m, K); for y in R^d (``y_space``), mu (m, K, d) and the Cholesky factor of
    Sigma, lower-triangular with a positive diagonal, (m, K, d, d)."""

    @abstractmethod
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def _log_prob(self, y, x, log_weights, means, scales):
        if self.y_dim == 1:
            return log_gaussian_mixture(y, log_weights, means, scales)
        return log_mvn_mixture(y, log_weights, means, scales)

    def _sample(self, x, n, rng, log_weights, means, scales):
        if self.y_dim == 1:
            return sample_gaussian_mixture(log_weights, means, scales, n, rng)
        return sample_mvn_mixture(log_weights, means, scales, n, rng)


class HistogramDensity(CheckedDensity):
    """p(y | x) = w_b(x) / width_b on bins with ``bin_edges`` (B + 1,); ``_given_x`` gives log w, (m, B).
    For y in R^d, ``bin_edges`` is a tuple of d such arrays and the bins are the cells of their product,
    w_b(x) / volume_b, numbered in C order (:func:`utilis.numerics.log_histogram`)."""

    @property
    @abstractmethod
    def bin_edges(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """The B + 1 increasing edges of the bins, float64 (a tuple of them, one per axis, for a vector y)."""

    @abstractmethod
    def _given_x(self, x: np.ndarray) -> tuple[np.ndarray]: ...

    def _log_prob(self, y, x, log_weights):
        return log_histogram(y, log_weights, self.bin_edges)

    def _sample(self, x, n, rng, log_weights):
        return sample_histogram(log_weights, self.bin_edges, n, rng)

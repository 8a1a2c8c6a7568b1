"""Shared test fixtures: small reference densities whose answers are known in closed form."""

import matplotlib
import numpy as np
import pytest
from scipy import stats

matplotlib.use("Agg")  # no screen in tests


class GaussianConditional:
    """y | x ~ N(slope x + offset, sd^2), written with scipy.stats as an independent reference."""

    def __init__(self, slope=1.0, offset=0.0, sd=1.0):
        self.slope, self.offset, self.sd = slope, offset, sd

    def mean(self, x):
        return self.slope * np.asarray(x) + self.offset

    def log_prob(self, y, x):
        return stats.norm.logpdf(y, self.mean(x), self.sd)

    def sample(self, x, n, seed=None):
        rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        x = np.atleast_1d(x)
        return self.mean(x)[None, :] + self.sd * rng.standard_normal((n, len(x)))


class MixtureConditional:
    """y | x ~ sum_k w_k N(mean_k, sd_k^2), the same at every x."""

    def __init__(self, weights, means, sds):
        self.weights, self.means, self.sds = map(np.asarray, (weights, means, sds))

    def log_prob(self, y, x):
        y, _ = np.broadcast_arrays(np.asarray(y, float), np.asarray(x, float))
        parts = np.log(self.weights) + stats.norm.logpdf(y[..., None], self.means, self.sds)
        return np.logaddexp.reduce(parts, axis=-1)

    def sample(self, x, n, seed=None):
        rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
        k = rng.choice(len(self.weights), size=(n, len(np.atleast_1d(x))), p=self.weights)
        return self.means[k] + self.sds[k] * rng.standard_normal(k.shape)


@pytest.fixture
def gaussian():
    return GaussianConditional(slope=0.5, offset=1.0, sd=0.7)


@pytest.fixture
def bimodal():
    return MixtureConditional([0.5, 0.5], [-3.0, 3.0], [0.5, 0.5])

"""The energy of two embeddings: its quasi-Monte Carlo normaliser and rejection sampler against a Gaussian in
closed form (scipy) in 1, 2 and 3 dimensions of y, a fit to a two-branch conditional in 3 dimensions, refusals."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from utilis.embedding_energy import EmbeddingEnergy
from utilis.metrics import bayes_gap
from utilis.protocol import CheckedDensity
from utilis.spaces import Euclidean


class QuadraticEnergy(EmbeddingEnergy):
    """φ(x) = (μ(x) / s², 1), ψ(z) = (z, -|z|² / 2s²): -E = -|z - μ(x)|² / 2s² + |μ|² / 2s², so p(y | x) is
    N(μ(x), s² I) in z-scored y, cut to the box (whose edges lie 6 s or more from μ: the cut is under 1e-8)."""

    S = 0.3

    def __init__(self, y_dim: int, y_mean, y_sd, n_nodes: int | None = None):
        super().__init__(x_dim=1, y_dim=y_dim, n_features=y_dim, hidden=4, depth=1, n_nodes=n_nodes)
        self.scaling.x_mean.fill_(0.0), self.scaling.x_sd.fill_(1.0)
        self.scaling.y_mean.copy_(torch.as_tensor(y_mean, dtype=torch.float64).reshape(self.scaling.y_mean.shape))
        self.scaling.y_sd.copy_(torch.as_tensor(y_sd, dtype=torch.float64).reshape(self.scaling.y_sd.shape))
        self.z_bounds.copy_(torch.tensor([[-3.0, 3.5]] * y_dim, dtype=torch.float64))
        self.fitted.fill_(True)

    def mu(self, x):
        """μ(x) in z-scored y: x along the first axis, x / 2 along the others (|x| <= 1)."""
        return torch.stack([x] + [x / 2] * (self.y_dim - 1), dim=1)

    def embed_x(self, x):
        phi = self.mu(self.scaling.z_rows(x)[:, 0].double()) / self.S**2
        return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)

    def embed_y(self, z):
        z = z.double()
        return torch.cat([z, -(z**2).sum(dim=1, keepdim=True) / (2 * self.S**2)], dim=1)

    def gaussian(self, x: float):
        """The density it stands for, in y's own units: scipy's multivariate normal."""
        mean = self.scaling.y_mean.numpy().reshape(-1) + self.scaling.y_sd.numpy().reshape(-1) * self.mu(
            torch.tensor([x], dtype=torch.float64)
        )[0].numpy()
        return stats.multivariate_normal(mean, np.diag((self.S * self.scaling.y_sd.numpy().reshape(-1)) ** 2))


@pytest.mark.parametrize(
    ("y_dim", "y_mean", "y_sd"), [(1, 2.0, 0.5), (2, [1.0, -2.0], [0.5, 3.0]), (3, [0, 1, 2], [1, 2, 0.5])]
)
def test_the_normaliser_and_the_draws_of_a_quadratic_energy_are_a_gaussians(y_dim, y_mean, y_sd):
    model = QuadraticEnergy(y_dim, y_mean, y_sd)
    rng = np.random.default_rng(0)
    for x in (-0.8, 0.0, 0.6):
        truth = model.gaussian(x)
        y = truth.rvs(200, random_state=rng).reshape(200, -1)
        query = y[:, 0] if y_dim == 1 else y
        log_p = model.log_prob(query, np.full(200, x))
        # the Sobol rule's error in log Z at the default nodes (2^14 in 1 and 2 dimensions, 2^17 in 3)
        np.testing.assert_allclose(log_p, truth.logpdf(query), atol=1e-3 if y_dim < 3 else 3e-3)
        draws = model.sample(np.array([x]), 2000, seed=1)[:, 0]  # (2000,) or (2000, d)
        draws = draws.reshape(2000, -1)
        sds = np.sqrt(np.diag(truth.cov))
        for axis in range(y_dim):  # each axis's marginal, by Kolmogorov-Smirnov
            assert stats.kstest(draws[:, axis], stats.norm(truth.mean[axis], sds[axis]).cdf).pvalue > 1e-3


def test_the_normaliser_needs_nodes_as_dense_as_the_peak():
    """With 16 Sobol nodes for a peak of sd 0.3 on a box 6.5 wide, Z errs by more than 2 %: n_nodes matters."""
    rough, fine = QuadraticEnergy(2, [0, 0], [1, 1], n_nodes=16), QuadraticEnergy(2, [0, 0], [1, 1])
    y, x = np.zeros((1, 2)), np.zeros(1)
    exact = fine.gaussian(0.0).logpdf(y[0])
    assert abs(fine.log_prob(y, x)[0] - exact) < 1e-3 < 0.02 < abs(rough.log_prob(y, x)[0] - exact)


def test_outside_the_box_the_density_is_zero():
    model = QuadraticEnergy(3, [0, 0, 0], [1, 1, 1])
    y = np.array([[0.0, 0.0, 3.6], [0.0, -3.01, 0.0], [1e300, 0.0, 0.0], [0.0, 0.0, 3.5]])
    log_p = model.log_prob(y, np.zeros(4))
    assert np.isneginf(log_p[:3]).all() and np.isfinite(log_p[3])
    assert model.y_bounds == ((-3.0, 3.5),) * 3


class TwoBranches(CheckedDensity):
    """y = ±m(x) + 0.1 ε in R³, m(x) = (1 + x / 2, x, 1 / 2), each sign with probability 1/2, x ~ U(-1, 1)."""

    y_space = Euclidean(3)
    SD = 0.1

    @staticmethod
    def branch(x):
        return np.stack([1 + x / 2, x, np.full_like(x, 0.5)], axis=-1)

    def _log_prob(self, y, x):
        m = self.branch(x)
        constant = 3 * np.log(self.SD * np.sqrt(2 * np.pi))
        log_n = [-0.5 * ((y - s * m) ** 2).sum(-1) / self.SD**2 - constant for s in (1, -1)]
        return np.logaddexp(*log_n) - np.log(2)

    def _sample(self, x, n, rng):
        signs = rng.choice([-1.0, 1.0], size=(n, len(x), 1))
        return signs * self.branch(x)[None] + self.SD * rng.standard_normal((n, len(x), 3))

    def single_gaussian_gap(self, x, y):
        """The gap of N(E[y|x], Cov[y|x]) = N(0, m mᵀ + sd² I), the best any single Gaussian does."""
        m = self.branch(x)
        covariances = m[:, :, None] * m[:, None, :] + self.SD**2 * np.eye(3)
        log_q = [stats.multivariate_normal(np.zeros(3), cov).logpdf(yi) for cov, yi in zip(covariances, y)]
        return float(np.mean(self.log_prob(y, x) - np.array(log_q)))


def test_it_learns_two_branches_in_three_dimensions():
    truth, rng = TwoBranches(), np.random.default_rng(0)
    x = rng.uniform(-1, 1, 3000)
    y = truth.sample(x, 1, seed=1)[0]
    model = EmbeddingEnergy(x_dim=1, y_dim=3, hidden=32)
    model.fit(x, y, seed=0, progress=False, epochs=20)
    x_test = rng.uniform(-1, 1, 2000)
    y_test = truth.sample(x_test, 1, seed=2)[0]
    gap = bayes_gap(model, truth, x_test, y_test)
    single = truth.single_gaussian_gap(x_test, y_test)
    assert single > 1.0 and gap.gap < 0.4 * single, (gap, single)
    draws = model.sample(np.array([0.5]), 400, seed=3)[:, 0]  # (400, 3): both branches drawn
    nearer_plus = np.linalg.norm(draws - truth.branch(np.array(0.5)), axis=1) < np.linalg.norm(
        draws + truth.branch(np.array(0.5)), axis=1
    )
    assert 0.2 < nearer_plus.mean() < 0.8


def test_refusals():
    for bad in (3, 1000, 0, 1.5):
        with pytest.raises(ValueError, match="n_nodes"):
            EmbeddingEnergy(n_nodes=bad)
    for name in ("n_features", "n_negatives", "hidden", "depth", "x_dim", "y_dim"):
        with pytest.raises(ValueError, match=name):
            EmbeddingEnergy(**{name: 0})
    with pytest.raises(ValueError, match="margin"):
        EmbeddingEnergy(margin=-1.0)
    with pytest.raises(ValueError, match="max_y_frequency"):
        EmbeddingEnergy(max_y_frequency=0.0)
    model = EmbeddingEnergy(x_dim=1, y_dim=3, hidden=8)
    model.fit(np.linspace(-1, 1, 50), np.random.default_rng(0).normal(size=(50, 3)), progress=False, epochs=1)
    with pytest.raises(ValueError, match="y"):
        model.log_prob(np.zeros((4, 2)), np.zeros(4))
    assert math.isfinite(model.log_prob(np.zeros((1, 3)), np.zeros(1))[0])

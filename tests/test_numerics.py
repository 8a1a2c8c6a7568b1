"""The numeric kernels, against scipy and closed forms: Gaussians, mixtures, posteriors, trapezoid, samplers."""

import numpy as np
import pytest
from scipy import integrate, special, stats

from utilis.numerics import (
    log_gaussian_mixture,
    log_gaussian_posterior,
    log_histogram,
    log_isotropic_posterior,
    log_mvn_mixture,
    log_trapezoid,
    normal_logpdf,
    sample_categorical,
    sample_from_grid,
    sample_gaussian_mixture,
    sample_histogram,
    sample_mvn_mixture,
    sample_rows_from_grid,
)


def test_log_gaussian_mixture_matches_scipy():
    rng = np.random.default_rng(0)
    y = np.linspace(-3, 3, 11)[:, None]  # (11, 1): everything but x depends on y
    log_a = np.log(rng.dirichlet(np.ones(3), size=(11, 1)))  # (11, 1, 3)
    mean, sd = rng.normal(size=(11, 1, 3)) + y[..., None], rng.uniform(0.2, 2, size=(11, 1, 3))
    x = np.linspace(-5, 5, 7)  # (7,)
    reference = np.log((np.exp(log_a) * stats.norm.pdf(x[None, :, None], mean, sd)).sum(-1))
    np.testing.assert_allclose(log_gaussian_mixture(x, log_a, mean, sd), reference, rtol=1e-12)
    # means and scales shared by every y (shape (K,)), weights per y, and a scalar x
    shared = log_gaussian_mixture(0.5, log_a[:, 0, :], mean[0, 0], sd[0, 0])
    expected = np.log((np.exp(log_a[:, 0, :]) * stats.norm.pdf(0.5, mean[0, 0], sd[0, 0])).sum(-1))
    np.testing.assert_allclose(shared, expected, rtol=1e-12)
    # a component with weight 0 adds nothing; all weights 0 gives -inf, never NaN
    with np.errstate(divide="ignore"):
        none = log_gaussian_mixture(x, np.log(np.zeros(3)), np.zeros(3), np.ones(3))
    assert np.all(none == -np.inf)


def test_normal_logpdf_matches_scipy():
    value, mean, sd = np.linspace(-50, 50, 21)[:, None], np.array([0.0, 3.0]), np.array([0.1, 7.0])
    np.testing.assert_allclose(normal_logpdf(value, mean, sd), stats.norm.logpdf(value, mean, sd), rtol=1e-13)


def test_sample_categorical_and_from_grid():
    rng = np.random.default_rng(0)
    with np.errstate(divide="ignore"):
        log_w = np.log([[0.2, 0.0, 0.8], [0.5, 0.5, 0.0]]) + 700.0  # unnormalised, huge, with zeros
    draws = sample_categorical(log_w, 50_000, rng)
    assert draws.shape == (50_000, 2)
    np.testing.assert_allclose(np.bincount(draws[:, 0], minlength=3) / 50_000, [0.2, 0.0, 0.8], atol=0.01)
    np.testing.assert_allclose(np.bincount(draws[:, 1], minlength=3) / 50_000, [0.5, 0.5, 0.0], atol=0.01)
    nodes = np.concatenate([np.linspace(-8, 0, 3000), np.linspace(0.001, 8, 500)])  # uneven spacing
    y = sample_from_grid(stats.norm.logpdf(nodes, 1.0, 1.5), nodes, rng.random(20_000))
    assert stats.kstest(y, "norm", args=(1.0, 1.5)).pvalue > 1e-3


def test_log_gaussian_posterior_matches_scipy_and_stays_exact_far_out():
    log_prior, mean, sd = np.log([0.2, 0.5, 0.3]), np.array([-2.0, 0.5, 3.0]), np.array([0.4, 1.0, 0.7])
    x = np.linspace(-6, 6, 13)
    joint = np.log(np.exp(log_prior) * stats.norm.pdf(x[:, None], mean, sd))
    reference = joint - special.logsumexp(joint, axis=1, keepdims=True)
    np.testing.assert_allclose(log_gaussian_posterior(x, log_prior, mean, sd), reference, atol=1e-12)
    # Far out each logit underflows to -inf on its own; the difference of squares keeps the answer.
    # At x = 1e200 the widest component (sd 1.0) wins; at -1e300 too; at 1e6 the exact log weights
    # are -0.5 (z_c^2 - z_1^2) + log prior and log sd terms, which are finite and computable.
    far = log_gaussian_posterior(np.array([1e200, -1e300, 1.7e308]), log_prior, mean, sd)
    np.testing.assert_array_equal(np.exp(far), [[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    z = (1e6 - mean) / sd
    logits = log_prior - np.log(sd) - 0.5 * (z - z[1]) * (z + z[1])
    np.testing.assert_allclose(log_gaussian_posterior(1e6, log_prior, mean, sd), logits - special.logsumexp(logits))
    # equal sds, far out: the nearer mean wins; a zero-weight component never does
    with np.errstate(divide="ignore"):
        log_w = log_gaussian_posterior(1e300, np.log([0.0, 0.5, 0.5]), np.array([5.0, 0.0, 1.0]), 1.0)
    np.testing.assert_array_equal(np.exp(log_w), [0, 0, 1])


def test_log_trapezoid_against_closed_forms():
    nodes = np.linspace(-1.0, 2.0, 301)
    h = nodes[1] - nodes[0]
    exact = integrate.trapezoid(np.exp(-nodes), nodes)
    np.testing.assert_allclose(np.exp(log_trapezoid(-nodes, h)), exact, rtol=1e-13)
    # the same integrand shifted by -1e4 in log-space: no underflow, the log shifts exactly
    np.testing.assert_allclose(log_trapezoid(-nodes - 1e4, h), np.log(exact) - 1e4, rtol=1e-13)
    gaussian = stats.norm.logpdf(np.linspace(-12, 12, 2001), 0.0, 1.0)
    np.testing.assert_allclose(log_trapezoid(gaussian, 24 / 2000), 0.0, atol=1e-12)
    with np.errstate(divide="ignore"):
        assert log_trapezoid(np.full(5, -np.inf), 0.1) == -np.inf


def test_gaussian_mixture_sampler_matches_its_density():
    rng = np.random.default_rng(1)
    log_w = np.log([[0.3, 0.7], [0.9, 0.1]])
    means, sds = np.array([[-2.0, 1.0], [0.0, 5.0]]), np.array([[0.5, 1.0], [1.0, 0.2]])
    draws = sample_gaussian_mixture(log_w, means, sds, 20_000, rng)
    assert draws.shape == (20_000, 2)
    for row in range(2):

        def cdf(v, row=row):
            return (np.exp(log_w[row]) * stats.norm.cdf(np.asarray(v)[:, None], means[row], sds[row])).sum(-1)

        assert stats.kstest(draws[:, row], cdf).pvalue > 1e-3


def test_histogram_density_and_sampler():
    edges = np.array([-1.0, 0.0, 0.5, 2.0])
    log_w = np.log([[0.2, 0.3, 0.5]])  # one x
    y = np.array([-1.0, -0.5, 0.25, 1.0, 2.0, 2.1, -1.1])
    expected = [*np.log([0.2, 0.2, 0.3 / 0.5, 0.5 / 1.5, 0.5 / 1.5]), -np.inf, -np.inf]
    np.testing.assert_allclose(log_histogram(y, log_w[0], edges), expected)
    grid = np.linspace(-1, 2, 300_001)
    np.testing.assert_allclose(integrate.trapezoid(np.exp(log_histogram(grid, log_w[0], edges)), grid), 1, atol=1e-4)
    draws = sample_histogram(log_w, edges, 20_000, np.random.default_rng(2))[:, 0]
    cdf = lambda v: np.interp(v, edges, np.concatenate([[0.0], np.cumsum([0.2, 0.3, 0.5])]))
    assert stats.kstest(draws, cdf).pvalue > 1e-3


def test_histogram_on_a_product_of_edges_in_the_plane():
    """Cells of unequal sides, numbered in C order: the density at points by hand, its mass by a fine grid, and
    the draws' cell counts against the weights (chi-square)."""
    edges = (np.array([-1.0, 0.0, 0.5, 2.0]), np.array([0.0, 1.0, 3.0]))
    weights = np.array([[0.05, 0.15], [0.1, 0.2], [0.3, 0.2]])  # (3 bins of y_1, 2 of y_2)
    log_w = np.log(weights.ravel())
    y = np.array([[-0.5, 0.5], [0.25, 2.0], [1.0, 0.0], [2.0, 3.0], [2.1, 1.0], [0.0, -0.1]])
    # cells (0, 0), (1, 1), (2, 0), (2, 1) of areas 1, 1, 1.5, 3; then right of y_1's last edge, below y_2's first
    expected = [np.log(0.05), np.log(0.2), np.log(0.3 / 1.5), np.log(0.2 / 3.0), -np.inf, -np.inf]
    np.testing.assert_allclose(log_histogram(y, log_w, edges), expected)
    g1, g2 = np.linspace(-1, 2, 1201), np.linspace(0, 3, 1201)
    plane = np.stack(np.meshgrid(g1, g2, indexing="ij"), axis=-1)
    density = np.exp(log_histogram(plane, log_w, edges))
    assert integrate.trapezoid(integrate.trapezoid(density, g2, axis=1), g1) == pytest.approx(1.0, abs=5e-3)
    draws = sample_histogram(log_w[None, :], edges, 20_000, np.random.default_rng(3))[:, 0]  # (n, 2)
    assert draws.shape == (20_000, 2)
    counts = np.histogram2d(draws[:, 0], draws[:, 1], bins=edges)[0]
    assert stats.chisquare(counts.ravel(), 20_000 * weights.ravel()).pvalue > 1e-3


def test_nan_stays_nan():
    """A NaN that reaches a kernel (a network gone wrong) comes out as NaN, for the checks to catch."""
    with np.errstate(invalid="ignore"):
        assert np.isnan(log_gaussian_mixture(0.0, np.zeros(2), np.array([0.0, np.nan]), 1.0))
        assert np.isnan(log_trapezoid(np.array([0.0, np.nan, 0.0]), 0.1))
        from utilis.numerics import logsumexp_last

        assert np.isnan(logsumexp_last(np.array([0.0, np.nan])))


# ---- vectors ----------------------------------------------------------------------------------------
def test_full_covariance_mixture_matches_scipy():
    """log sum_k w_k N(y; mu_k, L_k L_k^T) against scipy.stats.multivariate_normal, broadcast over a grid."""
    rng = np.random.default_rng(0)
    scale_tril = np.array([[[1.0, 0.0], [0.5, 0.7]], [[0.3, 0.0], [-0.2, 1.1]], [[2.0, 0.0], [1.5, 0.1]]])
    means = rng.normal(size=(3, 2))
    log_w = np.log([0.2, 0.5, 0.3])
    y = rng.normal(size=(7, 1, 2)) * 2
    parts = [
        np.log(w) + stats.multivariate_normal(m, L @ L.T).logpdf(y[:, 0])
        for w, m, L in zip([0.2, 0.5, 0.3], means, scale_tril)
    ]
    expected = np.logaddexp.reduce(parts, axis=0)
    got = log_mvn_mixture(y, log_w[None], means[None], scale_tril[None])  # (7, 1)
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-12, atol=1e-12)
    far = log_mvn_mixture(np.array([[1.7e308, -1.7e308], [1e200, 1e200]]), log_w, means, scale_tril)
    assert np.all(np.isneginf(far))


def test_full_covariance_samples_have_the_mixtures_moments():
    rng = np.random.default_rng(1)
    scale_tril = np.array([[[1.0, 0.0], [0.5, 0.7]], [[0.3, 0.0], [-0.2, 1.1]]])
    means = np.array([[0.0, 1.0], [3.0, -1.0]])
    draws = sample_mvn_mixture(np.log([[0.3, 0.7]]), means[None], scale_tril[None], 200_000, rng)[:, 0]
    covariances = scale_tril @ np.swapaxes(scale_tril, 1, 2)
    mean = 0.3 * means[0] + 0.7 * means[1]
    second = sum(w * (c + np.outer(m, m)) for w, c, m in zip([0.3, 0.7], covariances, means))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), second - np.outer(mean, mean), atol=0.02)


def test_isotropic_posterior_matches_scipy_and_stays_exact_far_out():
    rng = np.random.default_rng(2)
    means, log_prior = rng.uniform(-1, 1, (5, 3)), np.log(rng.dirichlet(np.ones(5)))
    x = rng.normal(size=(4, 3))
    logits = log_prior + np.stack([stats.multivariate_normal(m, 0.3**2).logpdf(x) for m in means], axis=-1)
    expected = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    np.testing.assert_allclose(log_isotropic_posterior(x, log_prior, means, 0.3), expected, atol=1e-12)
    # far out the weights follow the differences of the means exactly: the nearest component takes all
    far = np.array([[1e200, 0.0, 0.0], [1.7e308, 1.7e308, -1.7e308]])
    weights = np.exp(log_isotropic_posterior(far, log_prior, means, 0.3))
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    assert weights[0, np.argmax(means[:, 0])] == 1.0


def test_rows_from_grid_draw_as_one_grid_does():
    rng = np.random.default_rng(3)
    nodes = np.sort(rng.uniform(-3, 3, (4, 50)), axis=1)
    log_density = -0.5 * (nodes - rng.normal(size=(4, 1))) ** 2 / 0.3
    u = rng.random(4)
    expected = [sample_from_grid(log_density[i], nodes[i], u[i : i + 1])[0] for i in range(4)]
    np.testing.assert_allclose(sample_rows_from_grid(log_density, nodes, u), expected, rtol=1e-12)


def test_draws_from_a_product_grid_fall_in_the_cell_of_the_node_drawn():
    from utilis.numerics import CannotSample, sample_product_grid

    axes = (np.linspace(0.0, 1.0, 5), np.linspace(0.0, 2.0, 3))  # steps 0.25 and 1.0
    rng = np.random.default_rng(0)
    log_mass = np.full(15, -np.inf)
    log_mass[1 * 3 + 2] = 0.0  # node (0.25, 2.0): its cell [0.125, 0.375] x [1.5, 2.0], cut at the grid's end
    draws = sample_product_grid(log_mass, axes, 2000, rng)
    assert draws.shape == (2000, 2)
    assert draws[:, 0].min() >= 0.125 and draws[:, 0].max() <= 0.375
    assert draws[:, 1].min() >= 1.5 and draws[:, 1].max() <= 2.0
    two = np.log(np.array([1.0, 3.0]))  # two nodes, a quarter and three quarters of the mass
    log_mass = np.full(15, -np.inf)
    log_mass[[0, 14]] = two
    share = np.mean(sample_product_grid(log_mass, axes, 20_000, rng)[:, 0] > 0.5)
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 20_000)
    with pytest.raises(CannotSample, match="cannot sample"):
        sample_product_grid(np.full(15, -np.inf), axes, 3, rng)

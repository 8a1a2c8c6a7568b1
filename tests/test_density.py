"""Grids of conditional and joint densities: values, blocking, far columns and bad input."""

import numpy as np
import pytest

from generate_dataset import DATASETS
from utilis.density import check_grid, log_conditional_curves, log_conditional_grid, log_joint_grid


class ConditionalOnly:
    """A density that offers only the protocol, so p(x) must come from elsewhere."""

    def __init__(self, density):
        self.density = density

    def log_prob(self, y, x):
        return self.density.log_prob(y, x)

    def sample(self, x, n, seed=None):
        return self.density.sample_conditional(x, n, seed)


@pytest.fixture(scope="module", params=list(DATASETS))
def data(request):
    return DATASETS[request.param](n_samples=100, seed=0)


def test_conditional_grid_matches_pointwise(data):
    x, y = np.linspace(*data.x_range, 37), np.linspace(*data.y_range, 53)
    grid = log_conditional_grid(data.truth, x, y)
    assert grid.shape == (53, 37)
    np.testing.assert_allclose(grid[:, 5], data.log_prob(y, x[5]), rtol=1e-12)
    np.testing.assert_allclose(grid[7], data.log_prob(y[7], x), rtol=1e-12)


def test_blocks_and_threads_give_the_same_grid(data):
    x, y = np.linspace(*data.x_range, 600), np.linspace(*data.y_range, 500)  # big enough for threads
    whole = log_conditional_grid(data.truth, x, y, block_elements=10**9)
    tiny_blocks = log_conditional_grid(data.truth, x, y, block_elements=1_000)
    np.testing.assert_array_equal(whole, tiny_blocks)


def test_curves(data):
    y = np.linspace(*data.y_range, 40)
    x_star = np.array([data.x_range[1], data.x_range[0], 0.5 * sum(data.x_range)])  # any order
    curves = log_conditional_curves(data.truth, y, x_star)
    assert curves.shape == (3, 40)
    np.testing.assert_allclose(curves[1], data.log_prob(y, x_star[1]), rtol=1e-12)


def test_joint_grid_three_ways(data):
    x, y = np.linspace(*data.x_range, 31), np.linspace(*data.y_range, 29)
    direct = log_joint_grid(data.truth, x, y)  # the density's own log_joint
    np.testing.assert_allclose(direct, data.log_joint(x[None, :], y[:, None]), rtol=1e-12)
    given_function = log_joint_grid(ConditionalOnly(data), x, y, data.log_marginal_x)
    given_values = log_joint_grid(ConditionalOnly(data), x, y, data.log_marginal_x(x))
    finite = np.isfinite(direct)
    np.testing.assert_allclose(given_function[finite], direct[finite], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(given_function, given_values)


def test_joint_grid_is_finite_far_from_the_data(data):
    lo, hi = data.x_range
    x = np.linspace(lo - 100 * (hi - lo), hi + 100 * (hi - lo), 400)
    y = np.linspace(*data.y_range, 300)
    for grid in (log_joint_grid(data.truth, x, y), log_conditional_grid(data.truth, x, y)):
        assert np.all(np.isfinite(grid))


def test_joint_integrates_to_one(data):
    lo, hi = data.x_range
    x, y = np.linspace(lo - 1, hi + 1, 1500), np.linspace(*data.y_range, 3000)
    mass = np.trapezoid(np.trapezoid(np.exp(log_joint_grid(data.truth, x, y)), y, axis=0), x)
    assert mass == pytest.approx(1.0, abs=2e-3)  # the plotting ranges hold practically all mass


@pytest.mark.parametrize(
    "grid, message",
    [
        ([], "x_grid must be a non-empty 1-D array"),
        ([[0.0, 1.0]], "x_grid must be a non-empty 1-D array"),
        ([0.0, 2.0, 1.0], "x_grid must be strictly increasing"),
        ([0.0, 0.0], "x_grid must be strictly increasing"),
        ([0.0, np.nan], "x_grid must be finite"),
        (["a"], "x_grid must be numeric"),
    ],
)
def test_bad_grids_raise(grid, message):
    with pytest.raises(ValueError, match=message):
        check_grid(grid, "x_grid")


def test_bad_arguments_raise(gaussian):
    x, y = np.linspace(0, 1, 5), np.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="y_grid"):
        log_conditional_grid(gaussian, x, y[::-1])
    with pytest.raises(ValueError, match="log_marginal_x must be given"):
        log_joint_grid(gaussian, x, y)
    with pytest.raises(ValueError, match="log_marginal_x must have one value per x_grid point"):
        log_joint_grid(gaussian, x, y, np.zeros(3))
    with pytest.raises(ValueError, match="log_marginal_x must be finite"):
        log_joint_grid(gaussian, x, y, np.full(5, np.nan))
    with pytest.raises(ValueError, match="x_star"):
        log_conditional_curves(gaussian, y, [])
    with pytest.raises(ValueError, match="block_elements"):
        log_conditional_grid(gaussian, x, y, block_elements=0)


def test_nan_from_a_density_is_reported(gaussian):
    class Broken:
        def log_prob(self, y, x):
            return np.where(np.asarray(x) + 0 * np.asarray(y) > 0.5, np.nan, 0.0)

    with pytest.raises(ValueError, match="NaN"):
        log_conditional_grid(Broken(), np.linspace(0, 1, 5), np.linspace(0, 1, 4))


def test_log_gaussian_mixture_matches_scipy():
    from scipy import stats

    from utilis.density import log_gaussian_mixture

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
    from scipy import stats

    from utilis.density import normal_logpdf

    value, mean, sd = np.linspace(-50, 50, 21)[:, None], np.array([0.0, 3.0]), np.array([0.1, 7.0])
    np.testing.assert_allclose(normal_logpdf(value, mean, sd), stats.norm.logpdf(value, mean, sd), rtol=1e-13)


def test_sample_categorical_and_from_grid():
    from scipy import stats

    from utilis.density import sample_categorical, sample_from_grid

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

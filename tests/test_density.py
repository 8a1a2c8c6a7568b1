"""Grids of conditional and joint densities: values, blocking, far columns, moments, modes and bad input."""

import numpy as np
import pytest
from conftest import MixtureConditional

from generate_dataset import DATASETS, SCALAR_DATASETS
from utilis.density import (
    check_grid,
    conditional_moments,
    count_modes,
    find_modes,
    log_conditional_curves,
    log_conditional_grid,
    log_joint_grid,
    multimodal_inputs,
    multimodality_summary,
)


class ConditionalOnly:
    """A density that offers only the protocol, so p(x) must come from elsewhere."""

    def __init__(self, density):
        self.density = density

    def log_prob(self, y, x):
        return self.density.log_prob(y, x)

    def sample(self, x, n, seed=None):
        return self.density.sample_conditional(x, n, seed)


@pytest.fixture(scope="module", params=list(SCALAR_DATASETS))
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

        def sample(self, x, n, seed=None):
            return np.zeros((n, len(x)))

    with pytest.raises(ValueError, match="NaN"):
        log_conditional_grid(Broken(), np.linspace(0, 1, 5), np.linspace(0, 1, 4))


def test_find_modes(bimodal):
    y = np.linspace(-8, 8, 4001)
    np.testing.assert_allclose(find_modes(bimodal.log_prob(y, 0.0), y), [-3.0, 3.0], atol=0.005)
    lopsided = MixtureConditional([0.97, 0.03], [-3.0, 3.0], [0.5, 0.5])
    np.testing.assert_allclose(find_modes(lopsided.log_prob(y, 0.0), y, min_mass=0.05), [-3.0], atol=0.005)
    assert len(find_modes(lopsided.log_prob(y, 0.0), y, min_mass=0.01)) == 2
    # a plateau counts once, at its middle; a peak at the grid's edge is found
    with np.errstate(divide="ignore"):
        uniform = np.log(np.where((y > 1) & (y < 3), 0.5, 0.0))
    np.testing.assert_allclose(find_modes(uniform, y), [2.0], atol=0.005)
    np.testing.assert_allclose(find_modes(-y, y), [-8.0])
    with pytest.raises(ValueError, match="min_mass"):
        find_modes(np.zeros(3), [0.0, 1.0, 2.0], min_mass=1.5)
    with pytest.raises(ValueError, match="log_density must have the shape"):
        find_modes(np.zeros(2), [0.0, 1.0, 2.0])


def test_count_modes(bimodal):
    assert list(count_modes(bimodal, [0.0, 1.0], np.linspace(-8, 8, 2001))) == [2, 2]


def test_conditional_moments_against_the_closed_form(gaussian, bimodal):
    x, y = np.array([-40.0, 0.0, 2.0]), np.linspace(-60, 60, 24_001)
    mean, variance = conditional_moments(gaussian, x, y)
    np.testing.assert_allclose(mean, 0.5 * x + 1.0, atol=1e-9)
    np.testing.assert_allclose(variance, 0.49, rtol=1e-9)
    mean, variance = conditional_moments(bimodal, [0.0], y)
    np.testing.assert_allclose([mean[0], variance[0]], [0.0, 9.0 + 0.25], atol=1e-9)
    camera = DATASETS["camera"](n_samples=100, seed=0)  # exactly 0 beyond [-T, T]
    with pytest.raises(ValueError, match=r"no mass on y_grid at x = 0\.0"):
        conditional_moments(camera.truth, [0.0], np.linspace(200, 300, 11))


def test_moments_on_an_uneven_grid_are_the_trapezoidal_rule():
    from utilis.density import moments_on_grid

    rng = np.random.default_rng(0)
    y = np.sort(rng.uniform(-5, 5, 300))
    log_p = -0.5 * ((y[:, None] - rng.uniform(-2, 2, 7)) / rng.uniform(0.1, 2, 7)) ** 2 - 700  # far below 1
    log_p[:, 3] = -np.inf  # an empty column
    mean, variance, empty = moments_on_grid(log_p, y)
    p = np.exp(log_p[:, [0, 1, 2, 4, 5, 6]] + 700)
    mass = np.trapezoid(p, y, axis=0)
    expected_mean = np.trapezoid(y[:, None] * p, y, axis=0) / mass
    expected_variance = np.trapezoid((y[:, None] - expected_mean) ** 2 * p, y, axis=0) / mass
    np.testing.assert_allclose(np.delete(mean, 3), expected_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.delete(variance, 3), expected_variance, rtol=1e-12)
    assert list(empty) == [False] * 3 + [True] + [False] * 3 and (mean[3], variance[3]) == (0.0, 1.0)


@pytest.mark.parametrize("name", list(SCALAR_DATASETS))
def test_multimodal_inputs_are_where_the_answer_is_a_set(name):
    from utilis.density import multimodal_inputs

    data = DATASETS[name](n_samples=300, seed=0)
    x_star = multimodal_inputs(data.truth, data.x_range, n=3)
    assert len(x_star) == 3 and np.all(np.diff(x_star) >= 0.1 * (data.x_range[1] - data.x_range[0]) - 0.01)
    y = np.linspace(*data.y_range, 4000)
    modes = count_modes(data.truth, x_star, y)
    assert np.all(modes >= 2), modes
    log_px = data.log_marginal_x(x_star)
    assert np.all(log_px >= data.log_marginal_x(np.linspace(*data.x_range, 400)).max() - np.log(10.0) - 0.05)
    with pytest.raises(ValueError, match="p\\(x\\)"):
        multimodal_inputs(ConditionalOnly(data), data.x_range)
    with pytest.raises(ValueError, match="n must be"):
        multimodal_inputs(data.truth, data.x_range, n=0)


def test_multimodality_summary_against_the_linear_closed_form():
    """Where two of the linear set's lines overlap in x, p(y|x) has two modes: count them by hand."""
    from utilis.density import multimodality_summary

    data = DATASETS["linear"](n_samples=300, seed=0)
    summary = multimodality_summary(data, n_x=200, seed=1)
    x = np.unique(data.sample(200, seed=1)[0])
    y = np.linspace(*data.y_range, 3000)
    by_hand = np.mean(count_modes(data.truth, x, y) >= 2)
    assert summary["share with several modes"] == pytest.approx(by_hand)
    assert summary["most modes"] <= data.n_components
    assert summary["E[y|x] to nearest mode (median)"] > 0


def test_scalar_helpers_refuse_the_plane_saying_what_to_use():
    """Curves, 1-D heat maps and the x-y summaries refuse a planar density with a pointer, never a
    numpy error from deep inside."""
    import matplotlib

    matplotlib.use("Agg")
    from utilis.plotting import plot_dataset, plot_overview, plot_samples

    arm = DATASETS["robot_arm"](n_samples=50, seed=0)
    line = np.linspace(0.0, 1.0, 5)
    for call, name in [
        (lambda: log_conditional_curves(arm.truth, line, [0.5]), "log_conditional_curves"),
        (lambda: log_conditional_grid(arm.truth, line, line), "log_conditional_grid"),
        (lambda: log_joint_grid(arm.truth, line, line), "log_joint_grid"),
        (lambda: conditional_moments(arm.truth, line, line), "log_conditional_grid"),
        (lambda: multimodal_inputs(arm.truth, (0.0, 1.0)), "multimodal_inputs"),
        (lambda: multimodality_summary(arm), "multimodality_summary"),
        (lambda: plot_dataset(arm), "plot_dataset"),
        (lambda: plot_overview(arm, [0.5]), "plot_overview"),
        (lambda: plot_samples(arm.truth, arm), "plot_samples"),
    ]:
        with pytest.raises(ValueError, match=rf"{name} serves a scalar x and a scalar y.*plot_conditional_image"):
            call()

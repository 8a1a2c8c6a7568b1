"""Output spaces: distances, z-scoring, grids and their quadrature, modes on the line and in the plane."""

import numpy as np
import pytest
from scipy import stats

from utilis.density import find_modes
from utilis.spaces import EUCLIDEAN_LINE, Euclidean, Grid, grid_modes


def test_distance_is_numpys_norm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(1, 3))
    np.testing.assert_allclose(Euclidean(3).distance(a, b), np.linalg.norm(a - b, axis=-1))
    np.testing.assert_array_equal(EUCLIDEAN_LINE.distance(np.array([1.0, -2.0]), 0.5), [0.5, 2.5])


def test_standardisation_per_axis_and_constant_axes():
    y = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    shift, scale = Euclidean(2).standardisation(y)
    np.testing.assert_allclose(shift, [4.5, 3.0])
    np.testing.assert_allclose(scale, [np.arange(10.0).std(), 1.0])


def test_spaces_compare_by_dimension():
    assert Euclidean(2) == Euclidean(2) and Euclidean(1) == EUCLIDEAN_LINE and Euclidean(2) != Euclidean(3)
    assert np.all(Euclidean(2).bounds == [[-np.inf, np.inf]] * 2)


def test_grid_weights_integrate_a_gaussian():
    """The trapezoidal weights integrate a correlated Gaussian over +-8 sd to 1 (scipy's density)."""
    grid = Euclidean(2).grid([(-8.0, 8.0), (-6.0, 6.0)], (401, 301))
    assert grid.shape == (401, 301) and grid.points.shape == (401 * 301, 2) and len(grid) == 401 * 301
    density = stats.multivariate_normal([0.5, -0.3], [[1.0, 0.4], [0.4, 0.7]]).pdf(grid.points)
    assert grid.weights @ density == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_array_equal(grid.points.reshape(401, 301, 2)[3, 7], [grid.axes[0][3], grid.axes[1][7]])
    line = EUCLIDEAN_LINE.grid([(-8.0, 8.0)], 2001)
    assert line.points.shape == (2001,) and line.weights @ stats.norm.pdf(line.points) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "ranges, n, message",
    [([(0.0, 1.0)], 10, "ranges"), ([(1.0, 0.0), (0.0, 1.0)], 10, "ranges"), ([(0, 1), (0, 1)], 1, "n must be")],
)
def test_bad_grids_raise(ranges, n, message):
    with pytest.raises(ValueError, match=message):
        Euclidean(2).grid(ranges, n)
    with pytest.raises(ValueError, match="d <= 2"):
        Euclidean(3).grid([(0, 1)] * 3, 10)


def test_modes_of_a_gaussian_mixture_in_the_plane():
    """Three peaks, one holding 10% of the mass: all three at 5%, two at 20%, each within a grid step."""
    space = Euclidean(2)
    grid = space.grid([(-5.0, 5.0), (-5.0, 5.0)], 201)
    parts = [
        (0.45, [-2.0, 0.0], [[0.5, 0.2], [0.2, 0.3]]),
        (0.45, [2.0, 1.0], [[0.4, 0.0], [0.0, 0.4]]),
        (0.10, [0.0, 3.0], [[0.01, 0.0], [0.0, 0.01]]),
    ]
    log_p = np.logaddexp.reduce(
        [np.log(w) + stats.multivariate_normal(m, c).logpdf(grid.points) for w, m, c in parts], axis=0
    )
    modes = space.find_modes(log_p, grid)
    assert modes.shape == (3, 2)
    for _, mean, _ in parts:
        assert np.min(np.linalg.norm(modes - mean, axis=1)) <= 0.05 * np.sqrt(2) + 1e-12
    assert len(space.find_modes(log_p, grid, min_mass=0.2)) == 2
    np.testing.assert_array_equal(space.find_modes(log_p.reshape(grid.shape), grid), modes)  # an image works too


def test_plateaus_count_once_and_shoulders_drain():
    """Uniform tiles: a plateau is one mode at its middle; a lower tile beside a higher one is no mode."""
    axes = (np.linspace(0.0, 10.0, 101), np.linspace(0.0, 10.0, 101))
    image = np.full((101, 101), -20.0)
    image[10:30, 10:30] = 0.0  # a peak
    image[30:50, 10:30] = -1.0  # its lower neighbour: a shoulder
    image[60:90, 60:90] = 0.5  # the highest
    image[60:70, 10:20] = -0.5  # an isolated lower plateau holding little mass
    modes = grid_modes(image, axes, min_mass=0.0)
    assert modes.shape == (3, 2)
    np.testing.assert_allclose(modes, [[1.95, 1.95], [6.45, 1.45], [7.45, 7.45]], atol=0.051)
    masses = grid_modes(image, axes, min_mass=0.1)
    np.testing.assert_allclose(masses, [[1.95, 1.95], [7.45, 7.45]], atol=0.051)


def test_line_modes_are_find_modes():
    y = np.linspace(-6, 6, 3001)
    log_p = np.logaddexp(stats.norm.logpdf(y, -2, 0.5) + np.log(0.3), stats.norm.logpdf(y, 2, 1.0) + np.log(0.7))
    np.testing.assert_array_equal(EUCLIDEAN_LINE.find_modes(log_p, Grid.on_line(y)), find_modes(log_p, y))


def test_bad_densities_on_a_grid_raise():
    grid = Euclidean(2).grid([(0, 1), (0, 1)], 5)
    with pytest.raises(ValueError, match="one value per grid node"):
        Euclidean(2).find_modes(np.zeros(24), grid)
    with pytest.raises(ValueError, match="not -inf everywhere"):
        Euclidean(2).find_modes(np.full(25, -np.inf), grid)
    with pytest.raises(ValueError, match="min_mass"):
        Euclidean(2).find_modes(np.zeros(25), grid, min_mass=1.0)
    with pytest.raises(ValueError, match="dim must be"):
        Euclidean(0)


@pytest.mark.parametrize("n", [201, 300])
def test_a_narrow_tilted_ridge_is_one_mode(n):
    """A ridge across the grid's lines (sd 0.01 across it, a grid step or more) ripples from node to
    node: dozens of local maxima, none a mode. Two such ridges with a deep valley between are two."""
    space = Euclidean(2)
    grid = space.grid([(-1.0, 1.0), (-1.0, 1.0)], n)
    turn = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    cov = turn @ np.diag([0.3, 1e-4]) @ turn.T
    one = stats.multivariate_normal([0.0, 0.0], cov).logpdf(grid.points)
    assert len(space.find_modes(one, grid, min_mass=0.0)) == 1
    shifted = 0.5 * turn[:, 1]  # a ridge's width 50 times over, across the ridges
    two = np.logaddexp(
        stats.multivariate_normal(-shifted, cov).logpdf(grid.points),
        stats.multivariate_normal(shifted, cov).logpdf(grid.points),
    )
    assert len(space.find_modes(two, grid)) == 2


def test_midpoint_grid_is_exact_on_cells_and_second_order_elsewhere():
    space = Euclidean(2)
    grid = space.grid([(-20.0, 20.0), (-20.0, 20.0)], 200, rule="midpoint")
    assert grid.shape == (200, 200) and np.all(np.abs(grid.points) < 20.0)
    np.testing.assert_allclose(grid.axes[0][:2], [-19.9, -19.7])
    tiles = (np.floor(grid.points / 10.0) @ [4, 1]) % 7  # a value per 10 x 10 tile, tile (i, j) from -2 to 1
    i, j = np.meshgrid(np.arange(-2, 2), np.arange(-2, 2), indexing="ij")
    assert grid.weights @ tiles == pytest.approx(100.0 * ((4 * i + j) % 7).sum(), rel=1e-14)
    gaussian = stats.multivariate_normal([1.0, -2.0], [[9.0, 2.0], [2.0, 4.0]]).pdf(grid.points)
    assert grid.weights @ gaussian == pytest.approx(1.0, abs=1e-6)
    line = EUCLIDEAN_LINE.grid([(0.0, 1.0)], 4, rule="midpoint")
    np.testing.assert_allclose(line.points, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(line.weights, 0.25)
    with pytest.raises(ValueError, match="rule must be"):
        space.grid([(0, 1), (0, 1)], 5, rule="simpson")


def test_a_shoulder_drains_through_its_own_exits():
    """Tiles of a piecewise constant density: each shoulder hands its nodes to the equal nodes beside
    it, not to another plateau's; every tile higher than all its neighbours is a mode."""
    values = np.array(
        [
            [1, 0.6, 0.6, 0.2, 0.8, 0.2],
            [1, 0.6, 0.6, 0.6, 1, 0.6],
            [1, 0.8, 1, 0.2, 0.4, 0.4],
            [0.2, 0.2, 0.4, 1, 0.8, 0.6],
            [1, 0.8, 0.2, 0.4, 0.6, 0.2],
            [0.4, 0.2, 0.2, 0.2, 0.4, 0.8],
        ]
    )
    image = np.kron(values, np.ones((22, 22)))
    axes = (np.arange(132.0), np.arange(132.0))
    modes = grid_modes(np.log(image), axes)  # each basin must hold 5% of the mass: its own shoulders count
    tiles = {(int(a) // 22, int(b) // 22) for a, b in modes}
    # the plateau of 1s down column 0 (middle tile (1, 0)); (1, 4); (2, 2) with (3, 3), touching at a
    # corner; (4, 0); and the 0.8 in the corner, above all its neighbours. The 0.8 at (0, 4) sits
    # beside the 1 at (1, 4): a shoulder.
    assert len(modes) == 5
    assert tiles - {(2, 2), (3, 3)} == {(1, 0), (1, 4), (4, 0), (5, 5)} and tiles & {(2, 2), (3, 3)}

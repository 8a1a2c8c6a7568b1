"""The two planar datasets (robot arm, room): exact densities against independent references, the
normaliser's accuracy by refinement, samples against the generator, splits, seeds and bad input."""

import numpy as np
import pytest
from scipy import integrate, stats

from generate_dataset import DATASETS, PlanarRelocalisation, RobotArm, planar_relocalisation, robot_arm
from utilis.spaces import Euclidean

PLANAR = ["robot_arm", "room"]


@pytest.fixture(scope="module")
def arm() -> RobotArm:
    return robot_arm(n_samples=2000, seed=0)


@pytest.fixture(scope="module")
def room() -> PlanarRelocalisation:
    return planar_relocalisation(n_samples=2000, seed=0)


def box_grid(data, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular n x n grid over the data's y box: its two axes and the points (n, n, 2)."""
    first, second = (np.linspace(low, high, n) for low, high in data.y_range)
    return first, second, np.stack(np.meshgrid(first, second, indexing="ij"), axis=-1)


def brute_force_log_px(data: RobotArm, x: np.ndarray, n: int = 3001) -> np.ndarray:
    """log p(x) by the trapezoidal rule on a uniform n x n grid over the whole box: no node placement."""
    first, second, _ = box_grid(data, n)
    out = []
    for point in x:
        log_lik = data._log_likelihood(point[None, None, :], first[:, None], second[None, :])
        peak = log_lik.max()
        inner = integrate.trapezoid(np.exp(log_lik - peak), second, axis=1)
        out.append(np.log(integrate.trapezoid(inner, first)) + peak - data._log_box)
    return np.array(out)


# ---- the robot arm ----------------------------------------------------------------------------------
def test_arm_forward_matches_bishop(arm):
    """PRML Fig. 5.18: x1 = L1 cos t1 - L2 cos(t1 + t2), x2 = L1 sin t1 - L2 sin(t1 + t2), and the
    inverse kinematics returns angles that reach the target, the two branches either side of pi."""
    y = np.array([[0.5, 2.0], [1.0, 4.0]])
    expected = np.stack(
        [0.8 * np.cos(y[:, 0]) - 0.2 * np.cos(y.sum(1)), 0.8 * np.sin(y[:, 0]) - 0.2 * np.sin(y.sum(1))], axis=-1
    )
    np.testing.assert_allclose(arm.forward(y), expected)
    np.testing.assert_allclose(np.linalg.norm(arm.elbow(y), axis=-1), 0.8)
    solutions = arm.inverse(arm.forward(y))  # (2, branch, 2)
    np.testing.assert_allclose(arm.forward(solutions), np.repeat(arm.forward(y)[:, None], 2, axis=1), atol=1e-12)
    assert np.all(solutions[:, 0, 1] <= np.pi) and np.all(solutions[:, 1, 1] >= np.pi)
    assert any(np.allclose(solutions[i, b], y[i]) for i in range(2) for b in range(2))


def test_arm_normaliser_is_accurate_by_refinement_and_against_brute_force(arm):
    """Doubling every rule's nodes moves log p(x) by < 1e-4 nats within the data and a few noise widths
    beyond (outside the workspace, beyond reach, near the fold); a uniform 3001 x 3001 grid agrees."""
    x = np.concatenate(
        [arm.x_test[:20], [[0.0, 1.0 + 3 * arm.noise], [0.55, 0.55], [0.3, 0.9], [0.95, 0.05], [0.0, 0.0]]]
    )
    coarse, fine = arm._log_x_integral(x), arm._log_x_integral(x, refine=2)
    np.testing.assert_allclose(coarse, fine, atol=1e-4, rtol=0)
    assert np.max(np.abs(coarse[:20] - fine[:20])) < 1e-8
    np.testing.assert_allclose(arm.log_marginal_x(x[[0, 21]]), brute_force_log_px(arm, x[[0, 21]]), atol=1e-4)


def test_arm_normaliser_far_outside_the_workspace(arm):
    """Beyond reach with the shoulder angle outside its range, the mass sits at the box's corners,
    away from the inverse-kinematics solutions: the quadrature covers the whole box and lands within
    the brute-force grid's own accuracy there (a tenth of a nat), not hundreds of nats off."""
    far = 1.2 * np.array([[np.cos(-2.0), np.sin(-2.0)], [np.cos(2.0), np.sin(2.0)]])
    np.testing.assert_allclose(arm.log_marginal_x(far), brute_force_log_px(arm, far), atol=0.2)


def test_arm_samples_resolve_narrow_peaks():
    """With noise 0.0005 the peak in theta1 is 0.0006 wide: the sampler's grid still resolves it (the
    draws' spread about the closed-form centre, in units of noise / sqrt(rho r), is 1)."""
    narrow = robot_arm(n_samples=20, noise=0.0005, seed=0)
    target = narrow.x_test[0]
    draws = narrow.truth.sample(target, 4000, seed=1)[:, 0]
    rho, psi = np.hypot(*target), np.arctan2(target[1], target[0])
    r, _ = narrow._reach(draws[:, 1])
    z = (draws[:, 0] - narrow._theta1(psi, draws[:, 1])) / (narrow.noise / np.sqrt(rho * r))
    assert abs(z.std() - 1.0) < 0.05 and abs(z.mean()) < 0.1


def test_arm_conditional_integrates_to_one(arm):
    first, second, y = box_grid(arm, 1201)
    x = arm.x_test[:6]
    density = np.exp(arm.log_prob(y[:, :, None, :], x[None, None]))  # (n, n, 6)
    mass = integrate.trapezoid(integrate.trapezoid(density, second, axis=1), first, axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=1e-4)


def test_arm_is_two_valued_inside_and_one_valued_near_the_edges(arm):
    """p(y|x) has two modes (the two elbow configurations) where both lie in the box, one where
    theta1 of the other falls outside it."""
    space = arm.y_space
    grid = space.grid(arm.y_range, 241)
    both = arm.forward(np.array([0.75, np.pi - 1.0]))  # the other branch: theta1 well inside too
    solutions = arm.inverse(both)
    assert np.all((solutions[:, 0] > 0.3) & (solutions[:, 0] < 1.2))
    modes = space.find_modes(arm.log_prob(grid.points, both), grid)
    assert len(modes) == 2
    np.testing.assert_allclose(np.sort(modes[:, 1]), np.sort(solutions[:, 1]), atol=0.05)
    edge = arm.forward(np.array([0.35, np.pi - 1.2]))
    inside = arm._inside(arm.inverse(edge))
    assert inside.sum() == 1
    assert len(space.find_modes(arm.log_prob(grid.points, edge), grid)) == 1


def test_arm_joint_and_marginal(arm):
    x, y = arm.x_test[:5], arm.y_test[:5]
    np.testing.assert_allclose(arm.log_joint(x, y), arm.log_prob(y, x) + arm.log_marginal_x(x), rtol=1e-12)
    expected = stats.multivariate_normal(np.zeros(2), arm.noise**2).logpdf(x - arm.forward(y)) - np.log(0.9 * np.pi)
    np.testing.assert_allclose(arm.log_joint(x, y), expected, rtol=1e-12)
    assert arm.log_prob(np.array([0.0, np.pi]), x[0]) == -np.inf  # outside the box


def test_arm_samples_match_the_generator(arm):
    """The truth's draws at x and the generator's own points near x agree (2-sample KS per angle),
    and their highest-density ranks are uniform."""
    x, y, _ = arm.sample(1_000_000, seed=5)
    target = arm.x_test[3]
    near = np.linalg.norm(x - target, axis=1) < 0.2 * arm.noise
    assert near.sum() > 50
    draws = arm.truth.sample(target, 2000, seed=6)[:, 0]  # (2000, 2)
    for axis in (0, 1):
        assert stats.ks_2samp(draws[:, axis], y[near, axis]).pvalue > 1e-3
    log_q = arm.log_prob(draws[:1000], target)
    ranks = (log_q[None, :] < arm.log_prob(draws[1000:], target)[:, None]).mean(axis=1)
    assert stats.kstest(ranks, "uniform").pvalue > 1e-3


def test_arm_finite_far_out_of_reach(arm):
    x = np.array([[1e3, -1e3], [0.0, 0.0], [-1e6, 5.0], [1e150, 1e150], [2.0, 0.0]])
    y = np.array([0.7, np.pi])
    for values in (arm.log_prob(y, x), arm.log_marginal_x(x), arm.log_joint(x, y)):
        assert not np.isnan(values).any() and not np.isposinf(values).any()
    assert np.all(np.isfinite(arm.log_marginal_x(x[[0, 1, 2, 4]])))


# ---- the room ---------------------------------------------------------------------------------------
def test_room_conditional_matches_closed_form(room):
    """p(y|x) = w_c(x) / |tile| on tile c, w_c from scipy's multivariate normal, uniform p(c)."""
    x = room.x_test[:4]
    log_n = np.stack([stats.multivariate_normal.logpdf(x, mean, room.noise**2) for mean in room.patterns], -1)
    log_w = log_n - np.logaddexp.reduce(log_n, axis=-1, keepdims=True)
    y = room.tile_centres + 1.0  # a point in every tile
    expected = log_w - np.log(10.0 * 10.0)  # (4, K^2)
    np.testing.assert_allclose(room.log_prob(y[None, :, :], x[:, None, :]), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(room.log_marginal_x(x), np.logaddexp.reduce(log_n, axis=-1) - np.log(16), rtol=1e-12)
    assert np.all(room.log_prob(np.array([[25.0, 0.0], [0.0, -20.5]]), x[0]) == -np.inf)


def test_room_conditional_integrates_to_one(room):
    """Integrated tile by tile with scipy's adaptive cubature, which knows nothing of the tiles' weights."""
    x = room.x_test[0]
    total = 0.0
    for low0, high0 in zip(room.edges[:-1], room.edges[1:]):
        for low1, high1 in zip(room.edges[:-1], room.edges[1:]):
            result = integrate.cubature(lambda y: np.exp(room.log_prob(y, x)), [low0, low1], [high0, high1])
            total += result.estimate
    assert total == pytest.approx(1.0, abs=1e-10)


def test_room_samples_match_the_generator(room):
    """Tiles drawn given x are the tiles whose pattern the generator's points near x came from."""
    x, y, c = room.sample(100_000, seed=2)
    target = room.patterns[5]
    near = np.linalg.norm(x - target, axis=1) < room.noise
    draws = room.truth.sample(target, 4000, seed=3)[:, 0]
    assert np.all(np.abs(draws) <= room.half_width)
    expected = np.bincount(c[near], minlength=16) / near.sum()
    np.testing.assert_allclose(np.bincount(room.tile(draws), minlength=16) / 4000, expected, atol=0.05)
    np.testing.assert_array_equal(room.tile(y), c)


def test_room_modes_are_the_tiles_that_show_the_pattern(room):
    grid = room.y_space.grid(room.y_range, 161)
    pattern = room.tile_patterns[5]
    log_p = room.log_prob(grid.points, room.palette[pattern])
    modes = room.y_space.find_modes(log_p, grid)
    tiles = set(np.flatnonzero(room.tile_patterns == pattern))
    assert set(room.tile(modes)) <= tiles and len(modes) >= 1
    assert all(t in set(room.tile(modes)) or _touches(room, t, tiles - {t}) for t in tiles)


def _touches(room, tile, others) -> bool:
    """Tiles that share an edge or a corner with another tile of the same pattern form one plateau."""
    k = room.tiles_per_side
    i, j = divmod(tile, k)
    return any(max(abs(i - a), abs(j - b)) == 1 for a, b in (divmod(t, k) for t in others))


def test_room_far_from_the_data(room):
    x = np.array([[1e3, -1e3, 0.0], [1e150, -1e150, 1e150], [1.7e308, -1.7e308, 1.7e308]])
    log_p = room.log_prob(np.array([1.0, 1.0]), x)
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(np.exp(room.truth._given_x(x)[0]).sum(axis=-1), 1.0)


# ---- shared by both: shapes, splits, seeds, bad input ---------------------------------------------------
@pytest.mark.parametrize("name", PLANAR)
def test_shapes_and_splits(name):
    data = DATASETS[name](n_samples=1000, test_fraction=0.2, seed=1)
    assert data.y_space == Euclidean(2) and data.truth.y_space == Euclidean(2)
    assert data.x_train.shape == (800, data.x_dim) and data.y_train.shape == (800, 2) and data.c_train.shape == (800,)
    assert data.x_test.shape == (200, data.x_dim) and data.y_test.shape == (200, 2)
    assert data.c_train.dtype.kind == "i" and set(np.unique(data.c_train)) <= set(range(data.n_components))
    assert data.truth.sample(data.x_test[:3], 4, seed=0).shape == (4, 3, 2)
    assert data.truth.sample(data.x_test[0], 4, seed=0).shape == (4, 1, 2)
    assert data.log_prob(data.y_test[:, None], data.x_test[None, :5]).shape == (200, 5)
    assert data.log_marginal_x(data.x_test[:7]).shape == (7,)
    for axis in range(data.x_dim):
        assert stats.ks_2samp(data.x_train[:, axis], data.x_test[:, axis]).pvalue > 1e-3


@pytest.mark.parametrize("name", PLANAR)
def test_same_seed_same_bytes(name):
    a, b = DATASETS[name](seed=11), DATASETS[name](seed=11)
    for attribute in ("x_train", "y_train", "c_train", "x_test", "y_test", "c_test"):
        assert getattr(a, attribute).tobytes() == getattr(b, attribute).tobytes()
    assert not np.array_equal(a.x_train, DATASETS[name](seed=12).x_train)
    assert a.truth.sample(a.x_test[:2], 3, seed=1).tobytes() == b.truth.sample(b.x_test[:2], 3, seed=1).tobytes()


@pytest.mark.parametrize(
    "name, kwargs, argument",
    [
        ("robot_arm", {"n_samples": 0}, "n_samples"),
        ("robot_arm", {"noise": -0.1}, "noise"),
        ("robot_arm", {"test_fraction": 1.0}, "test_fraction"),
        ("room", {"tiles_per_side": 0}, "tiles_per_side"),
        ("room", {"n_patterns": 2.5}, "n_patterns"),
        ("room", {"pattern_dim": 0}, "pattern_dim"),
        ("room", {"one_to_many": False}, "tiles_per_side"),  # 16 tiles, 4 patterns
        ("room", {"one_to_many": 1}, "one_to_many"),
        ("room", {"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DATASETS[name](**kwargs)


@pytest.mark.parametrize("name", PLANAR)
def test_bad_queries_raise(name):
    data = DATASETS[name](n_samples=20, seed=0)
    x, y = data.x_test[0], data.y_test[0]
    for call, message in [
        (lambda: data.log_prob(y[:1], x), r"y must have shape \(\.\.\., 2\).*got shape \(1,\)"),
        (lambda: data.log_prob(y, x[:1]), rf"x must have shape \(\.\.\., {data.x_dim}\).*got shape \(1,\)"),
        (lambda: data.log_prob(np.zeros((3, 2)), np.zeros((4, data.x_dim))), "do not broadcast"),
        (lambda: data.log_marginal_x(np.zeros(data.x_dim + 1)), "x must have shape"),
        (lambda: data.log_joint(x, np.zeros(3)), "y must have shape"),
        (lambda: data.truth.sample(np.zeros((2, data.x_dim + 1)), 3), "x must be one point of shape"),
        (lambda: data.log_prob(y, np.full(data.x_dim, np.nan)), "x must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()

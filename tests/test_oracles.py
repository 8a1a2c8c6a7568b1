"""The oracles against closed forms: the linear set's p(y|x) is a Gaussian mixture with known moments."""

import numpy as np
import pytest
from scipy import stats

from generate_dataset import linear_mixture, planar_relocalisation, robot_arm
from utilis.baselines import BinnedClassifier, GaussianRegression
from utilis.metrics import bayes_gap
from utilis.oracles import BestSingleGaussian, BinnedTruth
from utilis.protocol import CheckedDensity
from utilis.spaces import Euclidean


@pytest.fixture(scope="module")
def data():
    return linear_mixture(n_samples=500, seed=0)


def closed_form_mixture(data, x):
    """The linear truth's p(y | x) = sum_c w_c N(m_c, s_c^2) at each x: weights, means, sds (len(x), K)."""
    log_w, means = data._given_x(np.asarray(x, dtype=float))
    return np.exp(log_w), means, np.broadcast_to(data._posterior_sd(), means.shape)


def test_best_single_gaussian_has_the_truths_moments(data):
    x = np.quantile(data.x_train, [0.05, 0.3, 0.5, 0.7, 0.95])
    w, m, s = closed_form_mixture(data, x)
    mean = (w * m).sum(1)
    sd = np.sqrt((w * (s**2 + m**2)).sum(1) - mean**2)
    oracle = BestSingleGaussian.for_dataset(data)
    y = np.linspace(-15, 15, 7)[:, None]
    np.testing.assert_allclose(oracle.log_prob(y, x), stats.norm.logpdf(y, mean, sd), rtol=1e-7, atol=1e-7)


def test_binned_truth_has_the_truths_mass_in_each_bin(data):
    x = np.quantile(data.x_train, [0.1, 0.5, 0.9])
    edges = np.linspace(*data.y_range, 26)
    w, m, s = closed_form_mixture(data, x)
    cdf = (w[:, None, :] * stats.norm.cdf(edges[None, :, None], m[:, None, :], s[:, None, :])).sum(-1)  # (x, edges)
    mass = np.diff(cdf, axis=1)
    mass /= mass.sum(axis=1, keepdims=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    binned = np.exp(BinnedTruth(data.truth, edges).log_prob(centres[:, None], x).T) * np.diff(edges)
    np.testing.assert_allclose(binned, mass, rtol=1e-5, atol=1e-8)


def test_no_single_gaussian_beats_the_oracle(data):
    regression = GaussianRegression(hidden=32)
    regression.fit(data.x_train, data.y_train, progress=False, seed=0)
    x, y, _ = data.sample(5000, seed=3)
    oracle = bayes_gap(BestSingleGaussian.for_dataset(data), data.truth, x, y)
    assert oracle.gap > 1.0  # three branches: a single Gaussian cannot represent them
    assert bayes_gap(regression, data.truth, x, y).gap > oracle.gap


def test_bad_arguments_raise(data):
    with pytest.raises(ValueError, match="y_grid must be strictly increasing"):
        BestSingleGaussian(data.truth, [1.0, 0.0])
    with pytest.raises(ValueError, match="edges needs at least 2"):
        BinnedTruth(data.truth, [0.0])
    with pytest.raises(ValueError, match="nodes_per_bin must be >= 2"):
        BinnedTruth(data.truth, [0.0, 1.0], nodes_per_bin=0)
    with pytest.raises(ValueError, match="nodes_per_bin must be even"):
        BinnedTruth(data.truth, [0.0, 1.0], nodes_per_bin=5)
    with pytest.raises(ValueError, match=r"data\.truth"):
        BestSingleGaussian(data, [0.0, 1.0])
    far = BestSingleGaussian(data.truth, np.linspace(-1, 1, 50))  # the truth has no mass here at x = 1e300
    assert far.log_prob(0.0, 1e300) == -np.inf
    with pytest.raises(ValueError, match="no mass on the oracle's y_grid"):
        far.sample(1e300, 3)


def test_oracles_for_a_dataset_and_its_baselines(data):
    from utilis.baselines import BinnedClassifier, fit_baselines
    from utilis.oracles import oracles_for

    baselines = fit_baselines(data, seed=0, epochs=2, progress=False)
    assert list(baselines) == ["MSE regression", "bins (histogram)"]
    assert isinstance(baselines["MSE regression"], GaussianRegression)
    bins = baselines["bins (histogram)"]
    assert isinstance(bins, BinnedClassifier) and len(bins.bin_edges) == 51
    oracles = oracles_for(data, bins.bin_edges)
    gaussian, binned = oracles.values()
    x = data.x_test[:5]
    np.testing.assert_array_equal(binned.bin_edges, bins.bin_edges)
    np.testing.assert_allclose(
        binned.log_prob(data.y_test[:5], x), BinnedTruth.like(bins, data.truth).log_prob(data.y_test[:5], x)
    )
    np.testing.assert_allclose(
        gaussian.log_prob(data.y_test[:5], x), BestSingleGaussian.for_dataset(data).log_prob(data.y_test[:5], x)
    )


def test_oracles_do_not_depend_on_their_blocks(data, monkeypatch):
    import utilis.oracles

    x = np.sort(data.sample(300, seed=3)[0])
    oracles = BestSingleGaussian.for_dataset(data, n_grid=500), BinnedTruth(data.truth, np.linspace(*data.y_range, 11))
    whole = [oracle._given_x(x) for oracle in oracles]
    # blocks of 7 columns (the Gaussian's 500-point grid) and of 2 rows (the binned truth), the last ragged
    monkeypatch.setattr(utilis.oracles, "_BLOCK_ELEMENTS", 7 * 500)
    for oracle, expected in zip(oracles, whole):
        for got, want in zip(oracle._given_x(x), expected):  # to rounding: BLAS sums a block's columns its own way
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def test_best_single_gaussian_in_the_plane_has_the_rooms_moments():
    """The room's p(y|x) is uniform on tiles with weights w_c(x): E[y|x] = sum_c w_c t_c and
    Cov[y|x] = sum_c w_c (t_c t_c^T + side^2 I / 12) - E E^T, in closed form. The midpoint grid,
    whose cells' edges fall on the tiles', gets them to the rule's error on a quadratic."""
    room = planar_relocalisation(n_samples=200, seed=0)
    x = room.x_test[:5]
    weights = np.exp(room.truth._given_x(x)[0])  # (5, K^2)
    centres, side = room.tile_centres, 2 * room.half_width / room.tiles_per_side
    mean = weights @ centres
    second = np.einsum("mk,ki,kj->mij", weights, centres, centres) + side**2 / 12 * np.eye(2)
    covariance = second - np.einsum("mi,mj->mij", mean, mean)
    oracle = BestSingleGaussian.for_dataset(room)
    _, means, scale_tril = oracle._given_x(x)
    np.testing.assert_allclose(means[:, 0], mean, atol=1e-9)
    np.testing.assert_allclose(scale_tril[:, 0] @ np.swapaxes(scale_tril[:, 0], 1, 2), covariance, rtol=1e-3)
    y = room.y_test[:5]
    expected = [stats.multivariate_normal(m, c).logpdf(v) for m, c, v in zip(mean, covariance, y)]
    np.testing.assert_allclose(oracle.log_prob(y, x), expected, atol=1e-3)
    assert oracle.sample(x, 4, seed=0).shape == (4, 5, 2)


def test_best_single_gaussian_in_the_plane_beats_no_gaussian():
    """No Gaussian beats the moment-matched one in KL: shifting its mean or shrinking it costs nats."""
    arm = robot_arm(n_samples=200, seed=0)
    oracle = BestSingleGaussian.for_dataset(arm, n_grid=100)
    x, y, _ = arm.sample(500, seed=1)

    class Moved(BestSingleGaussian):
        def _given_x(self, x):
            log_w, means, scale_tril = super()._given_x(x)
            return log_w, means + np.array([0.0, 0.3]), 0.7 * scale_tril

    moved = Moved(arm.truth, oracle.y_grid)
    assert bayes_gap(moved, arm.truth, x, y).gap > bayes_gap(oracle, arm.truth, x, y).gap + 0.1


def test_oracles_refuse_what_they_cannot_integrate():
    room = planar_relocalisation(n_samples=200, seed=0)
    with pytest.raises(ValueError, match="y_grid must be a Grid of the truth's y"):
        BestSingleGaussian(room.truth, np.linspace(-1.0, 1.0, 5))
    with pytest.raises(ValueError, match="edges must be a pair of per-axis edges for a truth over the plane"):
        BinnedTruth(room.truth, np.linspace(-1.0, 1.0, 5))
    with pytest.raises(ValueError, match="edges must be one array"):
        BinnedTruth(linear_mixture(n_samples=200, seed=0).truth, (np.linspace(-1.0, 1.0, 5),) * 2)
    with pytest.raises(ValueError, match="the binned truth serves a scalar y or the plane; this truth's y lives in "
                                         "Euclidean\\(3\\)"):  # fmt: skip
        BinnedTruth(_Shifted(dim=3), (np.linspace(-1.0, 1.0, 5),) * 3)


class _Shifted(CheckedDensity):
    """p(y | x) = N(y; (x, -x / 2), diag(0.3^2, 0.5^2)) for a scalar x: its cell masses are products of normal CDFs."""

    def __init__(self, dim: int = 2):
        self.y_space = Euclidean(dim)

    def _log_prob(self, y, x):
        return stats.norm.logpdf(y[..., 0], x, 0.3) + stats.norm.logpdf(y[..., 1], -x / 2, 0.5)

    def _sample(self, x, n, rng):
        first = x + 0.3 * rng.standard_normal((n, len(x)))
        return np.stack([first, -x / 2 + 0.5 * rng.standard_normal((n, len(x)))], -1)


def test_binned_truth_in_the_plane_has_the_truths_mass_in_each_cell():
    """Cells of unequal sides on both axes: each cell's mass against the product of the axes' normal CDF
    differences, normalised over the cells, and the density w_b / area_b at points inside them."""
    edges = (np.array([-2.0, -0.7, 0.0, 0.4, 1.5]), np.array([-1.5, -0.2, 0.1, 2.0]))
    x = np.array([-0.6, 0.0, 0.8])
    oracle = BinnedTruth(_Shifted(), edges, nodes_per_bin=64)
    first = np.diff(stats.norm.cdf(edges[0][None, :], x[:, None], 0.3), axis=1)  # (3, 4)
    second = np.diff(stats.norm.cdf(edges[1][None, :], -x[:, None] / 2, 0.5), axis=1)  # (3, 3)
    cells = (first[:, :, None] * second[:, None, :]).reshape(3, -1)
    cells /= cells.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.exp(oracle._given_x(x)[0]), cells, rtol=2e-5, atol=1e-10)  # Simpson, h = 1.3 / 64
    y = np.array([[-1.0, 0.0], [0.2, 1.0], [1.0, -1.0], [3.0, 0.0]])  # cells (0, 1), (2, 2), (3, 0), outside
    areas = np.array([1.3 * 0.3, 0.4 * 1.9, 1.1 * 1.3])
    expected = np.log(cells[1, [1, 8, 9]] / areas)  # flat index 3 i + j
    np.testing.assert_allclose(oracle.log_prob(y[:3], 0.0), expected, atol=5e-5)
    assert oracle.log_prob(y[3], 0.0) == -np.inf


@pytest.mark.parametrize("make", [linear_mixture, robot_arm], ids=["line", "plane"])
def test_the_oracles_threaded_blocks_match_one_thread_to_the_bit(make, monkeypatch):
    data = make(n_samples=300, seed=0)
    oracles = [BestSingleGaussian.for_dataset(data, n_grid=None if data.y_space.dim == 1 else 40)]
    edges = np.linspace(*data.y_range, 21) if data.y_space.dim == 1 else BinnedClassifier.edges_for(data.y_train, 10)
    oracles.append(BinnedTruth(data.truth, edges, None if data.y_space.dim == 1 else 4))
    x, y = data.x_train, data.y_train  # 270 inputs: two blocks or more for each oracle
    threaded = [oracle.log_prob(y, x) for oracle in oracles]
    monkeypatch.setattr("utilis.oracles.os.cpu_count", lambda: 1)
    for oracle, expected in zip(oracles, threaded):
        np.testing.assert_array_equal(oracle.log_prob(y, x), expected)


def test_edges_for_are_the_edges_a_fit_sets(data):
    model = BinnedClassifier(n_bins=20, margin=0.2)
    model.fit(data.x_train, data.y_train, seed=0, epochs=1, progress=False)
    np.testing.assert_array_equal(BinnedClassifier.edges_for(data.y_train, 20, 0.2), model.bin_edges)
    span = np.ptp(data.y_train)
    edges = BinnedClassifier.edges_for(data.y_train)
    assert len(edges) == 51 and np.isclose(edges[0], data.y_train.min() - 0.1 * span)
    with pytest.raises(ValueError, match="y must be"):
        BinnedClassifier.edges_for(np.zeros((3, 2, 1)))
    arm = robot_arm(n_samples=300, seed=0)
    planar = BinnedClassifier(n_bins=12, hidden=8, x_dim=2, y_dim=2)
    planar.fit(arm.x_train, arm.y_train, seed=0, epochs=1, progress=False)
    for axis, axis_edges in enumerate(BinnedClassifier.edges_for(arm.y_train, 12)):
        np.testing.assert_array_equal(axis_edges, planar.bin_edges[axis])
        np.testing.assert_array_equal(axis_edges, BinnedClassifier.edges_for(arm.y_train[:, axis], 12))
    cells = planar.cells(arm.y_train)  # each training point's cell, in C order, against a brute-force search
    brute = [
        12 * int(np.searchsorted(planar.bin_edges[0], a, "right") - 1)
        + int(np.searchsorted(planar.bin_edges[1], b, "right") - 1)
        for a, b in arm.y_train
    ]
    np.testing.assert_array_equal(cells, brute)
    assert planar.predict(arm.x_test[:4]).shape == (4, 2) and planar.probabilities(arm.x_test[:4]).shape == (4, 144)
    with pytest.raises(ValueError, match=r"y_dim must be 1 or 2 for a softmax over bins, got 3: .*50\^3 = 125,000"):
        BinnedClassifier(y_dim=3)

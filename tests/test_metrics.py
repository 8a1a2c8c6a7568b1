"""Metrics against the truth, checked on cases with known answers."""

import numpy as np
import pytest
from conftest import GaussianConditional, MixtureConditional
from scipy import stats

from generate_dataset import DATASETS, SCALAR_DATASETS
from utilis.metrics import (
    bayes_gap,
    bayes_gaps,
    best_of_k_error,
    calibration_ranks,
    kl_divergence,
    ks_from_uniform,
    mode_recall_precision,
    nll,
    score,
    score_table,
)
from utilis.protocol import CheckedDensity
from utilis.spaces import Euclidean


def gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) in closed form."""
    return np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


def test_nll_matches_scipy(gaussian):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=500), rng.normal(size=500)
    assert nll(gaussian, x, y) == pytest.approx(-stats.norm.logpdf(y, 0.5 * x + 1.0, 0.7).mean(), rel=1e-12)


def test_gap_of_truth_to_itself_is_zero():
    for make in SCALAR_DATASETS.values():
        data = make(seed=1)
        x, y, _ = data.sample(2000, seed=2)
        gap = bayes_gap(data.truth, data.truth, x, y)
        assert gap.gap == 0.0 and gap.stderr == 0.0 and gap.model_nll == gap.truth_nll


def test_gap_estimates_the_closed_form_kl():
    truth, model = GaussianConditional(1.0, 0.0, 0.5), GaussianConditional(1.0, 0.3, 0.8)
    x = np.random.default_rng(0).normal(size=50_000)
    y = truth.sample(x, 1, seed=1)[0]
    gap = bayes_gap(model, truth, x, y)
    expected = gaussian_kl(0.0, 0.5, 0.3, 0.8)
    assert abs(gap.gap - expected) < 4 * gap.stderr
    assert gap.stderr < 0.01


class CountingConditional(GaussianConditional):
    """A Gaussian conditional that counts the calls to its log_prob."""

    calls = 0

    def log_prob(self, y, x):
        self.calls += 1
        return super().log_prob(y, x)


def test_gaps_of_many_models_ask_the_truth_once():
    truth = CountingConditional(1.0, 0.0, 0.5)
    models = {"near": GaussianConditional(1.0, 0.1, 0.5), ("far", 2): GaussianConditional(1.0, 1.0, 2.0)}
    x = np.random.default_rng(0).normal(size=2_000)
    y = truth.sample(x, 1, seed=1)[0]
    gaps = bayes_gaps(models, truth, x, y)
    assert truth.calls == 1 and list(gaps) == list(models)
    for name, model in models.items():
        assert gaps[name] == bayes_gap(model, truth, x, y)
    assert gaps["near"].gap == pytest.approx(gaussian_kl(0.0, 0.5, 0.1, 0.5), abs=4 * gaps["near"].stderr)
    assert bayes_gaps(models, truth, x, y, n_jobs=2) == gaps  # the densities asked in worker processes
    assert bayes_gaps({}, truth, x, y) == {}
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 1, or -1"):
        bayes_gaps(models, truth, x, y, n_jobs=0)
    with pytest.raises(ValueError, match=r"models\['bad'\] must be a conditional density"):
        bayes_gaps({"near": models["near"], "bad": object()}, truth, x, y)


def test_kl_on_grid_matches_closed_form():
    truth, model = GaussianConditional(2.0, 0.0, 0.5), GaussianConditional(1.0, 1.0, 1.2)
    x = np.array([-1.0, 0.0, 0.5, 2.0, 0.0])  # unsorted, with a repeat
    y = np.linspace(-15, 15, 20_001)
    expected = gaussian_kl(2.0 * x, 0.5, x + 1.0, 1.2)
    np.testing.assert_allclose(kl_divergence(truth, model, x, y), expected, rtol=1e-8)
    np.testing.assert_allclose(kl_divergence(truth, truth, x, y), 0.0, atol=1e-12)


def test_kl_is_zero_where_truth_is_zero():
    data = DATASETS["camera"](seed=0)
    y = np.linspace(-150, 150, 3001)  # beyond [-T, T] the truth is exactly 0
    kl = kl_divergence(data.truth, data.truth, [0.0, 0.5], y)
    np.testing.assert_allclose(kl, 0.0, atol=1e-12)


def test_modes_of_truth_against_itself():
    for make in SCALAR_DATASETS.values():
        data = make(seed=0)
        x = np.linspace(*data.x_range, 25)
        y = np.linspace(*data.y_range, 4000)
        scores = mode_recall_precision(data.truth, data.truth, x, y, tolerance=0.05)
        assert scores.recall == 1.0 and scores.precision == 1.0 and scores.true_modes >= 25


def test_mode_recall_and_precision(bimodal):
    y, x = np.linspace(-8, 8, 4001), np.zeros(10)
    one_branch = MixtureConditional([1.0], [3.0], [0.5])
    scores = mode_recall_precision(bimodal, one_branch, x, y, tolerance=0.2)
    assert (scores.recall, scores.precision) == (0.5, 1.0)
    between = MixtureConditional([1.0], [0.0], [3.0])  # what MSE regression learns
    assert mode_recall_precision(bimodal, between, x, y, tolerance=0.2).recall == 0.0
    invented = MixtureConditional([0.3, 0.4, 0.3], [-3.0, 0.0, 3.0], [0.5, 0.5, 0.5])
    scores = mode_recall_precision(bimodal, invented, x, y, tolerance=0.2)
    assert scores.recall == 1.0 and scores.precision == pytest.approx(2 / 3)


def test_best_of_k(gaussian):
    x = np.zeros(20_000)
    y = gaussian.mean(x)
    # one sample: E|N(0, s^2)| = s sqrt(2 / pi)
    assert best_of_k_error(gaussian, x, y, 1, seed=0) == pytest.approx(0.7 * np.sqrt(2 / np.pi), rel=0.02)
    errors = [best_of_k_error(gaussian, x, y, k, seed=0) for k in (1, 5, 20)]
    assert errors[0] > errors[1] > errors[2]


def test_best_of_k_finds_every_branch(bimodal):
    x = np.zeros(2000)
    y = bimodal.sample(x, 1, seed=0)[0]
    one_branch = MixtureConditional([1.0], [3.0], [0.5])
    assert best_of_k_error(bimodal, x, y, 10, seed=1) < 0.2 < best_of_k_error(one_branch, x, y, 10, seed=1)


def test_bad_inputs(gaussian):
    with pytest.raises(ValueError, match="y must hold one point per x"):
        nll(gaussian, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="x must be finite"):
        bayes_gap(gaussian, gaussian, [np.nan], [0.0])
    with pytest.raises(ValueError, match="x must be non-empty points"):
        nll(gaussian, [], [])
    with pytest.raises(ValueError, match="y_grid must be strictly increasing"):
        kl_divergence(gaussian, gaussian, [0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="tolerance"):
        mode_recall_precision(gaussian, gaussian, [0.0], [0.0, 1.0], tolerance=0)
    with pytest.raises(ValueError, match="k must be >= 1"):
        best_of_k_error(gaussian, [0.0], [0.0], 0)


def test_score_of_truth_and_table():
    data = DATASETS["sinusoid"](seed=0)
    scores = score(data.truth, data, n_points=2000, n_x=20)
    assert scores["gap"] == 0.0 and scores["KL"] == 0.0
    assert scores["mode recall"] == 1.0 and scores["mode precision"] == 1.0
    x, y, _ = data.sample(2000, seed=0)  # the points score draws: the floor is the truth's NLL on them
    assert scores["Bayes floor"] == pytest.approx(-data.truth.log_prob(y, x).mean(), rel=1e-12)
    table = score_table({"truth": scores, "truth again": scores})
    assert table.count("\n") == 2 and "truth again" in table and "0.0000 ± 0.0000" in table


def test_score_shares_its_grids_but_not_its_answers():
    """score evaluates one pair of grids for KL and modes: it must agree with the public functions."""
    from utilis.oracles import BestSingleGaussian

    data = DATASETS["camera"](n_samples=300, seed=1)
    model = BestSingleGaussian.for_dataset(data)
    scores = score(model, data, n_points=500, n_x=60, seed=3)
    x, _, _ = data.sample(500, seed=3)
    y_grid = np.linspace(*data.y_range, 4000)
    kl = kl_divergence(data.truth, model, x[:60], y_grid).mean()
    modes = mode_recall_precision(data.truth, model, x[:60], y_grid, 0.02 * np.ptp(data.y_range))
    assert scores["KL"] == pytest.approx(kl, rel=1e-12) and scores["KL"] > 0.1
    assert (scores["mode recall"], scores["mode precision"]) == (modes.recall, modes.precision)


# ---- in the plane -----------------------------------------------------------------------------------
class PlaneGaussian(CheckedDensity):
    """y | x ~ N(shift + x[:2], sd^2 I) in the plane, for x in R^x_dim (only its first two coordinates count)."""

    y_space = Euclidean(2)

    def __init__(self, shift=(0.0, 0.0), sd=1.0, x_dim=2):
        self.shift, self.sd, self.x_dim = np.asarray(shift, dtype=float), sd, x_dim

    def _mean(self, x):
        return self.shift + x[..., :2]

    def _log_prob(self, y, x):
        residual = y - self._mean(x)
        return -0.5 * (residual**2).sum(axis=-1) / self.sd**2 - np.log(2 * np.pi * self.sd**2)

    def _sample(self, x, n, rng):
        return self._mean(x) + self.sd * rng.standard_normal((n, len(x), 2))


def test_gap_in_the_plane_estimates_the_closed_form_kl():
    """KL(N(m1, s1^2 I) || N(m2, s2^2 I)) = 2 log(s2 / s1) + (2 s1^2 + |m1 - m2|^2) / (2 s2^2) - 1 in 2-D."""
    truth, model = PlaneGaussian(), PlaneGaussian(shift=(0.3, -0.4), sd=1.3)
    x = np.random.default_rng(0).normal(size=(20_000, 2))
    y = truth.sample(x, 1, seed=1)[0]
    expected = 2 * np.log(1.3) + (2 + 0.25) / (2 * 1.3**2) - 1
    gap = bayes_gap(model, truth, x, y)
    assert abs(gap.gap - expected) < 4 * gap.stderr
    assert bayes_gap(truth, truth, x, y).gap == 0.0


def test_best_of_k_in_the_plane_is_the_euclidean_distance():
    """A model whose draws all sit at its mean: the best of k is |y - mean| in the plane's distance."""
    model = PlaneGaussian(sd=1e-12)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 2)), rng.normal(size=(100, 2))
    assert best_of_k_error(model, x, y, 3, seed=0) == pytest.approx(np.linalg.norm(y - x, axis=1).mean(), rel=1e-9)


def test_calibration_in_the_plane():
    """The coverage ranks of the truth's own points are uniform; an overconfident model's pile up near 0."""
    truth = PlaneGaussian()
    x = np.random.default_rng(3).normal(size=(2000, 2))
    y = truth.sample(x, 1, seed=4)[0]
    ranks = calibration_ranks(truth, x, y, k=100, seed=5)
    assert ranks.shape == (1, 2000) and ks_from_uniform(ranks) < 0.05
    assert stats.kstest(ranks[0], "uniform").pvalue > 1e-3
    overconfident = calibration_ranks(PlaneGaussian(sd=0.5), x, y, k=100, seed=5)
    assert ks_from_uniform(overconfident) > 0.3 and np.median(overconfident) < 0.25


def test_calibration_of_a_scalar_density_gives_both_readings(gaussian):
    x = np.random.default_rng(16).normal(size=1000)
    y = gaussian.sample(x, 1, seed=17)[0]
    pit, coverage = calibration_ranks(gaussian, x, y, k=200, seed=18)
    assert ks_from_uniform(pit) < 0.06 and ks_from_uniform(coverage) < 0.06
    # the PIT has the leaderboard's formula: share below, ties halved, (count + 1/2) / (k + 1)
    draws = gaussian.sample(x, 200, seed=np.random.default_rng(18))
    np.testing.assert_array_equal(pit, ((draws < y).sum(axis=0) + 0.5) / 201)


def test_ks_from_uniform_is_scipys_statistic():
    u = np.random.default_rng(9).random(300) ** 1.5
    assert ks_from_uniform(u) == pytest.approx(stats.kstest(u, "uniform").statistic, rel=1e-12)


def test_score_in_the_plane():
    """The room's truth scores 0 against itself; one Gaussian in the middle of the room finds at most
    one of the true tiles and pays for the rest in KL and gap."""
    room = DATASETS["room"](seed=0)
    scores = score(room.truth, room, n_points=2000, n_x=20)
    assert scores["gap"] == 0.0 and scores["KL"] == 0.0 and scores["mode recall"] == 1.0
    blob = PlaneGaussian(sd=10.0, x_dim=3, shift=(0.0, 0.0))
    wrong = score(blob, room, n_points=2000, n_x=20, seed=4)
    assert wrong["mode recall"] < 0.5 and wrong["KL"] > 0.5 and wrong["gap"] > 0.5
    # score shares its grids with the public functions, which give the same answers
    x = room.sample(2000, seed=4)[0][:20]
    grid = room.y_space.grid(room.y_range, 200, rule="midpoint")
    assert np.mean(kl_divergence(room.truth, blob, x, grid)) == pytest.approx(wrong["KL"], rel=1e-12)
    diagonal = np.hypot(40.0, 40.0)
    modes = mode_recall_precision(room.truth, blob, x, grid, tolerance=0.02 * diagonal)
    assert (modes.recall, modes.precision) == (wrong["mode recall"], wrong["mode precision"])


def test_densities_over_other_spaces_are_refused():
    plane, room = PlaneGaussian(), DATASETS["room"](n_samples=20, seed=0)
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="not densities over the same"):
        bayes_gap(plane, room.truth, x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="not densities over the same"):
        score(GaussianConditional(), room, n_points=10)
    with pytest.raises(ValueError, match=r"y must be non-empty points of shape \(n, 2\), got shape \(4, 3\)"):
        nll(plane, x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"x must be non-empty points of shape \(n, 2\), got shape \(4,\)"):
        best_of_k_error(plane, np.zeros(4), np.zeros((4, 2)), 3)

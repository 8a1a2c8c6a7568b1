"""The classical references against independent computations: the joint mixture's own density for
Gaussian mixture regression, the kernel sum written out with scipy for the conditional KDE."""

import numpy as np
import pytest
from scipy import integrate, special, stats

from generate_dataset import DATASETS, linear_mixture
from utilis.classical import ConditionalKDE, GaussianMixtureRegression
from utilis.metrics import bayes_gap
from utilis.protocol import NotFittedError


@pytest.fixture(scope="module")
def linear():
    return linear_mixture(n_samples=3000, seed=0)


def test_gmr_conditions_the_joint_by_bayes_rule(linear):
    """log p(y|x) = log p(x, y) - log p(x), both from the fitted joint mixture itself (scikit-learn's
    score_samples for the joint, the mixture's x-marginal written out with scipy)."""
    model = GaussianMixtureRegression(n_components=3).fit(linear.x_train, linear.y_train, seed=0)
    mixture, ((x_mean, y_mean), (x_sd, y_sd)) = model.mixture, (model._centre, model._spread)
    x, y = linear.x_test[:50], linear.y_test[:50]
    z = np.column_stack([(x - x_mean) / x_sd, (y - y_mean) / y_sd])
    log_joint = mixture.score_samples(z) - np.log(x_sd * y_sd)
    sd_x = np.sqrt(mixture.covariances_[:, 0, 0])
    p_x = (mixture.weights_ * stats.norm.pdf(z[:, :1], mixture.means_[:, 0], sd_x)).sum(axis=1) / x_sd
    np.testing.assert_allclose(model.log_prob(y, x), log_joint - np.log(p_x), rtol=1e-9, atol=1e-9)


def test_gmr_reaches_the_floor_where_its_family_holds_the_truth(linear):
    """Each linear component is jointly Gaussian in (x, y): three components hold the truth exactly,
    and choosing K by held-out likelihood finds that three are enough."""
    x, y, _ = linear.sample(5000, seed=1)
    chosen = GaussianMixtureRegression().fit(linear.x_train, linear.y_train, seed=0)
    assert chosen.n_components >= 3
    assert chosen.validation_nll[3] < chosen.validation_nll[2] - 0.5
    three = GaussianMixtureRegression(n_components=3).fit(linear.x_train, linear.y_train, seed=0)
    assert bayes_gap(three, linear.truth, x, y).gap < 0.005
    assert (
        bayes_gap(GaussianMixtureRegression(n_components=1).fit(linear.x_train, linear.y_train), linear.truth, x, y).gap
        > 1
    )


def test_kde_is_the_kernel_sum(linear):
    """Against the formula written out with scipy over every training point."""
    model = ConditionalKDE(x_bandwidth=0.05, y_bandwidth=0.03).fit(linear.x_train[:500], linear.y_train[:500])
    h, g = model.h, model.g
    assert h == pytest.approx(0.05 * linear.x_train[:500].std()) and g == pytest.approx(
        0.03 * linear.y_train[:500].std()
    )
    x, y = np.quantile(linear.x_train, [0.1, 0.4, 0.8]), np.linspace(*linear.y_range, 7)
    log_w = stats.norm.logpdf(x[None, :, None], linear.x_train[:500], h)  # (1, x, i)
    log_k = stats.norm.logpdf(y[:, None, None], linear.y_train[:500], g)  # (y, 1, i)
    expected = special.logsumexp(log_w + log_k, axis=-1) - special.logsumexp(log_w, axis=-1)
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), expected, rtol=1e-9, atol=1e-9)
    assert expected.min() < -500  # far in the tails too, where a sum in linear space underflows to 0
    whole = model.log_prob(y[:, None], x[None, :])
    model.BLOCK = 5  # the (query, point) pairs in many small chunks: the same sums
    np.testing.assert_array_equal(model.log_prob(y[:, None], x[None, :]), whole)


def test_kde_far_out_the_nearest_points_take_the_weight(linear):
    model = ConditionalKDE(x_bandwidth=0.05, y_bandwidth=0.03).fit(linear.x_train, linear.y_train)
    right = np.argmax(linear.x_train)
    for x in (linear.x_train.max() + 1e3, 1e300, 1.7976931348623157e308):
        np.testing.assert_allclose(model.log_prob(linear.y_train[right], x), stats.norm.logpdf(0.0, 0.0, model.g))
    draws = model.sample(1e300, 2000, seed=0)
    assert abs(draws.mean() - linear.y_train[right]) < 4 * model.g / np.sqrt(2000) + 1e-12


def test_kde_bandwidths_by_held_out_likelihood_beat_others():
    data = DATASETS["sinusoid"](n_samples=1500, seed=0)
    chosen = ConditionalKDE().fit(data.x_train, data.y_train, seed=0)
    x, y, _ = data.sample(3000, seed=1)
    h, g = chosen.h / data.x_train.std(), chosen.g / data.y_train.std()
    gap = bayes_gap(chosen, data.truth, x, y).gap
    for factor_h, factor_g in ((4, 1), (1, 4), (0.25, 1)):
        other = ConditionalKDE(h * factor_h, g * factor_g).fit(data.x_train, data.y_train)
        assert bayes_gap(other, data.truth, x, y).gap > gap


@pytest.mark.parametrize("model", [GaussianMixtureRegression(n_components=2), ConditionalKDE(0.1, 0.1)])
def test_integrates_to_one_and_samples_agree(model, linear):
    model.fit(linear.x_train[:800], linear.y_train[:800], seed=0)
    y = np.linspace(linear.y_range[0] - 40, linear.y_range[1] + 40, 80_001)
    x = np.quantile(linear.x_train, [0.2, 0.5, 0.9])
    mass = integrate.trapezoid(np.exp(model.log_prob(y[:, None], x[None, :])), y, axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=1e-6)
    draws = model.sample(x, 4000, seed=0)
    cdf = integrate.cumulative_trapezoid(np.exp(model.log_prob(y[:, None], x[None, :])), y, axis=0, initial=0)
    for j in range(3):
        assert stats.kstest(np.interp(draws[:, j], y, cdf[:, j]), "uniform").pvalue > 1e-3


def test_bad_options_and_not_fitted():
    for make, message in [
        (lambda: GaussianMixtureRegression(n_components=0), "n_components must be >= 1, got 0"),
        (lambda: GaussianMixtureRegression(n_components=[]), "n_components must name"),
        (lambda: GaussianMixtureRegression(reg_covar=0.0), "reg_covar must be a finite number > 0"),
        (lambda: ConditionalKDE(x_bandwidth=-1.0), "x_bandwidth must be a finite number > 0"),
        (lambda: ConditionalKDE(y_bandwidth=np.inf), "y_bandwidth must be a finite number > 0"),
        (lambda: ConditionalKDE(max_validation=0), "max_validation must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()
    for model in (GaussianMixtureRegression(), ConditionalKDE()):
        with pytest.raises(NotFittedError, match=r"call fit\(x, y\) first"):
            model.log_prob(0.0, 0.0)
    with pytest.raises(ValueError, match="n_components=5 exceeds the 3 training points"):
        GaussianMixtureRegression(n_components=5).fit([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("name", ["robot_arm", "room"])
def test_gmr_in_the_plane_conditions_the_joint_by_bayes_rule(name):
    """For vector x and y: log p(y|x) = log p(x, y) - log p(x), the joint by scikit-learn's score_samples
    and the x-block's marginal mixture by scipy's multivariate normal."""
    data = DATASETS[name](n_samples=1500, seed=0)
    model = GaussianMixtureRegression(n_components=6).fit(data.x_train, data.y_train, seed=0)
    d_x = data.x_dim
    assert (model.x_dim, model.y_space.dim) == (d_x, 2)
    x, y = data.x_test[:40], data.y_test[:40]
    centre, spread, mixture = model._centre, model._spread, model.mixture
    z = (np.column_stack([x, y]) - centre) / spread
    log_joint = mixture.score_samples(z) - np.log(spread).sum()
    log_px = (
        special.logsumexp(
            [
                np.log(w) + stats.multivariate_normal(m[:d_x], c[:d_x, :d_x]).logpdf(z[:, :d_x])
                for w, m, c in zip(mixture.weights_, mixture.means_, mixture.covariances_)
            ],
            axis=0,
        )
        - np.log(spread[:d_x]).sum()
    )
    np.testing.assert_allclose(model.log_prob(y, x), log_joint - log_px, rtol=1e-8, atol=1e-8)
    assert model.sample(x[:3], 7, seed=0).shape == (7, 3, 2)


def test_gmr_blockwise_conditioning_is_the_scalar_formula(linear):
    """The general block-wise conditioning, run on a scalar x and y, gives the scalar closed form."""
    model = GaussianMixtureRegression(n_components=3).fit(linear.x_train, linear.y_train, seed=0)
    x = np.quantile(linear.x_train, [0.05, 0.5, 0.95])
    for scalar, general in zip(model._given_x(x), model._given_vector_x(x)):
        np.testing.assert_allclose(general, scalar, rtol=1e-10, atol=1e-12)


def test_gmr_vector_x_scalar_y_by_hand():
    """One component over (x1, x2, y): the conditional is the Gaussian regression written out by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    y = 1.5 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=4000)
    model = GaussianMixtureRegression(n_components=1, reg_covar=1e-12).fit(x, y, seed=0)  # no ridge on Σ
    assert (model.x_dim, model.y_space.dim) == (2, 1)
    joint = np.column_stack([x, y])
    mean, cov = joint.mean(axis=0), np.cov(joint.T, bias=True)
    query = np.array([[0.3, -1.2], [2.0, 0.5]])
    gain = cov[2, :2] @ np.linalg.inv(cov[:2, :2])
    mu = mean[2] + (query - mean[:2]) @ gain
    sd = np.sqrt(cov[2, 2] - gain @ cov[:2, 2])
    y_query = np.array([0.1, 2.4])
    np.testing.assert_allclose(model.log_prob(y_query, query), stats.norm.logpdf(y_query, mu, sd), rtol=1e-9)


def test_gmr_refuses_bad_shapes():
    model = GaussianMixtureRegression(n_components=1)
    with pytest.raises(ValueError, match=r"x must be 1-D \(n,\) or rows \(n, d\)"):
        model.fit(np.zeros((5, 2, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="same number of points"):
        model.fit(np.zeros((5, 2)), np.zeros(4))
    model.fit(np.random.default_rng(0).normal(size=(50, 3)), np.random.default_rng(1).normal(size=(50, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        model.log_prob(np.zeros(2), np.zeros(2))

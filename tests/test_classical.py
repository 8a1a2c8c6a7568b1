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


def kde_by_scipy(model, y, x):
    """log p(y|x) of the product-kernel KDE written out over every training point: the x kernels by
    scipy's multivariate normal (diagonal covariance h²), the y kernels by a product of scipy's normals.
    ``y`` (k, d_y) and ``x`` (m, d_x): shape (k, m)."""
    log_w = np.stack(
        [stats.multivariate_normal(point, np.diag(model.h**2)).logpdf(x) for point in model.x_train], axis=-1
    )  # (m, n)
    log_k = stats.norm.logpdf(y[:, None, :], model.y_train[None], model.g).sum(-1)  # (k, n)
    return special.logsumexp(log_w[None] + log_k[:, None], axis=-1) - special.logsumexp(log_w, axis=-1)[None]


@pytest.mark.parametrize("name", ["robot_arm", "room"])
def test_kde_in_the_plane_is_the_kernel_sum(name):
    """For vector x and y, against the formula over every training point, with a bandwidth per axis
    (given in sds: one per axis of x, one for every axis of y), in the data and in its far tails."""
    data = DATASETS[name](n_samples=600, seed=0)
    factors = [0.2, 0.3, 0.25][: data.x_dim]
    model = ConditionalKDE(x_bandwidth=factors, y_bandwidth=0.1).fit(data.x_train, data.y_train)
    assert (model.x_dim, model.y_space.dim) == (data.x_dim, 2)
    np.testing.assert_allclose(model.h, np.array(factors) * data.x_train.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.g, 0.1 * data.y_train.std(axis=0), rtol=1e-12)
    x = np.concatenate([data.x_test[:4], data.x_test[4:5] + 3 * data.x_train.std(axis=0)])
    centre, spread = data.y_train.mean(axis=0), data.y_train.std(axis=0)
    y = np.concatenate([data.y_test[:6], centre + [[3.0, -2.0], [-4.0, 5.0]] * spread])
    expected = kde_by_scipy(model, y, x)
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), expected, rtol=1e-9, atol=1e-9)
    assert expected.min() < -100  # in the tails too, where a sum in linear space loses digits or underflows
    # the same sums by the k-d trees (few queries at an x) and cell by cell (a grid of y at one x),
    # and in many small chunks
    whole = model.log_prob(y[:, None], x[None, :])
    model.MANY = 1
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), whole, rtol=1e-12, atol=1e-12)
    model.BLOCK = 5
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), whole, rtol=1e-12, atol=1e-12)
    model.MANY = 10**9
    np.testing.assert_array_equal(model.log_prob(y[:, None], x[None, :]), whole)


@pytest.mark.parametrize("name", ["robot_arm", "room"])
def test_kde_in_the_plane_chooses_a_bandwidth_per_axis(name):
    """Chosen by leave-one-out likelihood in the z-scored space: h (d_x,) and g (d_y,), finite and
    positive, each axis' bandwidth one common factor times its standard deviation; on held-out points
    the choice beats each factor four times larger or smaller."""
    data = DATASETS[name](n_samples=600, seed=0)
    model = ConditionalKDE(max_validation=300).fit(data.x_train, data.y_train, seed=0)
    assert model.h.shape == (data.x_dim,) and model.g.shape == (2,)
    assert np.all(np.isfinite(model.h) & (model.h > 0)) and np.all(np.isfinite(model.g) & (model.g > 0))
    factor_h = model.h / data.x_train.std(axis=0)
    factor_g = model.g / data.y_train.std(axis=0)
    np.testing.assert_allclose(factor_h, factor_h[0], rtol=1e-12)
    np.testing.assert_allclose(factor_g, factor_g[0], rtol=1e-12)
    nll = -model.log_prob(data.y_test, data.x_test).mean()
    for scale_h, scale_g in ((4, 1), (0.25, 1), (1, 4), (1, 0.25)):
        other = ConditionalKDE(factor_h[0] * scale_h, factor_g[0] * scale_g).fit(data.x_train, data.y_train)
        assert -other.log_prob(data.y_test, data.x_test).mean() > nll, (scale_h, scale_g)


def test_kde_scalar_data_keeps_the_scalar_path(linear):
    """A scalar x and y keep scalar bandwidths and the scalar estimate (a single column is the same fit,
    byte for byte); the vector path, run on the same data as columns, gives the same density."""
    x, y = linear.x_train[:800], linear.y_train[:800]
    scalar = ConditionalKDE(max_validation=300).fit(x, y, seed=0)
    assert isinstance(scalar.h, float) and isinstance(scalar.g, float)
    assert (scalar.x_dim, scalar.y_space.dim) == (1, 1)
    columns = ConditionalKDE(max_validation=300).fit(x[:, None], y[:, None], seed=0)
    assert (columns.h, columns.g) == (scalar.h, scalar.g)
    x_query = np.concatenate([np.quantile(x, [0.1, 0.5, 0.9]), [x.max() + 5.0, 1e300]])
    y_query = np.linspace(linear.y_range[0] - 10, linear.y_range[1] + 10, 9)
    expected = scalar.log_prob(y_query[:, None], x_query[None, :])
    assert columns.log_prob(y_query[:, None], x_query[None, :]).tobytes() == expected.tobytes()
    vector = ConditionalKDE(max_validation=300)._fit_vector(x[:, None], y[:, None], 0, None, None)
    np.testing.assert_allclose((vector.h[0], vector.g[0]), (scalar.h, scalar.g), rtol=1e-9)
    np.testing.assert_allclose(vector.log_prob(y_query[:, None], x_query[None, :]), expected, rtol=1e-12, atol=1e-9)
    assert ConditionalKDE([0.1], (0.05,)).fit(x, y).h == ConditionalKDE(0.1, 0.05).fit(x, y).h


@pytest.mark.parametrize("d_x, d_y", [(2, 1), (1, 2)])
def test_kde_vector_x_scalar_y_and_scalar_x_vector_y(d_x, d_y):
    """Mixed dimensions: no event axis where a dimension is 1, the kernel sum against scipy."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, d_x))
    y = x.sum(axis=1, keepdims=True) + rng.normal(size=(300, d_y))
    model = ConditionalKDE(0.3, 0.2).fit(x if d_x > 1 else x[:, 0], y if d_y > 1 else y[:, 0])
    assert (model.x_dim, model.y_space.dim) == (d_x, d_y)
    assert model.h.shape == (d_x,) and model.g.shape == (d_y,)
    x_query, y_query = x[:4] + 0.1, y[:5] - 0.2
    got = model.log_prob(
        y_query[:, None] if d_y > 1 else y_query[:, None, 0], x_query[None] if d_x > 1 else x_query[None, :, 0]
    )
    np.testing.assert_allclose(got, kde_by_scipy(model, y_query, x_query), rtol=1e-9, atol=1e-9)
    draws = model.sample(x_query if d_x > 1 else x_query[:, 0], 6, seed=0)
    assert draws.shape == ((6, 4, d_y) if d_y > 1 else (6, 4))


def test_kde_in_the_plane_far_out_the_extreme_points_take_the_weight():
    """Far along one axis of x, the weight goes to the training point farthest out along it (as the
    scalar path's nearest point): the density is its kernel, and the samples are drawn around it."""
    data = DATASETS["room"](n_samples=400, seed=0)
    model = ConditionalKDE(0.2, 0.1).fit(data.x_train, data.y_train)
    right = np.argmax(data.x_train[:, 0])
    middle = np.median(data.x_train, axis=0)
    at_peak = stats.norm.logpdf(0.0, 0.0, model.g).sum()
    for far in (data.x_train[right, 0] + 1e3, 1e150, 1e300, 1.7976931348623157e308):
        x = np.where(np.arange(3) == 0, far, middle)
        np.testing.assert_allclose(model.log_prob(data.y_train[right], x), at_peak, rtol=1e-9)
        draws = model.sample(x, 2000, seed=0)
        assert np.all(np.abs(draws.mean(axis=0)[0] - data.y_train[right]) < 4 * model.g / np.sqrt(2000))
    corner = np.full(3, 1.7976931348623157e308)  # beyond float64 in units of h on every axis: finite weights
    assert np.all(np.isfinite(model.log_prob(data.y_test[:5], corner)))
    assert np.all(np.isfinite(model.sample(corner, 5, seed=0)))


def test_kde_refuses_bad_shapes_and_bandwidths():
    data = DATASETS["room"](n_samples=200, seed=0)
    x, y = data.x_train, data.y_train
    for make, message in [
        (lambda: ConditionalKDE(x_bandwidth=[0.1, -1.0]), r"x_bandwidth\[1\] must be a finite number > 0"),
        (lambda: ConditionalKDE(y_bandwidth=[]), "y_bandwidth must be a number > 0 or a 1-D sequence"),
        (lambda: ConditionalKDE(y_bandwidth=[[0.1, 0.2]]), "y_bandwidth must be a number > 0 or a 1-D sequence"),
    ]:
        with pytest.raises(ValueError, match=message):
            make()
    for model, fit_x, fit_y, message in [
        (ConditionalKDE(), x[:, :, None], y, r"x must be 1-D \(n,\) or rows \(n, d\), got shape \(\d+, 3, 1\)"),
        (ConditionalKDE(), x, y[:-1], "same number of points"),
        (
            ConditionalKDE(x_bandwidth=[0.1, 0.2]),
            x,
            y,
            r"x_bandwidth must be one number or 3 \(one per axis of x\), got 2",
        ),
        (
            ConditionalKDE(y_bandwidth=[0.1, 0.2, 0.3]),
            x,
            y,
            r"y_bandwidth must be one number or 2 \(one per axis of y\), got 3",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            model.fit(fit_x, fit_y)
    model = ConditionalKDE(0.2, 0.1).fit(x, y)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3\)"):
        model.log_prob(y[:2], x[:2, :2])
    with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 2\)"):
        model.log_prob(y[:2, :1], x[:2])
    with pytest.raises(ValueError, match=r"x must be one point of shape \(3,\) or rows of shape \(m, 3\)"):
        model.sample(np.zeros((2, 2)), 3)

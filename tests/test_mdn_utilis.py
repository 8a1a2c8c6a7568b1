"""The mixture density network and the baselines: densities against scipy, gradients, training, E[y|x]."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from generate_dataset import SCALAR_DATASETS, inverted_sinusoid_mixture, linear_mixture
from utilis.baselines import BinnedClassifier, GaussianRegression
from utilis.density import conditional_mean
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap, mode_recall_precision

WEIGHTS, MEANS, SCALES = np.array([0.2, 0.5, 0.3]), np.array([-2.0, 0.5, 3.0]), np.array([0.4, 1.0, 0.7])


def fixed_mdn() -> MDN:
    """An MDN whose mixture is the same at every x: the head's weights zeroed, its biases set."""
    model = MDN(n_components=3, min_scale=1e-6)
    with torch.no_grad():
        head = model.net[-1]
        head.weight.zero_()
        raw = np.log(np.expm1(SCALES - 1e-6))
        head.bias.copy_(torch.tensor(np.concatenate([np.log(WEIGHTS), MEANS, raw]), dtype=torch.float32))
        model.fitted.fill_(True)  # set by hand: no z-scoring (means 0, sds 1)
    return model


def scipy_mixture(y):
    return np.log((WEIGHTS * stats.norm.pdf(np.asarray(y)[..., None], MEANS, SCALES)).sum(-1))


def test_log_density_matches_scipy():
    model = fixed_mdn()
    y, x = np.linspace(-6, 6, 101), np.linspace(-3, 3, 7)
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), scipy_mixture(y)[:, None] + 0 * x, atol=2e-6)
    with torch.no_grad():  # forward() is torch's MixtureSameFamily
        distribution = model(torch.zeros(101))
        np.testing.assert_allclose(
            distribution.log_prob(torch.tensor(y, dtype=torch.float32)), scipy_mixture(y), atol=2e-5
        )
    assert isinstance(distribution, torch.distributions.MixtureSameFamily)


@pytest.fixture(scope="module")
def trained():
    data = inverted_sinusoid_mixture(n_samples=1500, seed=0)
    model = MDN(n_components=10)
    model.fit(data.x_train, data.y_train, progress=False, seed=0, epochs=60)
    return data, model


def test_training_gets_close_to_the_truth(trained):
    data, model = trained
    x, y, _ = data.sample(5000, seed=1)
    assert bayes_gap(model, data.truth, x, y).gap < 0.5
    scores = mode_recall_precision(data.truth, model, x[:50], np.linspace(*data.y_range, 3000), tolerance=0.25)
    assert scores.recall > 0.8


def test_gradients_reach_every_parameter():
    data = linear_mixture(n_samples=300, seed=0)
    model = MDN(n_components=4)
    model.scaling.fit(data.x_train, data.y_train)
    loss = -model(torch.tensor(data.x_train, dtype=torch.float32)).log_prob(torch.tensor(data.y_train)).mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.any(parameter.grad != 0), name


def test_no_nan_far_from_every_component():
    model = fixed_mdn()
    y = torch.tensor([1e4, -1e4, 1e6], dtype=torch.float32)
    loss = -model(torch.zeros(3)).log_prob(y).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_point_predictions(trained):
    data, model = trained
    weights, means, _ = model.mixture([4.0])
    assert model.predict([4.0])[0] == means[0, weights[0].argmax()]
    modes = model.modes([4.0], np.linspace(*data.y_range, 3000))[0]
    assert len(modes) >= 2  # one x, several answers (the truth has four here)


def test_components_start_spread_over_y():
    data = linear_mixture(n_samples=500, seed=0)
    model = MDN(n_components=6)
    model.fit(data.x_train, data.y_train, progress=False, epochs=1, lr=1e-12)  # a step too small to move
    _, means, _ = model.mixture([np.mean(data.x_range)])
    quantiles = np.quantile(data.y_train, (np.arange(6) + 0.5) / 6)
    np.testing.assert_allclose(np.sort(means[0]), quantiles, atol=0.05 * np.ptp(data.y_train))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        MDN(n_components=0)
    with pytest.raises(ValueError, match="min_scale"):
        MDN(min_scale=-1.0)
    model = MDN(n_components=2)
    with pytest.raises(ValueError, match="x must be a tensor of inputs of shape \\(n,\\), got shape \\(4, 2\\)"):
        model(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="n_bins must be >= 2"):
        BinnedClassifier(n_bins=1)


# ---- baselines ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baselines():
    data = linear_mixture(n_samples=1500, seed=0)
    regression, classifier = GaussianRegression(), BinnedClassifier(n_bins=40)
    regression.fit(data.x_train, data.y_train, progress=False, seed=0)
    classifier.fit(data.x_train, data.y_train, progress=False, seed=0)
    return data, regression, classifier


def test_regression_lands_between_the_branches(baselines):
    data, regression, _ = baselines
    x = np.array([-5.0])  # where two lines overlap: p(y|x) has two far-apart modes
    y_grid = np.linspace(*data.y_range, 4000)
    assert regression.predict(x)[0] == pytest.approx(conditional_mean(data.truth, x, y_grid)[0], abs=1.0)
    truth_modes = mode_recall_precision(data.truth, regression, x, y_grid, tolerance=0.5)
    assert truth_modes.recall < 1.0  # a single Gaussian cannot find both
    xs, ys, _ = data.sample(5000, seed=1)
    assert bayes_gap(regression, data.truth, xs, ys).gap > 1.0


def test_classifier_as_density_and_as_argmax(baselines):
    data, _, classifier = baselines
    x = np.array([-5.0, -2.0])
    edges = classifier.bin_edges
    y = np.linspace(edges[0] - 1, edges[-1] + 1, 200_001)
    mass = integrate.trapezoid(np.exp(classifier.log_prob(y[:, None], x[None, :])), y, axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=1e-3)
    # argmax returns one branch: a y where the truth has real density, not the empty middle
    prediction = classifier.predict([-5.0])[0]
    truth_density = np.exp(data.truth.log_prob(prediction, -5.0))
    assert truth_density > 0.05
    assert np.all(classifier.log_prob([edges[0] - 1], 0.0) == -np.inf)


@pytest.mark.parametrize("name", list(SCALAR_DATASETS))
def test_regression_is_trained_until_it_learns_the_conditional_mean(name):
    """At 20,000 points, f(x) is E[y | x] of the truth wherever p(x) has mass: a baseline that fails
    because it stopped early proves nothing. (Stopped after 20 epochs, its error was about 0.5 sd.)"""
    data = SCALAR_DATASETS[name](n_samples=22_222, test_fraction=0.1, seed=0)
    regression = GaussianRegression()
    regression.fit(data.x_train, data.y_train, progress=False, seed=0)
    x = np.unique(data.sample(1000, seed=1)[0])  # drawn from p(x)
    lo, hi = data.y_range
    expected = conditional_mean(data.truth, x, np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 3000))
    error = regression.predict(x) - expected
    assert np.sqrt(np.mean(error**2)) < 0.1 * np.std(data.y_train)  # on average, close
    # and close at 95% of the x drawn from p(x); the rest sit where E[y|x] jumps within a noise width
    assert np.quantile(np.abs(error), 0.95) < 0.15 * np.std(data.y_train)


# ---- vectors: full covariances ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arm_mdn():
    from generate_dataset import robot_arm

    data = robot_arm(n_samples=600, seed=0)
    model = MDN(n_components=4, hidden=16, x_dim=2, y_dim=2)
    model.fit(data.x_train, data.y_train, seed=0, epochs=5, progress=False)
    return data, model


def test_full_covariance_mixture_matches_scipy(arm_mdn):
    """log p(y|x) against sum_k w_k N(y; mu_k, L_k L_k^T) written out with scipy's multivariate normal, at
    the mixture the network gives; the factors are lower-triangular with a diagonal above the floor."""
    data, model = arm_mdn
    x, y = data.x_test[:6], data.y_test[:6]
    weights, means, tril = model.mixture(x)
    assert weights.shape == (6, 4) and means.shape == (6, 4, 2) and tril.shape == (6, 4, 2, 2)
    np.testing.assert_array_equal(np.triu(tril, k=1), 0.0)
    floor = model.min_scale * model.scaling.y_sd.numpy()
    assert (np.diagonal(tril, axis1=-2, axis2=-1) >= floor * (1 - 1e-6)).all()
    expected = [
        np.log(sum(w * stats.multivariate_normal(m, f @ f.T).pdf(point) for w, m, f in zip(*row)))
        for point, *row in zip(y, weights, means, tril)
    ]
    # scipy factors L L^T again, which squares its condition number: agreement to 1e-6, not to the last bit
    np.testing.assert_allclose(model.log_prob(y, x), expected, rtol=1e-6)
    # the loss training uses (float32, torch) is the same density
    with torch.no_grad():
        torch_log_prob = model(torch.as_tensor(x)).log_prob(torch.as_tensor(y, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(torch_log_prob, expected, rtol=1e-4, atol=1e-4)


def test_full_covariance_components_start_spread_over_the_plane():
    from generate_dataset import robot_arm

    data = robot_arm(n_samples=600, seed=0)
    model = MDN(n_components=6, hidden=16, x_dim=2, y_dim=2)
    model.fit(data.x_train, data.y_train, seed=0, epochs=1, lr=1e-12, progress=False)  # barely moved
    _, means, _ = model.mixture(data.x_train[:1])
    lo, hi = data.y_train.min(axis=0), data.y_train.max(axis=0)
    assert ((means[0] > lo) & (means[0] < hi)).all()  # inside the data's box
    assert np.min(np.linalg.norm(means[0][:, None] - means[0][None], axis=-1) + 1e9 * np.eye(6)) > 0.05


def test_vector_x_scalar_y_and_wrong_shapes():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.normal(size=300)
    model = MDN(n_components=2, hidden=8, x_dim=3)
    model.fit(x, y, seed=0, epochs=2, progress=False)
    assert (model.x_dim, model.y_space.dim) == (3, 1)
    assert model.log_prob(y[:4], x[:4]).shape == (4,) and model.sample(x[:2], 5, seed=0).shape == (5, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\) for this model \(x_dim=3\), got \(300, 2\)"):
        model.fit(x[:, :2], y, progress=False)
    with pytest.raises(ValueError, match=r"serves a scalar x and a scalar y.*build MDN\(x_dim=\.\.\., y_dim=\.\.\.\)"):
        MDN().fit(x, y, progress=False)
    with pytest.raises(ValueError, match=r"MDN\.modes searches a 1-D grid"):
        model.modes(x[:1], np.linspace(-1, 1, 5))
    with pytest.raises(ValueError, match="y_dim must be >= 1"):
        MDN(y_dim=0)


def test_regression_in_the_plane_is_the_residuals_gaussian():
    """For a vector y: f(x) approaches E[y|x] of the truth (the best-single-Gaussian oracle's mean, by
    quadrature), and the density is N(f(x), S) with S the training residuals' covariance, by scipy."""
    from generate_dataset import robot_arm
    from utilis.oracles import BestSingleGaussian

    data = robot_arm(n_samples=3000, seed=0)
    model = GaussianRegression(hidden=32, x_dim=2, y_dim=2)
    model.fit(data.x_train, data.y_train, seed=0, progress=False)
    residuals = data.y_train - model.predict(data.x_train)
    covariance = residuals.T @ residuals / len(residuals)
    x, y = data.x_test[:5], data.y_test[:5]
    expected = [stats.multivariate_normal(m, covariance).logpdf(v) for m, v in zip(model.predict(x), y)]
    # the float32 network's outputs move in their last bits with the batch they are computed in
    np.testing.assert_allclose(model.log_prob(y, x), expected, rtol=1e-5)
    oracle = BestSingleGaussian.for_dataset(data)
    _, true_mean, _ = oracle._given_x(data.x_test[:200])
    miss = np.linalg.norm(model.predict(data.x_test[:200]) - true_mean[:, 0], axis=1)
    spread = np.linalg.norm(data.y_train.std(axis=0))
    assert np.median(miss) < 0.1 * spread, (np.median(miss), spread)

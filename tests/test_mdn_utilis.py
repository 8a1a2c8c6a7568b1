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
    with pytest.raises(ValueError, match="x must be a 1-D tensor"):
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

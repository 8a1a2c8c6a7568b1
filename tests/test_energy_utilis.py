"""The energy-based model: grid normalisation against closed forms, InfoNCE against the likelihood,
minima of hand-made energies, bad options, and a short training."""

import re

import numpy as np
import pytest
import torch
from scipy import stats

from generate_dataset import linear_mixture
from utilis.energy_utilis import EnergyModel
from utilis.metrics import bayes_gap


def hand_made(energy, d2_energy, z_bounds=(-4.0, 4.0), **options) -> EnergyModel:
    """A model whose energy is ``energy(z)`` at every x, y = z (no z-scoring): the head's weights zeroed and its
    biases set to the cubic B-spline quasi-interpolant of ``energy``, c_r = f(t_r) - d^2 f''(t_r) / 6
    (exact for cubics, so for quadratics). In float64, so that the comparisons test the quadrature alone."""
    model = EnergyModel(**options).double()
    with torch.no_grad():
        model.z_bounds.copy_(torch.tensor(z_bounds))
        d = model.knot_spacing
        knots = z_bounds[0] + (np.arange(model.n_knots) - 1) * d  # B_r is centred on t_r
        head = model.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor(energy(knots) - d**2 * d2_energy(knots) / 6))
        model.fitted.fill_(True)
    return model


def gaussian_energy(mean: float, sd: float, **options) -> EnergyModel:
    """E(z) = (z - mean)^2 / (2 sd^2): exp(-E) normalised is N(mean, sd^2)."""
    return hand_made(
        lambda z: (z - mean) ** 2 / (2 * sd**2), lambda z: np.full_like(z, 1 / sd**2), n_knots=35, **options
    )


@pytest.mark.parametrize(("n_grid", "tolerance"), [(64, 1e-9), (128, 1e-10)])
def test_a_quadratic_energy_normalises_to_the_gaussian(n_grid, tolerance):
    # 32 knot intervals of 0.25 on [-4, 4]: the grid's step is 0.125 (the sd is 1.3 steps) or 0.0625 (2.6 steps)
    model = gaussian_energy(0.3, 0.16, n_grid=n_grid)
    y, x = np.linspace(-3.9, 3.9, 301), np.array([-2.0, 0.0, 5.0])
    expected = stats.norm.logpdf(y, 0.3, 0.16)[:, None] + 0 * x
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), expected, rtol=0, atol=tolerance)
    assert np.all(model.log_prob([-4.01, 4.01, 1e300], 0.0) == -np.inf)  # outside [y_lo, y_hi]: density 0


def test_how_fine_the_grid_must_be():
    """The trapezoidal rule's relative error on a Gaussian of sd s with step h is about 2 exp(-2 pi^2 s^2 / h^2):
    1e-8 at h = s, 1e-2 at h = 2 s (the module's docstring: the grid must be about as fine as the narrowest peak)."""
    errors = {}
    for sd in (0.125, 0.0625):  # step 0.125 (64 nodes on [-4, 4]): h = s and h = 2 s
        model = gaussian_energy(0.0, sd, n_grid=64)
        errors[sd] = abs(float(model.log_prob(0.0, 0.0)) - stats.norm.logpdf(0.0, 0.0, sd))
    assert errors[0.125] < 1e-7
    assert 2e-3 < errors[0.0625] < 3e-2


def test_samples_and_minima_of_a_quadratic_energy():
    model = gaussian_energy(0.3, 0.16, n_grid=256)
    draws = model.sample(np.zeros(2), 4000, seed=0)
    assert stats.kstest(draws.ravel(), stats.norm(0.3, 0.16).cdf).pvalue > 1e-3
    minima = model.minima([0.0, 1.0])
    assert [len(m) for m in minima] == [1, 1]
    np.testing.assert_allclose([m[0] for m in minima], 0.3, atol=1e-4)  # the parabola through 3 nodes: exact
    np.testing.assert_allclose(model.predict([0.0]), 0.3, atol=1e-4)
    energy = model.energy(0.0, np.array([0.0, 0.3, 5.0]))
    np.testing.assert_allclose(energy[:2], [0.3**2 / (2 * 0.16**2), 0.0], atol=1e-9)
    assert energy[2] == np.inf  # outside [y_lo, y_hi]


def test_minima_of_a_double_well():
    """E(z) = 4 (z^2 - 1)^2 + 0.5 z: wells near z = -1 (the lower) and z = +1, a barrier at 0."""

    def energy(z):
        return 4 * (z**2 - 1) ** 2 + 0.5 * z

    def d2_energy(z):
        return 48 * z**2 - 16

    model = hand_made(energy, d2_energy, z_bounds=(-2.5, 2.5), n_knots=203, n_grid=800)
    grid = np.linspace(-2.5, 2.5, 200_001)
    roots = [grid[(grid < 0)][np.argmin(energy(grid[grid < 0]))], grid[grid > 0][np.argmin(energy(grid[grid > 0]))]]
    (found,) = model.minima([0.0])
    np.testing.assert_allclose(found, roots, atol=1e-3)  # lowest first: the well at -1
    assert model.predict([0.0])[0] == found[0]
    assert (
        len(model.minima([0.0], min_depth=10.0)[0]) == 1
    )  # the barrier is 3.5 nats above the upper well: one answer left
    np.testing.assert_allclose(model.energy(0.0, [-1.0, 0.0, 1.0]), energy(np.array([-1.0, 0.0, 1.0])), atol=1e-4)


def grads(model: EnergyModel, loss: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.ravel() for p in model.parameters()])


def test_infonce_with_many_counter_examples_follows_the_likelihood_gradient():
    data = linear_mixture(n_samples=600, seed=0)
    model = EnergyModel(n_knots=64, hidden=32, n_train_grid=976)  # 16 nodes a knot interval
    model.fit(data.x_train, data.y_train, epochs=5, progress=False, seed=0)  # an energy with structure
    x = torch.tensor(data.x_train[:64], dtype=torch.float32)
    y = torch.tensor(data.y_train[:64], dtype=torch.float32)
    likelihood = grads(model, model.likelihood_loss(x, y))  # the midpoint rule on 16 nodes a knot: Z to 1e-6
    cosines = {}
    for n in (4, 5000):
        generator = torch.Generator().manual_seed(0)
        infonce = grads(model, model.infonce_loss(x, y, generator, n_negatives=n))
        cosines[n] = float(torch.nn.functional.cosine_similarity(likelihood, infonce, dim=0))
    assert cosines[5000] > 0.99
    assert cosines[4] < cosines[5000]


def test_gradients_reach_every_parameter():
    data = linear_mixture(n_samples=300, seed=0)
    for objective in ("likelihood", "infonce"):
        model = EnergyModel(objective, n_knots=32, hidden=16)
        model.fit(data.x_train, data.y_train, epochs=1, progress=False)
        model.train()
        loss = getattr(model, f"{objective}_loss")(
            torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train, dtype=torch.float32)
        )
        loss.backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and torch.any(parameter.grad != 0), (objective, name)


@pytest.mark.parametrize("objective", ["likelihood", "infonce"])
def test_a_short_training_closes_most_of_the_gap(objective):
    data = linear_mixture(n_samples=2000, seed=0)
    x, y, _ = data.sample(5000, seed=1)
    model = EnergyModel(objective, n_knots=128, hidden=64)
    model.fit(data.x_train, data.y_train, epochs=1, lr=1e-6, progress=False)  # the start: flat, about uniform
    start = bayes_gap(model, data.truth, x, y).gap
    model.fit(data.x_train, data.y_train, epochs=25, progress=False)
    assert bayes_gap(model, data.truth, x, y).gap < min(0.5, start / 10)


def test_bad_options_raise():
    for options, message in [
        ({"objective": "contrastive"}, "objective must be 'likelihood' or 'infonce', got 'contrastive'"),
        ({"n_negatives": 0}, "n_negatives must be >= 1, got 0"),
        ({"n_knots": 3}, "n_knots must be >= 4, got 3"),
        ({"n_grid": 1}, "n_grid must be >= 2, got 1"),
        ({"n_train_grid": 1}, "n_train_grid must be >= 2, got 1"),
        ({"max_frequency": -1.0}, "max_frequency must be a finite number > 0, got -1.0"),
        ({"margin": 0.0}, "margin must be a finite number > 0, got 0.0"),
        ({"margin": float("nan")}, "margin must be a finite number > 0, got nan"),
        ({"hidden": 0}, "hidden must be >= 1, got 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            EnergyModel(**options)
    model = gaussian_energy(0.0, 0.5)
    with pytest.raises(ValueError, match=re.escape("min_depth must be a finite number > 0, got -1.0")):
        model.minima([0.0], min_depth=-1.0)
    with pytest.raises(ValueError, match="n_negatives must be >= 1, got 0"):
        model.infonce_loss(torch.zeros(3), torch.zeros(3), n_negatives=0)
    with pytest.raises(ValueError, match=re.escape("x must be a tensor of inputs of shape (n,), got shape (3, 2)")):
        model.coefficients(torch.zeros(3, 2))


def plane_gaussian(mean, cov, bounds=((-4.0, 4.0), (-3.0, 5.0)), **options) -> EnergyModel:
    """A model in the plane whose energy is the quadratic (z - mean)^T cov^-1 (z - mean) / 2 at every x, y = z:
    the tensor-product quasi-interpolant c_rs = f(t_r, s_s) - d_1^2 f_11 / 6 - d_2^2 f_22 / 6 (exact for
    quadratics: the cross term z_1 z_2 is a product of lines, which the splines hold), in float64."""
    model = EnergyModel(y_dim=2, **options).double()
    precision = np.linalg.inv(cov)
    with torch.no_grad():
        model.z_bounds.copy_(torch.tensor(bounds))
        d1, d2 = model.knot_spacings
        knots = [lo + (np.arange(model.n_knots) - 1) * d for (lo, _), d in zip(bounds, (d1, d2))]
        z = np.stack(np.meshgrid(*knots, indexing="ij"), axis=-1) - mean
        f = 0.5 * np.einsum("...i,ij,...j->...", z, precision, z)
        head = model.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor((f - d1**2 * precision[0, 0] / 6 - d2**2 * precision[1, 1] / 6).ravel()))
        model.fitted.fill_(True)
    return model


PLANE_MEAN, PLANE_COV = np.array([0.3, 1.0]), np.array([[0.09, 0.03], [0.03, 0.04]])  # sds 0.3 and 0.2, rho 0.5


def test_a_quadratic_energy_in_the_plane_normalises_to_the_bivariate_gaussian():
    model = plane_gaussian(PLANE_MEAN, PLANE_COV, n_knots=35)  # 32 intervals: knots 0.25 apart on both axes
    y = np.random.default_rng(0).uniform([-3.9, -2.9], [3.9, 4.9], (300, 2))
    expected = stats.multivariate_normal(PLANE_MEAN, PLANE_COV).logpdf(y)
    # the product trapezoidal rule on 257 x 257 nodes, a step of 0.031: exact to rounding for these sds
    np.testing.assert_allclose(model.log_prob(y[:, None], np.array([-2.0, 0.0, 5.0])), expected[:, None] + np.zeros(3),
                               rtol=0, atol=1e-10)  # fmt: skip
    assert np.all(model.log_prob([[-4.01, 1.0], [0.0, 5.01], [1e300, 0.0]], 0.0) == -np.inf)  # outside the box
    # the training grid's midpoint rule, 4 nodes a knot interval (a step of 0.0625): log Z in z-scored y
    with torch.no_grad():
        log_z = float(model._log_normaliser(model.coefficients(torch.zeros(1, dtype=torch.float64)), 0.5)[0])
    assert log_z == pytest.approx(np.log(2 * np.pi * np.sqrt(np.linalg.det(PLANE_COV))), abs=1e-9)
    precision_22 = 0.09 / (0.09 * 0.04 - 0.03**2)  # the (2, 2) entry of the inverse covariance
    energies = model.energy(0.0, np.array([PLANE_MEAN, [0.3, 1.2]]))
    np.testing.assert_allclose(energies, [0.0, 0.5 * 0.2**2 * precision_22], atol=1e-9)
    assert model.energy(0.0, [5.0, 0.0]) == np.inf


def test_samples_and_the_minimum_of_a_quadratic_energy_in_the_plane():
    model = plane_gaussian(PLANE_MEAN, PLANE_COV, n_knots=35)
    draws = model.sample(np.zeros(2), 20_000, seed=0)  # (n, 2 inputs, 2)
    assert draws.shape == (20_000, 2, 2)
    for column in range(2):
        sample = draws[:, column]
        # the mean to within 4 standard errors; the covariance to within 4 of its own (var of s_ij about
        # (s_ii s_jj + s_ij^2) / n), the grid's half-step jitter adding h^2 / 12 = 8e-5 to each variance
        assert np.all(np.abs(sample.mean(axis=0) - PLANE_MEAN) < 4 * np.sqrt(np.diag(PLANE_COV) / 20_000))
        spread = np.sqrt((np.outer(np.diag(PLANE_COV), np.diag(PLANE_COV)) + PLANE_COV**2) / 20_000)
        assert np.all(np.abs(np.cov(sample.T) - PLANE_COV) < 4 * spread + 1e-4)
    np.testing.assert_allclose(model.predict(np.zeros(3)), np.tile(PLANE_MEAN, (3, 1)), atol=8 / 256)  # a grid node
    with pytest.raises(ValueError, match="minima reads the basins of a scalar y"):
        model.minima([0.0])


def test_the_plane_is_served_and_three_dimensions_refused():
    message = "EnergyModel serves y_dim 1 or 2, got y_dim=3: it is normalised on a grid"
    with pytest.raises(ValueError, match=re.escape(message)):
        EnergyModel(y_dim=3)
    model = EnergyModel(n_knots=8, hidden=8, x_dim=3, y_dim=2)
    assert model.net[0].in_features == 3 * 33 and model.net[-1].out_features == 64
    with pytest.raises(ValueError, match=re.escape("x must be a tensor of inputs of shape (n, 3), got shape (4,)")):
        model.coefficients(torch.zeros(4))
    with pytest.raises(ValueError, match=re.escape("y must have shape (n, 2) for this model (y_dim=2), got (10,)")):
        model.fit(np.zeros((10, 3)), np.zeros(10))


@pytest.mark.parametrize("objective", ["likelihood", "infonce"])
def test_a_short_training_in_the_plane_reaches_every_parameter_and_beats_the_start(objective):
    from generate_dataset import robot_arm

    data = robot_arm(n_samples=800, seed=0)
    x, y, _ = data.sample(1000, seed=1)
    model = EnergyModel(objective, n_knots=12, hidden=32, n_grid=90, x_dim=2, y_dim=2)
    model.fit(data.x_train, data.y_train, epochs=1, lr=1e-6, progress=False)  # the start: flat, about uniform
    start = bayes_gap(model, data.truth, x, y).gap
    model.fit(data.x_train, data.y_train, epochs=10, progress=False)
    assert bayes_gap(model, data.truth, x, y).gap < start - 1.0
    model.train()
    generator = torch.Generator().manual_seed(0)
    loss = getattr(model, f"{objective}_loss")(torch.tensor(x[:64]), torch.tensor(y[:64]), generator)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.any(parameter.grad != 0), (objective, name)


def test_landscapes_one_panel_per_model():
    import matplotlib.pyplot as plt

    from utilis.plotting import plot_energy_landscapes

    data = linear_mixture(n_samples=300, seed=0)
    models = {}
    for objective in ("likelihood", "infonce"):
        models[objective] = EnergyModel(objective, n_knots=32, hidden=16)
        models[objective].fit(data.x_train, data.y_train, epochs=2, progress=False)
    axes = plot_energy_landscapes(models, data)
    assert [ax.get_title() for ax in axes] == ["likelihood", "infonce"]
    figure = axes[0].figure
    assert data.name in figure._suptitle.get_text()
    assert len(figure.legends) == 1 and not any(ax.get_legend() for ax in axes)  # one legend, outside the panels
    plt.close(figure)

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
    with pytest.raises(ValueError, match="x must be a 1-D tensor"):
        model.coefficients(torch.zeros(3, 2))


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

"""Multiple hypotheses: WTA assignment and losses against brute-force loops, the evolving schedule,
the kernel density against scipy and quadrature, gradients, unused hypotheses, bad options, plots; for a
vector y, Euclidean winners and diagonal kernels against scipy's multivariate normal."""

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from scipy import integrate, stats

from generate_dataset import inverted_sinusoid_mixture, linear_mixture
from utilis.hypotheses_utilis import (
    BANDWIDTHS,
    MultipleHypotheses,
    best_of_k_errors,
    evolving_k,
    hypothesis_loss,
    voronoi_edges,
)
from utilis.metrics import best_of_k_error
from utilis.plotting import plot_hypotheses, plot_voronoi_cells

HYPOTHESES, WEIGHTS = np.array([-2.0, 0.5, 3.0]), np.array([0.2, 0.5, 0.3])


def fixed_model(bandwidth: float = 0.4) -> MultipleHypotheses:
    """Hypotheses and scores the same at every x (the head's weights zeroed, its biases set), read by kernels."""
    model = MultipleHypotheses(n_hypotheses=3, density="kernel")
    with torch.no_grad():
        head = model.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor(np.concatenate([HYPOTHESES, np.log(WEIGHTS)]), dtype=torch.float32))
        model.bandwidth.fill_(bandwidth)
        model.fitted.fill_(True)  # set by hand: no z-scoring (means 0, sds 1)
    return model


def test_wta_assigns_each_point_to_its_nearest_hypothesis():
    rng = np.random.default_rng(0)
    y, hypotheses = rng.normal(size=300), rng.normal(size=(300, 7))
    for loss in ("wta", "relaxed", "evolving"):
        values, winners = hypothesis_loss(torch.tensor(y), torch.tensor(hypotheses), loss, top_k=3, epsilon=0.1)
        for i in range(len(y)):  # brute force, one point at a time
            distances = [abs(y[i] - h) for h in hypotheses[i]]
            nearest = min(range(7), key=lambda k: distances[k])
            assert winners[i] == nearest
            expected = {
                "wta": distances[nearest],
                "relaxed": 0.9 * distances[nearest] + 0.1 * (sum(distances) - distances[nearest]) / 6,
                "evolving": sum(sorted(distances)[:3]),
            }[loss]
            assert values[i].item() == pytest.approx(expected, rel=1e-12)


def test_the_model_counts_winners_and_unused_hypotheses_by_brute_force():
    model = fixed_model()
    x, y = np.linspace(-1, 1, 50), np.linspace(-3, 1.5, 50)  # no y nearer 3.0 than 0.5 (edge at 1.75)
    winners = model.winners(x, y)
    assert winners.tolist() == [int(np.argmin(np.abs(HYPOTHESES - value))) for value in y]
    assert model.unused_hypotheses(x, y).tolist() == [2]
    assert model.best_of_m_error(x, y) == pytest.approx(np.mean([np.abs(HYPOTHESES - v).min() for v in y]))
    hypotheses, scores = model.predict(x)
    np.testing.assert_allclose(hypotheses, np.broadcast_to(HYPOTHESES, (50, 3)), rtol=1e-6)
    np.testing.assert_allclose(scores, np.broadcast_to(WEIGHTS, (50, 3)), rtol=1e-6)
    ordered, edges = voronoi_edges([3.0, -2.0, 0.5])
    assert ordered.tolist() == [-2.0, 0.5, 3.0] and edges.tolist() == [-0.75, 1.75]


def test_losers_get_a_gradient_only_from_the_relaxed_and_evolving_losses():
    """The mechanism behind unused hypotheses: under plain WTA a hypothesis that never wins never moves."""
    y = torch.linspace(-1.0, 1.0, 20)
    for loss, moves in (("wta", False), ("relaxed", True), ("evolving", True)):
        hypotheses = torch.tensor([0.0, 10.0]).repeat(20, 1).requires_grad_()  # the second never wins
        values, _ = hypothesis_loss(y, hypotheses, loss, top_k=2)
        values.sum().backward()
        assert bool((hypotheses.grad[:, 1] != 0).any()) is moves, loss


def test_evolving_schedule_halves_k_over_the_first_half():
    ks = [evolving_k(step, 1000, 20) for step in range(1200)]
    assert ks[0] == 20 and ks[124] == 20 and ks[125] == 10 and ks[250] == 5 and ks[375] == 2 and ks[500] == 1
    assert sorted(set(ks), reverse=True) == [20, 10, 5, 2, 1]
    assert all(a >= b for a, b in zip(ks, ks[1:]))
    assert ks[499] == 2 and ks[-1] == 1  # plain WTA from half-way, and past the budget
    assert [evolving_k(s, 10, 1) for s in range(10)] == [1] * 10
    assert [evolving_k(s, 8, 2) for s in range(8)] == [2, 2, 2, 2, 1, 1, 1, 1]
    assert evolving_k(0, 10, 20, evolve=1.0) == 20 and evolving_k(9, 10, 20, evolve=1.0) == 2


def test_the_model_steps_the_schedule_through_its_budget():
    data = inverted_sinusoid_mixture(n_samples=200, seed=0)
    model = MultipleHypotheses(n_hypotheses=4, hidden=8, density="kernel")
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=60, progress=False)
    assert len(data.x_train) == 180 and model.total_steps == 3 * 3  # 162 after 18 held out: 3 batches of 60
    assert model.step == model.total_steps  # the whole budget ran; validation does not step


def test_kernel_density_matches_scipy_and_integrates_to_one():
    model = fixed_model(bandwidth=0.4)
    y = np.linspace(-8, 9, 20_001)
    log_p = model.log_prob(y[:, None], np.array([-1.0, 0.0, 2.0])[None, :])
    reference = np.log((WEIGHTS * stats.norm.pdf(y[:, None], HYPOTHESES, 0.4)).sum(-1))
    np.testing.assert_allclose(log_p, np.broadcast_to(reference[:, None], log_p.shape), atol=1e-5)
    np.testing.assert_allclose(integrate.trapezoid(np.exp(log_p), y, axis=0), 1.0, atol=1e-6)
    with torch.no_grad():  # forward() is torch's MixtureSameFamily, the same density
        distribution = model(torch.zeros(201))
        np.testing.assert_allclose(distribution.log_prob(torch.tensor(y[::100], dtype=torch.float32)), reference[::100],
                                   atol=2e-4)  # fmt: skip


@pytest.mark.parametrize("density", ["kernel", "two-stage"])
def test_trained_densities_integrate_to_one(density):
    data = linear_mixture(n_samples=300, seed=0)
    model = MultipleHypotheses(n_hypotheses=6, hidden=16, density=density)
    model.fit(data.x_train, data.y_train, epochs=5, progress=False)
    lo, hi = data.y_range
    y, x = np.linspace(lo - (hi - lo), hi + (hi - lo), 200_001), np.quantile(data.x_train, [0.1, 0.5, 0.9])
    for reading in (model, model.kernel_reading()):
        mass = integrate.trapezoid(np.exp(reading.log_prob(y[:, None], x[None, :])), y, axis=0)
        np.testing.assert_allclose(mass, 1.0, atol=1e-3)
    assert model.bandwidth.item() in BANDWIDTHS


PLANE_HYPOTHESES = np.array([[-2.0, 1.0], [0.5, 0.0], [3.0, -1.5]])


def fixed_plane_model(bandwidth: float = 0.4) -> MultipleHypotheses:
    """Three hypotheses in the plane, the same at every x in R^3 (head weights zeroed), read by kernels."""
    model = MultipleHypotheses(n_hypotheses=3, density="kernel", x_dim=3, y_dim=2)
    with torch.no_grad():
        head = model.net[-1]
        head.weight.zero_()
        head.bias.copy_(torch.tensor(np.concatenate([PLANE_HYPOTHESES.ravel(), np.log(WEIGHTS)]), dtype=torch.float32))
        model.bandwidth.fill_(bandwidth)
        model.scaling.y_sd.copy_(torch.tensor([1.0, 2.0], dtype=torch.float64))  # the kernel's axes: 0.4, 0.8
        model.fitted.fill_(True)
    return model


def test_vector_hypotheses_win_by_euclidean_distance_and_read_as_diagonal_kernels():
    model, rng = fixed_plane_model(), np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(scale=2.0, size=(50, 2))
    hypotheses, scores = model.predict(x)
    means = PLANE_HYPOTHESES * [1.0, 2.0]  # z-scored hypotheses in y's units (means 0, sds 1 and 2)
    np.testing.assert_allclose(hypotheses, np.broadcast_to(means, (50, 3, 2)), atol=1e-6)
    np.testing.assert_allclose(scores, np.broadcast_to(WEIGHTS, (50, 3)), atol=1e-6)
    brute = [int(np.argmin([np.hypot(*(point - h)) for h in means])) for point in y]
    np.testing.assert_array_equal(model.winners(x, y), brute)
    assert model.best_of_m_error(x, y) == pytest.approx(np.mean([min(np.hypot(*(p - means).T)) for p in y]), rel=1e-6)
    reference = np.log(
        sum(w * stats.multivariate_normal(m, np.diag([0.4**2, 0.8**2])).pdf(y) for w, m in zip(WEIGHTS, means))
    )
    np.testing.assert_allclose(model.log_prob(y, x), reference, atol=1e-5)
    np.testing.assert_allclose(model.kernel_reading().log_prob(y, x), reference, atol=1e-5)
    np.testing.assert_allclose(model.kernel_bandwidth, [0.4, 0.8])
    with torch.no_grad():
        torch_log_p = model(torch.as_tensor(x)).log_prob(torch.as_tensor(y, dtype=torch.float32))
    np.testing.assert_allclose(torch_log_p, reference, atol=2e-4)
    loss, winner = hypothesis_loss(torch.as_tensor(y), torch.as_tensor(hypotheses))
    np.testing.assert_array_equal(winner, brute)
    np.testing.assert_allclose(loss, np.linalg.norm(y - means[brute], axis=1))
    message = r"y must be one point of shape \(2,\) or rows of shape \(m, 2\), got shape \(50, 3\)"
    with pytest.raises(ValueError, match=message):
        model.winners(x, np.zeros((50, 3)))
    with pytest.raises(ValueError, match=r"y must hold one target per x, 50, got shape \(49, 2\)"):
        model.winners(x, y[1:])
    with pytest.raises(ValueError, match=r"hypotheses must have shape \(n, M\) for y of shape \(n,\), or \(n, M, d\)"):
        hypothesis_loss(torch.zeros(50), torch.as_tensor(hypotheses))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\)|x must be"):
        model.predict(x[:, :2])


def test_bandwidth_is_chosen_by_validation_likelihood():
    """Points drawn from kernels of width 0.1 at the hypotheses: the chosen bandwidth is near 0.1."""
    model, rng = fixed_model(), np.random.default_rng(1)
    k = rng.choice(3, size=4000, p=WEIGHTS)
    model._choose_bandwidth(np.zeros(4000), HYPOTHESES[k] + 0.1 * rng.standard_normal(4000))
    assert model.bandwidth.item() == pytest.approx(0.1, rel=0.15)


def test_gradients_reach_every_parameter():
    data = linear_mixture(n_samples=300, seed=0)
    model = MultipleHypotheses(n_hypotheses=4, density="two-stage")
    model.scaling.fit(data.x_train, data.y_train)
    model.train()
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    (model.objective(x, y) - model(x).log_prob(y).mean()).backward()  # the WTA stage, then the mixture's
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.any(parameter.grad != 0), name


def test_evolving_leaves_fewer_hypotheses_unused_than_plain_wta():
    """On the linear set at 900 points (where plain WTA leaves 5 of 20 unused, benchmarks/bench_hypotheses.py)."""
    data = linear_mixture(n_samples=1000, seed=0)
    unused = {}
    for loss in ("wta", "evolving"):
        model = MultipleHypotheses(loss=loss, density="kernel")
        model.fit(data.x_train, data.y_train, progress=False, seed=0, epochs=40)
        unused[loss] = len(model.unused_hypotheses(data.x_train, data.y_train))
    assert unused["evolving"] < unused["wta"], unused


def test_best_of_k_errors_uses_the_hypotheses_themselves():
    model = fixed_model()
    x, y = np.zeros(10), np.linspace(-3, 3, 10)
    errors = best_of_k_errors({"hypotheses": model, "kernels": model.kernel_reading()}, x, y, k=3, seed=4)
    assert errors["hypotheses"] == model.best_of_m_error(x, y)  # deterministic: its own three guesses
    assert errors["kernels"] == best_of_k_error(model.kernel_reading(), x, y, 3, seed=4)  # any other: samples
    assert best_of_k_errors({"more": model}, x, y, k=5, seed=4)["more"] == best_of_k_error(model, x, y, 5, seed=4)


def test_bad_options_raise():
    for options, message in [
        ({"n_hypotheses": 0}, "n_hypotheses must be >= 1, got 0"),
        ({"n_hypotheses": 2.5}, "n_hypotheses must be an integer"),
        ({"loss": "best"}, "loss must be one of"),
        ({"density": "flow"}, "density must be one of"),
        ({"epsilon": 0.0}, "epsilon must be a finite number > 0"),
        ({"epsilon": 1.5}, "epsilon must be < 1, got 1.5"),
        ({"hidden": 0}, "hidden must be >= 1"),
        ({"min_scale": -1.0}, "min_scale"),
    ]:
        with pytest.raises(ValueError, match=message):
            MultipleHypotheses(**options)
    with pytest.raises(ValueError, match="loss must be one of"):
        hypothesis_loss(torch.zeros(3), torch.zeros(3, 2), "best")
    with pytest.raises(ValueError, match="top_k must be >= 1, got 0"):
        hypothesis_loss(torch.zeros(3), torch.zeros(3, 2), "evolving", top_k=0)
    with pytest.raises(ValueError, match="evolve must be a number in"):
        evolving_k(0, 10, 20, evolve=0.0)
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        evolving_k(0, 0, 20)
    with pytest.raises(ValueError, match="k must be >= 1"):
        best_of_k_errors({"h": fixed_model()}, [0.0], [0.0], k=0)
    with pytest.raises(ValueError, match=r"x must be a tensor of inputs of shape \(n,\), got shape \(4, 2\)"):
        fixed_model()(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="y must hold one target per x"):
        fixed_model().winners([0.0, 1.0], [0.0])


def test_plots_of_hypotheses_and_their_cells():
    data, model = linear_mixture(n_samples=300, seed=0), fixed_model()
    figure = plot_hypotheses(model.predict, data, x_star=[-5.0, -1.0], unused=[2], label="fixed")
    titles = [ax.get_title() for ax in figure.axes]
    assert figure.get_suptitle().startswith("linear: fixed") and "x* = -5: 3 hypotheses in view" in titles[1:]
    along_x = figure.axes[0]
    assert len(along_x.get_lines()) == 1 + 2 + 2  # the unused one dashed, two legend entries, the x* marks
    with pytest.raises(ValueError, match="axes must hold one axis per x"):
        plot_voronoi_cells(model.predict, data, [-5.0, -1.0], axes=[along_x])
    plt.close("all")

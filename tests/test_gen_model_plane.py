"""The generative model in the plane: Bayes' rule against the datasets' exact conditionals when its factors are
set to the truth's, the quadrature against a brute-force grid, the boxes' tails, and what it refuses."""

import re

import numpy as np
import pytest
import torch
from scipy import stats

from generate_dataset import linear_mixture, planar_relocalisation, robot_arm
from utilis.gen_model_plane import PlanarGenerativeModel
from utilis.metrics import bayes_gap


class TrueArm(PlanarGenerativeModel):
    """The robot arm's own p(x | y): the forward kinematics and the noise, in place of the network."""

    def __init__(self, data, **options):
        super().__init__("y", 1, 2, **options)
        self.data = data

    def x_mean_sd(self, y):
        y = np.asarray(y, dtype=np.float64)
        mean = self.data.forward(y)
        return mean, np.full_like(mean, self.data.noise)


def set_truth_boxes(model, boxes, n=10**12):
    """Boxes exactly the truth's (the data a million million points deep, so the tails hold 1e-12 of the mass)."""
    with torch.no_grad():
        cells = np.zeros((2, len(boxes), 5))
        for i, ((a1, b1), (a2, b2)) in enumerate(boxes):
            cells[:, i] = [[a1, b1, -1, -1, n], [a2, b2, -1, -1, n]]
        model.y_cells.copy_(torch.from_numpy(cells))
        model.fitted.fill_(True)


def test_with_the_arms_own_factors_bayes_rule_by_quadrature_is_the_truth():
    data = robot_arm(n_samples=300, seed=0)
    model = TrueArm(data)
    set_truth_boxes(model, [(data.theta1_range, data.theta2_range)])
    x, y, _ = data.sample(2000, seed=1)
    # the truth integrates p(x) by Gauss-Legendre rules placed around the inverse-kinematics solutions; the
    # model by the product trapezoidal rule with end corrections, its step set from the Jacobian of the same
    # map: it errs most (5e-4 nats) where a peak is cut by the box's edge, 1e-5 on average
    error = model.log_prob(y, x) - data.truth.log_prob(y, x)
    assert np.abs(error).max() < 1e-3 and np.abs(error).mean() < 3e-5
    grid = np.stack(np.meshgrid(np.linspace(0.31, 1.19, 7), np.linspace(1.6, 4.7, 5), indexing="ij"), -1).reshape(-1, 2)
    expected = data.truth.log_prob(grid[:, None], x[None, :20])
    np.testing.assert_allclose(model.log_prob(grid[:, None], x[None, :20]), expected, rtol=0, atol=1e-3)
    draws, truths = model.sample(x[:3], 4000, seed=0), data.truth.sample(x[:3], 4000, seed=1)
    for i in range(3):  # each angle's draws beside the truth's own sampler's
        for axis in range(2):
            assert stats.ks_2samp(draws[:, i, axis], truths[:, i, axis]).pvalue > 1e-3, (i, axis)


def test_with_the_rooms_own_factors_bayes_rule_is_the_truth():
    data = planar_relocalisation(n_samples=2000, seed=0)
    model = PlanarGenerativeModel("c", data.n_components, data.x_dim)
    edges = data.edges
    set_truth_boxes(model, [((edges[i], edges[i + 1]), (edges[j], edges[j + 1])) for i in range(4) for j in range(4)])
    with torch.no_grad():
        model.x_means.copy_(torch.from_numpy(data.patterns))
        model.x_sd.fill_(data.noise)
        model.log_pc.fill_(-np.log(data.n_components))
    x, y, _ = data.sample(500, seed=1)
    inside = np.all(np.abs(y - np.round(y / 10) * 10) > 1e-9, axis=-1)  # off the tiles' edges
    np.testing.assert_allclose(model.log_prob(y, x)[inside], data.truth.log_prob(y, x)[inside], rtol=0, atol=1e-9)


def test_a_fitted_model_closes_the_gap_on_both_datasets():
    for data, epochs in ((robot_arm(n_samples=3000, seed=0), 40), (planar_relocalisation(n_samples=3000, seed=0), 1)):
        x, y, _ = data.sample(3000, seed=1)
        model = PlanarGenerativeModel.for_dataset(data)
        labels = data.c_train if model.needs_labels else None
        model.fit(data.x_train, data.y_train, labels, epochs=epochs, progress=False)
        assert bayes_gap(model, data.truth, x, y).gap < 0.05, data.name


def test_the_boxes_tails_past_the_data():
    data = planar_relocalisation(n_samples=600, seed=0)
    model = PlanarGenerativeModel.for_dataset(data)
    model.fit(data.x_train, data.y_train, data.c_train)
    x = data.x_test[:1]
    past = np.array([[-20.0, 0.0], [-20.0 - 0.1, 0.0], [-25.0, 0.0]])  # at, just past and far past the room's wall
    log_p = model.log_prob(past, x)
    assert np.all(np.isfinite(log_p)) and log_p[0] > log_p[1] > log_p[2]


def test_what_it_refuses():
    arm = robot_arm(n_samples=200, seed=0)
    with pytest.raises(ValueError, match="x_parents must be 'y' or 'c'"):
        PlanarGenerativeModel("y,c")
    with pytest.raises(ValueError, match="n_components must be 1, got 2"):
        PlanarGenerativeModel("y", 2)
    with pytest.raises(ValueError, match="fit without c"):
        PlanarGenerativeModel.for_dataset(arm, hidden=8).fit(arm.x_train, arm.y_train, arm.c_train)
    room = planar_relocalisation(n_samples=200, seed=0)
    with pytest.raises(ValueError, match=re.escape("x_parents 'c' needs the component labels: fit(x, y, c)")):
        PlanarGenerativeModel.for_dataset(room).fit(room.x_train, room.y_train)
    with pytest.raises(ValueError, match="PlanarGenerativeModel serves the planar datasets"):
        PlanarGenerativeModel.for_dataset(linear_mixture(n_samples=100, seed=0))
    with pytest.raises(ValueError, match=re.escape("y must have shape (n, 2)")):
        PlanarGenerativeModel.for_dataset(arm).fit(arm.x_train, arm.y_train[:, 0])

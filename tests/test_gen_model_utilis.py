"""The Bayesian-network generative model: Bayes' rule by hand, normalisation, training, bad configuration."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from generate_dataset import SCALAR_DATASETS, camera_relocalisation, inverted_sinusoid_mixture, linear_mixture
from utilis.gen_model_utilis import (
    X_PARENTS,
    Y_FAMILIES,
    GaussianY,
    GenerativeModel,
    XFromC,
    XFromYAndC,
    _log_cell_density,
    _sample_cells,
)
from utilis.metrics import bayes_gap

MEANS, SDS, WEIGHTS = np.array([-2.0, 1.5]), np.array([0.8, 1.3]), np.array([0.3, 0.7])
SLOPES, OFFSETS, NOISE = np.array([1.5, -0.7]), np.array([0.5, 2.0]), 0.4


def hand_made_model() -> GenerativeModel:
    """p(c), N(y; mu_c, sd_c), and p(x | y, c) = N(x; s_c y + o_c, noise^2) set by hand: no training."""
    model = GenerativeModel(2, y_family="gaussian", x_parents="y,c", min_scale=1e-6)
    with torch.no_grad():
        model.c_logits.copy_(torch.tensor(np.log(WEIGHTS)))
        model.y_params.copy_(torch.tensor(np.stack([MEANS, np.log(np.expm1(SDS - GaussianY.SD_FLOOR))], axis=1)))
        model.fitted.fill_(True)  # set by hand; the z-scoring keeps its defaults (means 0, sds 1)
        network = model.networks[0]
        last = network.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, np.log(np.expm1(NOISE - 1e-6))]))  # loc 0, softplus -> noise
        network.line_slope.copy_(torch.tensor(SLOPES))
        network.line_offset.copy_(torch.tensor(OFFSETS))
    return model


def closed_form_posterior(y, x):
    """p(y | x) = sum_c w_c(x) N(y; m_c(x), v_c) for linear-Gaussian components, with scipy."""
    prior_x = stats.norm.pdf(x[..., None], SLOPES * MEANS + OFFSETS, np.sqrt(SLOPES**2 * SDS**2 + NOISE**2))
    w = WEIGHTS * prior_x
    w /= w.sum(-1, keepdims=True)
    v = 1 / (1 / SDS**2 + SLOPES**2 / NOISE**2)
    m = v * (MEANS / SDS**2 + SLOPES * (x[..., None] - OFFSETS) / NOISE**2)
    return np.log((w * stats.norm.pdf(y[..., None], m, np.sqrt(v))).sum(-1))


def test_bayes_rule_matches_the_closed_form():
    model = hand_made_model()
    x = np.linspace(-3, 5, 9)
    y = np.linspace(-4, 4, 41)
    np.testing.assert_allclose(model.log_prob(y[:, None], x[None, :]), closed_form_posterior(y[:, None], x), atol=2e-5)
    # log p(x) by quadrature against the closed-form marginal
    px = (WEIGHTS * stats.norm.pdf(x[:, None], SLOPES * MEANS + OFFSETS, np.sqrt(SLOPES**2 * SDS**2 + NOISE**2))).sum(1)
    np.testing.assert_allclose(model.log_marginal_x(x), np.log(px), atol=2e-5)


@pytest.fixture(scope="module")
def trained():
    """A small model fitted to each dataset (labels known)."""
    models = {}
    for name, make in SCALAR_DATASETS.items():
        data = make(n_samples=1000, seed=0)
        model = GenerativeModel.for_dataset(data)
        model.fit(data.x_train, data.y_train, data.c_train, progress=False, seed=0, epochs=100)
        models[name] = (data, model)
    return models


@pytest.mark.parametrize("name", list(SCALAR_DATASETS))
def test_joint_and_marginal_finite_far_from_the_data(trained, name):
    _, model = trained[name]  # (log_prob: the contract checks it at every float)
    x = np.array([-1e6, -1e3, 0.0, 1e3, 1e6])
    y = np.array([-1e6, -50.0, 0.0, 50.0, 1e6])
    for values in (model.log_joint(x, y[:, None]), model.log_marginal_x(x)):
        assert np.all(np.isfinite(values))


@pytest.mark.parametrize("name", list(SCALAR_DATASETS))
def test_training_gets_close_to_the_truth(trained, name):
    data, model = trained[name]
    x, y, _ = data.sample(5000, seed=1)
    assert bayes_gap(model, data.truth, x, y).gap < {"linear": 0.15, "sinusoid": 0.3, "camera": 0.15}[name]


def test_unlabelled_training_learns_the_mixture():
    data = linear_mixture(n_samples=1500, seed=1)
    model = GenerativeModel.for_dataset(data)
    model.fit(data.x_train, data.y_train, c=None, progress=False, seed=0, epochs=80, batch_size=128, lr=1e-2)
    x, y, _ = data.sample(5000, seed=2)
    assert bayes_gap(model, data.truth, x, y).gap < 0.3
    # the learned p(y | c) has found the three components (in some order)
    np.testing.assert_allclose(np.sort(model.y_given_c[:, 0]), np.sort(data.means), atol=0.3)
    assert len(list(model.parameters())) == len(list(GenerativeModel.for_dataset(data).parameters()))


def test_ancestral_samples_look_like_the_data(trained):
    for name in ("sinusoid", "camera"):
        data, model = trained[name]
        xs, ys, cs = model.sample_joint(3000, seed=1)
        assert xs.shape == ys.shape == cs.shape == (3000,)
        assert stats.ks_2samp(xs, data.x_train).pvalue > 1e-4  # the network's p(x) looks like the data's


def test_uniform_cells_integrate_and_meet():
    # three cells with data on [0, 4], [4.5, 10], [10, 12]: a gap of 0.5, then cells that touch
    cells = np.array([[0.0, 4.0, -1, 0.5, 40], [4.5, 10.0, 0.5, 0.0, 55], [10.0, 12.0, 0.0, -1, 20]])
    y = np.linspace(-5, 17, 2_200_001)
    log_p = _log_cell_density(y[:, None], cells)
    np.testing.assert_allclose(integrate.trapezoid(np.exp(log_p), y, axis=0), 1.0, atol=1e-6)
    assert np.all(np.isfinite(log_p[y < 4.5, 0]))  # cell 0: its outer tail, its core and its ramp
    weights = cells[:, 4] / cells[:, 4].sum()
    mixture = (weights * np.exp(log_p)).sum(1)
    assert np.all(mixture > 0)  # no y falls in a gap, however far out
    # across the gap the two ramps add up to a flat density when both cells are equally dense
    in_gap = (y > 4.05) & (y < 4.45)
    assert np.ptp(mixture[in_gap]) < 0.05 * mixture[in_gap].mean()
    draws = _sample_cells(cells, np.full(100_000, 0), np.random.default_rng(0))
    cdf = integrate.cumulative_trapezoid(np.exp(log_p[:, 0]), y, initial=0)
    assert stats.kstest(np.interp(draws, y, cdf), "uniform").pvalue > 1e-3


def test_uniform_cells_give_every_test_point_a_finite_density():
    for seed in range(3):
        data = camera_relocalisation(n_samples=300, seed=seed)
        model = GenerativeModel.for_dataset(data)
        model.fit(data.x_train, data.y_train, data.c_train, progress=False, epochs=2)
        assert np.all(np.isfinite(model.log_prob(data.y_test, data.x_test)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": 2, "y_family": "beta"}, "y_family"),
        ({"n_components": 2, "x_parents": "x"}, "x_parents"),
        ({"n_components": 2, "hidden": 0}, "hidden"),
        ({"n_components": 2, "min_scale": 0.0}, "min_scale"),
        ({"n_components": 2, "n_networks": 0}, "n_networks"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerativeModel(**kwargs)


def test_bad_fit_arguments_raise():
    data = inverted_sinusoid_mixture(n_samples=200, seed=0)
    model = GenerativeModel.for_dataset(data)
    with pytest.raises(ValueError, match="c must lie in"):
        model.fit(data.x_train, data.y_train, data.c_train + 5, progress=False)
    with pytest.raises(ValueError, match="c must hold one integer label per point"):
        model.fit(data.x_train, data.y_train, data.c_train[:10], progress=False)
    with pytest.raises(ValueError, match="at least 2 labelled points"):
        model.fit(data.x_train, data.y_train, np.zeros_like(data.c_train), progress=False)
    camera = camera_relocalisation(n_samples=200, seed=0)
    with pytest.raises(ValueError, match="needs y_family='gaussian'"):
        GenerativeModel.for_dataset(camera).fit(camera.x_train, camera.y_train, progress=False)


def test_network_description(trained):
    _, linear_model = trained["linear"]
    _, camera_model = trained["camera"]
    assert ("y", "x") in linear_model.edges and ("y", "x") not in camera_model.edges
    assert "p(x \\mid y, c)" in linear_model.factorisation and "p(x \\mid c)" in camera_model.factorisation
    mean, sd = camera_model.x_mean_sd(np.linspace(-10, 10, 5))
    assert mean.shape == sd.shape == (5, camera_model.n_components)
    np.testing.assert_array_equal(mean[0], mean[-1])  # p(x | c) does not depend on y
    model = hand_made_model()
    mean, sd = model.x_mean_sd(np.array([0.0, 1.0]))
    np.testing.assert_allclose(mean, [OFFSETS, SLOPES + OFFSETS], atol=1e-6)
    np.testing.assert_allclose(sd, NOISE, rtol=1e-5)


def test_an_ensemble_is_the_mixture_of_its_networks():
    data = inverted_sinusoid_mixture(n_samples=400, seed=3)
    ensemble = GenerativeModel.for_dataset(data, n_networks=3)
    history = ensemble.fit(data.x_train, data.y_train, data.c_train, progress=False, seed=0, epochs=10)
    assert len(history.val_loss) <= 10
    x, y = data.x_test, data.y_test
    members = []
    for m in range(3):  # each network alone, as a one-network model with the same fitted factors
        single = GenerativeModel.for_dataset(data)
        single.load_state_dict(
            {
                **ensemble.state_dict(),
                **{
                    k.replace(f"networks.{m}.", "networks.0."): v
                    for k, v in ensemble.state_dict().items()
                    if k.startswith(f"networks.{m}.")
                },
            },
            strict=False,
        )
        members.append(single.log_joint(x, y))
    expected = np.logaddexp.reduce(np.stack(members), axis=0) - np.log(3)
    np.testing.assert_allclose(ensemble.log_joint(x, y), expected, rtol=1e-10)
    lo, hi = data.y_range
    grid = np.linspace(lo - 3, hi + 3, 100_001)
    mass = integrate.trapezoid(np.exp(ensemble.log_prob(grid[:, None], x[:3])), grid, axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=2e-4)
    mean, sd = ensemble.x_mean_sd(np.array([0.0]))
    assert mean.shape == sd.shape == (1, 2) and np.all(sd > 0)
    with pytest.raises(ValueError, match="n_networks=1"):
        ensemble.fit(data.x_train, data.y_train, progress=False)


def test_component_posterior_is_bayes_rule_over_the_factors():
    """p(c | x, y) of the hand-made model against scipy: p(c) N(y; mu_c, sd_c) N(x; s_c y + o_c, noise)."""
    model = hand_made_model()
    x, y = np.array([-1.0, 0.3, 2.5, 4.0]), np.array([-2.0, 0.0, 1.0, 3.0])
    joint = (
        WEIGHTS
        * stats.norm.pdf(y[:, None], MEANS, SDS)
        * stats.norm.pdf(x[:, None], SLOPES * y[:, None] + OFFSETS, NOISE)
    )
    expected = joint / joint.sum(axis=1, keepdims=True)
    posterior = model.component_posterior(x, y)
    np.testing.assert_allclose(posterior, expected, rtol=1e-6, atol=1e-12)
    assert posterior.shape == (4, 2) and np.all(np.isfinite(posterior))
    with pytest.raises(ValueError, match="same number of points"):
        model.component_posterior(x, y[:2])


def test_x_parents_are_objects_named_by_the_old_strings():
    assert X_PARENTS == {"y,c": XFromYAndC(), "c": XFromC()}
    for name, parents in X_PARENTS.items():
        model = GenerativeModel(2, x_parents=name, hidden=8)
        assert model.x_parents is parents and str(parents) == name
        assert all(network.x_parents is parents for network in model.networks)
        assert model.edges == parents.edges and model.factorisation == parents.formula
    by_object = GenerativeModel(2, y_family=Y_FAMILIES["uniform"], x_parents=XFromC(), hidden=8)
    assert by_object.x_parents == XFromC() != XFromYAndC() and by_object.y_family is Y_FAMILIES["uniform"]
    # whether the network sees y: one input more (z-scored y) and a linear path a_c y + b_c
    sees_y, not_y = GenerativeModel(3, x_parents="y,c").networks[0], GenerativeModel(3, x_parents="c").networks[0]
    assert sees_y.net[0].in_features == 4 and not_y.net[0].in_features == 3
    assert sees_y.line_slope is not None and not_y.line_slope is None
    assert XFromYAndC().edges == [("c", "y"), ("c", "x"), ("y", "x")] and XFromC().edges == [("c", "y"), ("c", "x")]
    with pytest.raises(ValueError, match="x_parents must be 'y,c' or 'c'"):
        GenerativeModel(2, x_parents=("y", "c"))


def test_for_dataset_reads_the_datasets_strings():
    for make, parents in ((linear_mixture, XFromYAndC()), (camera_relocalisation, XFromC())):
        data = make(n_samples=200, seed=0)
        model = GenerativeModel.for_dataset(data)
        assert model.x_parents == parents and model.y_family is Y_FAMILIES[str(data.y_family)]


def test_both_ways_of_summing_y_out_agree_where_x_depends_on_c_alone(trained):
    # p(y | x) = sum_c p(c | x) p(y | c) (exact, XFromC) against Bayes' rule log p(x, y) - log p(x) with
    # the same p(x) (XFromYAndC's reading): the two must agree when y has no edge into x
    data, model = trained["camera"]
    x = data.x_test[:7]
    y = np.linspace(*data.y_range, 50)[:, None]
    exact = XFromC().log_prob(model, y, x, *XFromC().given_x(model, x))
    by_bayes = XFromYAndC().log_prob(model, y, x, XFromC().log_marginal_x(model, x))
    np.testing.assert_allclose(by_bayes, exact, atol=1e-9)
    np.testing.assert_allclose(model.log_prob(y, x), exact, atol=1e-12)

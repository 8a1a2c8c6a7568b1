"""One contract over every conditional density in the repository: truths, models, baselines, oracles.

Each entry of ``FACTORIES`` is one line: the dataset it lives on, how to build it, and (for a model)
how to fit it briefly. A new model family joins every check below by adding its line. The checks
run over every density's dimensions (a scalar or vector x, a scalar or planar y), as it declares
them (``x_dim``, ``y_space``): shapes, with an event axis last where a dimension exceeds 1, and a
``ValueError`` for one that does not match; never NaN for any finite float64 query (|x|, |y| up to
the largest float); p(y|x) integrating to 1; its own samples agreeing with its log_prob (the PIT is
uniform, or in the plane the coverage ranks are); seeds that repeat byte for byte (samples, and the
weights of a fit, without touching torch's global generator); a state-dict round trip; clear errors
for bad queries, bad training data and a model never fitted.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from generate_dataset import DATASETS, SCALAR_DATASETS
from utilis.baselines import BinnedClassifier, GaussianRegression
from utilis.classical import ConditionalKDE, GaussianMixtureRegression
from utilis.density import log_conditional_grid, log_joint_grid, log_prob_on_grid
from utilis.embedding_energy import EmbeddingEnergy
from utilis.energy_utilis import EnergyModel
from utilis.flow_utilis import FlowMatching, NeuralSplineFlow, SplineFlow
from utilis.gen_model_plane import PlanarGenerativeModel
from utilis.gen_model_utilis import GenerativeModel
from utilis.hypotheses_utilis import MultipleHypotheses
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap, best_of_k_error, score
from utilis.numerics import CannotSample
from utilis.oracles import BestSingleGaussian, BinnedTruth
from utilis.plotting import plot_samples
from utilis.protocol import NotFittedError, x_dim_of, y_space_of
from utilis.spaces import Grid

# A briefly trained model, on the CPU (where the weights must repeat byte for byte): the contract is
# about consistency, not accuracy.
BRIEF = {"epochs": 3, "progress": False, "device": "cpu"}


def fit_labelled(model, x, y, c, seed):
    return model.fit(x, y, c, seed=seed, **BRIEF)


def fit_unlabelled(model, x, y, c, seed):
    return model.fit(x, y, None, seed=seed, **BRIEF)


def fit_plain(model, x, y, c, seed):
    return model.fit(x, y, seed=seed, **BRIEF)


def fit_classical(model, x, y, c, seed):
    return model.fit(x, y, seed=seed)  # no network, no epochs


def generative(**options):
    return lambda data: GenerativeModel.for_dataset(data, hidden=16, **options)


@dataclass(frozen=True)
class Factory:
    """``build(data)``: the density (a model not yet fitted); ``fit(model, x, y, c, seed)``: None when
    the density needs no fitting (a truth, an oracle)."""

    dataset: str
    build: Callable
    fit: Callable | None = None
    line_points: int = 60_001  # the nodes of the grid that checks a scalar y's normalisation and samples
    plane_cells: int = 1000  # the cells an axis of the grid that checks the normalisation in the plane
    plane_grid: Callable | None = None  # (density, data) -> the Grid that checks it, if not the wide one


def cells_grid(histogram, data) -> Grid:
    """A histogram's box, each of its equal bins cut into 10 by the midpoint rule: exact for a density
    constant on the cells (a grid that is not aligned with them errs by a share of the mass at their edges)."""
    edges = histogram.bin_edges
    box = np.array([[axis[0], axis[-1]] for axis in edges])
    return data.y_space.grid(box, 10 * (len(edges[0]) - 1), rule="midpoint")


def box_grid(energy, data) -> Grid:
    """The energy model's box (its density is 0 outside it), 200 cells a side by the midpoint rule."""
    return data.y_space.grid(np.array(energy.y_bounds), 200, rule="midpoint")


FACTORIES = {
    "truth-linear": Factory("linear", lambda data: data.truth),
    "truth-sinusoid": Factory("sinusoid", lambda data: data.truth),
    "truth-camera": Factory("camera", lambda data: data.truth),
    "truth-robot-arm": Factory("robot_arm", lambda data: data.truth),
    "truth-room": Factory("room", lambda data: data.truth),
    "generative-linear": Factory("linear", generative(), fit_labelled),
    "generative-sinusoid": Factory("sinusoid", generative(), fit_labelled),
    "generative-camera": Factory("camera", generative(), fit_labelled),
    "generative-linear-unlabelled": Factory("linear", generative(), fit_unlabelled),
    "generative-sinusoid-unlabelled": Factory("sinusoid", generative(), fit_unlabelled),
    "generative-sinusoid-ensemble": Factory("sinusoid", generative(n_networks=2), fit_labelled),
    "generative-robot-arm": Factory(
        "robot_arm", lambda data: PlanarGenerativeModel.for_dataset(data, hidden=16), fit_plain
    ),
    "generative-room": Factory("room", lambda data: PlanarGenerativeModel.for_dataset(data), fit_labelled),
    "mdn-linear": Factory("linear", lambda data: MDN(n_components=5, hidden=16), fit_plain),
    "mdn-sinusoid": Factory("sinusoid", lambda data: MDN(n_components=5, hidden=16), fit_plain),
    "mdn-camera": Factory("camera", lambda data: MDN(n_components=5, hidden=16), fit_plain),
    "mdn-robot-arm": Factory("robot_arm", lambda data: MDN(5, 16, x_dim=data.x_dim, y_dim=2), fit_plain),
    "mdn-room": Factory("room", lambda data: MDN(5, 16, x_dim=data.x_dim, y_dim=2), fit_plain),
    "nsf-robot-arm": Factory("robot_arm", lambda data: NeuralSplineFlow(data.x_dim, 2, 4, 1, (16, 16)), fit_plain),
    "nsf-room": Factory("room", lambda data: NeuralSplineFlow(data.x_dim, 2, 4, 1, (16, 16)), fit_plain),
    "spline-flow-camera": Factory("camera", lambda data: SplineFlow(bins=8, hidden=16), fit_plain),
    # an ODE solve per grid node: 6,001 nodes (a step of 0.006; the mass agrees with 60,001 nodes to 1e-4)
    "flow-matching-sinusoid": Factory(
        "sinusoid", lambda data: FlowMatching(hidden=16, atol=1e-4, rtol=1e-4), fit_plain, line_points=6_001
    ),
    # an ODE solve per grid node: a coarser grid, enough for the smooth density of a briefly trained field
    "flow-matching-robot-arm": Factory(
        "robot_arm", lambda data: FlowMatching(hidden=16, x_dim=2, y_dim=2), fit_plain, plane_cells=120
    ),
    "flow-matching-room": Factory(
        "room", lambda data: FlowMatching(hidden=16, x_dim=data.x_dim, y_dim=2), fit_plain, plane_cells=120
    ),
    "regression-linear": Factory("linear", lambda data: GaussianRegression(hidden=16), fit_plain),
    "regression-camera": Factory("camera", lambda data: GaussianRegression(hidden=16), fit_plain),
    "regression-robot-arm": Factory("robot_arm", lambda data: GaussianRegression(16, x_dim=2, y_dim=2), fit_plain),
    "regression-room": Factory("room", lambda data: GaussianRegression(16, x_dim=data.x_dim, y_dim=2), fit_plain),
    "bins-sinusoid": Factory("sinusoid", lambda data: BinnedClassifier(n_bins=20, hidden=16), fit_plain),
    "bins-camera": Factory("camera", lambda data: BinnedClassifier(n_bins=20, hidden=16), fit_plain),
    "bins-robot-arm": Factory("robot_arm", lambda data: BinnedClassifier(12, 16, x_dim=2, y_dim=2), fit_plain,
                              plane_grid=cells_grid),
    "bins-room": Factory("room", lambda data: BinnedClassifier(12, 16, x_dim=data.x_dim, y_dim=2), fit_plain,
                         plane_grid=cells_grid),
    "gmr-sinusoid": Factory("sinusoid", lambda data: GaussianMixtureRegression(n_components=(3, 4)), fit_classical),
    "gmr-robot-arm": Factory("robot_arm", lambda data: GaussianMixtureRegression(n_components=(3, 4)), fit_classical),
    "gmr-room": Factory("room", lambda data: GaussianMixtureRegression(n_components=(3, 4)), fit_classical),
    "kde-camera": Factory("camera", lambda data: ConditionalKDE(max_validation=100), fit_classical),
    "kde-robot-arm": Factory("robot_arm", lambda data: ConditionalKDE(max_validation=100), fit_classical),
    "kde-room": Factory("room", lambda data: ConditionalKDE(max_validation=100), fit_classical),
    "hypotheses-sinusoid": Factory("sinusoid", lambda data: MultipleHypotheses(n_hypotheses=5, hidden=16), fit_plain),
    "hypotheses-robot-arm": Factory(
        "robot_arm", lambda data: MultipleHypotheses(5, hidden=16, x_dim=2, y_dim=2), fit_plain
    ),
    "hypotheses-room": Factory(
        "room", lambda data: MultipleHypotheses(5, hidden=16, x_dim=data.x_dim, y_dim=2), fit_plain
    ),
    "energy-likelihood-linear": Factory("linear", lambda data: EnergyModel(n_knots=32, hidden=16), fit_plain),
    "energy-infonce-camera": Factory("camera", lambda data: EnergyModel("infonce", n_knots=32, hidden=16), fit_plain),
    "energy-likelihood-robot-arm": Factory(
        "robot_arm", lambda data: EnergyModel(n_knots=12, hidden=16, x_dim=2, y_dim=2), fit_plain, plane_grid=box_grid
    ),
    "energy-infonce-room": Factory(
        "room", lambda data: EnergyModel("infonce", n_knots=12, hidden=16, x_dim=data.x_dim, y_dim=2), fit_plain,
        plane_grid=box_grid,
    ),
    "embedding-energy-sinusoid": Factory("sinusoid", lambda data: EmbeddingEnergy(hidden=16), fit_plain),
    "embedding-energy-robot-arm": Factory(
        "robot_arm", lambda data: EmbeddingEnergy(hidden=16, x_dim=2, y_dim=2), fit_plain, plane_grid=box_grid
    ),
    "embedding-energy-room": Factory(
        "room", lambda data: EmbeddingEnergy(hidden=16, x_dim=data.x_dim, y_dim=2), fit_plain, plane_grid=box_grid
    ),
    "oracle-gaussian-sinusoid": Factory("sinusoid", lambda data: BestSingleGaussian.for_dataset(data)),
    "oracle-gaussian-camera": Factory("camera", lambda data: BestSingleGaussian.for_dataset(data)),
    "oracle-gaussian-robot-arm": Factory("robot_arm", lambda data: BestSingleGaussian.for_dataset(data, n_grid=100)),
    "oracle-gaussian-room": Factory("room", lambda data: BestSingleGaussian.for_dataset(data, n_grid=100)),
    "oracle-binned-sinusoid": Factory("sinusoid", lambda data: BinnedTruth(data.truth, np.linspace(*data.y_range, 31))),
    "oracle-binned-camera": Factory("camera", lambda data: BinnedTruth(data.truth, np.linspace(*data.y_range, 31))),
    "oracle-binned-robot-arm": Factory(
        "robot_arm", lambda data: BinnedTruth(data.truth, BinnedClassifier.edges_for(data.y_train, 12), 4),
        plane_grid=cells_grid,
    ),
    "oracle-binned-room": Factory(
        "room", lambda data: BinnedTruth(data.truth, BinnedClassifier.edges_for(data.y_train, 12), 4),
        plane_grid=cells_grid,
    ),
}
MODELS = [name for name, factory in FACTORIES.items() if factory.fit is not None]
SERVE_VECTORS = (GaussianMixtureRegression, ConditionalKDE)
"""The families that serve a vector x and y (each has entries on the planar datasets above)."""
EXTREMES = np.array([0.0, 1e-300, -2.5, 3.7, 1e3, -1e6, 1e150, -1e150, 1e300, -1e300, 1.7976931348623157e308])


@cache
def dataset(name: str):
    return DATASETS[name](n_samples=400, seed=0)


@cache
def fitted(name: str):
    """The density of entry ``name``, fitted (once per test session) with seed 0."""
    factory = FACTORIES[name]
    data = dataset(factory.dataset)
    density = factory.build(data)
    if factory.fit is not None:
        factory.fit(density, data.x_train, data.y_train, data.c_train, 0)
    return density


def event(values: np.ndarray, dim: int) -> np.ndarray:
    """Scalars as they are (no event axis) when ``dim == 1``; else each value repeated along a last axis."""
    return values if dim == 1 else np.repeat(np.asarray(values)[..., None], dim, axis=-1)


def probe_x(data) -> np.ndarray:
    """Five inputs where p(x) has mass: shape (5,), or (5, d_x)."""
    if data.x_dim == 1:
        return np.quantile(data.x_train, [0.1, 0.3, 0.5, 0.7, 0.9])
    return data.x_train[:5]


def probe_y(data, quantiles=(0.2, 0.5, 0.8)) -> np.ndarray:
    """Three outputs where p(y) has mass: shape (3,), or (3, d_y)."""
    if data.y_space.dim == 1:
        return np.quantile(data.y_train, quantiles)
    return data.y_train[: len(quantiles)]


def wide_y_grid(data, n: int = 60_001) -> np.ndarray:
    """The data's y range, widened by its width on each side: it holds every model's mass here."""
    lo, hi = data.y_range
    return np.linspace(lo - (hi - lo), hi + (hi - lo), n)


def wide_plane_grid(data, cells: int = 1000) -> Grid:
    """The data's box of y, widened by twice its width on each side (a single Gaussian over the room is
    wide), cut into cells x cells squares by the midpoint rule; the box's edges fall on the cells'
    edges, so a density that is constant on tiles of the box (the room's) is integrated exactly."""
    ranges = np.array(data.y_range, dtype=np.float64)
    return data.y_space.grid(ranges + np.array([-2.0, 2.0]) * np.ptp(ranges, axis=1)[:, None], cells, rule="midpoint")


@pytest.mark.parametrize("name", FACTORIES)
def test_shapes(name):
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    x, y = probe_x(data), probe_y(data)
    d_y = y_space_of(density).dim
    assert (x_dim_of(density), y_space_of(density)) == (data.x_dim, data.y_space)
    single = density.log_prob(y[0], x[0])
    assert isinstance(single, np.ndarray) and single.shape == () and single.dtype == np.float64
    assert density.log_prob(y[:, None], x[None, :]).shape == (3, 5)
    extra = np.zeros((1, 1, 2, *x.shape[1:]))  # one more batch axis, before x's event axis
    assert density.log_prob(y[:, None, None], x[None, :, None] + extra).shape == (3, 5, 2)
    # float32 networks round differently in batches of different sizes: equal to float32's precision
    repeated = np.repeat(y[1:2], 5, axis=0)
    np.testing.assert_allclose(density.log_prob(y[1], x), density.log_prob(repeated, x), rtol=1e-6, atol=1e-6)
    event_shape = (d_y,) if d_y > 1 else ()
    assert density.sample(x, 7, seed=0).shape == (7, 5, *event_shape)
    assert density.sample(x[0], 4, seed=0).shape == (4, 1, *event_shape)


@pytest.mark.parametrize("name", FACTORIES)
def test_wrong_event_shapes_raise(name):
    """A last axis that does not match the density's dimension is refused, naming the shape expected:
    never silently broadcast (for d = 1 there is no event axis, and x must be scalars to sample)."""
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    x, y = probe_x(data), probe_y(data)
    d_x, d_y = x_dim_of(density), y_space_of(density).dim
    if d_y > 1:
        for bad in (y[:, :1], np.zeros((3, d_y + 1)), np.float64(0.0)):
            with pytest.raises(
                ValueError, match=rf"y must have shape \(\.\.\., {d_y}\).*got shape {re.escape(str(bad.shape))}"
            ):
                density.log_prob(bad, x[0])
    if d_x > 1:
        for bad in (x[:, :1], np.zeros((5, d_x + 1))):
            with pytest.raises(ValueError, match=rf"x must have shape \(\.\.\., {d_x}\)"):
                density.log_prob(y[0], bad)
            with pytest.raises(ValueError, match=rf"x must be one point of shape \({d_x},\) or rows"):
                density.sample(bad, 2)
    else:
        with pytest.raises(ValueError, match="x must be a scalar or 1-D"):
            density.sample(np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="do not broadcast"):
        density.log_prob(event(np.zeros(3), d_y), event(np.zeros(4), d_x))


@pytest.mark.parametrize("name", FACTORIES)
def test_never_nan_for_a_finite_query(name):
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    d_x, d_y = x_dim_of(density), y_space_of(density).dim
    values = np.concatenate([EXTREMES, -EXTREMES])
    x_values = event(values, d_x)
    if d_x > 1:  # each extreme in one coordinate and the data's middle in the others, and all at once
        middle = np.median(data.x_train, axis=0)
        x_values = np.concatenate(
            [x_values, *(np.where(np.arange(d_x) == j, values[:, None], middle) for j in range(d_x))]
        )
    x_values = np.concatenate([x_values, probe_x(data)])
    y_values = np.concatenate([event(values, d_y), probe_y(data, (0.0, 0.5, 1.0))])
    log_p = density.log_prob(
        y_values[:, None], x_values[None, :]
    )  # and no RuntimeWarning (pyproject.toml makes them errors)
    assert not np.isnan(log_p).any()
    assert not np.isposinf(log_p).any()
    # where the data is, the density is positive
    inside = density.log_prob(probe_y(data, (0.05, 0.5, 0.95))[:, None], probe_x(data)[None, :])
    if d_y > 1:  # a planar y from the data is likely only at its own x
        inside = density.log_prob(data.y_train[:5], data.x_train[:5])
    assert np.all(np.isfinite(inside)), inside


@pytest.mark.parametrize("name", FACTORIES)
def test_samples_at_every_finite_x_or_a_clear_error(name):
    """Far out, a density draws finite samples, or (where p(y|x) underflows) says it cannot: never NaN."""
    density = fitted(name)
    for x in event(np.concatenate([EXTREMES, -EXTREMES]), x_dim_of(density)):
        try:
            draws = density.sample(x, 3, seed=0)
        except CannotSample as error:
            assert "cannot sample" in str(error)
        else:
            assert np.all(np.isfinite(draws)), (x, draws)


@pytest.mark.parametrize("name", FACTORIES)
def test_integrates_to_one(name):
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    if y_space_of(density).dim == 1:
        y = wide_y_grid(data, FACTORIES[name].line_points)
        mass = integrate.trapezoid(np.exp(density.log_prob(y[:, None], probe_x(data)[None, :])), y, axis=0)
    else:
        factory = FACTORIES[name]
        grid = (factory.plane_grid or (lambda _, data: wide_plane_grid(data, factory.plane_cells)))(density, data)
        mass = grid.weights @ np.exp(log_prob_on_grid(density, probe_x(data), grid))
    np.testing.assert_allclose(mass, 1.0, atol=3e-3)


@pytest.mark.parametrize("name", FACTORIES)
def test_samples_agree_with_log_prob(name):
    """The probability integral transform of a density's own samples is uniform (Kolmogorov-Smirnov);
    in the plane, the coverage ranks are: where each draw's log q falls among those of other draws."""
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    x = probe_x(data)[[0, 2, 4]]
    draws = density.sample(x, 500, seed=1)  # (500, 3) or (500, 3, d_y)
    if y_space_of(density).dim > 1:
        log_q = density.log_prob(draws, x[None])  # (500, 3)
        ties = np.random.default_rng(2)  # a piecewise constant density ties: a random place among equals
        below = (log_q[250:, None] < log_q[None, :250]).sum(0) + ties.integers(
            0, (log_q[250:, None] == log_q[None, :250]).sum(0) + 1
        )
        assert stats.kstest(((below + 0.5) / 251).ravel(), "uniform").pvalue > 1e-3
        return
    y = wide_y_grid(data, FACTORIES[name].line_points)
    cdf = integrate.cumulative_trapezoid(np.exp(density.log_prob(y[:, None], x[None, :])), y, axis=0, initial=0)
    pit = np.concatenate([np.interp(draws[:, i], y, cdf[:, i] / cdf[-1, i]) for i in range(len(x))])
    assert stats.kstest(pit, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_samples(name):
    density, data = fitted(name), dataset(FACTORIES[name].dataset)
    x = probe_x(data)
    first = density.sample(x, 20, seed=5)
    assert first.tobytes() == density.sample(x, 20, seed=5).tobytes()
    assert first.tobytes() == density.sample(x, 20, seed=np.random.default_rng(5)).tobytes()
    assert first.tobytes() != density.sample(x, 20, seed=6).tobytes()


def state_bytes(model, data) -> dict[str, bytes]:
    """A network's weights; for a model without any (the classical references), what it answers on ``data``."""
    if isinstance(model, torch.nn.Module):
        return {key: value.cpu().numpy().tobytes() for key, value in model.state_dict().items()}
    return {"log_prob": model.log_prob(data.y_test, data.x_test).tobytes()}


def round_trip(model, into):
    """``model`` saved and loaded into ``into``: a network by its state dict, anything else by pickle."""
    if not isinstance(model, torch.nn.Module):
        return pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    into.load_state_dict(torch.load(buffer, weights_only=True))
    return into.to(model.device)


@pytest.mark.parametrize("name", MODELS)
def test_same_fit_seed_same_weights_without_global_seeding(name, monkeypatch):
    factory = FACTORIES[name]
    data = dataset(factory.dataset)

    def reseeds_cuda(*args, **kwargs):
        raise AssertionError("fit reseeded torch's global CUDA generators")

    runs = []
    for seed, noise in ((3, 1), (3, 2), (4, 1)):
        torch.manual_seed(noise)  # torch's global generator differs between the runs: the seed must decide
        model = factory.build(data)
        before = torch.random.get_rng_state()
        with monkeypatch.context() as patch:
            patch.setattr(torch.cuda, "manual_seed_all", reseeds_cuda)
            patch.setattr(torch.cuda, "manual_seed", reseeds_cuda)
            factory.fit(model, data.x_train, data.y_train, data.c_train, seed)
        assert torch.equal(torch.random.get_rng_state(), before), "fit touched torch's global generator"
        runs.append(state_bytes(model, data))
    assert runs[0] == runs[1], "the same seed gave different weights"
    assert runs[0] != runs[2], "the seed was ignored"


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name):
    factory, model = FACTORIES[name], fitted(name)
    data = dataset(factory.dataset)
    fresh = factory.build(data)
    with pytest.raises(NotFittedError, match=r"call fit\(x, y\) first"):
        fresh.log_prob(data.y_test, data.x_test)
    with pytest.raises(NotFittedError, match=r"call fit\(x, y\) first"):
        fresh.sample(data.x_test, 2)
    fresh = round_trip(model, fresh)
    np.testing.assert_array_equal(fresh.log_prob(data.y_test, data.x_test), model.log_prob(data.y_test, data.x_test))
    np.testing.assert_array_equal(fresh.sample(data.x_test, 3, seed=1), model.sample(data.x_test, 3, seed=1))
    # loaded into a model fitted before, with another seed: nothing of the earlier fit survives
    other = factory.build(data)
    factory.fit(other, data.x_train, data.y_train, data.c_train, 7)
    other = round_trip(model, other)
    np.testing.assert_array_equal(other.log_prob(data.y_test, data.x_test), model.log_prob(data.y_test, data.x_test))


@pytest.mark.parametrize("name", FACTORIES)
def test_bad_queries_raise(name):
    density = fitted(name)
    d_x, d_y = x_dim_of(density), y_space_of(density).dim
    zero_x, zero_y = event(np.float64(0.0), d_x), event(np.float64(0.0), d_y)
    for y, x, message in [
        (event(np.float64(np.nan), d_y), zero_x, "y must be finite"),
        (zero_y, event(np.float64(np.inf), d_x), "x must be finite"),
        ("a", zero_x, "y must be numeric"),
        (event(np.zeros(3), d_y), event(np.zeros(4), d_x), "do not broadcast"),
    ]:
        with pytest.raises(ValueError, match=message):
            density.log_prob(y, x)
    for x, n, seed, message in [
        (zero_x, 0, None, "n must be >= 1"),
        (zero_x, 2.5, None, "n must be an integer"),
        (zero_x, 2, -1, "seed must be"),
        (zero_x, 2, "a", "seed must be"),
        (np.zeros((2, 2, 2)), 2, None, "x must be"),
        (event(np.float64(np.nan), d_x), 2, None, "x must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            density.sample(x, n, seed=seed)


@pytest.mark.parametrize("name", MODELS)
def test_bad_training_data_raise(name):
    factory = FACTORIES[name]
    data = dataset(factory.dataset)
    model = factory.build(data)
    x, y, c = data.x_train, data.y_train, data.c_train

    def spoil(values, row, bad):  # one entry of one row made non-finite, any dimension
        values = values.copy()
        values[row] = bad
        return values

    cases = [
        (spoil(x, 3, np.nan), y, "x must be finite"),
        (x, spoil(y, 5, np.inf), "y must be finite"),
        (x, y[:-1], "same number of points"),
        (x[:1], y[:1], "at least 2 points"),
    ]
    if isinstance(model, SERVE_VECTORS):  # any (n, d) is data; a third axis is not
        cases += [(x.reshape(len(x), -1, 1)[..., [0, 0]], y, r"x must be 1-D \(n,\) or rows \(n, d\)")]
    elif data.x_dim > 1:  # a network built for these dimensions: any other is refused, naming the shape
        cases += [
            (x[:, :1], y, rf"x must have shape \(n, {data.x_dim}\) .*got \({len(x)}, 1\)"),
            (x, y[:, :1], rf"y must have shape \(n, 2\) .*got \({len(y)}, 1\)"),
        ]
    else:
        cases += [
            (np.stack([x, x], axis=1), y, r"x must be 1-D or a single column \(n, 1\), got shape"),
            (x, np.stack([y, y], axis=1), r"y must be 1-D or a single column \(n, 1\), got shape"),
        ]
    for bad_x, bad_y, message in cases:
        with pytest.raises(ValueError, match=message):
            factory.fit(model, bad_x, bad_y, c, 0)
    for seed in (-1, 1.5, "a"):
        with pytest.raises(ValueError, match="seed must be"):
            factory.fit(model, x, y, c, seed)
    if data.x_dim == 1 and data.y_space.dim == 1:
        factory.fit(model, x[:, None], y[:, None], c, 0)  # a single column is fine, and the same fit
    else:
        factory.fit(model, x, y, c, 0)
    expected = fitted(name).log_prob(data.y_test, data.x_test)
    np.testing.assert_array_equal(model.log_prob(data.y_test, data.x_test), expected)


def test_a_dataset_is_not_a_conditional_density():
    data = dataset("linear")
    x, y, _ = data.sample(50, seed=0)
    for call in (
        lambda: best_of_k_error(data, x, y, k=5),
        lambda: bayes_gap(data, data.truth, x, y),
        lambda: bayes_gap(data.truth, data, x, y),
        lambda: log_conditional_grid(data, np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)),
        lambda: log_joint_grid(data, np.linspace(-1, 1, 3), np.linspace(-1, 1, 3)),
        lambda: score(data, data, n_points=100),
        lambda: plot_samples(data, data),
    ):
        with pytest.raises(ValueError, match=r"pass its exact conditional, data\.truth"):
            call()


@pytest.mark.parametrize(
    "name",
    [name for name in MODELS if FACTORIES[name].dataset in SCALAR_DATASETS and not name.startswith(("gmr-", "kde-"))],
)
def test_scalar_models_refuse_vector_data_saying_why(name):
    """Every family but those in ``SERVE_VECTORS`` serves a scalar x and y: planar data is refused with a
    reason, never flattened."""
    factory = FACTORIES[name]
    assert not isinstance(factory.build(dataset(factory.dataset)), SERVE_VECTORS)
    model = factory.build(dataset(factory.dataset))
    for planar in ("robot_arm", "room"):
        data = dataset(planar)
        with pytest.raises(ValueError, match="serves a scalar x and a scalar y"):
            factory.fit(model, data.x_train, data.y_train, data.c_train, 0)


@pytest.mark.parametrize("planar", ["robot_arm", "room"])
def test_references_built_from_a_dataset_refuse_the_plane(planar):
    data = dataset(planar)
    with pytest.raises(ValueError, match="serves datasets with a scalar x and a scalar y"):
        GenerativeModel.for_dataset(data)

"""The three scalar toy datasets: exact densities against independent references, samples, splits, bad input.

The planar datasets have their own file, tests/test_planar_datasets.py."""

import dataclasses

import numpy as np
import pytest
from scipy import integrate, stats

from generate_dataset import (
    DATASETS,
    SCALAR_DATASETS,
    CameraRelocalisation,
    camera_relocalisation,
    inverted_sinusoid_mixture,
    linear_mixture,
)

NAMES = list(SCALAR_DATASETS)
SEEDS = [0, 1, 2]


@pytest.fixture(
    scope="module", params=[(name, seed) for name in NAMES for seed in SEEDS], ids=lambda p: f"{p[0]}-{p[1]}"
)
def dataset(request):
    name, seed = request.param
    return DATASETS[name](n_samples=200, seed=seed)


def query_xs(data):
    """x values across the data, just outside it and far outside it."""
    lo, hi = data.x_range
    span = hi - lo
    return np.concatenate([np.linspace(lo, hi, 9), [lo - 0.5 * span, hi + 0.5 * span, lo - 3 * span, hi + 3 * span]])


def wide_y_grid(data, x, n=400_001):
    """A fine y grid wide enough to hold p(y|x) for every x in ``x`` (the posterior can drift far for far x)."""
    lo, hi = data.y_range
    if data.name == "camera":
        return np.linspace(lo, hi, n)
    if data.name == "linear":
        centre = (data.noise**2 * data.means[:, None] + data.slopes[:, None] * (x - data.offsets[:, None])) / (
            data.noise**2 + data.slopes[:, None] ** 2
        )
    else:  # sinusoid: y/2 is the trend, so y is near 2 (x - o_c) at worst
        centre = 2 * (x - data.offsets[:, None])
    lo, hi = min(lo, centre.min()) - 30, max(hi, centre.max()) + 30
    return np.linspace(lo, hi, n)


# ---- normalisation and closed forms ---------------------------------------------------------------
def test_conditional_integrates_to_one(dataset):
    x = query_xs(dataset)
    y = wide_y_grid(dataset, x)
    density = np.exp(dataset.log_prob(y[:, None], x[None, :]))
    np.testing.assert_allclose(integrate.trapezoid(density, y, axis=0), 1.0, atol=2e-5)


def peak_hints(data, x):
    """Where p(y|x) has its narrow features, found without the module's own posterior maths."""
    if data.name == "camera":
        return data.edges[1:-1]
    if data.name == "linear":  # where each line passes through x, and each prior mean
        return np.concatenate([(x - data.offsets) / data.slopes, data.means])
    grid = wide_y_grid(data, np.array([x]), n=200_001)  # sinusoid: sign changes of f_c(y) - x
    f = data.amplitudes * np.sin(data.frequencies * grid[:, None]) + data.offsets + 0.5 * grid[:, None]
    return grid[np.flatnonzero(np.diff(np.sign(f - x), axis=0).any(axis=1))]


@pytest.mark.parametrize("name", NAMES)
def test_conditional_integrates_to_one_adaptive_quadrature(name):
    """Same check with scipy's adaptive quad, which knows nothing of our grids.

    Over the data and half its width beyond, where the hints show quad where the mass is (further
    out, the mass leaves the curves; the trapezoid test above covers that).
    """
    data = DATASETS[name](seed=3)
    for x in query_xs(data)[:11]:
        y = wide_y_grid(data, np.array([x]), n=2)
        log_px = data.log_marginal_x(x)  # once: quad then only calls the closed-form joint
        hints = peak_hints(data, x)
        edges = np.unique(np.concatenate([y, hints[(hints > y[0]) & (hints < y[-1])]]))
        total = sum(
            integrate.quad(lambda t, x=x, c=log_px: np.exp(data.log_joint(x, t) - c), a, b, limit=500, epsabs=1e-10)[0]
            for a, b in zip(edges[:-1], edges[1:])
        )
        assert total == pytest.approx(1.0, abs=1e-6), f"x={x}"


def test_joint_is_conditional_times_marginal(dataset):
    x = query_xs(dataset)[:11]
    y = np.linspace(*dataset.y_range, 50)
    lhs = dataset.log_joint(x[None, :], y[:, None])
    rhs = dataset.log_prob(y[:, None], x[None, :]) + dataset.log_marginal_x(x)[None, :]
    finite = np.isfinite(lhs)
    np.testing.assert_allclose(lhs[finite], rhs[finite], rtol=1e-9, atol=1e-9)


def test_marginal_is_quadrature_of_joint(dataset):
    """log p(x) (closed form, or the sinusoid's own quadrature) against a brute-force integral of p(x, y)."""
    x = query_xs(dataset)[:11]  # in and near the data, where p(x) is not astronomically small
    if dataset.name == "camera":  # piecewise constant in y: integrate cell by cell, each exactly
        cells = zip(dataset.edges[:-1], dataset.edges[1:])
        brute = np.log(sum((b - a) * np.exp(dataset.log_joint(x, 0.5 * (a + b))) for a, b in cells))
    else:
        y = wide_y_grid(dataset, x)
        brute = np.log(integrate.trapezoid(np.exp(dataset.log_joint(x[None, :], y[:, None])), y, axis=0))
    np.testing.assert_allclose(dataset.log_marginal_x(x), brute, atol=1e-5)


def test_marginal_integrates_to_one(dataset):
    lo, hi = dataset.x_range
    x = np.linspace(lo - 5, hi + 5, 20_001)
    assert integrate.trapezoid(np.exp(dataset.log_marginal_x(x)), x) == pytest.approx(1.0, abs=1e-5)


def test_linear_joint_matches_scipy():
    data = linear_mixture(seed=5)
    x, y = np.meshgrid(np.linspace(*data.x_range, 30), np.linspace(*data.y_range, 30))
    reference = sum(
        stats.norm.pdf(y, mu, 1) * stats.norm.pdf(x, s * y + o, data.noise) / 3
        for mu, s, o in zip(data.means, data.slopes, data.offsets)
    )
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(
            data.log_joint(x, y)[reference > 1e-200], np.log(reference[reference > 1e-200]), rtol=1e-10
        )
    # p(x) in closed form: x | c ~ N(s mu + o, s^2 + noise^2)
    xs = np.linspace(*data.x_range, 40)
    px = sum(
        stats.norm.pdf(xs, s * mu + o, np.hypot(s, data.noise)) / 3
        for mu, s, o in zip(data.means, data.slopes, data.offsets)
    )
    np.testing.assert_allclose(data.log_marginal_x(xs), np.log(px), rtol=1e-10)


def test_sinusoid_joint_matches_scipy():
    data = inverted_sinusoid_mixture(seed=5)
    x, y = np.meshgrid(np.linspace(*data.x_range, 30), np.linspace(*data.y_range, 30))
    reference = sum(
        stats.norm.pdf(y, mu, 1) * stats.norm.pdf(x, a * np.sin(w * y) + o + 0.5 * y, data.noise) / 2
        for mu, a, w, o in zip(data.means, data.amplitudes, data.frequencies, data.offsets)
    )
    keep = reference > 1e-200
    np.testing.assert_allclose(data.log_joint(x, y)[keep], np.log(reference[keep]), rtol=1e-10)


def test_camera_conditional_matches_closed_form():
    data = camera_relocalisation(seed=5)
    x = 0.3
    w = data.cell_widths * stats.norm.pdf(x, data.patterns, data.noise)
    w /= w.sum()
    y = np.linspace(-data.half_width + 1e-9, data.half_width - 1e-9, 1001)
    reference = sum(wk * stats.uniform.pdf(y, lo, hi - lo) for wk, lo, hi in zip(w, data.edges[:-1], data.edges[1:]))
    np.testing.assert_allclose(data.log_prob(y, x), np.log(reference), rtol=1e-12)
    assert np.all(data.log_prob([-data.half_width - 1, data.half_width + 1], x) == -np.inf)


def test_sinusoid_quadrature_converges():
    """Halving the quadrature step changes log p(y|x) by less than 1e-6, in and out of the data."""
    for seed in SEEDS:
        for noise in (0.05, 0.1, 0.5):
            data = inverted_sinusoid_mixture(seed=seed, noise=noise)
            finer = dataclasses.replace(data, quad_oversample=2 * data.quad_oversample)
            x = query_xs(data)
            y = np.linspace(*data.y_range, 101)
            np.testing.assert_allclose(data.log_prob(y[:, None], x), finer.log_prob(y[:, None], x), rtol=0, atol=1e-6)
            np.testing.assert_allclose(data.log_marginal_x(x), finer.log_marginal_x(x), rtol=0, atol=1e-6)


# ---- the density agrees with the generator's samples ----------------------------------------------
PIT_GRID = {"linear": 8_001, "sinusoid": 20_001, "camera": 8_001}  # steps well below the narrowest peak


def pit(data, density, x, y):
    """F(y_i | x_i) by integrating exp(density.log_prob) on a fine grid, one x at a time."""
    grid = wide_y_grid(data, x, n=PIT_GRID[data.name])
    out = np.empty(len(x))
    for start in range(0, len(x), 100):
        xs, ys = x[start : start + 100], y[start : start + 100]
        p = np.exp(density.log_prob(grid[:, None], xs[None, :]))
        cdf = integrate.cumulative_trapezoid(p, grid, axis=0, initial=0)  # (grid, batch)
        out[start : start + 100] = [np.interp(yi, grid, cdf[:, i]) for i, yi in enumerate(ys)]
    return out


def test_probability_integral_transform_is_uniform(dataset):
    x, y, _ = dataset.sample(600, seed=123)
    u = pit(dataset, dataset, x, y)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_probability_integral_transform_catches_a_dropped_component(name):
    """The PIT test has the power to see a wrong density: here, one with a component left out."""
    data = DATASETS[name](seed=0)
    if isinstance(data, CameraRelocalisation):
        # Move the location that shows the most likely pattern elsewhere: its cell goes to its neighbours.
        wrong = dataclasses.replace(data, patterns=np.roll(data.patterns, 1))
    else:
        keep = np.arange(data.n_components) != 0
        fields = {
            f.name: getattr(data, f.name)[keep]
            for f in dataclasses.fields(data)
            if f.name in ("means", "slopes", "offsets", "amplitudes", "frequencies")
        }
        wrong = dataclasses.replace(data, **fields, weights=np.full(keep.sum(), 1 / keep.sum()))
    x, y, _ = data.sample(600, seed=7)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = pit(data, wrong, x, y)
    assert stats.kstest(np.nan_to_num(u, nan=0.0), "uniform").pvalue < 1e-6


def test_conditional_samples_match_density(dataset):
    """sample_conditional draws from log_prob: PIT of the draws at a few x is uniform."""
    x = np.linspace(*dataset.x_range, 5)
    draws = dataset.sample_conditional(x, 400, seed=3)
    assert draws.shape == (400, 5)
    grid = wide_y_grid(dataset, x, n=PIT_GRID[dataset.name])
    cdf = integrate.cumulative_trapezoid(np.exp(dataset.log_prob(grid[:, None], x)), grid, axis=0, initial=0)
    for i, xi in enumerate(x):
        u = np.interp(draws[:, i], grid, cdf[:, i])
        assert stats.kstest(u, "uniform").pvalue > 1e-4, f"x={xi}"


def test_joint_samples_match_components(dataset):
    x, y, c = dataset.sample(20_000, seed=4)
    assert x.shape == y.shape == c.shape == (20_000,)
    assert set(np.unique(c)) <= set(range(dataset.n_components))
    if isinstance(dataset, CameraRelocalisation):
        np.testing.assert_array_equal(c, dataset.location(y))
        assert np.all(np.abs(y) <= dataset.half_width)
        # Each location's share of the points is its share of [-T, T].
        np.testing.assert_allclose(
            np.bincount(c, minlength=dataset.n_components) / 20_000,
            dataset.cell_widths / (2 * dataset.half_width),
            atol=0.015,
        )
    else:
        for k in range(dataset.n_components):  # y | c ~ N(mu_c, 1)
            assert stats.kstest(y[c == k] - dataset.means[k], "norm").pvalue > 1e-4


# ---- far from the data, grids and bad input -----------------------------------------------------------
def test_finite_far_from_the_data(dataset):
    x = np.array([-1e6, -1e3, 0.0, 1e3, 1e6])
    y = (
        np.clip(np.array([-1e6, -50, 0.0, 50, 1e6]), *dataset.y_range)
        if dataset.name == "camera"
        else np.array([-1e6, -50, 0.0, 50, 1e6])
    )
    for values in (
        dataset.log_prob(y[:, None], x[None, :]),
        dataset.log_joint(x[None, :], y[:, None]),
        dataset.log_marginal_x(x),
    ):
        assert np.all(np.isfinite(values))


def test_a_grid_is_its_rows_and_columns(dataset):  # (shapes: the contract test)
    y, x = np.linspace(*dataset.y_range, 7), np.linspace(*dataset.x_range, 5)
    grid = dataset.log_prob(y[:, None], x[None, :])
    np.testing.assert_allclose(grid[3], dataset.log_prob(y[3], x))
    np.testing.assert_allclose(grid[:, 2], dataset.log_prob(y, x[2]))
    joint = dataset.log_joint(x[None, :], y[:, None])
    np.testing.assert_allclose(joint[3], dataset.log_joint(x, y[3]))


# ---- splits and reproducibility ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_split_shapes_and_labels(name):
    data = DATASETS[name](n_samples=1000, test_fraction=0.2, seed=1)
    assert data.x_train.shape == data.y_train.shape == data.c_train.shape == (800,)
    assert data.x_test.shape == data.y_test.shape == data.c_test.shape == (200,)
    assert data.c_train.dtype.kind == "i"
    # Every label is the component that generated the point: the point is likely under that component.
    if name == "camera":
        np.testing.assert_array_equal(data.c_train, data.location(data.y_train))
    else:
        assert np.all(np.abs(data.y_train - data.means[data.c_train]) < 6)
    # Both splits come from the same process, not e.g. sorted by x or by component.
    assert stats.ks_2samp(data.x_train, data.x_test).pvalue > 1e-3
    assert len(np.unique(data.c_test)) == data.n_components or name == "camera"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes(name):
    a, b = DATASETS[name](seed=11), DATASETS[name](seed=11)
    for attribute in ("x_train", "y_train", "c_train", "x_test", "y_test", "c_test"):
        assert getattr(a, attribute).tobytes() == getattr(b, attribute).tobytes()
    assert not np.array_equal(a.x_train, DATASETS[name](seed=12).x_train)
    assert a.sample(10, seed=1)[0].tobytes() == b.sample(10, seed=1)[0].tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_parameters_do_not_depend_on_n_samples(name):
    small, large = DATASETS[name](n_samples=50, seed=4), DATASETS[name](n_samples=5000, seed=4)
    x = np.linspace(*small.x_range, 11)
    np.testing.assert_array_equal(small.log_marginal_x(x), large.log_marginal_x(x))


def test_parameters_follow_the_design():
    lin = linear_mixture(n_components=50, seed=0)
    assert np.all(np.abs(lin.means) <= 10) and np.all(np.abs(lin.slopes) <= 2) and np.all(np.abs(lin.offsets) <= 5)
    sin = inverted_sinusoid_mixture(n_components=50, seed=0)
    assert np.all((sin.amplitudes >= 1) & (sin.amplitudes <= 5)) and np.all(
        (sin.frequencies >= 0.5) & (sin.frequencies <= 2)
    )
    assert np.all(np.abs(sin.offsets) <= 15) and np.all(np.abs(sin.means) <= 5)
    cam = camera_relocalisation(n_locations=7, n_patterns=4, seed=0)
    assert cam.half_width == 70 and np.all(np.diff(cam.centres) > 0)
    assert np.all(np.isin(cam.patterns, np.linspace(-1, 1, 5)))
    distinct = camera_relocalisation(n_locations=5, n_patterns=4, one_to_many=False, seed=0)
    assert len(np.unique(distinct.patterns)) == 5
    repeated = camera_relocalisation(n_locations=30, n_patterns=3, seed=0)  # 30 locations, 4 values: repeats
    assert len(np.unique(repeated.patterns)) < 30


BAD_ARGUMENTS = [
    (name, kwargs, argument)
    for name in NAMES
    for kwargs, argument in [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -5}, "n_samples"),
        ({"n_samples": 10.5}, "n_samples"),
        ({"n_samples": "100"}, "n_samples"),
        ({"noise": 0.0}, "noise"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.2}, "test_fraction"),
        ({"n_samples": 5, "test_fraction": 0.05}, "test_fraction"),  # rounds to an empty test split
        ({"n_samples": 5, "test_fraction": 0.95}, "test_fraction"),  # ... or an empty training split
    ]
] + [
    ("linear", {"n_components": 0}, "n_components"),
    ("sinusoid", {"n_components": -1}, "n_components"),
    ("sinusoid", {"n_components": 2.0}, "n_components"),
    ("camera", {"n_locations": 0}, "n_locations"),
    ("camera", {"n_patterns": 0}, "n_patterns"),
    ("camera", {"n_locations": 12, "n_patterns": 10, "one_to_many": False}, "n_locations"),
    ("camera", {"one_to_many": "yes"}, "one_to_many"),
    ("linear", {"seed": -1}, "seed"),
]


@pytest.mark.parametrize("name, kwargs, argument", BAD_ARGUMENTS, ids=lambda v: str(v))
def test_bad_arguments_raise(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DATASETS[name](**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_bad_queries_raise(name):
    data = DATASETS[name](n_samples=20, seed=0)
    for bad in (np.nan, np.inf, -np.inf):  # (log_prob: the contract test)
        with pytest.raises(ValueError, match="x must be finite"):
            data.log_marginal_x(bad)
        with pytest.raises(ValueError, match="x must be finite"):
            data.log_joint(bad, 0.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        data.log_prob(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="x must be numeric"):
        data.log_prob(0.0, "a")
    with pytest.raises(ValueError, match="n must be"):
        data.sample(0)
    with pytest.raises(ValueError, match="n must be"):
        data.sample_conditional([0.0], 0)
    with pytest.raises(ValueError, match="x must be"):
        data.sample_conditional(np.zeros((2, 2)), 3)

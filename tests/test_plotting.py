"""Plot helpers: right axes and values, composable (no plt.show), bad input refused."""

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
from scipy import stats

from generate_dataset import DATASETS
from utilis.density import log_conditional_grid
from utilis.plotting import (
    TRUTH_STYLE,
    _label_agreement,
    _match_components,
    plot_arm,
    plot_bayesian_network,
    plot_conditional_image,
    plot_conditionals,
    plot_dataset,
    plot_floor_plan,
    plot_flow_map,
    plot_flow_paths,
    plot_heatmap,
    plot_mixture_parameters,
    plot_model_vs_truth,
    plot_plane_points,
    plot_point_predictions,
    plot_responsibilities,
    plot_x_given_y,
    plot_x_residuals,
)
from utilis.spaces import Euclidean


@pytest.fixture(autouse=True)
def no_show_and_close(monkeypatch):
    def refuse():
        raise AssertionError("helpers must not call plt.show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return DATASETS["linear"](n_samples=300, seed=0)


def test_dataset_scatter(data, tmp_path):
    ax = plot_dataset(data)
    assert len(ax.collections) == data.n_components
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(data.x_train)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None
    ax.figure.savefig(tmp_path / "scatter.png")
    with pytest.raises(ValueError, match="split"):
        plot_dataset(data, split="validation")


def test_heatmap_axes_and_orientation(data):
    x, y = np.linspace(-3, 5, 40), np.linspace(-2, 7, 30)
    values = np.log(np.outer(np.linspace(1, 2, 30), np.ones(40)))  # grows with y: brightest at the top
    ax = plot_heatmap(values, x, y, title="t", label="p")
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    coordinates = mesh.get_coordinates()  # (rows + 1, columns + 1, 2): cell corners
    assert coordinates[0, 0, 0] == pytest.approx(x[0] - 0.5 * (x[1] - x[0]))  # real x on the axis
    assert coordinates[-1, 0, 1] == pytest.approx(y[-1] + 0.5 * (y[1] - y[0]))  # real y, increasing upwards
    shown = np.asarray(mesh.get_array()).reshape(30, 40)
    assert shown[-1, 0] == pytest.approx(2.0) and shown[0, 0] == pytest.approx(1.0)  # row 0 is y[0], the bottom
    assert len(ax.figure.axes) == 2  # the colour bar
    assert ax.get_xlabel().startswith("x") and ax.get_ylabel().startswith("y")
    with pytest.raises(ValueError, match="log_values must have shape"):
        plot_heatmap(values.T, x, y)


def test_conditionals(data):
    y = np.linspace(*data.y_range, 2000)
    x_star = [data.x_range[0] + 3, 0.5 * sum(data.x_range)]
    axes = plot_conditionals({"truth": data.truth, "again": data.truth}, x_star, y, data=data, window=2.0)
    assert len(axes) == 2
    for ax, xs in zip(axes, x_star):
        ticks, *lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["truth", "again"]
        # the linear set's peaks (sd about 0.06) are narrower than any histogram's bins over 300 points:
        # the nearby training y are drawn one tick each, where they are
        near = data.y_train[np.abs(data.x_train - xs) <= 2.0]
        assert ticks.get_label().startswith("training data") and not ax.patches
        np.testing.assert_array_equal(ticks.get_xdata(), near)
        # the truth is a wide band under the model's thin line: both visible
        assert lines[0].get_linewidth() == TRUTH_STYLE["linewidth"] > lines[1].get_linewidth()
        assert lines[0].get_zorder() < lines[1].get_zorder()
        np.testing.assert_allclose(lines[0].get_ydata(), np.exp(data.log_prob(y, xs)), rtol=1e-12)
        # zoomed to the mass: the shown interval holds practically all of it and is narrower than the grid
        lo, hi = ax.get_xlim()
        inside = (y >= lo) & (y <= hi)
        assert np.trapezoid(lines[0].get_ydata()[inside], y[inside]) > 0.995
        assert hi - lo < y[-1] - y[0]
    # the camera's flat cells are wider than the bins: there the nearby data is a histogram
    camera = DATASETS["camera"](n_samples=3000, seed=0)
    wide = plot_conditionals({"truth": camera.truth}, [0.3], np.linspace(*camera.y_range, 2000), data=camera)
    assert len(wide[0].patches) > 1 and wide[0].get_lines()[0].get_label() == "truth"
    figure = axes[0].figure
    assert len(figure.legends) == 1 and not any(ax.get_legend() for ax in axes)  # one legend, outside the panels
    # the linear set's peaks (sd about 0.06) are needles on its y range: a second row zooms on them
    zoomed = [ax for ax in figure.axes if "zoom" in ax.get_title()]
    assert len(zoomed) == 2
    for ax in zoomed:
        lo, hi = ax.get_xlim()
        assert hi - lo < 0.1 * (y[-1] - y[0])
    with pytest.raises(ValueError, match="axes must hold one axis per x"):
        plot_conditionals({"truth": data.truth}, x_star, y, axes=[plt.gca()])
    with pytest.raises(ValueError, match="densities"):
        plot_conditionals({}, x_star, y)


def test_model_vs_truth_share_a_scale(data, tmp_path):
    x, y = np.linspace(*data.x_range, 50), np.linspace(*data.y_range, 60)
    for kind in ("conditional", "joint"):
        axes = plot_model_vs_truth(data.truth, data.truth, x, y, kind=kind)
        meshes = [next(c for c in ax.collections if isinstance(c, QuadMesh)) for ax in axes]
        assert meshes[0].get_clim() == meshes[1].get_clim()
        np.testing.assert_array_equal(meshes[0].get_array(), meshes[1].get_array())
        ratio = np.ma.masked_invalid(meshes[2].get_array())  # the truth against itself: 0 where shown
        assert ratio.count() > 0 and np.all(ratio.compressed() == 0.0)
    expected = np.exp(log_conditional_grid(data.truth, x, y)).ravel()
    axes = plot_model_vs_truth(data.truth, data.truth, x, y)
    np.testing.assert_allclose(np.asarray(axes[0].collections[0].get_array()).ravel(), expected)
    axes[0].figure.savefig(tmp_path / "panel.png")
    with pytest.raises(ValueError, match="kind"):
        plot_model_vs_truth(data.truth, data.truth, x, y, kind="marginal")


def test_heat_maps_fade_where_p_x_is_negligible(data):
    """The x range widened far past the data: the columns there are faded, those inside the data not."""
    lo, hi = data.x_range
    x, y = np.linspace(lo - 2 * (hi - lo), hi + 2 * (hi - lo), 200), np.linspace(*data.y_range, 50)
    axes = plot_model_vs_truth(data.truth, data.truth, x, y)
    faded = [patch for patch in axes[0].patches if patch.get_alpha() == 0.7]
    assert faded
    spans = [(p.get_x(), p.get_x() + p.get_width()) for p in faded]
    assert any(a <= x[0] for a, _ in spans) and any(b >= x[-1] for _, b in spans)
    assert not any(a <= np.median(data.x_train) <= b for a, b in spans)


def test_mixture_parameters_show_the_active_components(data):
    def mixture(x):  # two components that matter, three that never weigh more than 1%
        weights = np.column_stack([np.full_like(x, 0.49), np.full_like(x, 0.48), np.full((len(x), 3), 0.01)])
        return weights, np.outer(x, np.arange(5.0)), np.ones((len(x), 5))

    axes = plot_mixture_parameters(mixture, data, np.linspace(*data.x_range, 30))
    assert len(axes[0].get_lines()) == 2
    assert "2 of 5" in axes[0].get_title()
    assert "$\\pi_k(x)$" in axes[0].get_ylabel()
    assert len({tuple(line.get_color()) for line in axes[0].get_lines()}) == 2  # distinct colours
    data_colours = {matplotlib.colors.to_rgba(f"C{i}") for i in range(10)}  # plot_dataset's classes
    assert not {tuple(line.get_color()) for line in axes[0].get_lines()} & data_colours


def test_point_predictions_draw_each_answer_over_the_truth_mean(data):
    x = np.linspace(*data.x_range, 50)
    ax = plot_point_predictions({"a": np.zeros_like(x), "b": np.ones_like(x)}, data, x)
    assert [line.get_label() for line in ax.get_lines()] == ["true E[y | x]", "a", "b"]
    assert ax.get_legend() is not None
    assert plot_point_predictions({"a": np.zeros_like(x)}, data, x, legend=False).get_legend() is None


def test_mixture_parameters_grey_out_the_components_below_the_highlight(data):
    def mixture(x):  # one component that dominates, two that weigh 10% each
        weights = np.column_stack([np.full_like(x, 0.8), np.full_like(x, 0.1), np.full_like(x, 0.1)])
        return weights, np.outer(x, np.arange(3.0)), np.ones((len(x), 3))

    axes = plot_mixture_parameters(mixture, data, np.linspace(*data.x_range, 30), highlight=0.5)
    assert len(axes[0].get_lines()) == 1 and "1 of 3" in axes[0].get_title()
    grey = matplotlib.colors.to_rgba("0.45")
    greys = [line for line in axes[1].get_lines() if matplotlib.colors.to_rgba(line.get_color()) == grey]
    assert greys and "2 more" in axes[1].get_title()


def test_label_agreement_ignores_the_names_of_components():
    true = np.array([0, 0, 1, 1, 2, 2])
    assert _label_agreement(np.array([2, 2, 0, 0, 1, 1]), true, 3) == 1.0
    assert _label_agreement(np.array([2, 2, 0, 0, 1, 0]), true, 3) == pytest.approx(5 / 6)


def test_bayesian_network_drawing():
    ax = plot_bayesian_network([("c", "y"), ("c", "x"), ("y", "x")], title="net")
    nodes = [t for t in ax.texts if t.get_text()]
    arrows = [t for t in ax.texts if not t.get_text()]  # annotations with an arrow and no text
    assert sorted(t.get_text() for t in nodes) == ["c", "x", "y"]
    assert len(arrows) == 3  # one arrow per edge
    positions = {t.get_text(): t.get_position() for t in nodes}
    assert positions["c"][0] < positions["y"][0] < positions["x"][0]  # parents left of children
    # the edge c -> x skips y: y is lifted off that line, so the graph is a triangle, not a chain
    assert positions["y"][1] > positions["c"][1] + 0.5 and positions["c"][1] == positions["x"][1]


class LineModel:
    """x | y, c ~ N(y + c, 0.5^2): what plot_x_given_y needs of a model."""

    n_components = 3

    def x_mean_sd(self, y):
        y = np.asarray(y, float)[..., None]
        return y + np.arange(3), np.full((*y.shape[:-1], 3), 0.5)


def test_x_given_y_bands(data):
    model = LineModel()
    model.n_components = data.n_components
    ax = plot_x_given_y(model, data, bands=2.0)
    lines = ax.get_lines()
    assert len(lines) == data.n_components
    for c, line in enumerate(lines):  # the line is the mean of x along y: x = y + c
        np.testing.assert_allclose(line.get_xdata(), line.get_ydata() + c)
        assert line.get_ydata().min() == pytest.approx(data.y_train[data.c_train == c].min())


def test_x_residuals_band_at_the_scale_of_the_noise(data):
    model = LineModel()
    model.n_components = data.n_components
    ax = plot_x_residuals(model, data, bands=2.0)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(bands) == len(points) == data.n_components
    for band in bands:  # ± 2 sd around 0, sd 0.5
        np.testing.assert_allclose(np.abs(band.get_paths()[0].vertices[:, 0]).max(), 1.0)
    for c, scatter in enumerate(points):  # each point's x minus the mean x = y + c
        keep = data.c_train == c
        np.testing.assert_allclose(scatter.get_offsets()[:, 0], data.x_train[keep] - data.y_train[keep] - c)


def test_match_components_pairs_found_with_true():
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    match = _match_components(np.array([2, 2, 0, 0, 1, 1, 0]), true, 3)
    np.testing.assert_array_equal(match, [1, 2, 0])  # found 0 is mostly true 1, found 1 true 2, found 2 true 0


class PermutedLabels:
    """A model whose components are the true classes under a permutation: what training without labels finds."""

    def __init__(self, data, permutation):
        self.data, self.permutation = data, np.asarray(permutation)

    def component_posterior(self, x, y):
        return np.eye(len(self.permutation))[self.permutation[self.data.c_train]]


def test_responsibilities_drawn_in_the_matched_class_colours(data):
    permutation = np.roll(np.arange(data.n_components), 1)  # true c is found as component c + 1
    ax = plot_responsibilities(PermutedLabels(data, permutation), data)
    colours = plt.get_cmap("tab10")(np.arange(data.n_components))
    for component, scatter in enumerate(ax.collections):
        true = int(np.flatnonzero(permutation == component)[0])
        np.testing.assert_allclose(scatter.get_facecolors()[0], colours[true])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"model's 0 (true c = {np.flatnonzero(permutation == 0)[0]})"
    assert "100%" in ax.get_title()


class PlaneGaussian:
    """y | x ~ N((x, -2), diag(0.5^2, 1)): a density over the plane with a closed form in scipy."""

    x_dim, y_space = 1, Euclidean(2)

    def log_prob(self, y, x):
        y, x = np.asarray(y, float), np.asarray(x, float)
        return stats.norm.logpdf(y[..., 0], x, 0.5) + stats.norm.logpdf(y[..., 1], -2.0, 1.0)

    def sample(self, x, n, seed=None):
        raise NotImplementedError


def test_conditional_image_values_and_orientation(tmp_path):
    density = PlaneGaussian()
    grid = density.y_space.grid([(-1.0, 4.0), (-5.0, 1.0)], (51, 61))  # unequal axes: a transpose shows
    ax = plot_conditional_image(density, 1.0, grid, labels=(r"$\theta_1$", r"$\theta_2$"), title="t")
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    shown = np.asarray(mesh.get_array()).reshape(61, 51)  # rows: y_2 upwards, columns: y_1 across
    y1, y2 = np.meshgrid(*grid.axes, indexing="xy")
    expected = stats.norm.pdf(y1, 1.0, 0.5) * stats.norm.pdf(y2, -2.0, 1.0)
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    row, column = np.unravel_index(np.argmax(shown), shown.shape)
    assert grid.axes[0][column] == pytest.approx(1.0) and grid.axes[1][row] == pytest.approx(-2.0)
    corners = mesh.get_coordinates()  # (rows + 1, columns + 1, 2)
    assert corners[0, 0, 0] == pytest.approx(-1.05) and corners[-1, 0, 1] == pytest.approx(1.05)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (r"$\theta_1$", r"$\theta_2$", "t")
    assert len(ax.figure.axes) == 2 and ax.figure.axes[1].get_ylabel() == "p(y | x*)"  # the colour bar
    ax.figure.savefig(tmp_path / "image.png")


def test_conditional_image_refuses_what_it_cannot_draw(data):
    density = PlaneGaussian()
    grid = density.y_space.grid([(-1.0, 4.0), (-5.0, 1.0)], 20)
    with pytest.raises(ValueError, match="2-D y, got y in Euclidean\\(1\\)"):
        plot_conditional_image(data.truth, 0.0, Euclidean(1).grid([(-1.0, 1.0)], 20))
    with pytest.raises(ValueError, match="grid must be a 2-D Grid"):
        plot_conditional_image(density, 0.0, Euclidean(1).grid([(-1.0, 1.0)], 20))
    with pytest.raises(ValueError, match="x_star must be one input, got 2"):
        plot_conditional_image(density, [0.0, 1.0], grid)
    with pytest.raises(ValueError, match="labels"):
        plot_conditional_image(density, 0.0, grid, labels=("a",))


def test_conditional_image_of_a_planar_truth():
    room = DATASETS["room"](n_samples=200, seed=0)
    grid = room.y_space.grid(room.y_range, 40)
    x_star = room.patterns[0]
    ax = plot_conditional_image(room.truth, x_star, grid)
    shown = np.asarray(ax.collections[0].get_array()).reshape(40, 40).T  # back to [y_1 node, y_2 node]
    expected = np.exp(room.truth.log_prob(grid.points, x_star)).reshape(40, 40)
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    assert ax.get_xlabel() == "$y_1$" and ax.get_ylabel() == "$y_2$" and "x* = (" in ax.get_title()
    with pytest.raises(ValueError, match="x_star must be one point of shape \\(3,\\)"):
        plot_conditional_image(room.truth, x_star[:2], grid)


@pytest.fixture(scope="module")
def arm():
    return DATASETS["robot_arm"](n_samples=200, seed=0)


def test_arm_drawing(arm):
    target = np.array([0.75, 0.6])
    angles = arm.inverse(target)  # (2, 2): the elbow one way, then the other
    ax = plot_arm(arm, angles, target=target)
    arms = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(arms) == 2
    for line, (theta1, theta2) in zip(arms, angles):
        joints = np.column_stack([line.get_xdata(), line.get_ydata()])  # shoulder, elbow, hand
        l1, l2 = arm.lengths
        elbow = l1 * np.array([np.cos(theta1), np.sin(theta1)])
        hand = elbow - l2 * np.array([np.cos(theta1 + theta2), np.sin(theta1 + theta2)])
        np.testing.assert_allclose(joints, [[0.0, 0.0], elbow, hand], atol=1e-12)
        np.testing.assert_allclose(joints[2], target, atol=1e-9)  # both reach the target
    assert tuple(arms[0].get_color()) != tuple(arms[1].get_color())  # the two branches, as c colours them
    assert ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$" and ax.get_aspect() == 1.0
    assert ax.get_legend() is not None
    plot_arm(arm, angles[0], ax=plt.subplots()[1], legend=False)  # one arm of shape (2,)
    with pytest.raises(ValueError, match=r"angles must have shape \(k, 2\).*got \(3,\)"):
        plot_arm(arm, [0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="target must be one position of shape \\(2,\\)"):
        plot_arm(arm, angles, target=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="colours must give one colour per arm, 2, got 1"):
        plot_arm(arm, angles, colours=["C3"])
    with pytest.raises(ValueError, match=r"robot arm.*LinearMixture"):
        plot_arm(DATASETS["linear"](n_samples=50, seed=0), angles)


def test_floor_plan():
    room = DATASETS["room"](n_samples=200, seed=0)
    k = room.tiles_per_side
    ax = plot_floor_plan(room, highlight=[0, 5], highlight_label="same pattern")
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    shown = np.asarray(mesh.get_array()).reshape(k, k)  # rows: y_2 upwards
    tiles = room.tile(room.tile_centres)  # the tile under each centre, from the dataset itself
    np.testing.assert_array_equal(tiles, np.arange(k * k))
    rows, columns = np.divmod(tiles, k)  # tile c = i K + j: i along y_1 (across), j along y_2 (up)
    np.testing.assert_array_equal(shown[columns, rows], room.tile_patterns)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(labels) == len(room.palette) + 1 and labels[-1] == "same pattern"
    assert sorted(int(t.get_text()) for t in ax.texts) == list(range(k * k))  # each tile's index
    assert len(ax.patches) == 2 and ax.get_xlabel() == "$y_1$" and ax.get_ylabel() == "$y_2$"
    assert ax.get_xlim() == (-room.half_width, room.half_width)
    with pytest.raises(ValueError, match=f"highlight must hold tile indices in 0..{k * k - 1}, got \\[16\\]"):
        plot_floor_plan(room, highlight=[k * k])
    with pytest.raises(ValueError, match=r"planar relocalisation.*RobotArm"):
        plot_floor_plan(DATASETS["robot_arm"](n_samples=50, seed=0))


def test_plane_points(arm):
    ax = plot_plane_points(arm.y_train, arm.c_train, labels=("a", "b"), names=["one", "two"])
    assert [len(c.get_offsets()) for c in ax.collections] == np.bincount(arm.c_train).tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["one", "two"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")
    with pytest.raises(ValueError, match="points must have shape \\(n, 2\\), got \\(200,\\)"):
        plot_plane_points(np.zeros(200), np.zeros(200, int))
    with pytest.raises(ValueError, match="c must hold a component index"):
        plot_plane_points(arm.y_train, arm.c_train[:-1])
    with pytest.raises(ValueError, match="names must name each of the 2 components, got 1"):
        plot_plane_points(arm.y_train, arm.c_train, names=["one"])


class _ShiftedGaussianFlow:
    """A flow with a closed form, y = x + 0.5 z: its map, density and straight paths from z to y."""

    dim = 1

    def push_forward(self, x, z):
        return np.asarray(x)[None, :] + 0.5 * np.asarray(z)[:, None]

    def log_prob(self, y, x):
        return stats.norm.logpdf(y, loc=x, scale=0.5)

    def trajectories(self, x, z, times):
        return np.asarray(times)[:, None] * (x + 0.5 * np.asarray(z))[None, :] + (1 - np.asarray(times))[:, None] * z


def test_flow_map_draws_the_map_its_density_and_the_base(data):
    flow, x_star = _ShiftedGaussianFlow(), [1.0, 3.0]
    maps = plot_flow_map(flow, data, x_star, label="toy flow", n_z=300)
    figure = maps[0].get_figure(root=True)  # each x* is a subfigure of it
    assert len(maps) == 2 and len(figure.legends) == 1 and not any(ax.get_legend() for ax in figure.axes)
    for map_ax, xs in zip(maps, x_star):
        (line,) = map_ax.get_lines()
        np.testing.assert_allclose(line.get_ydata(), xs + 0.5 * line.get_xdata())
        side = next(ax for ax in figure.axes if ax is not map_ax and ax.get_shared_y_axes().joined(ax, map_ax))
        truth, model = side.get_lines()  # p(y | x*) on its side: density along x, y along y
        assert truth.get_linewidth() == TRUTH_STYLE["linewidth"] > model.get_linewidth()
        np.testing.assert_allclose(model.get_xdata(), stats.norm.pdf(model.get_ydata(), xs, 0.5))
        np.testing.assert_allclose(truth.get_xdata(), np.exp(data.log_prob(truth.get_ydata(), xs)))


def test_flow_paths_run_from_the_base_to_y(data):
    axes = plot_flow_paths(_ShiftedGaussianFlow(), data, [1.0, 3.0], n_paths=10)
    assert len(axes) == 2 and len(axes[0].figure.legends) == 1 and not any(ax.get_legend() for ax in axes)
    for ax, xs in zip(axes, [1.0, 3.0]):
        paths = [line for line in ax.get_lines() if len(line.get_xdata())]
        assert len(paths) == 10
        starts, ends = (np.array([line.get_ydata()[i] for line in paths]) for i in (0, -1))
        np.testing.assert_allclose(ends, xs + 0.5 * starts)

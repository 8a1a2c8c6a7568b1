"""Plot helpers: right axes and values, composable (no plt.show), bad input refused."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from generate_dataset import DATASETS
from utilis.density import log_conditional_grid
from utilis.plotting import (
    TRUTH_STYLE,
    _label_agreement,
    plot_bayesian_network,
    plot_conditionals,
    plot_dataset,
    plot_heatmap,
    plot_mixture_parameters,
    plot_model_vs_truth,
    plot_x_given_y,
)


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
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["truth", "again"]
        # the truth is a wide band under the model's thin line: both visible
        assert lines[0].get_linewidth() == TRUTH_STYLE["linewidth"] > lines[1].get_linewidth()
        assert lines[0].get_zorder() < lines[1].get_zorder()
        np.testing.assert_allclose(lines[0].get_ydata(), np.exp(data.log_prob(y, xs)), rtol=1e-12)
        # zoomed to the mass: the shown interval holds practically all of it and is narrower than the grid
        lo, hi = ax.get_xlim()
        inside = (y >= lo) & (y <= hi)
        assert np.trapezoid(lines[0].get_ydata()[inside], y[inside]) > 0.995
        assert hi - lo < y[-1] - y[0]
    assert any(len(ax.patches) for ax in axes)  # the nearby data's histogram
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

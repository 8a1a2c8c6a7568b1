"""Figures for one-to-many problems: the data, p(y|x*) curves, heat maps, model beside truth;
for a y in the plane, images of p(y|x*), the robot arm and the room.

Every helper draws on matplotlib axes it is given (or makes them) and returns them; none calls
``plt.show()``, so figures compose and save. Densities are anything that speaks the
conditional-density protocol; heat maps take log-densities from :mod:`utilis.density`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.colors
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

from utilis.density import (
    check_grid,
    conditional_mean,
    count_modes,
    log_conditional_curves,
    log_conditional_grid,
    log_joint_grid,
    log_prob_on_grid,
    multimodal_inputs,
)
from utilis.protocol import (
    ConditionalDensity,
    JointDensity,
    check_count,
    check_inputs,
    finite_array,
    require_density,
    require_scalar,
    x_dim_of,
    y_space_of,
)
from utilis.spaces import Grid

__all__ = [
    "plot_against_truth",
    "plot_arm",
    "plot_bayesian_network",
    "plot_conditional_image",
    "plot_conditionals",
    "plot_dataset",
    "plot_floor_plan",
    "plot_forward_inverse",
    "plot_heatmap",
    "plot_mixture_parameters",
    "plot_model_vs_truth",
    "plot_network_and_fit",
    "plot_overview",
    "plot_plane_points",
    "plot_point_predictions",
    "plot_responsibilities",
    "plot_samples",
    "plot_samples_beside_truth",
    "plot_training_curve",
    "plot_x_given_y",
    "plot_x_residuals",
]

X_LABEL, Y_LABEL = "x (input)", "y (output)"


def _component_colours(k: int) -> np.ndarray:
    """The colour of each of k components c, one meaning throughout: tab10 up to ten, viridis beyond."""
    return plt.get_cmap("tab10" if k <= 10 else "viridis")(np.arange(k) if k <= 10 else np.arange(k) / (k - 1))


def plot_dataset(data, ax: Axes | None = None, split: str = "train", size: float = 6.0) -> Axes:
    """Scatter of a dataset's (x, y) points coloured by the component that generated each."""
    require_scalar(data, "plot_dataset")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y, c = (getattr(data, f"{v}_{split}") for v in "xyc")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    k = data.n_components
    colours = _component_colours(k)
    for component in range(k):
        keep = c == component
        ax.scatter(x[keep], y[keep], s=size, color=colours[component], alpha=0.6, linewidths=0,
                   label=f"c = {component}" if k <= 10 else None)  # fmt: skip
    if k <= 10:
        outside = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if k > 4 else {"loc": "best"}
        ax.legend(title="component", fontsize="small", markerscale=2, **outside)
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=f"{data.name}: {len(x)} {split} points")
    return ax


TRUTH_STYLE = {"color": "black", "linewidth": 3.2, "alpha": 0.3, "zorder": 2, "solid_capstyle": "butt"}
"""The truth in every figure: a wide translucent band, under the model's thin line, so both stay visible."""
MODEL_COLOURS = ("C3", "C0", "C2", "C1", "C4", "C5", "C6")
"""Model lines, in order. A figure that colours data by component draws models in black or these on grey data."""


def _legend_below(figure, axes: Sequence[Axes], ncols: int | None = None) -> None:
    """One legend for the whole figure, outside the panels below them, so it covers no data."""
    handles, labels = {}, {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
    if handles:
        labels = list(handles)
        figure.legend([handles[k] for k in labels], labels, loc="outside lower center", fontsize="small",
                      ncols=ncols or min(len(labels), 4), frameon=False)  # fmt: skip


def _mass_interval(y: np.ndarray, density: np.ndarray, tail: float = 5e-4) -> tuple[float, float]:
    """The y interval between the ``tail`` and 1 - ``tail`` quantiles of a density on a grid, padded."""
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(y))])
    if not cumulative[-1] > 0:
        return float(y[0]), float(y[-1])
    cumulative /= cumulative[-1]
    lo, hi = np.interp([tail, 1 - tail], cumulative, y)
    pad = 0.08 * (hi - lo) + 1e-9 * max(1.0, abs(hi), abs(lo))
    return max(float(y[0]), lo - pad), min(float(y[-1]), hi + pad)


def _half_width(y: np.ndarray, density: np.ndarray) -> tuple[float, float]:
    """The tallest peak of a density on a grid and its half-width at half maximum."""
    top = int(np.argmax(density))
    half = density[top] / 2
    left = top - np.argmax(density[top::-1] < half) if (density[: top + 1] < half).any() else 0
    right = top + np.argmax(density[top:] < half) if (density[top:] < half).any() else len(y) - 1
    return float(y[top]), float(max(y[right] - y[left], y[1] - y[0]) / 2)


def plot_conditionals(
    densities: Mapping[str, ConditionalDensity],
    x_star: ArrayLike,
    y_grid: ArrayLike,
    data=None,
    window: float | None = None,
    axes: Sequence[Axes] | None = None,
    title: str | None = None,
    zoom: bool | None = None,
) -> np.ndarray:
    """p(y | x*) at each x*, one panel each: every density's curve, and the data near x*: a histogram
    where its bins are no wider than the reference's tallest peak, else one tick per point on the y axis
    (bins ten times wider than a needle would draw it as a low plateau).

    A density labelled "truth" is the reference: drawn as a wide grey band under the others (which
    are thin coloured lines on top, so both stay visible), and each panel is zoomed to the y interval
    holding its mass (99.9%). Where the reference's tallest peak is narrower than 3% of that
    interval (a needle), a second row zooms on that peak, so model and truth can be compared there.
    One legend below the panels. ``window``: the half-width of the x slice whose training points are
    shown (default: 2% of the data's x range). ``zoom``: force the second row on or off (default:
    where needed; never when ``axes`` are given). Returns the axes of the first row.
    """
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    y = check_grid(y_grid, "y_grid")
    if not densities:
        raise ValueError("densities must name at least one density")
    curves = {label: np.exp(log_conditional_curves(d, y, x_star)) for label, d in densities.items()}
    reference = curves.get("truth", next(iter(curves.values())))
    intervals = [_mass_interval(y, reference[i]) for i in range(len(x_star))]
    peaks = [_half_width(y, reference[i]) for i in range(len(x_star))]
    needles = any(width < 0.03 * (hi - lo) for (_, width), (lo, hi) in zip(peaks, intervals))
    if axes is None:
        zoom = needles if zoom is None else zoom
        rows = 2 if zoom else 1
        figure, grid = plt.subplots(rows, len(x_star), figsize=(3.4 * len(x_star), 2.9 * rows + 0.5),
                                    layout="constrained", squeeze=False)  # fmt: skip
        axes, zoom_axes = grid[0], (grid[1] if zoom else None)
    else:
        zoom_axes = None
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(x_star):
        raise ValueError(f"axes must hold one axis per x*, {len(x_star)}, got {len(axes)}")
    if data is not None and window is None:
        window = 0.02 * (data.x_range[1] - data.x_range[0])
    colours = iter(MODEL_COLOURS * 2)
    styles = {label: TRUTH_STYLE if label == "truth" else {"color": next(colours), "linewidth": 1.3, "zorder": 3}
              for label in curves}  # fmt: skip
    if len(curves) == 1:  # nothing to compare with: the reference as a plain line
        styles = {label: {"color": "black", "linewidth": 1.3, "zorder": 3} for label in curves}
    for i, (ax, xs) in enumerate(zip(axes, x_star)):
        if data is not None:
            near = data.y_train[np.abs(data.x_train - xs) <= window]
            nearby = f"training data with |x − x*| ≤ {window:.2g}"
            bins = np.histogram_bin_edges(near, bins="auto") if len(near) > 1 else np.empty(0)
            if len(bins) > 1 and bins[1] - bins[0] <= 2 * peaks[i][1]:  # bins no wider than the tallest peak
                ax.hist(near, bins=bins, density=True, color="0.85", zorder=1, label=nearby)
            elif len(near):  # bins wider than the peaks would flatten them: one tick per point instead
                ax.plot(near, np.zeros_like(near), "|", color="0.45", markersize=12, zorder=4, clip_on=False,
                        label=nearby)  # fmt: skip
        for label, values in curves.items():
            ax.plot(y, values[i], label=label, **styles[label])
        ax.set(xlabel=Y_LABEL, ylabel="p(y | x*)" if i == 0 else None, title=f"x* = {xs:.3g}", xlim=intervals[i])
        if zoom_axes is not None:
            centre, width = peaks[i]
            fine = np.linspace(centre - 6 * width, centre + 6 * width, 400)
            for label, density in densities.items():
                zoom_axes[i].plot(fine, np.exp(log_conditional_curves(density, fine, [xs])[0]), **styles[label])
            zoom_axes[i].set(xlabel=Y_LABEL, ylabel="p(y | x*)" if i == 0 else None, xlim=(fine[0], fine[-1]),
                             title=f"x* = {xs:.3g}, zoom on the tallest peak")  # fmt: skip
    figure = axes[0].figure
    _legend_below(figure, axes)
    if title:
        figure.suptitle(title)
    return axes


def plot_heatmap(
    log_values: ArrayLike,
    x_grid: ArrayLike,
    y_grid: ArrayLike,
    ax: Axes | None = None,
    title: str | None = None,
    label: str = "density",
    vmax: float | None = None,
    dim: ArrayLike | None = None,
) -> Axes:
    """A density image (log-densities in, densities shown): rows y, columns x, real values on both axes.

    ``vmax`` caps the colour scale (default: the 99.5th percentile, so one sharp peak doesn't wash out
    the rest; the cap is marked on the colour bar). ``dim``: a boolean per x (column) to draw faded,
    where p(x) is too small for any score to count what is drawn there.
    """
    x, y = check_grid(x_grid, "x_grid"), check_grid(y_grid, "y_grid")
    values = np.exp(np.asarray(log_values, dtype=np.float64))
    if values.shape != (len(y), len(x)):
        raise ValueError(
            f"log_values must have shape (len(y_grid), len(x_grid)) = {(len(y), len(x))}, got {values.shape}"
        )
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    vmax = float(np.quantile(values, 0.995)) if vmax is None else vmax
    mesh = ax.pcolormesh(x, y, values, shading="nearest", cmap="magma", vmin=0.0, vmax=vmax, rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label=label, extend="max" if values.max() > vmax else "neither")
    _dim_columns(ax, x, dim)
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL)
    if title:
        ax.set_title(title)
    return ax


def _dim_columns(ax: Axes, x: np.ndarray, dim: ArrayLike | None) -> None:
    """Fade the x columns where ``dim`` is true (runs of them, each a translucent white band)."""
    if dim is None:
        return
    dim = np.asarray(dim, dtype=bool)
    if dim.shape != x.shape:
        raise ValueError(f"dim must hold one flag per x, shape {x.shape}, got {dim.shape}")
    edges = np.concatenate([[x[0]], 0.5 * (x[1:] + x[:-1]), [x[-1]]])
    changes = np.flatnonzero(np.diff(np.concatenate([[0], dim.astype(int), [0]])))
    for start, stop in zip(changes[::2], changes[1::2]):
        ax.axvspan(edges[start], edges[stop], color="white", alpha=0.7, linewidth=0, zorder=2)


DIM_BELOW = 1e-3
"""Heat maps fade the x where p(x) is below this share of its peak: no test point falls there."""


def plot_model_vs_truth(
    model: ConditionalDensity,
    truth: ConditionalDensity,
    x_grid: ArrayLike,
    y_grid: ArrayLike,
    kind: str = "conditional",
    model_label: str = "model",
    axes: Sequence[Axes] | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Three heat maps: the truth's p(y|x) (or p(x, y)), the model's on the same colour scale, and
    where they differ, log q − log p in nats, shown where the truth's p(x, y) has mass.

    For ``kind="joint"`` a model without a p(x) of its own (not a
    :class:`~utilis.protocol.JointDensity`: the MDN, the baselines) is drawn as q(y|x) p(x) with the
    truth's p(x). Where the truth knows p(x), the x where p(x) is below ``DIM_BELOW`` of its peak
    are faded on the conditional maps: what a model does there counts in no score.
    """
    if kind not in ("conditional", "joint"):
        raise ValueError(f"kind must be 'conditional' or 'joint', got {kind!r}")
    x, y = check_grid(x_grid, "x_grid"), check_grid(y_grid, "y_grid")
    log_px = np.asarray(truth.log_marginal_x(x), dtype=np.float64) if isinstance(truth, JointDensity) else None
    truth_conditional, model_conditional = log_conditional_grid(truth, x, y), log_conditional_grid(model, x, y)
    if kind == "conditional":
        truth_values, model_values = truth_conditional, model_conditional
        dim = None if log_px is None else log_px < log_px.max() + np.log(DIM_BELOW)
    else:
        truth_values = log_joint_grid(truth, x, y)
        own = isinstance(model, JointDensity)
        if not own and log_px is None:
            raise ValueError("kind='joint' needs a truth with p(x) (log_marginal_x) or a model with its own p(x)")
        model_values = log_joint_grid(model, x, y) if own else model_conditional + log_px[None, :]
        dim = None
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(14.5, 3.9), sharex=True, sharey=True, layout="constrained")[1]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != 3:
        raise ValueError(f"axes must hold three axes (truth, model, difference), got {len(axes)}")
    vmax = float(np.quantile(np.exp(truth_values), 0.995))
    name = "p(y | x)" if kind == "conditional" else "p(x, y)"
    plot_heatmap(truth_values, x, y, axes[0], f"truth {name}", name, vmax, dim)
    plot_heatmap(model_values, x, y, axes[1], f"{model_label} {name}", name, vmax, dim)
    # the difference where the truth's joint holds its mass (elsewhere a log-ratio of tails says nothing)
    joint = truth_conditional + (log_px[None, :] if log_px is not None else 0.0)
    shown = joint >= joint.max() + np.log(DIM_BELOW)
    ratio = np.where(shown, np.clip(model_values - truth_values, -3.0, 3.0), np.nan)
    mesh = axes[2].pcolormesh(x, y, ratio, shading="nearest", cmap="RdBu_r", vmin=-3, vmax=3, rasterized=True)
    axes[2].set_facecolor("0.6")  # mid grey: a near-zero difference (white) stands out
    axes[2].figure.colorbar(mesh, ax=axes[2], label="log q − log p (nats)", extend="both")
    axes[2].set(xlabel=X_LABEL, ylabel=Y_LABEL, title="model − truth, where p(x, y) has mass")
    if title:
        axes[0].figure.suptitle(title)
    return axes


IMAGE_ROWS = 800
"""Rows of y in :func:`plot_overview`'s image of p(x, y): two per sd of the narrowest peak (the linear
set's, 0.05 on a 20-unit axis), and more than the axes have pixels."""


def plot_overview(data, x_star: ArrayLike, n_x: int = 400, n_y: int = 3000, min_mass: float = 0.05) -> plt.Figure:
    """One dataset at a glance, from its exact density.

    Top: the training points coloured by component, with E[y|x] (what squared-error regression
    learns) and the x* below marked; the true joint p(x, y). Middle: the true p(y | x*) at each x*,
    over the training points near x*. Bottom: how many modes p(y|x) has along x (peaks holding
    ``min_mass``), over p(x) for where the data is. The joint's image has at most ``IMAGE_ROWS`` rows
    of y (more than its axes have pixels); the curves and counts use all ``n_y``.
    """
    require_scalar(data, "plot_overview")
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    x_grid, y_grid = np.linspace(*data.x_range, n_x), np.linspace(*data.y_range, n_y)
    figure = plt.figure(figsize=(12, 10), layout="constrained")
    top, middle, bottom = figure.subfigures(3, 1, height_ratios=[1.25, 0.95, 0.7])
    scatter_ax, joint_ax = top.subplots(1, 2)
    plot_dataset(data, scatter_ax)
    scatter_ax.plot(x_grid, conditional_mean(data.truth, x_grid, y_grid), color="black", lw=1.5, label="E[y | x]")
    for xs in x_star:
        scatter_ax.axvline(xs, color="0.4", lw=0.8, ls=":")
    outside = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if data.n_components > 4 else {"loc": "best"}
    scatter_ax.legend(fontsize="small", markerscale=2, **outside)
    image_y = np.linspace(*data.y_range, min(n_y, IMAGE_ROWS))  # finer costs drawing time and shows nothing more
    log_joint = log_joint_grid(data.truth, x_grid, image_y)
    plot_heatmap(log_joint, x_grid, image_y, joint_ax, "true joint p(x, y)", "p(x, y)")
    plot_conditionals({"truth": data.truth}, x_star, y_grid, data=data, axes=middle.subplots(1, len(x_star)))
    middle.suptitle("true p(y | x*), over the training points near x*")
    modes_ax = bottom.subplots()
    # black: every tab10 colour may be a component's in the scatter above
    modes_ax.step(x_grid, count_modes(data.truth, x_grid, y_grid, min_mass), where="mid", color="black")
    modes_ax.set(xlabel=X_LABEL, ylabel="modes of p(y | x)", xlim=data.x_range)
    modes_ax.yaxis.get_major_locator().set_params(integer=True)
    marginal_ax = modes_ax.twinx()
    marginal_ax.fill_between(x_grid, np.exp(data.log_marginal_x(x_grid)), color="0.85", zorder=0, label="p(x)")
    marginal_ax.set(ylabel="p(x)", ylim=(0, None))
    modes_ax.set_zorder(marginal_ax.get_zorder() + 1)
    modes_ax.patch.set_visible(False)
    figure.suptitle(f"{data.name} dataset")
    return figure


def plot_bayesian_network(edges: Sequence[tuple[str, str]], ax: Axes | None = None, title: str | None = None) -> Axes:
    """Draw a small directed acyclic graph: nodes placed by depth (roots left), an arrow per edge."""
    nodes = list(dict.fromkeys(name for edge in edges for name in edge))
    depth = {name: 0 for name in nodes}
    for _ in nodes:  # longest path from a root; enough passes for any DAG of this size
        for parent, child in edges:
            depth[child] = max(depth[child], depth[parent] + 1)
    levels: dict[int, list[str]] = {}
    for name in nodes:
        levels.setdefault(depth[name], []).append(name)
    position = {
        name: (level, (len(members) - 1) / 2 - i) for level, members in levels.items() for i, name in enumerate(members)
    }
    # An edge that skips a level (c -> x past y) would run behind the node between: lift that node,
    # so the graph reads as the triangle it is, not as a chain.
    for parent, child in edges:
        (u0, v0), (u1, v1) = position[parent], position[child]
        for name, (u, v) in position.items():
            if u0 < u < u1 and abs(v - (v0 + (v1 - v0) * (u - u0) / (u1 - u0))) < 0.3:
                position[name] = (u, v + 0.8)
    ax = ax if ax is not None else plt.subplots(figsize=(3, 2.2), layout="constrained")[1]
    arrow = {"arrowstyle": "-|>", "lw": 1.5, "shrinkA": 17, "shrinkB": 17, "color": "0.2"}
    for parent, child in edges:
        ax.annotate("", xy=position[child], xytext=position[parent], arrowprops=arrow)
    for name, (u, v) in position.items():
        ax.scatter([u], [v], s=900, color="white", edgecolors="0.2", linewidths=1.5, zorder=3)
        ax.text(u, v, name, ha="center", va="center", fontsize=13, zorder=4)
    us, vs = zip(*position.values())
    ax.set_xlim(min(us) - 0.45, max(us) + 0.45)
    ax.set_ylim(min(vs) - 0.45, max(vs) + 0.45)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_x_given_y(model, data, ax: Axes | None = None, bands: float = 2.0) -> Axes:
    """The model's p(x | y, c) over the training points: for each c its mean of x (a line along y) and a
    band of ``bands`` standard deviations, outlined, over y where component c has data.

    ``model`` needs ``x_mean_sd(y)`` returning the mean and sd of x for every component at each y.
    A band narrower than the line's slope can show is seen in :func:`plot_x_residuals`.
    """
    ax = plot_dataset(data, ax, size=4.0)
    colours = _component_colours(data.n_components)
    for c, y, mean, sd in _x_given_y_curves(model, data):
        ax.fill_betweenx(y, mean - bands * sd, mean + bands * sd, facecolor=(*colours[c][:3], 0.25),
                         edgecolor=colours[c], linewidth=0.8)  # fmt: skip
        ax.plot(mean, y, color="black", linewidth=0.8)
    ax.set_title(f"{data.name}: the generative model's mean of x (black), ± {bands:g} sd, per component")
    return ax


def _x_given_y_curves(model, data, n_y: int = 300):
    """(c, y, mean, sd) of p(x | y, c) for each component c, on ``n_y`` y where c has training data."""
    for c in range(data.n_components):
        y_c = data.y_train[data.c_train == c]
        if len(y_c) < 2:
            continue
        y = np.linspace(y_c.min(), y_c.max(), n_y)
        mean, sd = (values[:, c] for values in model.x_mean_sd(y))
        yield c, y, mean, sd


def plot_x_residuals(model, data, ax: Axes | None = None, bands: float = 2.0) -> Axes:
    """Each training point's x minus the model's mean of x given its (y, c), along y, with the band of
    ``bands`` sds around 0: the noise model at the scale of the noise, where a band too thin to see
    beside a long line (:func:`plot_x_given_y`) shows its width and how the points fill it."""
    ax = ax if ax is not None else plt.subplots(figsize=(4, 4), layout="constrained")[1]
    colours = _component_colours(data.n_components)
    for c, y, _, sd in _x_given_y_curves(model, data):
        keep = data.c_train == c
        residual = data.x_train[keep] - model.x_mean_sd(data.y_train[keep])[0][:, c]
        ax.fill_betweenx(y, -bands * sd, bands * sd, facecolor=(*colours[c][:3], 0.2), edgecolor=colours[c],
                         linewidth=0.8)  # fmt: skip
        ax.scatter(residual, data.y_train[keep], s=4, color=colours[c], alpha=0.6, linewidths=0)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set(xlabel="x − the model's mean of x", ylabel=Y_LABEL, title=f"the same, minus the mean: ± {bands:g} sd")
    return ax


def plot_network_and_fit(model, data) -> plt.Figure:
    """A generative model's Bayesian network (``model.edges``) beside its p(x | parents) over the data,
    and the points' residuals from its mean of x within the ± 2 sd band."""
    figure, (dag_ax, data_ax, residual_ax) = plt.subplots(
        1, 3, figsize=(13, 3.8), width_ratios=[0.9, 2.6, 1.3], layout="constrained"
    )
    plot_bayesian_network(model.edges, dag_ax, title="its Bayesian network")
    plot_x_given_y(model, data, data_ax)
    plot_x_residuals(model, data, residual_ax)
    residual_ax.sharey(data_ax)
    residual_ax.set_ylabel(None)
    return figure


def plot_against_truth(
    model: ConditionalDensity,
    data,
    x_star: ArrayLike | None = None,
    label: str = "model",
    kind: str = "conditional",
) -> tuple[np.ndarray, np.ndarray]:
    """A model beside a dataset's truth: p(y | x*) curves over the nearby data (zoomed to their mass),
    then the heat maps of truth, model and their log-ratio, each figure titled with dataset and model.

    ``x_star``: the inputs of the curves (default: three where the truth has the most modes,
    :func:`utilis.density.multimodal_inputs`).
    """
    x_star = multimodal_inputs(data.truth, data.x_range) if x_star is None else x_star
    y_grid = np.linspace(*data.y_range, 3000)
    curves = plot_conditionals({"truth": data.truth, label: model}, x_star, y_grid, data=data,
                               title=f"{data.name}: {label} p(y | x*) beside the truth")  # fmt: skip
    x_grid, y_grid = np.linspace(*data.x_range, 300), np.linspace(*data.y_range, 400)
    maps = plot_model_vs_truth(
        model,
        data.truth,
        x_grid,
        y_grid,
        kind=kind,
        model_label=label,
        title=f"{data.name}: {label} beside the truth (faded: p(x) < {DIM_BELOW:g} of its peak)",
    )
    return curves, maps


def plot_point_predictions(
    predictions: Mapping[str, np.ndarray], data, x_grid: ArrayLike, ax: Axes | None = None, legend: bool = True
) -> Axes:
    """Single-answer predictions along x (one line each) over the data in grey, with the true E[y | x] dashed.

    The data is grey here (not coloured by component) so that no model line shares a data class's colour.
    ``legend``: draw the legend, outside the axes on the right (off for all but one panel of a row).
    """
    x = check_grid(x_grid, "x_grid")
    ax = ax if ax is not None else plt.subplots(figsize=(7, 4), layout="constrained")[1]
    ax.scatter(data.x_train, data.y_train, s=4, color="0.75", linewidths=0, label="training data")
    y_grid = np.linspace(*data.y_range, 3000)
    ax.plot(x, conditional_mean(data.truth, x, y_grid), color="black", ls="--", lw=1.2, label="true E[y | x]")
    for colour, (label, values) in zip(MODEL_COLOURS, predictions.items()):
        ax.plot(x, values, lw=1.6, color=colour, label=label)
    if legend:
        ax.legend(fontsize="small", markerscale=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=f"{data.name}: single answers of the baselines")
    return ax


def _faded_line(ax: Axes, x: np.ndarray, values: np.ndarray, colour, strength: np.ndarray, levels: int = 8) -> None:
    """A line whose opacity follows ``strength`` (0 to 1, one per x), in ``levels`` steps: one line per run
    of equal step, so a long curve costs a few lines to draw, not one per point (slow on a log axis)."""
    step = np.round(np.clip(strength, 0.0, 1.0) * levels).astype(int)  # 0 (below half a step): not drawn
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], step])))
    for start, stop in zip(starts, np.append(starts[1:], len(x))):
        if step[start]:  # each run overlaps the next by one point, so the line has no gaps
            ax.plot(x[start : stop + 1], values[start : stop + 1], color=colour, alpha=step[start] / levels, lw=1.6)


def plot_mixture_parameters(
    mixture,
    data,
    x_grid: ArrayLike | None = None,
    axes: Sequence[Axes] | None = None,
    label: str = "MDN",
    active: float = 0.05,
    highlight: float | None = None,
) -> np.ndarray:
    """A mixture's π_k(x), μ_k(x) (over the data) and σ_k(x) along x, as in Bishop's Figure 5.21.

    ``mixture(x)`` must return three arrays (len(x), K): weights, means and scales. Only the active
    components are drawn: those whose π_k(x) exceeds ``active`` somewhere where p(x) has mass (at least
    ``DIM_BELOW`` of its peak, where ``data`` knows p(x); elsewhere the panels are faded, as the heat
    maps are). Every panel is weighted by π: a mean or scale is drawn as strongly as its component
    weighs. The components are coloured in order along x from one sequential colormap (plasma), so no
    model component shares a colour with a data component of :func:`plot_dataset` (tab10).
    ``highlight``: where many components share the weight, only those whose π_k(x) exceeds it get a
    colour and a weight curve; the other active ones are drawn in grey on the means and scales panels
    (default: every active component in colour). ``x_grid`` defaults to 400 points over the data's x range.
    """
    x = check_grid(np.linspace(*data.x_range, 400) if x_grid is None else x_grid, "x_grid")
    weights, means, scales = mixture(x)
    faded = np.zeros(len(x), dtype=bool)
    if hasattr(data, "log_marginal_x"):  # what a model does where p(x) is ~0 counts in no score
        log_px = np.asarray(data.log_marginal_x(x), dtype=np.float64)
        faded = log_px < log_px.max() + np.log(DIM_BELOW)
    counted = weights[~faded] if (~faded).any() else weights
    keep = np.flatnonzero((counted > active).any(axis=0))
    keep = keep[np.argsort(np.argmax(weights[:, keep] > active, axis=0))]  # colours in order along x
    highlight = active if highlight is None else highlight
    grey = keep[~(counted[:, keep] > highlight).any(axis=0)]
    keep = keep[(counted[:, keep] > highlight).any(axis=0)]
    # indigo to pink-red: plasma's orange and yellow end would pass for tab10's orange (and yellow is unreadable)
    colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.6, len(keep)) if len(keep) > 1 else [0.0])
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")[1]
    axes[1].scatter(data.x_train, data.y_train, s=3, color="0.8", linewidths=0)
    for k in grey:  # under the coloured ones
        for ax, values in ((axes[1], means[:, k]), (axes[2], scales[:, k])):
            _faded_line(ax, x, values, "0.45", np.clip(weights[:, k] * 2, 0.0, 1.0))
    for colour, k in zip(colours, keep):
        strength = np.clip(weights[:, k] * 2, 0.0, 1.0)  # weight 0.5 and above at full strength
        axes[0].plot(x, weights[:, k], lw=1.3, color=colour)
        for ax, values in ((axes[1], means[:, k]), (axes[2], scales[:, k])):
            _faded_line(ax, x, values, colour, strength)
    for ax in axes:
        _dim_columns(ax, x, faded if faded.any() else None)
        ax.set_xlim(x[0], x[-1])
    axes[0].set(xlabel=X_LABEL, ylabel=r"mixing weight $\pi_k(x)$", ylim=(0, 1.02),
                title=f"{len(keep)} of {weights.shape[1]} components shown (π > {highlight:g})")  # fmt: skip
    others = f"\n(grey: {len(grey)} more with π > {active:g})" if len(grey) else ""
    axes[1].set(xlabel=X_LABEL, ylabel=r"mean $\mu_k(x)$", ylim=data.y_range,
                title=r"means, drawn as strongly as $\pi_k(x)$" + others)  # fmt: skip
    axes[2].set(xlabel=X_LABEL, ylabel=r"scale $\sigma_k(x)$", yscale="log",
                title=r"scales, drawn as strongly as $\pi_k(x)$" + others)  # fmt: skip
    drawn = np.concatenate([keep, grey])
    seen = scales[:, drawn][weights[:, drawn] > active]  # the scale axis spans the scales that weigh
    if seen.size:
        axes[2].set_ylim(seen.min() / 1.5, seen.max() * 1.5)
    axes[0].figure.suptitle(f"{data.name}: the {label}'s mixture along x")
    return np.asarray(axes)


def plot_responsibilities(model, data, ax: Axes | None = None, label: str = "model") -> Axes:
    """The training points coloured by the component that a generative model gives each the most of,
    argmax_c p(c | x, y): what its components found (``model.component_posterior(x, y)``).

    Components found without labels come in any order: each is matched to the true class it shares
    the most points with (:func:`_match_components`) and drawn in that class's colour, so the colours
    mean what they mean in :func:`plot_dataset`; the legend names each pairing."""
    responsibilities = model.component_posterior(data.x_train, data.y_train)
    k = responsibilities.shape[1]
    ax = ax if ax is not None else plt.subplots(figsize=(6.4, 4), layout="constrained")[1]
    owner = responsibilities.argmax(axis=1)
    match = _match_components(owner, data.c_train, k)
    colours = _component_colours(k)
    for component in range(k):
        keep = owner == component
        ax.scatter(data.x_train[keep], data.y_train[keep], s=5, color=colours[match[component]], linewidths=0,
                   label=f"model's {component} (true c = {match[component]})")  # fmt: skip
    agree = _label_agreement(owner, data.c_train, k)
    title = f"{data.name}: {label}, points by argmax p(c | x, y)\n{agree:.0%} agree with the true labels"
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=title)
    ax.legend(title="component", fontsize="small", markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _match_components(found: np.ndarray, true: np.ndarray, k: int) -> np.ndarray:
    """The true class matched to each found component, shape (k,): the one-to-one matching that
    maximises the points on which they agree (the Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((k, k))
    np.add.at(counts, (found, true), 1)
    rows, columns = linear_sum_assignment(-counts)
    return columns[np.argsort(rows)]


def _label_agreement(found: np.ndarray, true: np.ndarray, k: int) -> float:
    """The share of points whose found component matches the true one, under the best matching of
    component names (:func:`_match_components`: unlabelled components are found in any order)."""
    return float(np.mean(_match_components(found, true, k)[found] == true))


def plot_forward_inverse(data, forward: np.ndarray, inverse: np.ndarray, y_grid: ArrayLike, x_grid: ArrayLike):
    """Bishop's Figure 5.19: the forward problem (x from y) beside the inverse (y from x), each with
    a squared-error regression's fit: ``forward`` its predictions of x on ``y_grid``, ``inverse`` of y
    on ``x_grid``. The forward map is single-valued and fitted easily; the inverse is not."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax in (left, right):
        ax.scatter(data.y_train if ax is left else data.x_train, data.x_train if ax is left else data.y_train,
                   s=4, color="0.7", linewidths=0, label="training data")  # fmt: skip
    left.plot(check_grid(y_grid, "y_grid"), forward, color=MODEL_COLOURS[0], lw=2, label="regression of x on y")
    right.plot(check_grid(x_grid, "x_grid"), inverse, color=MODEL_COLOURS[0], lw=2, label="regression of y on x")
    left.set(xlabel="y (output)", ylabel="x (input)", title="forward problem: x from y (one answer)")
    right.set(xlabel=X_LABEL, ylabel=Y_LABEL, title="inverse problem: y from x (several answers)")
    for ax in (left, right):
        ax.legend(fontsize="small", markerscale=3, loc="upper left")
    figure.suptitle(f"{data.name}: squared error fits the forward map and fails on the inverse")
    return figure


def plot_samples(model: ConditionalDensity, data, n_x: int = 400, ax: Axes | None = None, seed: int = 0) -> Axes:
    """Points drawn from the model, one y per x at ``n_x`` x from the data, over the training points."""
    require_scalar(model, "plot_samples")
    model = require_density(model, "model")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    rng = np.random.default_rng(seed)
    x = rng.choice(data.x_train, size=min(n_x, len(data.x_train)), replace=False)
    ax.scatter(data.x_train, data.y_train, s=4, color="0.7", linewidths=0, label="training data")
    ax.scatter(x, model.sample(x, 1, seed=rng)[0], s=5, color="C3", linewidths=0, label="samples from the model")
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=f"{data.name}: samples", ylim=data.y_range)
    ax.legend(fontsize="small", markerscale=2)
    return ax


def plot_samples_beside_truth(
    model: ConditionalDensity, data, label: str = "model", n_x: int = 600, seed: int = 0
) -> np.ndarray:
    """The first check a reader trusts: one y drawn from the truth and one from the model at each of
    ``n_x`` training inputs, side by side over the training points (grey). Returns the two axes."""
    require_scalar(model, "plot_samples_beside_truth")
    model = require_density(model, "model")
    rng = np.random.default_rng(seed)
    x = rng.choice(data.x_train, size=min(check_count(n_x, "n_x"), len(data.x_train)), replace=False)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True, layout="constrained")
    handles = []
    for ax, (name, density, colour) in zip(axes, [("truth", data.truth, "black"), (label, model, MODEL_COLOURS[0])]):
        grey = ax.scatter(data.x_train, data.y_train, s=5, color="0.8", linewidths=0, label="training data")
        handles += [grey] if not handles else []
        handles.append(ax.scatter(x, density.sample(x, 1, seed=rng)[0], s=5, color=colour, linewidths=0,
                                  label=f"one y ~ {name} p(y | x) per x"))  # fmt: skip
        ax.set(xlabel=X_LABEL, ylabel=Y_LABEL if ax is axes[0] else None, title=f"samples from the {name}",
               ylim=data.y_range)  # fmt: skip
    # One legend below the panels: inside either panel it would cover the points it describes.
    figure.legend(handles=handles, loc="outside lower center", ncols=3, markerscale=2.5, frameon=False)
    figure.suptitle(f"{data.name}: {label} samples beside the truth's, at {len(x)} training inputs")
    return axes


def plot_training_curve(
    history, ax: Axes | None = None, title: str | None = None, ylabel: str = "loss (nats per point)"
) -> Axes:
    """A fit's loss per epoch on its training and validation splits (a :class:`utilis.training.History`),
    and the epoch whose weights were kept."""
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.4), layout="constrained")[1]
    epochs = np.arange(len(history.train_loss))
    ax.plot(epochs, history.train_loss, color="0.5", label="training loss")
    ax.plot(epochs, history.val_loss, color=MODEL_COLOURS[0], label="validation loss")
    if history.best_epoch >= 0:
        ax.axvline(history.best_epoch, color="black", linestyle=":", linewidth=1,
                   label=f"kept: epoch {history.best_epoch}")  # fmt: skip
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.legend()
    return ax


def plot_hypotheses_along_x(
    predict,
    data,
    ax: Axes | None = None,
    unused: ArrayLike = (),
    x_star: ArrayLike = (),
    title: str | None = None,
    legend: bool = True,
) -> Axes:
    """M hypotheses h_k(x) along x over the training points (grey), each drawn as strongly as its score.

    ``predict(x)`` must return two arrays (len(x), M): the hypotheses and their scores (weights that
    sum to 1 at each x). Hypotheses listed in ``unused`` (they win no training point) are drawn
    dashed in another colour. The x where p(x) is below ``DIM_BELOW`` of its peak are faded; the
    ``x_star`` are marked.
    """
    x = np.linspace(*data.x_range, 400)
    hypotheses, scores = predict(x)
    unused = set(np.asarray(unused, dtype=int).tolist())
    ax = ax if ax is not None else plt.subplots(figsize=(7, 4), layout="constrained")[1]
    ax.scatter(data.x_train, data.y_train, s=5, color="0.55", linewidths=0, label="training data", zorder=1)
    for k in range(hypotheses.shape[1]):
        if k in unused:
            ax.plot(x, hypotheses[:, k], color="C0", lw=1.0, ls="--", zorder=3)
            continue
        strength = np.clip(5 * scores[:, k], 0.12, 1.0)  # a score of 0.2 and above at full strength
        ax.scatter(x, hypotheses[:, k], s=1.5, color="C3", alpha=strength, linewidths=0, zorder=2)
    ax.plot([], [], color="C3", lw=1.5, label="hypotheses $h_k(x)$, as strong as their score")
    ax.plot([], [], color="C0", lw=1.0, ls="--", label="a hypothesis that wins no training point")
    log_px = np.asarray(data.truth.log_marginal_x(x))
    _dim_columns(ax, x, log_px < log_px.max() + np.log(DIM_BELOW))
    for i, xs in enumerate(np.atleast_1d(np.asarray(x_star, dtype=float))):
        ax.axvline(xs, color="0.3", lw=0.8, ls=":", zorder=4, label="x* of the Voronoi panels" if i == 0 else None)
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, xlim=data.x_range, ylim=data.y_range, title=title)
    if legend:
        ax.legend(fontsize="small", markerscale=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_voronoi_cells(predict, data, x_star: ArrayLike, axes: Sequence[Axes] | None = None) -> np.ndarray:
    """At each x*, the hypotheses of one x and their Voronoi cells (bounded by the midpoints between
    neighbours) over the training points near x* and the true p(y | x*).

    Each cell is drawn as a bar of height score / cell width: the hypotheses read as a histogram on
    their own cells (the outer cells, unbounded, are cut at the panel's edges). Panels are zoomed to
    where the truth holds its mass. ``predict`` as for :func:`plot_hypotheses_along_x`.
    """
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    if axes is None:
        axes = plt.subplots(1, len(x_star), figsize=(3.6 * len(x_star), 3.2), layout="constrained", squeeze=False)[1]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(x_star):
        raise ValueError(f"axes must hold one axis per x*, {len(x_star)}, got {len(axes)}")
    y = np.linspace(*data.y_range, 3000)
    truth = np.exp(log_conditional_curves(data.truth, y, x_star))  # (len(x_star), len(y))
    hypotheses, scores = predict(x_star)
    window = 0.02 * (data.x_range[1] - data.x_range[0])
    for i, (ax, xs) in enumerate(zip(axes, x_star)):
        lo, hi = _mass_interval(y, truth[i])
        near = data.y_train[np.abs(data.x_train - xs) <= window]
        if len(near):
            ax.hist(near, bins=np.histogram_bin_edges(near, bins="auto"), density=True, color="0.85", zorder=1,
                    label=f"training data with |x − x*| ≤ {window:.2g}")  # fmt: skip
        ax.plot(y, truth[i], label="truth", **TRUTH_STYLE)
        order = np.argsort(hypotheses[i])
        guesses, weights = hypotheses[i][order], scores[i][order]
        bounds = np.clip(np.concatenate([[lo], 0.5 * (guesses[1:] + guesses[:-1]), [hi]]), lo, hi)
        widths = np.diff(bounds)
        heights = np.divide(weights, widths, out=np.zeros_like(weights), where=widths > 0)
        ax.stairs(heights, bounds, color="C3", lw=1.2, zorder=3, label="score / cell width, over each Voronoi cell")
        inside = (guesses >= lo) & (guesses <= hi)
        ax.plot(guesses[inside], np.zeros(inside.sum()), "|", color="C3", ms=14, mew=1.5, zorder=4,
                label="hypotheses at x*")  # fmt: skip
        ax.set(xlabel=Y_LABEL, ylabel="density" if i == 0 else None, xlim=(lo, hi),
               title=f"x* = {xs:.3g}: {int(inside.sum())} hypotheses in view")  # fmt: skip
    _legend_below(axes[0].figure, axes)
    return axes


def plot_hypotheses(predict, data, x_star: ArrayLike | None = None, unused: ArrayLike = (), label: str = "hypotheses"):
    """Hypotheses along x over the data (:func:`plot_hypotheses_along_x`), and below, at each x*, their
    Voronoi cells beside the truth (:func:`plot_voronoi_cells`). ``x_star`` defaults to three inputs
    where the truth has the most modes. Returns the figure."""
    x_star = multimodal_inputs(data.truth, data.x_range) if x_star is None else np.atleast_1d(x_star)
    figure = plt.figure(figsize=(12, 7.4), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.1, 1.0])
    plot_hypotheses_along_x(predict, data, top.subplots(), unused=unused, x_star=x_star)
    plot_voronoi_cells(predict, data, x_star, axes=bottom.subplots(1, len(x_star)))
    figure.suptitle(f"{data.name}: {label} along x, and their Voronoi cells at x*")
    return figure


def plot_energy_landscapes(models: Mapping[str, object], data, cap: float = 12.0, n_minima: int = 60) -> np.ndarray:
    """Energy models side by side, one panel each (``models``: label -> model), over the data's (x, y)
    ranges: E(x, y) − min over y of E(x, y), clipped at ``cap`` nats (bright: low energy, where the
    answers are), the training points over it, and at ``n_minima`` inputs the minima of E over y: the
    global one (the single answer) and the other local ones. Faded where the truth's p(x) is below
    ``DIM_BELOW`` of its peak. A model needs ``energy(x, y)`` (+inf where its density is 0), ``grid()``
    (its y nodes) and ``minima(x)`` (the answers, lowest first). One legend below the panels.
    """
    x, y = np.linspace(*data.x_range, 300), np.linspace(*data.y_range, 400)
    log_px = np.asarray(data.log_marginal_x(x))
    x_minima = np.linspace(*data.x_range, n_minima)
    figure, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 4.3), layout="constrained", squeeze=False)
    for ax, (label, model) in zip(axes[0], models.items()):
        lowest = model.energy(x[None, :], model.grid()[:, None]).min(axis=0)  # over all y, not the plotted ones
        relative = np.minimum(model.energy(x[None, :], y[:, None]) - lowest, cap)
        dx, dy = x[1] - x[0], y[1] - y[0]  # a regular grid, drawn as an image whose pixels centre on its nodes
        extent = (x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2)
        image = ax.imshow(relative, origin="lower", extent=extent, aspect="auto", cmap="magma_r", vmin=0, vmax=cap)
        figure.colorbar(image, ax=ax, label="E(x, y) − min over y of E (nats)", extend="max")
        _dim_columns(ax, x, log_px < log_px.max() + np.log(DIM_BELOW))
        # dark grey: it shows on the bright valley floors, where the data lie
        ax.scatter(data.x_train, data.y_train, s=3, color="0.3", alpha=0.6, linewidths=0, label="training data")
        answers = model.minima(x_minima)
        others = np.array([(xs, a) for xs, found in zip(x_minima, answers) for a in found[1:]]).reshape(-1, 2)
        ax.scatter(x_minima, [found[0] for found in answers], s=16, color="C0", edgecolors="white", linewidths=0.6,
                   zorder=4, label="global minimum of E over y (the single answer)")  # fmt: skip
        ax.scatter(*others.T, s=16, marker="D", color="C2", edgecolors="white", linewidths=0.6, zorder=4,
                   label="other local minima (more answers)")  # fmt: skip
        ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, xlim=data.x_range, ylim=data.y_range, title=label)
    _legend_below(figure, axes[0], ncols=3)
    for handle in figure.legends[-1].legend_handles:  # the data's dots at a size a reader can see
        handle.set_sizes([24])
    figure.suptitle(f"{data.name}: energy landscapes and their minima (faded: p(x) < {DIM_BELOW:g} of its peak)")
    return axes[0]


def plot_flow_map(model, data, x_star: ArrayLike, label: str = "flow", n_z: int = 400) -> np.ndarray:
    """What a flow is, at each x*: the map y = T(z; x*) from the base variable z to y, the base density
    N(0, 1) under it, and beside it the density the map carries N(0, 1) to, the model's p(y | x*), over
    the truth's. Where the map is flat, many z land on few y: a peak; where it is steep, a gap.

    ``model.push_forward(x, z)`` must give T(z; x) for base points z (n_z,) at inputs x: (n_z, len(x)).
    Returns the map's axes, one per x*.
    """
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    z = np.linspace(-3.5, 3.5, n_z)
    y = model.push_forward(x_star, z)  # (n_z, len(x*))
    figure = plt.figure(figsize=(4.3 * len(x_star), 4.9), layout="constrained")
    maps = []
    for i, (panel, xs) in enumerate(zip(np.atleast_1d(figure.subfigures(1, len(x_star))), x_star)):
        grid = panel.add_gridspec(2, 2, width_ratios=(3, 1.3), height_ratios=(3, 1))
        map_ax = panel.add_subplot(grid[0, 0])
        side_ax, base_ax = panel.add_subplot(grid[0, 1], sharey=map_ax), panel.add_subplot(grid[1, 0], sharex=map_ax)
        map_ax.plot(z, y[:, i], color=MODEL_COLOURS[0], lw=1.6, label=f"{label}: the map, and its p(y | x*)")
        lo, hi = y[:, i].min(), y[:, i].max()  # the y that z in [-3.5, 3.5] reach: all but 5e-4 of the mass
        ys = np.linspace(lo, hi, 2000)
        side_ax.plot(np.exp(data.truth.log_prob(ys, xs)), ys, label="truth p(y | x*)", **TRUTH_STYLE)
        side_ax.plot(np.exp(model.log_prob(ys, xs)), ys, color=MODEL_COLOURS[0], lw=1.1, zorder=3)
        base_ax.fill_between(z, np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi), color="0.6", lw=0, label="base N(0, 1)")
        map_ax.set(ylabel=Y_LABEL, title=f"x* = {xs:.3g}", ylim=(lo, hi))
        map_ax.tick_params(labelbottom=False)
        side_ax.set(xlabel="p(y | x*)")
        side_ax.tick_params(labelleft=False)
        base_ax.set(xlabel="base variable z", ylabel="p(z)", xlim=(z[0], z[-1]), ylim=(0, None))
        maps.append(map_ax)
        if i == 0:
            handles = [h for ax in (map_ax, side_ax, base_ax) for h in ax.get_legend_handles_labels()[0]]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize="small", frameon=False)
    figure.suptitle(f"{data.name}: the {label} maps the base density N(0, 1) onto p(y | x*)")
    return np.asarray(maps)


def plot_flow_paths(model, data, x_star: ArrayLike, label: str = "flow matching", n_paths: int = 40) -> np.ndarray:
    """A continuous flow's paths from base points (t = 0) to y (t = 1), one panel per x*, beside the
    truth's p(y | x*) turned on its side at t = 1.

    ``model.trajectories(x, z, times)`` must give the states at ``times`` (T,) of paths from base points z at
    one input x: shape (T, len(z)), in units of y.
    """
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    z = np.quantile(np.random.default_rng(0).standard_normal(20_000), (np.arange(n_paths) + 0.5) / n_paths)
    times = np.linspace(0.0, 1.0, 41)  # a solve per interval, each a few steps: drawn as smooth curves
    figure, axes = plt.subplots(1, len(x_star), figsize=(4.2 * len(x_star), 4), layout="constrained", squeeze=False)
    for ax, xs in zip(axes[0], x_star):
        states = model.trajectories(xs, z, times)
        ax.plot(times, states, color=MODEL_COLOURS[1], lw=0.7, alpha=0.6)
        lo, hi = states[-1].min(), states[-1].max()
        grid = np.linspace(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9), 800)
        density = np.exp(data.truth.log_prob(grid, xs))
        ax.fill_betweenx(grid, 1.0, 1.0 + 0.25 * density / density.max(), color="0.3", alpha=0.35, lw=0,
                         label="truth p(y | x*), on its side")  # fmt: skip
        ax.set(xlabel="time t (0: base, 1: data)", ylabel=Y_LABEL, title=f"x* = {xs:.3g}", xlim=(0, 1.27))
    axes[0][0].plot([], [], color=MODEL_COLOURS[1], lw=1.0, label=f"{label} paths from N(0, 1)")
    _legend_below(figure, axes[0])
    figure.suptitle(f"{data.name}: {label}, paths from noise to data")
    return axes[0]


# ---- planar y: images of p(y | x*), points in the plane, the arm and the room ----------------------
PLANE_LABELS = ("$y_1$", "$y_2$")


def _format_point(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in np.atleast_1d(point)) + ")"


def plot_conditional_image(
    density: ConditionalDensity,
    x_star: ArrayLike,
    grid: Grid,
    ax: Axes | None = None,
    labels: tuple[str, str] = PLANE_LABELS,
    title: str | None = None,
    vmax: float | None = None,
) -> Axes:
    """p(y | x*) as an image over a 2-D grid of y, for one input x*, with a colour bar.

    Works for any density whose y lives in a plane (``density.y_space.dim == 2``): a dataset's truth
    or a model. ``x_star``: one input, shape ``(x_dim,)`` (a scalar where x_dim is 1). ``grid``: from
    ``density.y_space.grid(ranges, n)``; its first axis (y_1) runs along the horizontal axis and its
    second (y_2) up. ``labels``: the axis labels (mathtext, e.g. ``(r"$\\theta_1$", r"$\\theta_2$")``).
    ``vmax`` caps the colour scale (default: the image's maximum). Nothing is renormalised over the
    grid. Returns the axes; the image is its first collection.
    """
    density = require_density(density)
    space = y_space_of(density)
    if space.dim != 2:
        raise ValueError(f"plot_conditional_image needs a density over a 2-D y, got y in {space!r}")
    if not isinstance(grid, Grid) or grid.dim != 2:
        raise ValueError(f"grid must be a 2-D Grid from density.y_space.grid(ranges, n), got {grid!r}")
    point = check_inputs(x_star, "x_star", x_dim_of(density))
    if len(point) != 1:
        raise ValueError(f"x_star must be one input, got {len(point)}")
    if len(labels) != 2:
        raise ValueError(f"labels must name the two axes of y, got {labels!r}")
    image = np.exp(log_prob_on_grid(density, point, grid)[:, 0]).reshape(grid.shape)  # (n_1, n_2)
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    vmax = float(image.max()) if vmax is None else vmax
    # pcolormesh wants rows along the vertical axis: the transpose puts y_1 across, y_2 up
    mesh = ax.pcolormesh(*grid.axes, image.T, shading="nearest", cmap="magma", vmin=0.0, vmax=vmax, rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label="p(y | x*)", extend="max" if image.max() > vmax else "neither")
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title or f"p(y | x*), x* = {_format_point(point[0])}")
    return ax


def plot_plane_points(
    points: ArrayLike,
    c: ArrayLike,
    ax: Axes | None = None,
    labels: tuple[str, str] = PLANE_LABELS,
    names: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 5.0,
    legend: bool = True,
) -> Axes:
    """Points in a plane, shape ``(n, 2)``, coloured by their component ``c`` (n,), as :func:`plot_dataset`
    colours them. ``names``: a legend entry per component (default ``c = 0``, ``c = 1``, ...); the legend
    (``legend``, up to 10 components) sits outside the axes, so it covers no point."""
    xy = finite_array(points, "points")
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"points must have shape (n, 2), got {xy.shape}")
    c = np.asarray(c)
    if c.shape != xy.shape[:1] or not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
        raise ValueError(f"c must hold a component index >= 0 per point, shape {xy.shape[:1]}, got {c.shape}")
    k = int(c.max()) + 1 if len(c) else 1
    names = [f"c = {i}" for i in range(k)] if names is None else list(names)
    if len(names) < k:
        raise ValueError(f"names must name each of the {k} components, got {len(names)}")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    colours = _component_colours(k)
    for component in range(k):
        keep = c == component
        ax.scatter(*xy[keep].T, s=size, color=colours[component], alpha=0.6, linewidths=0, label=names[component])
    if legend and k <= 10:
        ax.legend(fontsize="small", markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set(xlabel=labels[0], ylabel=labels[1], title=title)
    return ax


def plot_arm(
    data,
    angles: ArrayLike,
    ax: Axes | None = None,
    target: ArrayLike | None = None,
    colours: Sequence | None = None,
    legend: bool = True,
) -> Axes:
    """Two-link arm configurations: shoulder (at the origin) -> elbow -> hand, one per row of ``angles``.

    ``data``: a :class:`~generate_dataset.RobotArm` (its ``elbow`` and ``forward`` kinematics).
    ``angles``: joint angles (theta1, theta2), shape ``(k, 2)`` or ``(2,)``. Each arm is coloured by
    its elbow's branch as the data's c is (c = 1 where theta2 > pi), unless ``colours`` gives one per
    arm. ``target``: a position (2,) to mark, e.g. the x* the arms reach. Equal scales on both axes;
    the legend (``legend``) outside them, so it covers no arm.
    """
    if not (callable(getattr(data, "elbow", None)) and callable(getattr(data, "forward", None))):
        raise ValueError(f"data must be a robot arm dataset (with elbow and forward), got {type(data).__name__}")
    y = finite_array(angles, "angles")
    y = y[None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[1] != 2:
        raise ValueError(f"angles must have shape (k, 2) or (2,): (theta1, theta2) per arm, got {np.shape(angles)}")
    branch = (y[:, 1] > np.pi).astype(int)
    colours = _component_colours(2)[branch] if colours is None else list(colours)
    if len(colours) != len(y):
        raise ValueError(f"colours must give one colour per arm, {len(y)}, got {len(colours)}")
    ax = ax if ax is not None else plt.subplots(figsize=(4.5, 4.5), layout="constrained")[1]
    elbows, hands = data.elbow(y), data.forward(y)  # (k, 2) each
    for angle, colour, elbow, hand in zip(y, colours, elbows, hands):
        joints = np.stack([np.zeros(2), elbow, hand])  # (3, 2): shoulder, elbow, hand
        label = rf"$\theta$ = ({angle[0]:.2f}, {angle[1]:.2f})"
        ax.plot(*joints.T, "-o", color=colour, lw=3, ms=5, solid_capstyle="round", zorder=3, label=label)
    ax.scatter([0.0], [0.0], s=120, marker="s", color="0.25", zorder=4, label="shoulder")
    if target is not None:
        point = finite_array(target, "target")
        if point.shape != (2,):
            raise ValueError(f"target must be one position of shape (2,), got {point.shape}")
        ax.scatter(*point, s=160, marker="x", color="black", linewidths=2, zorder=5, label="target x*")
    ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    if legend:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_floor_plan(
    data,
    ax: Axes | None = None,
    highlight: ArrayLike = (),
    highlight_label: str = "highlighted tiles",
    title: str | None = None,
) -> Axes:
    """The room of a :class:`~generate_dataset.PlanarRelocalisation`: its K x K tiles, each coloured by
    the palette entry it shows (one colour per pattern, the key outside the axes), tile edges drawn and
    each tile's index c written in its corner (its middle stays free for what the caller marks there).
    ``highlight``: tile indices to outline (e.g. the tiles that show the pattern of an x*), named
    ``highlight_label`` in the key. y_1 (the tile's row i) runs across, y_2 (its column j) up.
    """
    needed = ("palette", "tile_patterns", "edges", "tile_centres", "tiles_per_side")
    if not all(hasattr(data, name) for name in needed):
        raise ValueError(f"data must be a planar relocalisation dataset (a room of tiles), got {type(data).__name__}")
    k, palette = data.tiles_per_side, np.asarray(data.palette)
    highlight = np.atleast_1d(np.asarray(highlight, dtype=int))
    if ((highlight < 0) | (highlight >= k * k)).any():
        raise ValueError(f"highlight must hold tile indices in 0..{k * k - 1}, got {highlight.tolist()}")
    colours = plt.get_cmap("tab10" if len(palette) <= 10 else "tab20")(np.arange(len(palette)) % 20)
    ax = ax if ax is not None else plt.subplots(figsize=(5.8, 4.2), layout="constrained")[1]
    cmap = matplotlib.colors.ListedColormap(colours)
    shown = np.asarray(data.tile_patterns).reshape(k, k)  # [i, j]: i along y_1
    edges = data.edges
    ax.pcolormesh(edges, edges, shown.T, cmap=cmap, vmin=-0.5, vmax=len(palette) - 0.5, edgecolors="white",
                  linewidth=1.5, alpha=0.75)  # fmt: skip
    side = edges[1] - edges[0]
    for c, (u, v) in enumerate(data.tile_centres):
        ax.text(u - 0.42 * side, v + 0.42 * side, f"{c}", ha="left", va="top", fontsize="small", color="0.15")
    for c in highlight:
        u, v = data.tile_centres[c] - side / 2
        outline = matplotlib.patches.Rectangle((u, v), side, side, fill=False, edgecolor="black", lw=2.5, zorder=3)
        ax.add_patch(outline).set_clip_on(False)  # an outline on the room's wall is drawn whole
    handles = [
        matplotlib.patches.Patch(color=colours[p], alpha=0.75, label=f"pattern {p}: {_format_point(palette[p])}")
        for p in range(len(palette))
    ]
    if len(highlight):
        handles.append(matplotlib.patches.Patch(fill=False, edgecolor="black", lw=2.5, label=highlight_label))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0),
              title="each tile shows")  # fmt: skip
    ax.set(xlabel="$y_1$", ylabel="$y_2$", aspect="equal", xlim=(edges[0], edges[-1]), ylim=(edges[0], edges[-1]),
           title=title or f"{data.name}: {k} x {k} tiles c, {len(palette)} patterns")  # fmt: skip
    return ax

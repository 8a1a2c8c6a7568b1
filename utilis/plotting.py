"""Figures for one-to-many problems: the data, p(y|x*) curves, heat maps, model beside truth.

Every helper draws on matplotlib axes it is given (or makes them) and returns them; none calls
``plt.show()``, so figures compose and save. Densities are anything that speaks the
conditional-density protocol; heat maps take log-densities from :mod:`utilis.density`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
)
from utilis.protocol import ConditionalDensity, JointDensity, finite_array, require_density

__all__ = [
    "plot_against_truth",
    "plot_bayesian_network",
    "plot_conditionals",
    "plot_dataset",
    "plot_heatmap",
    "plot_mixture_parameters",
    "plot_model_vs_truth",
    "plot_network_and_fit",
    "plot_overview",
    "plot_point_predictions",
    "plot_samples",
    "plot_x_given_y",
]

X_LABEL, Y_LABEL = "x (input)", "y (output)"


def plot_dataset(data, ax: Axes | None = None, split: str = "train", size: float = 6.0) -> Axes:
    """Scatter of a dataset's (x, y) points coloured by the component that generated each."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y, c = (getattr(data, f"{v}_{split}") for v in "xyc")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    k = data.n_components
    colours = plt.get_cmap("tab10" if k <= 10 else "viridis")(np.arange(k) / max(k - 1, 1) if k > 10 else np.arange(k))
    for component in range(k):
        keep = c == component
        ax.scatter(x[keep], y[keep], s=size, color=colours[component], alpha=0.6, linewidths=0,
                   label=f"c = {component}" if k <= 10 else None)  # fmt: skip
    if k <= 10:
        outside = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if k > 4 else {"loc": "best"}
        ax.legend(title="component", fontsize="small", markerscale=2, **outside)
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=f"{data.name}: {len(x)} {split} points")
    return ax


def plot_conditionals(
    densities: Mapping[str, ConditionalDensity],
    x_star: ArrayLike,
    y_grid: ArrayLike,
    data=None,
    window: float | None = None,
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """p(y | x*) at each x*, one panel each: every density's curve, and the data near x* as a histogram.

    A density labelled "truth" is drawn black and dashed, on top. ``window``: the half-width of the
    x slice whose training points are shown (default: 2% of the data's x range).
    """
    x_star = np.atleast_1d(finite_array(x_star, "x_star"))
    y = check_grid(y_grid, "y_grid")
    if not densities:
        raise ValueError("densities must name at least one density")
    if axes is None:
        axes = plt.subplots(1, len(x_star), figsize=(3.4 * len(x_star), 3.2), layout="constrained", squeeze=False)[1][0]
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(x_star):
        raise ValueError(f"axes must hold one axis per x*, {len(x_star)}, got {len(axes)}")
    curves = {label: np.exp(log_conditional_curves(d, y, x_star)) for label, d in densities.items()}
    if data is not None and window is None:
        window = 0.02 * (data.x_range[1] - data.x_range[0])
    for i, (ax, xs) in enumerate(zip(axes, x_star)):
        if data is not None:
            near = data.y_train[np.abs(data.x_train - xs) <= window]
            if len(near):
                bins = np.histogram_bin_edges(near, bins="auto")  # as fine as the points allow
                ax.hist(near, bins=bins, density=True, color="0.8",
                        label=f"data, |x - x*| ≤ {window:.2g} (n={len(near)})")  # fmt: skip
        for label, values in curves.items():
            style = {"color": "black", "linestyle": "--", "zorder": 5} if label == "truth" else {}
            ax.plot(y, values[i], label=label, linewidth=1.5, **style)
        ax.set(xlabel=Y_LABEL, ylabel="p(y | x*)" if i == 0 else None, title=f"x* = {xs:.3g}")
    axes[0].legend(fontsize="x-small", loc="upper left")
    return axes


def plot_heatmap(
    log_values: ArrayLike,
    x_grid: ArrayLike,
    y_grid: ArrayLike,
    ax: Axes | None = None,
    title: str | None = None,
    label: str = "density",
    vmax: float | None = None,
) -> Axes:
    """A density image (log-densities in, densities shown): rows y, columns x, real values on both axes.

    ``vmax`` caps the colour scale (default: the 99.5th percentile, so one sharp peak doesn't wash out
    the rest; the cap is marked on the colour bar).
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
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL)
    if title:
        ax.set_title(title)
    return ax


def plot_model_vs_truth(
    model: ConditionalDensity,
    truth: ConditionalDensity,
    x_grid: ArrayLike,
    y_grid: ArrayLike,
    kind: str = "conditional",
    model_label: str = "model",
    axes: Sequence[Axes] | None = None,
) -> np.ndarray:
    """Two heat maps on one colour scale: the model's p(y|x) (or p(x, y)) beside the truth's.

    For ``kind="joint"`` a model without a p(x) of its own (not a
    :class:`~utilis.protocol.JointDensity`: the MDN, the baselines) is drawn as q(y|x) p(x) with the
    truth's p(x).
    """
    if kind not in ("conditional", "joint"):
        raise ValueError(f"kind must be 'conditional' or 'joint', got {kind!r}")
    if kind == "conditional":
        truth_values, model_values = (
            log_conditional_grid(truth, x_grid, y_grid),
            log_conditional_grid(model, x_grid, y_grid),
        )
    else:
        truth_values = log_joint_grid(truth, x_grid, y_grid)
        p_x = None if isinstance(model, JointDensity) else truth.log_marginal_x
        model_values = log_joint_grid(model, x_grid, y_grid, p_x)
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True, layout="constrained")[1]
    vmax = float(np.quantile(np.exp(truth_values), 0.995))
    name = "p(y | x)" if kind == "conditional" else "p(x, y)"
    plot_heatmap(truth_values, x_grid, y_grid, axes[0], f"truth {name}", name, vmax)
    plot_heatmap(model_values, x_grid, y_grid, axes[1], f"{model_label} {name}", name, vmax)
    return np.asarray(axes)


def plot_overview(data, x_star: ArrayLike, n_x: int = 400, n_y: int = 3000, min_mass: float = 0.05) -> plt.Figure:
    """One dataset at a glance, from its exact density.

    Top: the training points coloured by component, with E[y|x] (what squared-error regression
    learns) and the x* below marked; the true joint p(x, y). Middle: the true p(y | x*) at each x*,
    over the training points near x*. Bottom: how many modes p(y|x) has along x (peaks holding
    ``min_mass``), over p(x) for where the data is.
    """
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
    plot_heatmap(log_joint_grid(data.truth, x_grid, y_grid), x_grid, y_grid, joint_ax, "true joint p(x, y)", "p(x, y)")
    plot_conditionals({"truth": data.truth}, x_star, y_grid, data=data, axes=middle.subplots(1, len(x_star)))
    middle.suptitle("true p(y | x*), over the training points near x*")
    modes_ax = bottom.subplots()
    modes_ax.step(x_grid, count_modes(data.truth, x_grid, y_grid, min_mass), where="mid", color="C3")
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
    ax = ax if ax is not None else plt.subplots(figsize=(3, 2.2), layout="constrained")[1]
    arrow = {"arrowstyle": "-|>", "lw": 1.5, "shrinkA": 17, "shrinkB": 17, "color": "0.2"}
    for parent, child in edges:
        ax.annotate("", xy=position[child], xytext=position[parent], arrowprops=arrow)
    for name, (u, v) in position.items():
        ax.scatter([u], [v], s=900, color="white", edgecolors="0.2", linewidths=1.5, zorder=3)
        ax.text(u, v, name, ha="center", va="center", fontsize=13, zorder=4)
    ax.set_xlim(-0.5, max(depth.values()) + 0.5)
    ax.set_ylim(-1.0, 1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize="medium")
    return ax


def plot_x_given_y(model, data, ax: Axes | None = None, bands: float = 2.0) -> Axes:
    """The model's p(x | y, c) over the training points: for each c its mean of x (a line along y) and a
    band of ``bands`` standard deviations, over y where component c has data.

    ``model`` needs ``x_mean_sd(y)`` returning the mean and sd of x for every component at each y.
    """
    ax = plot_dataset(data, ax, size=4.0)
    colours = plt.get_cmap("tab10" if data.n_components <= 10 else "viridis")
    for c in range(data.n_components):
        y_c = data.y_train[data.c_train == c]
        if len(y_c) < 2:
            continue
        y = np.linspace(y_c.min(), y_c.max(), 300)
        mean, sd = (values[:, c] for values in model.x_mean_sd(y))
        colour = colours(c / max(data.n_components - 1, 1) if data.n_components > 10 else c)
        ax.fill_betweenx(y, mean - bands * sd, mean + bands * sd, color=colour, alpha=0.25, linewidth=0)
        ax.plot(mean, y, color="black", linewidth=0.8)
    ax.set_title(f"{data.name}: network's mean of x, ± {bands:g} sd, per component")
    return ax


def plot_network_and_fit(model, data) -> plt.Figure:
    """A generative model's Bayesian network (``model.edges``) beside its p(x | parents) over the data."""
    figure, (dag_ax, data_ax) = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=[1, 2.4], layout="constrained")
    plot_bayesian_network(model.edges, dag_ax, title="Bayesian network")
    plot_x_given_y(model, data, data_ax)
    return figure


def plot_against_truth(model: ConditionalDensity, data, x_star: ArrayLike, label: str = "model", kind: str = "joint"):
    """A model beside a dataset's truth: p(y | x*) curves over the nearby data, then two heat maps."""
    y_grid = np.linspace(*data.y_range, 2000)
    curves = plot_conditionals({"truth": data.truth, label: model}, x_star, y_grid, data=data)
    x_grid, y_grid = np.linspace(*data.x_range, 300), np.linspace(*data.y_range, 400)
    maps = plot_model_vs_truth(model, data.truth, x_grid, y_grid, kind=kind, model_label=label)
    return curves, maps


def plot_point_predictions(
    predictions: Mapping[str, np.ndarray], data, x_grid: ArrayLike, ax: Axes | None = None
) -> Axes:
    """Single-answer predictions along x (one line each) over the data, with the true E[y | x] dashed."""
    x = check_grid(x_grid, "x_grid")
    ax = plot_dataset(data, ax, size=4.0)
    y_grid = np.linspace(*data.y_range, 3000)
    ax.plot(x, conditional_mean(data.truth, x, y_grid), color="black", ls="--", lw=1.2, label="true E[y | x]")
    for i, (label, values) in enumerate(predictions.items()):
        ax.plot(x, values, lw=2, color=f"C{(i + 3) % 10}", label=label)
    ax.legend(fontsize="small", markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"{data.name}: single answers")
    return ax


def plot_mixture_parameters(mixture, data, x_grid: ArrayLike, axes: Sequence[Axes] | None = None) -> np.ndarray:
    """A mixture's pi_k(x), mu_k(x) (over the data) and sigma_k(x) along x, as in Bishop's Figure 5.21.

    ``mixture(x)`` must return three arrays (len(x), K): weights, means and scales.
    """
    x = check_grid(x_grid, "x_grid")
    weights, means, scales = mixture(x)
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")[1]
    axes[1].scatter(data.x_train, data.y_train, s=3, color="0.75", linewidths=0)
    for k in range(weights.shape[1]):
        line = axes[0].plot(x, weights[:, k], lw=1.2)[0]
        alpha = np.clip(weights[:, k] * 3, 0.05, 1.0)  # a component's mean shown as strongly as it weighs
        axes[1].scatter(x, means[:, k], s=2, color=line.get_color(), alpha=alpha, linewidths=0)
        axes[2].plot(x, scales[:, k], lw=1.2, color=line.get_color(), alpha=0.8)
    axes[0].set(xlabel=X_LABEL, ylabel="mixing weight pi_k(x)", ylim=(0, 1))
    axes[1].set(xlabel=X_LABEL, ylabel="mean mu_k(x)", ylim=data.y_range, title="means, shaded by weight")
    axes[2].set(xlabel=X_LABEL, ylabel="scale sigma_k(x)", yscale="log")
    return np.asarray(axes)


def plot_samples(model: ConditionalDensity, data, n_x: int = 400, ax: Axes | None = None, seed: int = 0) -> Axes:
    """Points drawn from the model, one y per x at ``n_x`` x from the data, over the training points."""
    model = require_density(model, "model")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4), layout="constrained")[1]
    rng = np.random.default_rng(seed)
    x = rng.choice(data.x_train, size=min(n_x, len(data.x_train)), replace=False)
    ax.scatter(data.x_train, data.y_train, s=4, color="0.7", linewidths=0, label="training data")
    ax.scatter(x, model.sample(x, 1, seed=rng)[0], s=5, color="C3", linewidths=0, label="samples from the model")
    ax.set(xlabel=X_LABEL, ylabel=Y_LABEL, title=f"{data.name}: samples", ylim=data.y_range)
    ax.legend(fontsize="small", markerscale=2)
    return ax

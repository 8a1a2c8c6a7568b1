"""Figures of the leaderboard (``benchmarks/results/leaderboard.csv``): every model against the truth.

The CSV has one row per dataset, training size, seed and model (``benchmarks/leaderboard.py`` writes
it); these helpers read it and draw what a researcher asks of it: how each model's gap to the Bayes
floor falls with data (beside the oracles), what it costs in training time, how well calibrated it
is, and which model wins where. Like every helper here, they return axes and never show.

Example:
    >>> rows = [{"dataset": "linear", "n_train": 300, "seed": 0, "model": "MDN", "status": "ok", "gap": 0.1,
    ...          "train_seconds": 1.0, "calibration_ks": 0.05}]
    >>> curves = learning_curves(rows, "linear")
    >>> curves["MDN"]["sizes"], curves["MDN"]["mean"]
    ([300], [0.1])
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

__all__ = [
    "learning_curves",
    "load_leaderboard",
    "plot_calibration",
    "plot_learning_curves",
    "plot_quality_vs_time",
    "plot_winners",
]

NUMERIC = ("n_train", "seed", "gap", "gap_stderr", "bayes_floor", "kl", "mode_recall", "mode_precision",
           "best_of_20", "calibration_ks", "train_seconds", "parameters")  # fmt: skip


def load_leaderboard(path: str | Path) -> list[dict]:
    """The CSV's rows, numbers as numbers (empty cells, for runs that failed, as NaN)."""
    with Path(path).open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in NUMERIC:
            if key in row:
                row[key] = float(row[key]) if row[key] not in ("", None) else float("nan")
        row["n_train"], row["seed"] = int(row["n_train"]), int(row["seed"])
    return rows


def _is_oracle(model: str) -> bool:
    return model.startswith("oracle")


def learning_curves(rows: list[dict], dataset: str, metric: str = "gap") -> dict[str, dict]:
    """Per model: the training sizes, and the mean, min and max of ``metric`` over the seeds that
    succeeded at each (``failed``: the sizes where some run failed or timed out)."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        if row["dataset"] != dataset:
            continue
        if row["status"] == "ok":
            values[row["model"]][row["n_train"]].append(float(row[metric]))
        else:
            failed[row["model"]].add(row["n_train"])
    curves = {}
    for model in dict.fromkeys([r["model"] for r in rows if r["dataset"] == dataset]):
        sizes = sorted(values[model])
        curves[model] = {
            "sizes": sizes,
            "mean": [float(np.mean(values[model][n])) for n in sizes],
            "low": [float(np.min(values[model][n])) for n in sizes],
            "high": [float(np.max(values[model][n])) for n in sizes],
            "failed": sorted(failed[model]),
        }
    return curves


def _colours(models: list[str]) -> dict[str, tuple]:
    palette = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    fitted = [m for m in models if not _is_oracle(m)]
    return {m: palette[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20] for i, m in enumerate(fitted)}


def plot_learning_curves(rows: list[dict], datasets: list[str], axes: list[Axes] | None = None) -> np.ndarray:
    """Gap to the Bayes floor against training size, log-log, one panel per dataset: each model's mean
    over seeds with a band from the best to the worst seed, the oracles as horizontal lines (their
    gap does not depend on the training size). An infinite gap (a histogram that gives some test point
    density 0) cannot be drawn on a log axis and is listed in the legend."""
    if axes is None:
        axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.6), layout="constrained")[1]
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        curves = learning_curves(rows, dataset)
        colours = _colours(list(dict.fromkeys(r["model"] for r in rows)))  # one colour a model, in every panel
        for model, curve in curves.items():
            finite = np.isfinite(curve["mean"]) & (np.asarray(curve["mean"]) > 0)
            sizes = np.asarray(curve["sizes"])[finite]
            if _is_oracle(model):
                if finite.any():
                    level = float(np.mean(np.asarray(curve["mean"])[finite]))
                    ax.axhline(level, color="0.3", ls="--" if "Gaussian" in model else ":", lw=1.2, label=model)
                continue
            label = model  # a size where the gap is inf (or rounds to <= 0) is left out of the log axis
            if finite.any():
                ax.plot(sizes, np.asarray(curve["mean"])[finite], "o-", ms=3, lw=1.4, color=colours[model], label=label)
                ax.fill_between(sizes, np.asarray(curve["low"])[finite], np.asarray(curve["high"])[finite],
                                color=colours[model], alpha=0.15, lw=0)  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="training points n", title=f"{dataset}: gap against training size")
        ax.set_ylabel("gap to the Bayes floor (nats)")
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
    labels = list(handles)
    axes[0].figure.legend([handles[k] for k in labels], labels, loc="outside right upper", fontsize="small")
    return axes


def plot_quality_vs_time(rows: list[dict], datasets: list[str], n_train: int, axes: list[Axes] | None = None):
    """Gap against training seconds at one training size, one panel per dataset, each model a point
    (mean over seeds) with its name; both axes logarithmic. Oracles cost no training and are left out."""
    if axes is None:
        axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), layout="constrained")[1]
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if row["dataset"] == dataset and row["n_train"] == n_train and row["status"] == "ok":
                groups[row["model"]].append(row)
        colours = _colours(list(dict.fromkeys(r["model"] for r in rows)))
        for model, group in groups.items():
            gap, seconds = np.mean([r["gap"] for r in group]), np.mean([r["train_seconds"] for r in group])
            if _is_oracle(model) or not np.isfinite(gap) or gap <= 0:
                continue
            ax.scatter(seconds, gap, color=colours[model], s=30, zorder=3)
            ax.annotate(model, (seconds, gap), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
        ax.set(xscale="log", yscale="log", xlabel="training seconds (2 CPU cores)", ylabel="gap (nats)",
               title=f"{dataset}, n = {n_train:,}: quality against cost")  # fmt: skip
    return axes


def plot_calibration(rows: list[dict], datasets: list[str], n_train: int, ax: Axes | None = None) -> Axes:
    """The calibration of each model at one training size: the Kolmogorov-Smirnov distance of its
    probability integral transform from uniform (0: calibrated), a bar per model and dataset."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    ax = ax if ax is not None else plt.subplots(figsize=(10, 4), layout="constrained")[1]
    width = 0.8 / len(datasets)
    for j, dataset in enumerate(datasets):
        values = []
        for model in models:
            group = [r["calibration_ks"] for r in rows if r["dataset"] == dataset and r["model"] == model
                     and r["n_train"] == n_train and r["status"] == "ok"]  # fmt: skip
            values.append(np.mean(group) if group else np.nan)
        ax.bar(np.arange(len(models)) + (j - (len(datasets) - 1) / 2) * width, values, width, label=dataset)
    ax.set_xticks(np.arange(len(models)), models, rotation=35, ha="right", fontsize="small")
    ax.set(ylabel="KS distance of the PIT from uniform", title=f"calibration at n = {n_train:,} (0: calibrated)")
    ax.legend(title="dataset", fontsize="small")
    return ax


def plot_winners(rows: list[dict], datasets: list[str], ax: Axes | None = None) -> Axes:
    """Each model's rank by mean gap (1: closest to the truth) at every dataset and training size, as a
    table of coloured cells with the rank written in; oracles are not ranked."""
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if not _is_oracle(m)]
    columns = [(d, n) for d in datasets for n in sorted({r["n_train"] for r in rows if r["dataset"] == d})]
    ranks = np.full((len(models), len(columns)), np.nan)
    for j, (dataset, n) in enumerate(columns):
        gaps = []
        for model in models:
            group = [r["gap"] for r in rows if (r["dataset"], r["n_train"], r["model"]) == (dataset, n, model)
                     and r["status"] == "ok"]  # fmt: skip
            gaps.append(np.mean(group) if group else np.inf)
        order = np.argsort(gaps, kind="stable")
        for rank, i in enumerate(order, start=1):
            ranks[i, j] = rank if np.isfinite(gaps[i]) else np.nan
    ax = ax if ax is not None else plt.subplots(figsize=(1 + 0.6 * len(columns), 0.45 * len(models) + 1.5),
                                                layout="constrained")[1]  # fmt: skip
    ax.imshow(ranks, cmap="viridis_r", aspect="auto")
    for i in range(len(models)):
        for j in range(len(columns)):
            text = "–" if np.isnan(ranks[i, j]) else f"{int(ranks[i, j])}"
            dark = not np.isnan(ranks[i, j]) and ranks[i, j] <= len(models) / 3  # the dark end of the map
            ax.text(j, i, text, ha="center", va="center", fontsize="small", color="white" if dark else "black")
    ax.set_xticks(range(len(columns)), [f"{d}\n{n:,}" for d, n in columns], fontsize="x-small")
    ax.set_yticks(range(len(models)), models, fontsize="small")
    ax.set_title("rank by gap to the Bayes floor (1: closest to the truth; –: infinite or failed)")
    return ax

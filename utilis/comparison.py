"""Figures of the leaderboard (``benchmarks/results/leaderboard.csv``): every model against the truth.

The CSV has one row per dataset, training size, seed and model (``benchmarks/leaderboard.py`` writes
it); these helpers read it and draw what a researcher asks of it: how each model's gap to the Bayes
floor falls with data (beside the oracles), what it costs in training time, how well calibrated it
is, and which model wins where; :func:`cells_table` and :func:`metric_table` print the cells a text quotes.
Like every helper here, they return axes and never show.

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
from matplotlib.ticker import FuncFormatter, NullFormatter

__all__ = [
    "FAMILIES",
    "cell_summary",
    "cells_table",
    "ks_noise_floor",
    "learning_curves",
    "load_leaderboard",
    "metric_table",
    "model_ranks",
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


def _models_in_order(rows: list[dict]) -> list[str]:
    """The models of ``rows`` as they first appear, the oracles after every fitted model (a model added to
    the CSV later still comes before them)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    return [m for m in models if not _is_oracle(m)] + [m for m in models if _is_oracle(m)]


def _runs(rows: list[dict], dataset: str, n_train: int, model: str) -> list[dict]:
    return [r for r in rows if (r["dataset"], r["n_train"], r["model"]) == (dataset, n_train, model)]


def cell_summary(rows: list[dict], dataset: str, n_train: int, model: str) -> dict:
    """One cell of the leaderboard (a dataset, training size and model), over the seeds that succeeded:
    ``gaps`` (one a seed), their mean ``gap`` and its standard error ``gap_stderr`` (the spread over
    seeds and each run's own error, as the README's table computes it; NaN where a gap is infinite),
    the mean of every other metric, and ``runs``/``ok`` counts. ``ValueError`` for a cell with no rows."""
    group = _runs(rows, dataset, n_train, model)
    if not group:
        raise ValueError(f"no runs of {model!r} on {dataset!r} at n_train={n_train}")
    ok = [r for r in group if r["status"] == "ok"]
    gaps = np.array([r["gap"] for r in ok], dtype=float)
    entry = {"runs": len(group), "ok": len(ok), "gaps": gaps.tolist(), "gap": float(np.mean(gaps)) if ok else np.nan}
    if not ok or not np.isfinite(gaps).all():
        entry["gap_stderr"] = np.nan
    else:
        spread = gaps.std(ddof=1) / np.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
        own = np.sqrt(np.sum([r["gap_stderr"] ** 2 for r in ok])) / len(ok)
        entry["gap_stderr"] = float(np.hypot(spread, own))
    for key in NUMERIC[4:]:  # the metrics after n_train, seed, gap and gap_stderr
        entry[key] = float(np.mean([r.get(key, np.nan) for r in ok])) if ok else np.nan
    return entry


def _format(entry: dict, metric: str, digits: int) -> str:
    if metric == "gap":
        text = f"{entry['gap']:.{digits}f}"
        return text + (f" ± {entry['gap_stderr']:.{digits}f}" if np.isfinite(entry["gap_stderr"]) else "")
    if metric == "seeds":  # the gap of each seed, best to worst
        return " ".join(f"{g:.{digits}f}" for g in sorted(entry["gaps"]))
    if metric == "train_seconds":
        return f"{entry[metric]:.1f}"
    return f"{entry[metric]:.{digits}f}"


_HEADINGS = {"gap": "gap ± se (nats)", "seeds": "gap of each seed", "train_seconds": "seconds",
             "calibration_ks": "KS of the PIT"}  # fmt: skip


def cells_table(rows: list[dict], cells: list[tuple[str, int, str]], metrics=("gap",), digits: int = 3) -> str:
    """A plain-text table of the given cells ``(dataset, n_train, model)``, one line each, with the
    ``metrics`` asked for: ``"gap"`` (mean over seeds ± standard error), ``"seeds"`` (each seed's gap,
    best to worst) or any column of the CSV (its mean over seeds)."""
    body = [[d, f"{n:,}", m] + [_format(cell_summary(rows, d, n, m), k, digits) for k in metrics] for d, n, m in cells]
    return _aligned(["dataset", "n", "model", *(_HEADINGS.get(k, k) for k in metrics)], body, left=3)


def metric_table(rows: list[dict], metric: str, datasets: list[str], n_train: int, digits: int = 3) -> str:
    """A plain-text table of one metric (its mean over seeds; ``"gap"`` with its standard error) at one
    training size: a line per model, a column per dataset ("–" where a model has no run)."""
    models = _models_in_order(rows)
    body = [[m] + [_format(cell_summary(rows, d, n_train, m), metric, digits) if _runs(rows, d, n_train, m) else "–"
                   for d in datasets] for m in models]  # fmt: skip
    return _aligned([f"{_HEADINGS.get(metric, metric)}, {n_train:,} training points", *datasets], body, left=1)


def _aligned(header: list[str], body: list[list[str]], left: int) -> str:
    """Columns padded to their widest entry: the first ``left`` (names) to the left, numbers to the right."""
    widths = [max(len(line[j]) for line in [header, *body]) for j in range(len(header))]
    return "\n".join(
        "  ".join(
            text.ljust(w) if j < left else text.rjust(w) for j, (text, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in [header, *body]
    )


def ks_noise_floor(n: int) -> tuple[float, float]:
    """The Kolmogorov-Smirnov distance of ``n`` truly uniform values from uniform: its expected value and
    its 95% quantile (scipy's exact distribution ``kstwo``). A calibrated model's PIT scatters there."""
    from scipy.stats import kstwo

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return float(kstwo.mean(n)), float(kstwo.ppf(0.95, n))


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


FAMILIES = {
    "mixtures": ("generative", "GMR", "MDN"),
    "flows": ("spline flow", "flow matching"),
    "energy models": ("energy", "energy (InfoNCE)", "energy, embeddings"),
    "hypotheses and kernels": ("hypotheses", "KDE"),
    "one answer, or bins": ("MSE regression", "bins"),
}
"""The panels of :func:`plot_learning_curves`: two or three models each, so that no line hides another."""

# One colour and marker per fitted model in every figure; grey is kept for the oracles.
_PALETTE = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "black", "darkgoldenrod", "navy"]  # fmt: skip
_MARKERS = "osD^v<>pPX*h"
_ORACLE_LINES = {"oracle: best single Gaussian": "--", "oracle: binned truth": ":"}
LINTHRESH = 1e-3
"""Below this gap (nats) the symlog axes are linear, so that a gap of 0 or a hair below it is drawn."""


def _styles(rows: list[dict]) -> dict[str, dict]:
    fitted = [m for m in dict.fromkeys(r["model"] for r in rows) if not _is_oracle(m)]
    n = len(_PALETTE)
    return {m: {"color": _PALETTE[i % n], "marker": _MARKERS[i % len(_MARKERS)]} for i, m in enumerate(fitted)}


def _families(rows: list[dict]) -> dict[str, tuple[str, ...]]:
    """:data:`FAMILIES` restricted to the models in ``rows``, plus a panel for any model it does not list."""
    present = [m for m in dict.fromkeys(r["model"] for r in rows) if not _is_oracle(m)]
    groups = {name: tuple(m for m in models if m in present) for name, models in FAMILIES.items()}
    listed = {m for models in groups.values() for m in models}
    groups["other"] = tuple(m for m in present if m not in listed)
    return {name: models for name, models in groups.items() if models}


def _gap_axis(ax: Axes) -> None:
    ax.set_yscale("symlog", linthresh=LINTHRESH, linscale=0.4)
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)


def plot_learning_curves(rows: list[dict], datasets: list[str], axes: np.ndarray | None = None) -> np.ndarray:
    """Gap to the Bayes floor against training size: a row per dataset, a panel per family of
    :data:`FAMILIES` (so every model's line is seen), each model's mean over seeds with a band from the
    best to the worst seed, and in every panel the two oracles in grey. The gap axis is symlog, linear
    below ``LINTHRESH`` so a gap of 0 (or just below, for a seed that beat the floor on its test points)
    is drawn; sizes where the mean is infinite (a histogram that gave a test point density 0) are
    written in the panel. Returns the (datasets, families) array of axes."""
    groups, styles = _families(rows), _styles(rows)
    if axes is None:
        axes = plt.subplots(len(datasets), len(groups), figsize=(3.3 * len(groups), 2.7 * len(datasets) + 0.9),
                            sharex=True, sharey=True, layout="constrained", squeeze=False)[1]  # fmt: skip
    axes = np.asarray(axes).reshape(len(datasets), len(groups))
    for i, dataset in enumerate(datasets):
        curves = learning_curves(rows, dataset)
        for j, (family, models) in enumerate(groups.items()):
            ax = axes[i, j]
            for oracle, ls in _ORACLE_LINES.items():
                if oracle in curves:
                    _draw_curve(ax, curves[oracle], dict(color="0.45", ls=ls, lw=1.1, label=oracle))
            infinite = []
            for k, model in enumerate(models):
                if model not in curves:
                    continue
                style = dict(styles[model], ls=("-", "--", "-.")[k % 3], ms=3.5, lw=1.4, label=model)
                _draw_curve(ax, curves[model], style, band=True)  # a dashed line shows one it lies on
                sizes = [n for n, g in zip(curves[model]["sizes"], curves[model]["mean"]) if not np.isfinite(g)]
                if sizes:
                    infinite.append(f"{model}: ∞ at n = {', '.join(f'{n:,}' for n in sizes)}")
            if infinite:
                ax.text(0.03, 0.04, "\n".join(infinite), transform=ax.transAxes, fontsize="x-small", va="bottom")
            _gap_axis(ax)
            ax.set_xscale("log")
            if i == 0:  # the family's legend heads its column, above the data
                ax.legend(handles=[h for h, lab in zip(*ax.get_legend_handles_labels()) if not _is_oracle(lab)],
                          title=family, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize="small",
                          frameon=False)  # fmt: skip
            if j == 0:
                ax.set_ylabel(f"{dataset}\ngap to the Bayes floor (nats)")
            if i == len(datasets) - 1:
                ax.set_xlabel("training points n")
    oracles = {lab: h for h, lab in zip(*axes[0, 0].get_legend_handles_labels()) if _is_oracle(lab)}
    labels = [label + _infinite_note(rows, label, datasets) for label in oracles]
    axes[0, 0].figure.legend(oracles.values(), labels, loc="outside lower center", ncol=len(oracles), fontsize="small")
    return axes


def _infinite_note(rows: list[dict], model: str, datasets: list[str]) -> str:
    """Where a model's mean gap is infinite, e.g. " (∞ at n = 300, 900 on linear)", or ""."""
    notes = []
    for dataset in datasets:
        curve = learning_curves(rows, dataset).get(model)
        sizes = [n for n, g in zip(curve["sizes"], curve["mean"]) if not np.isfinite(g)] if curve else []
        if sizes:
            notes.append(f"{', '.join(f'{n:,}' for n in sizes)} on {dataset}")
    return f" (∞ at n = {'; '.join(notes)})" if notes else ""


def _draw_curve(ax: Axes, curve: dict, style: dict, band: bool = False) -> None:
    """A model's mean over seeds (and its best-to-worst band) where it is finite."""
    mean = np.asarray(curve["mean"], dtype=float)
    finite = np.isfinite(mean)
    if not finite.any():
        return
    sizes = np.asarray(curve["sizes"])[finite]
    ax.plot(sizes, mean[finite], **style)
    if band:
        low, high = np.asarray(curve["low"])[finite], np.asarray(curve["high"])[finite]
        ax.fill_between(sizes, low, high, color=style["color"], alpha=0.18, lw=0)


def plot_quality_vs_time(rows: list[dict], datasets: list[str], n_train: int, axes: list[Axes] | None = None):
    """Gap against training seconds at one training size, one panel per dataset, each model a marker
    (mean over seeds) in its colour, named in one legend beside the panels; seconds on a log axis, the
    gap on a symlog one (linear below ``LINTHRESH``). Oracles cost no training and are left out."""
    styles = _styles(rows)
    if axes is None:
        axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets) + 1.8, 3.8), layout="constrained")[1]
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        for model, style in styles.items():
            if not _runs(rows, dataset, n_train, model):
                continue
            entry = cell_summary(rows, dataset, n_train, model)
            if np.isfinite(entry["gap"]):
                ax.scatter(entry["train_seconds"], entry["gap"], s=40, zorder=3, label=model, **style)
        _gap_axis(ax)
        ax.set(xscale="log", xlabel="training seconds", title=f"{dataset}, n = {n_train:,} training points")
        ax.grid(alpha=0.3)
    seconds = [r["train_seconds"] for r in rows if r["n_train"] == n_train and not _is_oracle(r["model"])]
    for ax in axes:  # one seconds axis for every panel, labelled 1, 2, 5, 10, ... (not 2 × 10¹)
        ax.set_xlim(np.nanmin(seconds) / 1.4, np.nanmax(seconds) * 1.4)
        ax.set_xticks([t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if ax.get_xlim()[0] < t
                       < ax.get_xlim()[1]])  # fmt: skip
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("gap to the Bayes floor (nats)")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="outside right center", fontsize="small")
    return axes


def plot_calibration(rows: list[dict], datasets: list[str], n_train: int, ax: Axes | None = None,
                     n_points: int | None = 1_000) -> Axes:  # fmt: skip
    """The calibration of each model at one training size: the Kolmogorov-Smirnov distance of its
    probability integral transform from uniform (0: calibrated), a bar per model and dataset. With
    ``n_points`` (the points the PIT was computed on), two lines show where a calibrated model's
    distance falls by chance (:func:`ks_noise_floor`): its expected value and its 95% quantile."""
    models = _models_in_order(rows)
    ax = ax if ax is not None else plt.subplots(figsize=(11, 4.2), layout="constrained")[1]
    width = 0.8 / len(datasets)
    shades = plt.get_cmap("Blues")(np.linspace(0.35, 0.9, len(datasets)))  # datasets, not models: no model colour
    for j, dataset in enumerate(datasets):
        values = [cell_summary(rows, dataset, n_train, m)["calibration_ks"] if _runs(rows, dataset, n_train, m)
                  else np.nan for m in models]  # fmt: skip
        x = np.arange(len(models)) + (j - (len(datasets) - 1) / 2) * width
        ax.bar(x, values, width, color=shades[j], label=dataset)
    if n_points is not None:
        mean, q95 = ks_noise_floor(n_points)
        ax.axhline(mean, color="darkred", lw=1.2, label=f"expected if calibrated ({n_points:,} points)")
        ax.axhline(q95, color="darkred", lw=1.2, ls="--", label="95% quantile if calibrated")
    ax.set_xticks(np.arange(len(models)), models, rotation=35, ha="right", fontsize="small")
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set(
        ylabel="KS distance of the PIT from uniform",
        title=f"calibration at n = {n_train:,} training points (0: calibrated)",
    )
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def model_ranks(rows: list[dict], datasets: list[str]) -> tuple[list[str], list[tuple[str, int]], np.ndarray]:
    """Each fitted model's rank by mean gap (1: closest to the truth) in every (dataset, training size)
    column: ``(models, columns, ranks)`` with ranks of shape (models, columns), NaN where the gap is
    infinite or every run failed. The models come sorted by their mean rank, an unranked cell counting as
    last."""
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if not _is_oracle(m)]
    columns = [(d, n) for d in datasets for n in sorted({r["n_train"] for r in rows if r["dataset"] == d})]
    ranks = np.full((len(models), len(columns)), np.nan)
    for j, (dataset, n) in enumerate(columns):
        gaps = np.array([cell_summary(rows, dataset, n, m)["gap"] if _runs(rows, dataset, n, m) else np.inf
                         for m in models])  # fmt: skip
        gaps = np.where(np.isnan(gaps), np.inf, gaps)
        for rank, i in enumerate(np.argsort(gaps, kind="stable"), start=1):
            ranks[i, j] = rank if np.isfinite(gaps[i]) else np.nan
    order = np.argsort(np.where(np.isnan(ranks), len(models), ranks).mean(axis=1), kind="stable")
    return [models[i] for i in order], columns, ranks[order]


def plot_winners(rows: list[dict], datasets: list[str], ax: Axes | None = None) -> Axes:
    """Each model's rank by mean gap (1: closest to the truth) at every dataset and training size, as a
    table of coloured cells with the rank written in, dark text on light cells and white on dark ones;
    models sorted by mean rank (written beside their names), oracles not ranked."""
    models, columns, ranks = model_ranks(rows, datasets)
    mean = np.where(np.isnan(ranks), len(models), ranks).mean(axis=1)
    ax = ax if ax is not None else plt.subplots(figsize=(2.2 + 0.55 * len(columns), 0.4 * len(models) + 1.6),
                                                layout="constrained")[1]  # fmt: skip
    cmap, norm = plt.get_cmap("YlGnBu"), plt.Normalize(1, len(models))
    ax.imshow(np.ma.masked_invalid(ranks), cmap=cmap, norm=norm, aspect="auto")
    ax.set_facecolor("0.93")  # an unranked cell
    for i in range(len(models)):
        for j in range(len(columns)):
            if np.isnan(ranks[i, j]):
                ax.text(j, i, "–", ha="center", va="center", fontsize="small")
                continue
            r, g, b, _ = cmap(norm(ranks[i, j]))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # the cell's luminance picks the text colour
            ax.text(j, i, f"{int(ranks[i, j])}", ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")  # fmt: skip
    for j in range(1, len(columns)):
        if columns[j][0] != columns[j - 1][0]:  # a line between datasets
            ax.axvline(j - 0.5, color="white", lw=3)
    ax.set_xticks(range(len(columns)), [f"{d}\n{n:,}" for d, n in columns], fontsize="x-small")
    ax.set_yticks(range(len(models)), [f"{m} ({r:.1f})" for m, r in zip(models, mean)], fontsize="small")
    ax.set_ylabel("model (mean rank)")
    ax.set_xlabel("dataset and training points n")
    ax.set_title("rank by mean gap to the Bayes floor (1: closest to the truth; –: infinite)")
    return ax

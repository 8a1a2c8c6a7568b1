"""utilis.comparison: the leaderboard's cells, tables and figures, against hand computations and scipy."""

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from utilis.comparison import (
    cell_summary,
    cells_table,
    ks_noise_floor,
    load_leaderboard,
    metric_table,
    model_ranks,
    plot_calibration,
    plot_learning_curves,
    plot_quality_vs_time,
    plot_winners,
)
from utilis.metrics import ks_from_uniform

ROOT = Path(__file__).resolve().parents[1]


def _row(model, gap, seed=0, n=300, dataset="linear", status="ok", seconds=1.0, ks=0.05):
    return {"dataset": dataset, "n_train": n, "seed": seed, "model": model, "status": status, "gap": gap,
            "gap_stderr": 0.01, "calibration_ks": ks, "train_seconds": seconds, "bayes_floor": -1.0, "kl": 0.1,
            "mode_recall": 1.0, "mode_precision": 1.0, "best_of_20": 0.1, "parameters": 10.0}  # fmt: skip


@pytest.fixture
def rows():
    table = [_row("MDN", 0.1, seed=0), _row("MDN", 0.3, seed=1), _row("MDN", float("nan"), seed=2, status="timeout")]
    table += [_row("KDE", g, seed=s, seconds=4.0) for s, g in enumerate((0.5, 0.7))]
    table += [_row("bins", g, seed=s) for s, g in enumerate((0.05, float("inf")))]
    table += [_row("oracle: best single Gaussian", 1.0, seed=s) for s in (0, 1)]
    return table


def test_cell_summary_is_the_mean_over_seeds_with_its_standard_error(rows):
    mdn = cell_summary(rows, "linear", 300, "MDN")
    assert (mdn["runs"], mdn["ok"]) == (3, 2)  # the timeout is counted, not averaged
    assert mdn["gap"] == pytest.approx(0.2)
    assert mdn["gap_stderr"] == pytest.approx(np.hypot(0.1, np.sqrt(2) * 0.01 / 2))
    bins = cell_summary(rows, "linear", 300, "bins")
    assert bins["gap"] == np.inf and np.isnan(bins["gap_stderr"])
    with pytest.raises(ValueError, match="no runs of 'GMR'"):
        cell_summary(rows, "linear", 300, "GMR")


def test_cell_summary_agrees_with_the_readme_table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import leaderboard

    rows = load_leaderboard(ROOT / "benchmarks" / "results" / "leaderboard.csv")
    reference = leaderboard.summarise(leaderboard.read_rows())
    for key in [("linear", 300, "MDN"), ("sinusoid", 30_000, "energy"), ("camera", 3_000, "flow matching")]:
        ours = cell_summary(rows, *key)
        for name in ("gap", "gap_stderr", "calibration_ks", "train_seconds"):
            assert ours[name] == pytest.approx(reference[key][name])


def test_tables_print_the_cells_asked_for(rows):
    text = cells_table(rows, [("linear", 300, "MDN"), ("linear", 300, "bins")], metrics=("gap", "seeds"))
    header, mdn, bins = text.splitlines()
    assert header.split()[:3] == ["dataset", "n", "model"]
    assert "0.200 ± 0.100" in mdn and mdn.endswith("0.100 0.300")
    assert "inf" in bins and bins.endswith("0.050 inf")
    seconds = metric_table(rows, "train_seconds", ["linear"], 300).splitlines()
    assert seconds[0].startswith("seconds, 300 training points") and seconds[2].split() == ["KDE", "4.0"]
    assert len(seconds) == 1 + 4  # a line per model, oracles included
    assert metric_table(rows, "gap", ["linear", "sinusoid"], 300).splitlines()[1].split()[-1] == "–"  # no run
    later = metric_table([*rows, _row("GMR", 0.2)], "gap", ["linear"], 300).splitlines()  # run after the oracles
    assert [line.split()[0] for line in later[1:]] == ["MDN", "KDE", "bins", "GMR", "oracle:"]


def test_ks_noise_floor_matches_simulation():
    mean, q95 = ks_noise_floor(1_000)
    draws = np.random.default_rng(0).uniform(size=(4_000, 1_000))
    simulated = np.array([ks_from_uniform(u) for u in draws])
    assert mean == pytest.approx(simulated.mean(), abs=1e-3)
    assert q95 == pytest.approx(np.quantile(simulated, 0.95), abs=2e-3)
    assert mean == pytest.approx(0.8687 / np.sqrt(1_000), rel=0.02)  # the asymptotic mean, sqrt(pi/2) ln 2 / sqrt(n)
    with pytest.raises(ValueError, match="n must be >= 1"):
        ks_noise_floor(0)


def test_model_ranks_sorts_by_mean_rank_and_leaves_infinite_gaps_unranked(rows):
    rows = [*rows, _row("MDN", 0.9, n=900), _row("KDE", 0.2, n=900), _row("bins", 0.5, n=900)]
    models, columns, ranks = model_ranks(rows, ["linear"])
    assert columns == [("linear", 300), ("linear", 900)]
    assert models == ["KDE", "MDN", "bins"]  # mean ranks 1.5, 2 and 2.5, bins' infinite cell counted last (3)
    np.testing.assert_array_equal(ranks, [[2, 1], [1, 3], [np.nan, 2]])


def test_figures_draw_every_model(rows):
    datasets = ["linear"]
    axes = plot_learning_curves(rows, datasets)
    assert axes.shape == (1, 3)  # families: mixtures (MDN), kernels (KDE), bins
    assert all(ax.get_yscale() == "symlog" for ax in axes.ravel())
    assert "bins: ∞ at n = 300" in [t.get_text() for t in axes[0, 2].texts]  # one infinite seed: the mean is
    plot_quality_vs_time(rows, datasets, n_train=300)
    ax = plot_calibration(rows, datasets, n_train=300, n_points=1_000)
    levels = sorted(line.get_ydata()[0] for line in ax.get_lines())
    assert levels == pytest.approx(sorted(ks_noise_floor(1_000)))
    ax = plot_winners(rows, datasets)
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours["1"] == "black"  # rank 1 is the light end of the map: dark text
    plt.close("all")

"""What every notebook shares: one seed, one figure style, the datasets, and one evaluation.

A notebook starts with::

    from utilis.notebook import SEED, evaluate, scalar_datasets, setup

    setup()
    linear, sinusoid, camera = scalar_datasets()

A notebook that fits many models hands them to :func:`fit_all`, which fits them side by side, one
process a core: the training loop trains on one thread, so a laptop's other cores would idle.

Every model in every notebook is scored by :func:`evaluate`, on the same fresh test set of each dataset
(:func:`test_set`: ``N_TEST`` points drawn with ``TEST_SEED``, never a seed the training points are drawn
with). A model trained the same way on the same data therefore prints the same gap in every notebook. A
notebook that must score on fewer points (a model whose density costs an ODE solve per point) passes
``n_points`` and prints the standard error beside the gap.

The datasets are the leaderboard's at 900 training points and seed 0 (``benchmarks/leaderboard.py``
draws them the same way), and ``TEST_SEED`` is the seed its fresh points for seed 0 use; it scores
20,000 of them where a notebook scores ``N_TEST``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed

from generate_dataset import SCALAR_DATASETS, ToyDataset
from utilis.metrics import fresh_seed, score
from utilis.protocol import ConditionalDensity, check_jobs

__all__ = ["N_TEST", "N_X", "SEED", "TEST_SEED", "evaluate", "fit_all", "scalar_datasets", "setup", "test_set"]

K = TypeVar("K")
M = TypeVar("M")

SEED = 0
"""Every dataset of a notebook is drawn from it (parameters, then points), and every fit draws its initial
weights and batch order from it."""

N_TEST = 5_000
"""Fresh points per dataset on which every notebook scores every model: the gap's standard error is about
0.01 nats on them, a tenth of the differences the notebooks discuss."""

N_X = 100
"""Inputs (the first of the test points) at which KL and modes are computed on a y grid."""

TEST_SEED = fresh_seed(SEED)
"""The seed of the test points: the one the leaderboard's runs at seed ``SEED`` are scored with."""


def setup() -> None:
    """Figures as PNG (what a static viewer shows), in one size and style; numpy prints 4 decimals."""
    try:  # inside IPython: PNG, not the retina or SVG a user's profile may set
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - plain Python
        pass
    plt.rcParams.update({"figure.dpi": 100, "axes.titlesize": "medium", "legend.fontsize": "small"})
    np.set_printoptions(precision=4, suppress=True)


def scalar_datasets(seed: int = SEED) -> list[ToyDataset]:
    """The three scalar datasets at their default settings, drawn from ``seed``: linear, sinusoid, camera."""
    return [make(seed=seed) for make in SCALAR_DATASETS.values()]


def test_set(data: ToyDataset, n_points: int = N_TEST) -> tuple[np.ndarray, np.ndarray]:
    """The fresh points (x, y) every notebook scores ``data``'s models on: the ones :func:`evaluate` uses."""
    x, y, _ = data.sample(n_points, seed=TEST_SEED)
    return x, y


def evaluate(
    models: Mapping[str, ConditionalDensity], data: ToyDataset, n_points: int = N_TEST
) -> dict[str, dict[str, float]]:
    """:func:`utilis.metrics.score` of each model on ``data``'s test set, keyed ``"<dataset>, <label>"``
    (what :func:`utilis.metrics.score_table` prints)."""
    return {
        f"{data.name}, {label}": score(model, data, n_points=n_points, n_x=N_X, seed=TEST_SEED)
        for label, model in models.items()
    }


def fit_all(recipes: Mapping[K, Callable[[], M]], n_jobs: int = -1) -> tuple[dict[K, M], dict[K, float]]:
    """Run each recipe (a function of no arguments that builds a model, fits it and returns it) in
    joblib's worker processes; the fitted models and each recipe's seconds, keyed as ``recipes``.

    The training loop trains on one thread (``cpu_threads=1``: small batches gain nothing from more),
    so fits side by side, one a core, take a fraction of the time of fits one after another. A fit is
    seeded, and gives the same weights in a worker as in the notebook's own process. Recipes may be
    lambdas and closures defined in a notebook: joblib sends them by value (cloudpickle). ``n_jobs``
    is joblib's: the processes at most (-1, the default: one a usable core; 1: one after another in
    this process). A recipe's error is raised here. The seconds are each fit's own, measured in its worker.
    """
    n_jobs = check_jobs(n_jobs)
    for key, recipe in recipes.items():
        if not callable(recipe):
            raise ValueError(
                f"recipes[{key!r}] must be a function of no arguments that returns a fitted model, "
                f"got {type(recipe).__name__}"
            )
    if not recipes:
        return {}, {}
    workers = n_jobs if n_jobs == -1 else min(n_jobs, len(recipes))
    results = Parallel(n_jobs=workers, batch_size=1)(delayed(_timed)(recipe) for recipe in recipes.values())
    models = {key: model for key, (model, _) in zip(recipes, results)}
    return models, {key: seconds for key, (_, seconds) in zip(recipes, results)}


def _timed(recipe: Callable[[], M]) -> tuple[M, float]:
    """The recipe's model and seconds; torch's compiler stack, which a process imports the first time it
    makes an optimiser (about a second), imported before the clock starts, so that no fit pays for it."""
    import torch._dynamo  # noqa: F401

    start = time.perf_counter()
    model = recipe()
    return model, time.perf_counter() - start

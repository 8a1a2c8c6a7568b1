"""The families that serve a vector x and y, on the two planar datasets, beside zuko's default conditional NSF.

Run from the repository root:
    python benchmarks/bench_plane.py [--sizes 900 20000] [--seeds 0 1 2] [--datasets robot_arm room]
                                     [--models ...] [--spline-settings] [--threads 2]
For each dataset, training size and seed: n training points drawn as the leaderboard draws them (n / 0.9
samples, the 10% test split unused), every model fitted with its default settings on the same points
(the networks by the same training loop), and scored on the same 20,000 fresh points
(``data.sample(20_000, seed=fresh_seed(seed))``): the gap NLL(model) - NLL(truth) ± its standard error,
and the training seconds. The best-single-Gaussian oracle N(E[y|x], Cov[y|x]) stands beside them (no
training), and the truth binned on the softmax's cells (50 x 50 over the training y's box widened by a tenth; Simpson
with 4 nodes a side in each cell, which on these cells agrees with 8 to a thousandth of a nat).
Prints one row per dataset, size and model: the mean over seeds (gap ± the mean of the seeds'
standard errors, seconds), then each seed's gap.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import DATASETS
from utilis.baselines import BinnedClassifier, GaussianRegression
from utilis.classical import ConditionalKDE, GaussianMixtureRegression
from utilis.flow_utilis import FlowMatching, NeuralSplineFlow
from utilis.hypotheses_utilis import MultipleHypotheses
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap, fresh_seed
from utilis.oracles import BestSingleGaussian, BinnedTruth

PLANAR = ("robot_arm", "room")
SPLINE_SETTINGS = {  # (bins, transforms, bound, lr) of the autoregressive spline flow, for --spline-settings
    "8 bins, 3 transforms, bound 5, lr 1e-3 (zuko)": (8, 3, 5.0, 1e-3),
    "8 bins, 3 transforms, bound 5, lr 3e-3": (8, 3, 5.0, 3e-3),
    "16 bins, 3 transforms, bound 4, lr 1e-3": (16, 3, 4.0, 1e-3),
    "16 bins, 2 transforms, bound 4, lr 3e-3": (16, 2, 4.0, 3e-3),
    "8 bins, 5 transforms, bound 5, lr 1e-3": (8, 5, 5.0, 1e-3),
    "16 bins, 3 transforms, bound 4, lr 3e-3": (16, 3, 4.0, 3e-3),
}


def networks(build):
    """Fit a network model: seeded, no progress bar; returns its training seconds."""

    def fit(data, seed):
        model = build(data)
        return model, model.fit(data.x_train, data.y_train, seed=seed, progress=False).seconds

    return fit


def classical(build):
    """Fit a classical model (no training loop): its wall-clock seconds."""

    def fit(data, seed):
        model, start = build(data), time.perf_counter()
        model.fit(data.x_train, data.y_train, seed=seed)
        return model, time.perf_counter() - start

    return fit


MODELS = {
    "MDN": networks(lambda data: MDN(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "flow matching": networks(lambda data: FlowMatching(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "hypotheses (two-stage)": networks(lambda data: MultipleHypotheses(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "MSE regression": networks(lambda data: GaussianRegression(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "bins (histogram)": networks(lambda data: BinnedClassifier(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "GMR": classical(lambda data: GaussianMixtureRegression()),
    "KDE": classical(lambda data: ConditionalKDE()),
    "zuko NSF (default)": networks(lambda data: NeuralSplineFlow(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "best single Gaussian (oracle)": lambda data, seed: (BestSingleGaussian.for_dataset(data), 0.0),
    "binned truth (oracle)": lambda data, seed: (BinnedTruth(data.truth, BinnedClassifier.edges_for(data.y_train), 4), 0.0),
}


def spline_flow(bins: int, transforms: int, bound: float, lr: float):
    """The autoregressive spline flow with these settings, trained at step size ``lr``."""

    def fit(data, seed):
        model = NeuralSplineFlow(data.x_dim, data.y_space.dim, bins, transforms, bound=bound)
        return model, model.fit(data.x_train, data.y_train, seed=seed, lr=lr, progress=False).seconds

    return fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[900, 20_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(PLANAR), choices=list(PLANAR))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--spline-settings", action="store_true",
                        help="instead of the families, the spline flow over SPLINE_SETTINGS")  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch's CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = MODELS
    if args.spline_settings:
        models = {label: spline_flow(*settings) for label, settings in SPLINE_SETTINGS.items()}
        args.models = list(models)
    print(f"gap on 20,000 fresh points, mean over seeds {args.seeds}; {args.threads} torch threads, "
          f"{os.cpu_count()} CPU cores")  # fmt: skip
    print(f"{'dataset':<10} {'n train':>8} {'model':<46} {'gap':>7} {'± se':>7} {'train s':>8}   per seed")
    for name in args.datasets:
        for n in args.sizes:
            for label in args.models:
                gaps, errors, seconds = [], [], []
                for seed in args.seeds:
                    data = DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                    x, y, _ = data.sample(20_000, seed=fresh_seed(seed))
                    model, spent = models[label](data, seed)
                    gap = bayes_gap(model, data.truth, x, y)
                    gaps.append(gap.gap)
                    errors.append(gap.stderr)
                    seconds.append(spent)
                per_seed = "  ".join(f"{g:.4f}" for g in gaps)
                print(f"{name:<10} {n:>8} {label:<46} {np.mean(gaps):>7.4f} {np.mean(errors):>7.4f} "
                      f"{np.mean(seconds):>8.1f}   {per_seed}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

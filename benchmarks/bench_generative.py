"""Gap to the Bayes floor and training time of the generative model (utilis.gen_model_utilis).

Run from the repository root:  python benchmarks/bench_generative.py [--sizes 20000 900] [--networks 1]
For each dataset, training size and seed: generate n training points (plus a 10% test split that is
not used), fit the model with labels and its default settings, and score the gap
NLL(model) - NLL(truth) on 20,000 fresh points from the dataset's sample(). Prints the mean over
seeds and each seed's figure; then the time of a 4000 x 4000 joint grid of a 5-component model.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import best_time

from generate_dataset import SCALAR_DATASETS, linear_mixture
from utilis.density import log_joint_grid
from utilis.gen_model_utilis import GenerativeModel
from utilis.metrics import bayes_gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 900])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SCALAR_DATASETS))
    parser.add_argument("--networks", type=int, default=1, help="n_networks: 1, or an ensemble")
    parser.add_argument("--no-grid", action="store_true", help="skip the grid timing")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"generative model, labelled, n_networks={args.networks}, gap on 20,000 fresh points; "
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}"
    )
    print(f"{'dataset':<10} {'n train':>8} {'gap mean':>9} {'train s':>8}   per seed (gap ± stderr)")
    for name in args.datasets:
        for n in args.sizes:
            gaps, seconds, rows = [], [], []
            for seed in args.seeds:
                data = SCALAR_DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                model = GenerativeModel.for_dataset(data, n_networks=args.networks)
                history = model.fit(data.x_train, data.y_train, data.c_train, progress=False, seed=seed)
                x, y, _ = data.sample(20_000, seed=10_000 + seed)
                gap = bayes_gap(model, data.truth, x, y)
                gaps.append(gap.gap)
                seconds.append(history.seconds)
                rows.append(f"{gap.gap:.4f}±{gap.stderr:.4f}")
            print(f"{name:<10} {n:>8} {np.mean(gaps):>9.4f} {np.mean(seconds):>8.1f}   {'  '.join(rows)}", flush=True)
    if not args.no_grid:
        data = linear_mixture(n_samples=2000, n_components=5, seed=0)
        model = GenerativeModel.for_dataset(data)
        model.fit(data.x_train, data.y_train, data.c_train, progress=False, epochs=5)
        x, y = np.linspace(*data.x_range, 4000), np.linspace(*data.y_range, 4000)
        start = time.perf_counter()
        grid = log_joint_grid(model, x, y)
        first = time.perf_counter() - start
        seconds = best_time(lambda: log_joint_grid(model, x, y), repeats=3)
        print(
            f"joint p(x, y) of a 5-component model on a 4000 x 4000 grid: {seconds:.3f} s (first call {first:.3f} s), "
            f"all finite: {bool(np.isfinite(grid).all())}"
        )


if __name__ == "__main__":
    main()

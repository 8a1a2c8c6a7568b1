"""Gap to the Bayes floor and training time of the mixture density network (utilis.mdn_utilis).

Run from the repository root:  python benchmarks/bench_mdn.py [--sizes 20000 900] [--seeds 0 1 2] [--k 20]
For each dataset, training size and seed: generate n training points (plus a 10% test split that is
not used), fit the MDN with its default settings, and score the gap NLL(model) - NLL(truth) on 20,000
fresh points from the dataset's sample(). The MSE-regression baseline (a single Gaussian) is scored
the same way beside it, and so is the best single Gaussian N(E[y|x], Var[y|x]) computed from the truth
(utilis.oracles), which no single-Gaussian model can beat. Prints the mean over seeds and each seed's figure.
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import SCALAR_DATASETS
from utilis.baselines import GaussianRegression
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap
from utilis.oracles import BestSingleGaussian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 900])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SCALAR_DATASETS))
    parser.add_argument("--k", type=int, default=MDN().n_components, help="number of Gaussians")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"MDN (K={args.k}) and MSE regression, gap on 20,000 fresh points; {os.cpu_count()} CPU cores")
    header = f"{'dataset':<10} {'n train':>8} {'MDN gap':>8} {'train s':>8} {'MSE gap':>8} {'oracle':>8}"
    print(header + "   MDN per seed (gap ± stderr); oracle: the best single Gaussian")
    oracle_gaps: dict[tuple[str, int], float] = {}
    for name in args.datasets:
        for n in args.sizes:
            gaps, seconds, mse, oracle, rows = [], [], [], [], []
            for seed in args.seeds:
                data = SCALAR_DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                x, y, _ = data.sample(20_000, seed=10_000 + seed)
                model = MDN(n_components=args.k)
                history = model.fit(data.x_train, data.y_train, progress=False, seed=seed)
                gap = bayes_gap(model, data.truth, x, y)
                regression = GaussianRegression()
                regression.fit(data.x_train, data.y_train, progress=False, seed=seed)
                gaps.append(gap.gap)
                seconds.append(history.seconds)
                mse.append(bayes_gap(regression, data.truth, x, y).gap)
                if (name, seed) not in oracle_gaps:  # the truth's, the same at every training size
                    oracle_gaps[name, seed] = bayes_gap(BestSingleGaussian.for_dataset(data), data.truth, x, y).gap
                oracle.append(oracle_gaps[name, seed])
                rows.append(f"{gap.gap:.4f}±{gap.stderr:.4f}")
            print(
                f"{name:<10} {n:>8} {np.mean(gaps):>8.4f} {np.mean(seconds):>8.1f} {np.mean(mse):>8.3f} "
                f"{np.mean(oracle):>8.3f}   " + "  ".join(rows),
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Gap to the Bayes floor, training time and best-of-20 error of the energy-based model (utilis.energy_utilis).

Run from the repository root:
    python benchmarks/bench_energy.py [--sizes 20000 900] [--seeds 0 1 2] [--datasets linear sinusoid camera]
                                      [--objectives likelihood infonce] [--mdn]
For each dataset, training size, seed and objective: generate n training points (plus a 10% test split
that is not used), fit the energy model with its default settings (InfoNCE with its default number of
counter-examples), and score on 20,000 fresh points from the dataset's sample(): the gap NLL(model) -
NLL(truth) with its standard error, the best-of-20 error of the model's samples (mean over points of the
smallest |y - sample| among 20 draws), and the gap again with an evaluation grid twice as fine (the
quadrature check: the two should agree within the standard error). ``--mdn`` scores the mixture density
network (its defaults) the same way in the same run, a yardstick for the seconds on a busy machine.
Prints, per row, the mean over seeds (± the standard error of that mean) and each seed's gap.
"""

import argparse
import copy
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import SCALAR_DATASETS
from utilis.energy_utilis import OBJECTIVES, EnergyModel
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap, best_of_k_error


def finer(model: EnergyModel) -> EnergyModel:
    """The same trained model, evaluated on a grid twice as fine."""
    twin = copy.deepcopy(model)
    twin.n_grid *= 2
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 900])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SCALAR_DATASETS), choices=list(SCALAR_DATASETS))
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--mdn", action="store_true", help="score the MDN beside it, in the same run")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    negatives = EnergyModel().n_negatives
    print(f"energy model, gap on 20,000 fresh points, mean of seeds {args.seeds}; {os.cpu_count()} CPU cores")
    print(
        f"{'dataset':<9} {'n train':>7} {'model':<22} {'gap ± se':>17} {'train s':>7} {'best-of-20':>10} "
        f"{'2x grid':>8}   gap per seed"
    )
    labels = {"likelihood": "energy, likelihood", "infonce": f"energy, InfoNCE N={negatives}", "mdn": "MDN (K=20)"}
    kinds = [*args.objectives, *(["mdn"] if args.mdn else [])]
    for name in args.datasets:
        for n in args.sizes:
            results = {kind: {"gap": [], "se": [], "s": [], "best": [], "fine": []} for kind in kinds}
            for seed in args.seeds:
                data = SCALAR_DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                x, y, _ = data.sample(20_000, seed=10_000 + seed)
                for kind in kinds:
                    model = MDN() if kind == "mdn" else EnergyModel(kind)
                    history = model.fit(data.x_train, data.y_train, seed=seed, progress=False)
                    gap = bayes_gap(model, data.truth, x, y)
                    result = results[kind]
                    result["gap"].append(gap.gap)
                    result["se"].append(gap.stderr)
                    result["s"].append(history.seconds)
                    result["best"].append(best_of_k_error(model, x, y, k=20, seed=seed))
                    fine = bayes_gap(finer(model), data.truth, x, y).gap if kind != "mdn" else np.nan
                    result["fine"].append(fine)
            for kind, result in results.items():
                se = np.sqrt(np.sum(np.square(result["se"]))) / len(result["se"])
                print(
                    f"{name:<9} {n:>7} {labels[kind]:<22} {np.mean(result['gap']):>8.4f} ± {se:.4f} "
                    f"{np.mean(result['s']):>7.1f} {np.mean(result['best']):>10.4f} {np.mean(result['fine']):>8.4f}   "
                    + "  ".join(f"{g:.4f}" for g in result["gap"]),
                    flush=True,
                )


if __name__ == "__main__":
    main()

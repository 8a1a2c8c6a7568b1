"""Gap to the Bayes floor and training time of the normalising flows (utilis.flow_utilis).

Run from the repository root:
    python benchmarks/bench_flows.py [--sizes 20000 900] [--seeds 0 1 2] [--datasets ...] [--models spline matching]
For each dataset, training size, model and seed: generate n training points (plus a 10% test split
that is not used), fit the model with its default settings, and score the gap NLL(model) - NLL(truth)
on 20,000 fresh points from the dataset's sample(). For flow matching, whose log-density integrates
an ODE, the same points are also scored at a tight tolerance (--tight, atol = rtol): the mean absolute
difference in nats between the two log-densities, and what the default tolerance changes in the gap.
Prints the mean over seeds (gap ± the mean of the seeds' standard errors) and each seed's figure.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import SCALAR_DATASETS
from utilis.flow_utilis import FlowMatching, SplineFlow
from utilis.metrics import bayes_gap

MODELS = {"spline": SplineFlow, "matching": FlowMatching}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 900])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SCALAR_DATASETS), choices=list(SCALAR_DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tight", type=float, default=1e-9, help="flow matching's reference tolerance")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"gap on 20,000 fresh points, mean over seeds {args.seeds}; {os.cpu_count()} CPU cores")
    print(
        f"{'dataset':<10} {'n train':>8} {'model':<9} {'gap':>7} {'± se':>7} {'train s':>8} {'eval s':>7}"
        f" {'|Δ log p|':>10} {'Δ gap':>9}   per seed (gap ± stderr)"
    )
    for name in args.datasets:
        for n in args.sizes:
            for kind in args.models:
                gaps, errors, seconds, evaluation, differences, shifts, rows = [], [], [], [], [], [], []
                for seed in args.seeds:
                    data = SCALAR_DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                    x, y, _ = data.sample(20_000, seed=10_000 + seed)
                    model = MODELS[kind]()
                    history = model.fit(data.x_train, data.y_train, progress=False, seed=seed)
                    start = time.perf_counter()
                    gap = bayes_gap(model, data.truth, x, y)
                    evaluation.append(time.perf_counter() - start)
                    gaps.append(gap.gap)
                    errors.append(gap.stderr)
                    seconds.append(history.seconds)
                    rows.append(f"{gap.gap:.4f}±{gap.stderr:.4f}")
                    if kind == "matching":  # the ODE's error: the default tolerance against a tight one
                        default = model.log_prob(y, x)
                        tight = model.log_prob(y, x, atol=args.tight, rtol=args.tight)
                        differences.append(np.abs(default - tight).mean())
                        shifts.append(np.mean(tight - default))  # gap(default) - gap(tight)
                blank = f" {'':>10} {'':>9}"
                ode = f" {np.mean(differences):>10.2e} {np.mean(shifts):>+9.1e}" if differences else blank
                print(
                    f"{name:<10} {n:>8} {kind:<9} {np.mean(gaps):>7.4f} {np.mean(errors):>7.4f}"
                    f" {np.mean(seconds):>8.1f}"
                    f" {np.mean(evaluation):>7.2f}{ode}   " + "  ".join(rows),
                    flush=True,
                )


if __name__ == "__main__":
    main()

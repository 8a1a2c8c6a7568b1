"""Best-of-20 error, unused hypotheses, gaps and training time of multiple hypotheses (utilis.hypotheses_utilis).

Run from the repository root:
    python benchmarks/bench_hypotheses.py [--sizes 20000 900] [--seeds 0 1 2] [--losses wta relaxed evolving]
For each dataset, training size and seed: generate n training points (plus a 10% test split that is
not used), fit MultipleHypotheses (M = 20, default settings) once per loss, and the MDN (K = 20) on
the same points. On 20,000 fresh points from the dataset's sample(), score:
- best-of-20 error, mean min_k |y - guess_k|: the hypotheses themselves, and 20 samples of the MDN
  (utilis.metrics.best_of_k_error);
- the gap to the Bayes floor of the default density reading (two-stage), of the kernel reading
  (kernels of one bandwidth at the hypotheses, weighted by the scores), and of the MDN;
- hypotheses that win no training point (unused), per seed;
- training seconds (the whole fit: both stages and the bandwidth search).
Prints the mean over seeds (gaps ± the standard error of that mean, from each seed's paired differences),
then each seed's figures.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import SCALAR_DATASETS
from utilis.hypotheses_utilis import LOSSES, MultipleHypotheses
from utilis.mdn_utilis import MDN
from utilis.metrics import bayes_gap, best_of_k_error

K = 20


def mean_gap(gaps) -> str:
    """Mean of the seeds' gaps ± the standard error of that mean (their own errors, combined)."""
    mean = np.mean([g.gap for g in gaps])
    stderr = np.sqrt(np.sum([g.stderr**2 for g in gaps])) / len(gaps)
    return f"{mean:.4f} ± {stderr:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 900])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SCALAR_DATASETS))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--no-mdn", action="store_true", help="skip the MDN beside them")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"multiple hypotheses (M={K}) beside the MDN (K={K}), on 20,000 fresh points; {os.cpu_count()} CPU cores")
    header = (
        f"{'dataset':<9} {'n train':>7} {'model':<9} {'best-of-20':>10} {'gap, two-stage':>17} {'gap, kernel':>17} "
        f"{'unused':>8} {'train s':>7}"
    )
    print(header + "   (MDN: its gap in the two-stage column; unused: per seed)")
    for name in args.datasets:
        for n in args.sizes:
            rows: dict[str, dict[str, list]] = {}
            for seed in args.seeds:
                data = SCALAR_DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                x, y, _ = data.sample(20_000, seed=10_000 + seed)
                for loss in args.losses:
                    model = MultipleHypotheses(n_hypotheses=K, loss=loss)
                    start = time.perf_counter()
                    model.fit(data.x_train, data.y_train, progress=False, seed=seed)
                    seconds = time.perf_counter() - start
                    row = rows.setdefault(loss, {key: [] for key in ("error", "gap", "kernel", "unused", "s")})
                    row["error"].append(model.best_of_m_error(x, y))
                    row["gap"].append(bayes_gap(model, data.truth, x, y))
                    row["kernel"].append(bayes_gap(model.kernel_reading(), data.truth, x, y))
                    row["unused"].append(len(model.unused_hypotheses(data.x_train, data.y_train)))
                    row["s"].append(seconds)
                if not args.no_mdn:
                    mdn = MDN(n_components=K)
                    start = time.perf_counter()
                    mdn.fit(data.x_train, data.y_train, progress=False, seed=seed)
                    seconds = time.perf_counter() - start
                    row = rows.setdefault("MDN", {key: [] for key in ("error", "gap", "s")})
                    row["error"].append(best_of_k_error(mdn, x, y, K, seed=seed))
                    row["gap"].append(bayes_gap(mdn, data.truth, x, y))
                    row["s"].append(seconds)
            for label, row in rows.items():
                kernel = mean_gap(row["kernel"]) if "kernel" in row else ""
                unused = "/".join(map(str, row["unused"])) if "unused" in row else ""
                per_seed = "  ".join(f"{e:.4f}|{g.gap:.4f}" for e, g in zip(row["error"], row["gap"]))
                print(
                    f"{name:<9} {n:>7} {label:<9} {np.mean(row['error']):>10.4f} {mean_gap(row['gap']):>17} "
                    f"{kernel:>17} {unused:>8} {np.mean(row['s']):>7.1f}   per seed best-of-20|gap: {per_seed}",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Time the exact log p(y|x) of each dataset on a 1000 x 1000 grid of (y, x) over its plotting ranges.

Run from the repository root:  python benchmarks/bench_datasets.py
Prints one row per dataset: the best of 5 runs, default parameters, seed 0.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import best_time

from generate_dataset import DATASETS


def main(n: int = 1000) -> None:
    print(f"log_prob(y[:, None], x[None, :]) on a {n} x {n} grid, best of 5, {os.cpu_count()} CPU cores")
    print(f"{'dataset':<10} {'seconds':>8} {'all finite':>11}")
    for name, make in DATASETS.items():
        data = make(seed=0)
        y, x = np.linspace(*data.y_range, n), np.linspace(*data.x_range, n)
        seconds = best_time(lambda d=data, y=y, x=x: d.log_prob(y[:, None], x[None, :]))
        finite = bool(np.isfinite(data.log_prob(y[:, None], x[None, :])).all())
        print(f"{name:<10} {seconds:>8.3f} {finite!s:>11}")


if __name__ == "__main__":
    main()

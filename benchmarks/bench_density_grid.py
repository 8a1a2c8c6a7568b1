"""The joint heat map p(x, y) of each dataset's truth on a 4000 x 4000 grid: utilis.density vs naive.

Run from the repository root:  python benchmarks/bench_density_grid.py
The x grid spans the data's x range widened by its own width on each side, so a third of the
columns lie far from the data. Both methods are timed in the same run (best of 3).
- ours: ``log_joint_grid(data.truth, x, y)``: log-space, blocked, two threads.
- naive: a Python loop over y rows summing ``scipy.stats.norm.pdf`` over components in linear space,
  then the conditional image made by dividing each column by its sum (0/0 where p(x) underflows).
"""

import os
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import best_time

from generate_dataset import SCALAR_DATASETS, CameraRelocalisation, InvertedSinusoidMixture, LinearMixture
from utilis.density import log_joint_grid


def naive_joint(data, x, y):
    out = np.empty((len(y), len(x)))
    for i, yi in enumerate(y):
        if isinstance(data, CameraRelocalisation):
            out[i] = stats.norm.pdf(x, data.patterns[data.location(yi)], data.noise) / (2 * data.half_width)
            continue
        row = np.zeros(len(x))
        for c in range(data.n_components):
            if isinstance(data, LinearMixture):
                curve = data.slopes[c] * yi + data.offsets[c]
            elif isinstance(data, InvertedSinusoidMixture):
                curve = data.amplitudes[c] * np.sin(data.frequencies[c] * yi) + data.offsets[c] + 0.5 * yi
            row += data.weights[c] * stats.norm.pdf(yi, data.means[c], 1) * stats.norm.pdf(x, curve, data.noise)
        out[i] = row
    return out


def main(n: int = 4000) -> None:
    print(f"joint p(x, y) on a {n} x {n} grid of each dataset's truth, best of 3, {os.cpu_count()} CPU cores")
    print(f"{'dataset':<10} {'ours s':>7} {'naive s':>8} {'ours non-finite':>16} {'naive 0/0 columns':>18}")
    for name, make in SCALAR_DATASETS.items():
        data = make(seed=0)
        lo, hi = data.x_range
        x, y = np.linspace(2 * lo - hi, 2 * hi - lo, n), np.linspace(*data.y_range, n)
        ours = log_joint_grid(data.truth, x, y)
        seconds = best_time(lambda d=data, x=x, y=y: log_joint_grid(d.truth, x, y), repeats=3)
        naive_seconds = best_time(lambda d=data, x=x, y=y: naive_joint(d, x, y), repeats=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            joint = naive_joint(data, x, y)
            conditional = joint / joint.sum(axis=0, keepdims=True)
        bad_columns = int(np.isnan(conditional).any(axis=0).sum())
        non_finite = int((~np.isfinite(ours)).sum())
        print(f"{name:<10} {seconds:>7.3f} {naive_seconds:>8.3f} {non_finite:>16} {bad_columns:>12} of {n}")


if __name__ == "__main__":
    main()

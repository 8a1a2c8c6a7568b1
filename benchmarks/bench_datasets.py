"""Time the exact log p(y|x) of each dataset, and measure the robot arm's normaliser by refinement.

Run from the repository root:  python benchmarks/bench_datasets.py
Prints three tables, default parameters, seed 0, best of 5 runs:
- the scalar datasets on a 1000 x 1000 grid of (y, x) over their plotting ranges;
- the planar datasets on a 200 x 200 grid of y at 100 inputs x drawn from p(x) (each call computes
  p(x) afresh, as any new x does);
- the robot arm's log p(x) against the same quadrature with every rule's nodes doubled, at 2,000
  inputs from p(x) and 2,000 spread over a box half as wide again as the arm's reach.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import best_time

from generate_dataset import DATASETS, SCALAR_DATASETS, robot_arm


def main(n: int = 1000) -> None:
    print(f"log_prob(y[:, None], x[None, :]) on a {n} x {n} grid, best of 5, {os.cpu_count()} CPU cores")
    print(f"{'dataset':<10} {'seconds':>8} {'all finite':>11}")
    for name, make in SCALAR_DATASETS.items():
        data = make(seed=0)
        y, x = np.linspace(*data.y_range, n), np.linspace(*data.x_range, n)
        seconds = best_time(lambda d=data, y=y, x=x: d.log_prob(y[:, None], x[None, :]))
        finite = bool(np.isfinite(data.log_prob(y[:, None], x[None, :])).all())
        print(f"{name:<10} {seconds:>8.3f} {finite!s:>11}")


def planar(n_y: int = 200, n_x: int = 100) -> None:
    print(f"\nlog_prob on a {n_y} x {n_y} grid of y at {n_x} x from p(x) (target: at most 1 s), best of 5")
    print(f"{'dataset':<10} {'seconds':>8} {'no NaN':>7} {'-inf share':>11}")
    for name in set(DATASETS) - set(SCALAR_DATASETS):
        data = DATASETS[name](seed=0)
        grid = data.y_space.grid(data.y_range, n_y)
        x = data.sample(n_x, seed=1)[0]
        query = lambda d=data, g=grid, x=x: d.log_prob(g.points[:, None, :], x[None, :, :])
        seconds = best_time(query)
        values = query()
        print(f"{name:<10} {seconds:>8.3f} {not np.isnan(values).any()!s:>7} {np.isneginf(values).mean():>11.3f}")


def arm_refinement(n: int = 2000) -> None:
    data = robot_arm(seed=0)
    reach = 1.5 * sum(data.lengths)
    inside = data.sample(n, seed=2)[0]
    around = np.random.default_rng(3).uniform(-reach, reach, (n, 2))
    print("\nrobot arm: |log p(x) - log p(x) with twice the nodes| (nats)")
    print(f"{'inputs':<34} {'max':>10} {'median':>10} {'s per 1000 x':>13}")
    for label, x in (("from p(x)", inside), (f"uniform on [-{reach:.1f}, {reach:.1f}]^2", around)):
        seconds = best_time(lambda x=x: data._log_x_integral(x), repeats=3) / len(x) * 1000
        error = np.abs(data._log_x_integral(x) - data._log_x_integral(x, refine=2))
        print(f"{label:<34} {error.max():>10.1e} {np.median(error):>10.1e} {seconds:>13.3f}")


if __name__ == "__main__":
    main()
    planar()
    arm_refinement()

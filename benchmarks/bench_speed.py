"""The speed targets: training time (with its gap), the wide joint grid, this code against an older checkout.

Run from the repository root:
    python benchmarks/bench_speed.py [--against PATH] [--seeds 0 1 2] [--what mdn generative grid step]

For each measurement, each checkout runs in a fresh Python process of its own (its own imports), one
after the other on the same machine, so the two columns are comparable. ``--against`` names another
checkout of this repository (e.g. ``git worktree add /tmp/old <commit>``) to measure beside this one.
- mdn, generative: default settings, ``fit`` on round(n / 0.9) generated points (its 90% split), n =
  20,000 and 900; training seconds (the fit's own clock) and the gap to the Bayes floor on 20,000
  fresh points, mean over the seeds, with the mean of the per-seed standard errors.
- step (this checkout only, not by default): what ``utilis.networks.logsumexp`` buys. The MDN's loss
  on one batch of 512 points, forward and backward, one thread, best of 5 repeats of 200, on a
  camera-set MDN trained 30 epochs (two thirds of its log-sum-exp's terms then lie in ``exp``'s slow
  path): as trained here (``GaussianMixture``), through torch's ``MixtureSameFamily`` from the same
  parameters, and the network alone. And the energy model's training for 12 epochs on each set,
  with its log-sum-exps as here and replaced by ``torch.logsumexp`` (best of 2 fits).
- grid: ``log_joint_grid`` of a 5-component inverted-sinusoid truth, 4000 x 4000, its x range
  widened by 40 on each side: seconds of the first call and best of 5, non-finite values, and the
  peak memory of a call (tracemalloc, which numpy reports to) beside the output's own size, at
  4000 x 4000 and 8000 x 8000 (what is not output must not grow with the grid).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

MEASURE = r"""
import json, sys, time, tracemalloc
import numpy as np, torch
sys.path.insert(0, REPO)
from generate_dataset import DATASETS, inverted_sinusoid_mixture
from utilis.metrics import bayes_gap

SCALAR = ("linear", "sinusoid", "camera")  # the datasets every checkout has, with a scalar x and y

def fits(kind, seeds, sizes):
    rows = []
    for name in SCALAR:
        for n in sizes:
            seconds, gaps, errors = [], [], []
            for seed in seeds:
                data = DATASETS[name](n_samples=round(n / 0.9), seed=seed)
                if kind == "mdn":
                    from utilis.mdn_utilis import MDN
                    model = MDN()
                    history = model.fit(data.x_train, data.y_train, progress=False, seed=seed)
                else:
                    from utilis.gen_model_utilis import GenerativeModel
                    model = GenerativeModel.for_dataset(data)
                    history = model.fit(data.x_train, data.y_train, data.c_train, progress=False, seed=seed)
                x, y, _ = data.sample(20_000, seed=10_000 + seed)
                gap = bayes_gap(model, data.truth, x, y)
                seconds.append(history.seconds); gaps.append(gap.gap); errors.append(gap.stderr)
            rows.append([name, n, float(np.mean(seconds)), float(np.mean(gaps)), float(np.mean(errors))])
    return rows

def grid():
    from utilis.density import log_joint_grid
    data = inverted_sinusoid_mixture(n_samples=2000, n_components=5, seed=0)
    lo, hi = data.x_range
    out = {}
    for n in (4000, 8000):
        x, y = np.linspace(lo - 40, hi + 40, n), np.linspace(*data.y_range, n)
        start = time.perf_counter()
        values = log_joint_grid(data.truth, x, y)
        first = time.perf_counter() - start
        best = first
        for _ in range(4 if n == 4000 else 0):
            start = time.perf_counter()
            log_joint_grid(data.truth, x, y)
            best = min(best, time.perf_counter() - start)
        del values
        tracemalloc.start()
        values = log_joint_grid(data.truth, x, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[n] = [first, best, int((~np.isfinite(values)).sum()), peak / 2**20, values.nbytes / 2**20]
        del values
    return out

def step():
    from torch.distributions import Categorical, MixtureSameFamily, Normal
    from utilis.mdn_utilis import MDN
    data = DATASETS["camera"](n_samples=round(20000 / 0.9), seed=0)
    model = MDN()
    model.fit(data.x_train, data.y_train, progress=False, seed=0, epochs=30)
    model.train()
    x = torch.as_tensor(data.x_train[:512], dtype=torch.float32)
    y = torch.as_tensor(data.y_train[:512], dtype=torch.float32)

    def torchs():
        logits, means, scales = model._split(x)
        mixing = Categorical(logits=logits, validate_args=False)
        return MixtureSameFamily(mixing, Normal(means, scales, validate_args=False), validate_args=False)

    losses = {
        "as trained": lambda: -model(x).log_prob(y).mean(),
        "torch's MixtureSameFamily": lambda: -torchs().log_prob(y).mean(),
        "network alone": lambda: model.net(model.scaling.z_x(x)[:, None]).sum(),
    }
    torch.set_num_threads(1)
    out = {}
    for label, loss in losses.items():
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(200):
                loss().backward()
            best = min(best, (time.perf_counter() - start) / 200)
        out["MDN loss, us: " + label] = best * 1e6
    torch.set_num_threads(2)
    # the energy model's training, with its log-sum-exps as here and as torch's: best of 2 fits of 12 epochs
    import utilis.energy_utilis as energy_utilis
    from utilis.networks import logsumexp
    for name in SCALAR:
        data = DATASETS[name](n_samples=round(20000 / 0.9), seed=0)
        for label, function in (("as trained", logsumexp), ("torch's logsumexp", torch.logsumexp)):
            energy_utilis.logsumexp = function
            seconds = [energy_utilis.EnergyModel().fit(data.x_train, data.y_train, progress=False, epochs=12).seconds
                       for _ in range(2)]
            out[f"energy, {name}, 12 epochs, s: {label}"] = min(seconds)
        energy_utilis.logsumexp = logsumexp
    return out

torch.set_num_threads(2)
what, seeds = WHAT, SEEDS
result = {"mdn": fits("mdn", seeds, [20000, 900]) if "mdn" in what else None,
          "generative": fits("generative", seeds, [20000, 900]) if "generative" in what else None,
          "grid": grid() if "grid" in what else None,
          "step": step() if "step" in what else None}
print("RESULT" + json.dumps(result))
"""


def measure(repo: Path, what: list[str], seeds: list[int]) -> dict:
    code = MEASURE.replace("REPO", repr(str(repo))).replace("WHAT", repr(what)).replace("SEEDS", repr(seeds))
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement in {repo} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.split("RESULT", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout, measured beside this one")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--what", nargs="+", default=["mdn", "generative", "grid"], help="also: step")
    args = parser.parse_args()
    checkouts = {"this": HERE} | ({"against": args.against.resolve()} if args.against else {})
    # the step compares two losses within one checkout: measured in this one alone
    results = {
        label: measure(path, [w for w in args.what if label == "this" or w != "step"], args.seeds)
        for label, path in checkouts.items()
    }
    print(f"{os.cpu_count()} CPU cores; seeds {args.seeds}; " + "; ".join(f"{k}: {v}" for k, v in checkouts.items()))
    for kind in ("mdn", "generative"):
        if kind not in args.what:
            continue
        print(f"\n{kind}: training seconds and gap ± stderr (nats) on 20,000 fresh points, mean over seeds")
        header = f"{'dataset':<10} {'n':>6} {'this: s':>8} {'this: gap':>17}"
        if args.against:
            header += f" {'against: s':>11} {'against: gap':>17} {'speed-up':>9}"
        print(header)
        for i, (name, n, seconds, gap, error) in enumerate(results["this"][kind]):
            row = f"{name:<10} {n:>6} {seconds:>8.2f} {gap:>9.4f} ± {error:.4f}"
            if args.against:
                _, _, old_seconds, old_gap, old_error = results["against"][kind][i]
                row += f" {old_seconds:>11.2f} {old_gap:>9.4f} ± {old_error:.4f} {old_seconds / seconds:>8.1f}x"
            print(row)
    if "step" in args.what:
        print("\nthe MDN's loss, forward and backward, one batch of 512 (camera, 30 epochs), one thread (us);")
        print("the energy model's training on 20,000 points (s)")
        for label, value in results["this"]["step"].items():
            print(f"{label:<55} {value:>8.{0 if label.startswith('MDN') else 2}f}")
    if "grid" in args.what:
        print("\njoint grid of a 5-component sinusoid truth, x range widened by 40 on each side")
        columns = ("first s", 8), ("best s", 7), ("non-finite", 11), ("peak MiB", 9), ("output MiB", 11)
        print(f"{'checkout':<9} {'grid':>11} " + " ".join(f"{name:>{width}}" for name, width in columns))
        for label in checkouts:
            for n, (first, best, bad, peak, output) in results[label]["grid"].items():
                print(f"{label:<9} {n:>5} x {n:<5} {first:>8.3f} {best:>7.3f} {bad:>11} {peak:>9.0f} {output:>11.0f}")


if __name__ == "__main__":
    main()

"""The families that serve a vector x and y, on the two planar datasets, beside zuko's default conditional NSF.

Run from the repository root:
    python benchmarks/bench_plane.py [--sizes 900 20000] [--seeds 0 1 2] [--datasets robot_arm room]
                                     [--models ...] [--spline-settings] [--threads 2] [--csv PATH]
    python benchmarks/bench_plane.py --report      # the README's planar tables from benchmarks/results/plane.csv
For each dataset, training size and seed: n training points drawn as the leaderboard draws them (n / 0.9
samples, the 10% test split unused), every model fitted with its default settings on the same points
(the networks by the same training loop), and scored on the same 20,000 fresh points
(``data.sample(20_000, seed=fresh_seed(seed))``): the gap NLL(model) - NLL(truth) ± its standard error,
and the training seconds. The best-single-Gaussian oracle N(E[y|x], Cov[y|x]) stands beside them (no
training), and the truth binned on the softmax's cells (50 x 50 over the training y's box widened by a tenth; Simpson
on 4 intervals, 5 x 5 nodes, in each cell, which on these cells agrees with 8 intervals to a thousandth of a nat).
Prints one row per dataset, size and model: the mean over seeds (gap ± the mean of the seeds'
standard errors, seconds), then each seed's gap. With ``--csv``, each run is also appended to a CSV;
the README's planar tables are written from ``benchmarks/results/plane.csv`` by ``--report``.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from generate_dataset import DATASETS
from utilis.baselines import BinnedClassifier, GaussianRegression
from utilis.classical import ConditionalKDE, GaussianMixtureRegression
from utilis.embedding_energy import EmbeddingEnergy
from utilis.energy_utilis import EnergyModel
from utilis.flow_utilis import FlowMatching, NeuralSplineFlow
from utilis.gen_model_plane import PlanarGenerativeModel
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


def spline_flow(bins: int, transforms: int, bound: float, lr: float):
    """The autoregressive spline flow with these settings, trained at step size ``lr``."""

    def fit(data, seed):
        model = NeuralSplineFlow(data.x_dim, data.y_space.dim, bins, transforms, bound=bound)
        return model, model.fit(data.x_train, data.y_train, seed=seed, lr=lr, progress=False).seconds

    return fit


def generative(data, seed):
    """The planar Bayesian network of ``data``, fitted with the labels where x depends on c."""
    model = PlanarGenerativeModel.for_dataset(data)
    labels = data.c_train if model.needs_labels else None
    start = time.perf_counter()
    history = model.fit(data.x_train, data.y_train, labels, seed=seed, progress=False)
    return model, max(history.seconds, time.perf_counter() - start)


MODELS = {
    "generative": generative,
    "MDN": networks(lambda data: MDN(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "flow matching": networks(lambda data: FlowMatching(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "hypotheses (two-stage)": networks(lambda data: MultipleHypotheses(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "energy (likelihood)": networks(lambda data: EnergyModel(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "energy (InfoNCE)": networks(lambda data: EnergyModel("infonce", x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "energy, embeddings (InfoNCE)": networks(
        lambda data: EmbeddingEnergy(x_dim=data.x_dim, y_dim=data.y_space.dim)
    ),
    "MSE regression": networks(lambda data: GaussianRegression(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "bins (histogram)": networks(lambda data: BinnedClassifier(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "GMR": classical(lambda data: GaussianMixtureRegression()),
    "KDE": classical(lambda data: ConditionalKDE()),
    "spline flow (16 bins, 2 transforms, bound 4)": spline_flow(16, 2, 4.0, 3e-3),
    "zuko NSF (default)": networks(lambda data: NeuralSplineFlow(x_dim=data.x_dim, y_dim=data.y_space.dim)),
    "best single Gaussian (oracle)": lambda data, seed: (BestSingleGaussian.for_dataset(data), 0.0),
    "binned truth (oracle)": lambda data, seed: (
        BinnedTruth(data.truth, BinnedClassifier.edges_for(data.y_train), 4),
        0.0,
    ),
}


CSV_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "plane.csv")
README_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
FIELDS = ("dataset", "n_train", "seed", "model", "gap", "stderr", "seconds")
START, END = "<!-- plane:start -->", "<!-- plane:end -->"


def read_rows(path: str = CSV_PATH) -> list[dict]:
    """The runs in the CSV, numbers parsed."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["n_train"], row["seed"] = int(row["n_train"]), int(row["seed"])
        row["gap"], row["stderr"], row["seconds"] = float(row["gap"]), float(row["stderr"]), float(row["seconds"])
    return rows


def readme_section(rows: list[dict]) -> str:
    """A table per planar dataset: each model's gap at each training size (mean over seeds ± the mean of the
    seeds' standard errors) and its training seconds at the largest size, in the order the models were run."""
    sizes = sorted({row["n_train"] for row in rows})
    seeds = sorted({row["seed"] for row in rows})
    out = [f"Gap in nats on 20,000 fresh points, mean of seeds {', '.join(map(str, seeds))} ± the mean of their "
           f"standard errors; training seconds on 2 CPU cores at {sizes[-1]:,} points "
           f"(`python benchmarks/bench_plane.py`, `benchmarks/results/plane.csv`).\n"]  # fmt: skip
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        here = [row for row in rows if row["dataset"] == dataset]
        header = " | ".join(f"gap, {n:,} points" for n in sizes)
        out += [f"**{dataset.replace('_', ' ')}**\n", f"| model | {header} | seconds at {sizes[-1]:,} |",
                "|---" * (len(sizes) + 2) + "|"]  # fmt: skip
        order = {label: i for i, label in enumerate(MODELS)}  # the families in MODELS's order, others after
        for model in sorted(dict.fromkeys(row["model"] for row in here), key=lambda m: order.get(m, len(order))):
            cells = []
            for n in sizes:
                runs = [row for row in here if row["model"] == model and row["n_train"] == n]
                gaps, errors = [r["gap"] for r in runs], [r["stderr"] for r in runs]
                cells.append(f"{np.mean(gaps):.3f} ± {np.mean(errors):.3f}" if runs else "")
            runs = [row for row in here if row["model"] == model and row["n_train"] == sizes[-1]]
            seconds = f"{np.mean([r['seconds'] for r in runs]):.1f}" if runs and "oracle" not in model else ""
            out.append(f"| {model} | {' | '.join(cells)} | {seconds} |")
        out.append("")
    return "\n".join(out)


def write_readme(path: str = CSV_PATH, readme: str = README_PATH) -> None:
    """The README's planar results, between its ``START`` and ``END`` markers, from the CSV."""
    with open(readme) as handle:
        text = handle.read()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section to write the planar results into")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(readme, "w") as handle:
        handle.write(f"{head}{START}\n{readme_section(read_rows(path))}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[900, 20_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(PLANAR), choices=list(PLANAR))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--spline-settings", action="store_true",
                        help="instead of the families, the spline flow over SPLINE_SETTINGS")  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch's CPU threads")
    parser.add_argument("--csv", default=None, help=f"append each run to this CSV (the README's: {CSV_PATH})")
    parser.add_argument("--report", action="store_true", help="only write the README's planar section from --csv")
    args = parser.parse_args()
    if args.report:
        write_readme(args.csv or CSV_PATH)
        return
    torch.set_num_threads(args.threads)
    models = MODELS
    if args.spline_settings:
        models = {label: spline_flow(*settings) for label, settings in SPLINE_SETTINGS.items()}
        args.models = list(models)
    if args.csv and not os.path.exists(args.csv):
        with open(args.csv, "w", newline="") as handle:
            csv.writer(handle).writerow(FIELDS)
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
                    if args.csv:
                        with open(args.csv, "a", newline="") as handle:
                            csv.writer(handle).writerow([name, n, seed, label, gap.gap, gap.stderr, spent])
                per_seed = "  ".join(f"{g:.4f}" for g in gaps)
                print(f"{name:<10} {n:>8} {label:<46} {np.mean(gaps):>7.4f} {np.mean(errors):>7.4f} "
                      f"{np.mean(seconds):>8.1f}   {per_seed}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

"""The leaderboard: every model family on every dataset, at every training size, against the truth.

Run from the repository root:
    python benchmarks/leaderboard.py [--jobs 2] [--quick] [--sizes ...] [--seeds ...] [--models ...]
    python benchmarks/leaderboard.py --report     # the markdown table, README section and compare_models.ipynb

For each dataset, training size and seed: draw n training points (the dataset's own generator, the
seed fixing its parameters and points), fit each model with its default settings (the seed fixing
its initial weights), and score it on 20,000 fresh points from ``data.sample``: the gap to the Bayes
floor ± its standard error, the mean KL divergence on a y grid and mode recall and precision (at 100
of those x, :func:`utilis.metrics.score`), the best-of-20 error from its samples (2,000 points), the
calibration (the Kolmogorov-Smirnov distance of the probability integral transform from uniform,
estimated from 200 of the model's samples at each of 1,000 points), the training seconds and the
parameter count. The two oracles, computed from the truth, are scored the same way.

Each run is a process of its own (``--jobs`` at a time, one torch thread each), killed after
``--timeout`` seconds; a run that fails or times out is written with its status instead of
disappearing. Rows are appended to ``benchmarks/results/leaderboard.csv`` as they finish, so an
interrupted run resumes where it stopped (runs already in the CSV are skipped). When the run wrote
that CSV, it then writes ``benchmarks/results/leaderboard.md``, the README's results section and
re-runs ``compare_models.ipynb`` from it: one command from a fresh clone regenerates all four.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
CSV_PATH = RESULTS / "leaderboard.csv"
MARKDOWN_PATH = RESULTS / "leaderboard.md"
README_PATH = ROOT / "README.md"
NOTEBOOK_PATH = ROOT / "compare_models.ipynb"
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"

DATASET_NAMES = ("linear", "sinusoid", "camera")
SIZES = (300, 900, 3_000, 10_000, 30_000)
SEEDS = (0, 1, 2)
N_TEST, N_X, N_BEST_OF, K_BEST_OF, N_PIT, K_PIT = 20_000, 100, 2_000, 20, 1_000, 200
COLUMNS = [
    "dataset", "n_train", "seed", "model", "status", "gap", "gap_stderr", "bayes_floor", "kl", "mode_recall",
    "mode_precision", "best_of_20", "calibration_ks", "train_seconds", "parameters",
]  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """How to build a model for a dataset, and how to fit it (None: an oracle, nothing to fit)."""

    build: Callable
    fit: Callable | None = None
    oracle: bool = False


def _plain(model, data, seed):
    return model.fit(data.x_train, data.y_train, seed=seed, progress=False)


def _labelled(model, data, seed):
    return model.fit(data.x_train, data.y_train, data.c_train, seed=seed, progress=False)


def _classical(model, data, seed):
    return model.fit(data.x_train, data.y_train, seed=seed)


def _bin_edges(data, n_bins: int = 50, margin: float = 0.1) -> np.ndarray:
    """The bins a default ``BinnedClassifier`` trained on this data uses (its training y, widened)."""
    lo, hi = data.y_train.min(), data.y_train.max()
    span = hi - lo or 1.0
    return np.linspace(lo - margin * span, hi + margin * span, n_bins + 1)


def registry() -> dict[str, Entry]:
    """Every model of the repository, by the name the tables show. Imports here, so a worker pays for them."""
    from utilis.baselines import BinnedClassifier, GaussianRegression
    from utilis.classical import ConditionalKDE, GaussianMixtureRegression
    from utilis.embedding_energy import EmbeddingEnergy
    from utilis.energy_utilis import EnergyModel
    from utilis.flow_utilis import FlowMatching, SplineFlow
    from utilis.gen_model_utilis import GenerativeModel
    from utilis.hypotheses_utilis import MultipleHypotheses
    from utilis.mdn_utilis import MDN
    from utilis.oracles import BestSingleGaussian, BinnedTruth

    return {
        "generative": Entry(GenerativeModel.for_dataset, _labelled),
        "MDN": Entry(lambda data: MDN(), _plain),
        "spline flow": Entry(lambda data: SplineFlow(), _plain),
        "flow matching": Entry(lambda data: FlowMatching(), _plain),
        "hypotheses": Entry(lambda data: MultipleHypotheses(), _plain),
        "energy": Entry(lambda data: EnergyModel(), _plain),
        "energy (InfoNCE)": Entry(lambda data: EnergyModel("infonce"), _plain),
        "energy, embeddings": Entry(lambda data: EmbeddingEnergy(), _plain),
        "GMR": Entry(lambda data: GaussianMixtureRegression(), _classical),
        "KDE": Entry(lambda data: ConditionalKDE(), _classical),
        "MSE regression": Entry(lambda data: GaussianRegression(), _plain),
        "bins": Entry(lambda data: BinnedClassifier(), _plain),
        "oracle: best single Gaussian": Entry(BestSingleGaussian.for_dataset, oracle=True),
        "oracle: binned truth": Entry(lambda data: BinnedTruth(data.truth, _bin_edges(data)), oracle=True),
    }


MODEL_NAMES = (
    "generative", "MDN", "spline flow", "flow matching", "hypotheses", "energy", "energy (InfoNCE)",
    "energy, embeddings", "GMR", "KDE", "MSE regression", "bins", "oracle: best single Gaussian",
    "oracle: binned truth",
)  # fmt: skip


def parameter_count(model) -> int:
    """Trainable numbers: a network's weights; a mixture's parameters; a KDE's two bandwidths (it keeps its data)."""
    import torch

    if isinstance(model, torch.nn.Module):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    mixture = getattr(model, "mixture", None)
    if mixture is not None:  # a Gaussian mixture over (x, y): K weights, 2K means, 3K covariance entries
        return int(6 * mixture.n_components - 1)
    return 2 if hasattr(model, "h") else 0


def calibration_ks(model, x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """sup_u |F(u) - u| for the PIT u_i = share of the model's samples at x_i below y_i (ties halved)."""
    from utilis.metrics import ks_from_uniform

    samples = model.sample(x, K_PIT, seed=seed)  # (K_PIT, n)
    u = ((samples < y).sum(axis=0) + 0.5 * (samples == y).sum(axis=0) + 0.5) / (K_PIT + 1)
    return ks_from_uniform(u)


def run_one(dataset: str, n_train: int, seed: int, model_name: str) -> dict:
    """Fit and score one model on one dataset, size and seed: a row of the CSV."""
    import torch

    torch.set_num_threads(1)
    from generate_dataset import DATASETS
    from utilis.metrics import best_of_k_error, fresh_seed, score

    row = {"dataset": dataset, "n_train": n_train, "seed": seed, "model": model_name}
    data = DATASETS[dataset](n_samples=round(n_train / 0.9), seed=seed)  # a tenth goes to data.x_test, unused
    entry = registry()[model_name]
    model = entry.build(data)
    start = time.perf_counter()
    if entry.fit is not None:
        entry.fit(model, data, seed)
    row["train_seconds"] = time.perf_counter() - start
    scores = score(model, data, n_points=N_TEST, n_x=N_X, seed=fresh_seed(seed))
    x, y, _ = data.sample(N_TEST, seed=fresh_seed(seed))  # the points score used
    row.update(
        gap=scores["gap"], gap_stderr=scores["gap stderr"], bayes_floor=scores["Bayes floor"], kl=scores["KL"],
        mode_recall=scores["mode recall"], mode_precision=scores["mode precision"],
        best_of_20=best_of_k_error(model, x[:N_BEST_OF], y[:N_BEST_OF], K_BEST_OF, seed=seed),
        calibration_ks=calibration_ks(model, x[:N_PIT], y[:N_PIT], seed),
        parameters=parameter_count(model), status="ok",
    )  # fmt: skip
    return row


def _worker(tasks: mp.Queue, results: mp.Queue) -> None:
    """Runs tasks until it is sent None: one interpreter for many runs, so torch is imported once."""
    while (task := tasks.get()) is not None:
        try:
            results.put(run_one(*task))
        except Exception as error:  # the row says what failed instead of disappearing
            message = f"failed: {type(error).__name__}: {error}".replace("\n", " ")[:300]
            results.put({**_key(task), "status": message})
            traceback.print_exc()


def _key(task: tuple) -> dict:
    return dict(zip(("dataset", "n_train", "seed", "model"), task))


def read_rows(path: Path = CSV_PATH) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _append(row: dict, path: Path) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({key: _format(row.get(key)) for key in COLUMNS})


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def run(tasks: list[tuple], jobs: int, timeout: float, path: Path) -> None:
    """Run the tasks on ``jobs`` worker processes, appending each row to ``path`` as it finishes; a run
    past ``timeout`` seconds has its worker killed (and replaced) and is written as a timeout."""
    context = mp.get_context("spawn")  # fresh interpreters: no torch state shared with this one
    pending, total, done, started = list(tasks), len(tasks), 0, time.perf_counter()
    workers: list[dict] = []

    def start_worker() -> dict:
        inbox, outbox = context.Queue(), context.Queue()
        process = context.Process(target=_worker, args=(inbox, outbox), daemon=True)
        process.start()
        return {"process": process, "inbox": inbox, "outbox": outbox, "task": None, "since": 0.0}

    workers = [start_worker() for _ in range(max(1, min(jobs, len(tasks))))]
    while pending or any(w["task"] is not None for w in workers):
        for i, worker in enumerate(workers):
            if worker["task"] is None and pending:
                worker["task"], worker["since"] = pending.pop(0), time.perf_counter()
                worker["inbox"].put(worker["task"])
            if worker["task"] is None:
                continue
            row = None
            if not worker["outbox"].empty():
                row = worker["outbox"].get()
            elif not worker["process"].is_alive():
                row = {**_key(worker["task"]), "status": f"failed: the process exited ({worker['process'].exitcode})"}
            elif time.perf_counter() - worker["since"] > timeout:
                row = {**_key(worker["task"]), "status": f"timeout ({timeout:g} s)"}
            if row is None:
                continue
            task, worker["task"] = worker["task"], None
            if row["status"].startswith("timeout"):
                worker["process"].kill()
            if not worker["process"].is_alive() or row["status"].startswith("timeout"):
                workers[i] = start_worker()  # a fresh one for the runs still to do
            _append(row, path)
            done += 1
            gap = f"gap {float(row['gap']):.4f}" if row.get("status") == "ok" else row["status"]
            print(f"[{done}/{total}, {time.perf_counter() - started:.0f} s] {task}: {gap}", flush=True)
        time.sleep(0.02)
    for worker in workers:
        worker["inbox"].put(None)
        worker["process"].join(timeout=10)


# ---- the tables ------------------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict[tuple[str, int, str], dict]:
    """Per (dataset, size, model): the mean of each metric over the seeds that succeeded, the standard
    error of the mean gap (from the spread over seeds and each run's own error), and what failed."""
    groups: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["dataset"], int(row["n_train"]), row["model"]].append(row)
    summary = {}
    for key, group in groups.items():
        ok = [r for r in group if r["status"] == "ok"]
        entry = {"runs": len(group), "ok": len(ok), "failures": sorted({r["status"] for r in group} - {"ok"})}
        if ok:
            gaps = np.array([float(r["gap"]) for r in ok])
            run_errors = np.array([float(r["gap_stderr"]) for r in ok])
            entry["gap"] = float(gaps.mean())
            if not np.isfinite(gaps).all():  # a histogram that missed a point: infinite, with no spread
                entry["gap_stderr"] = math.nan
            else:
                spread = gaps.std(ddof=1) / np.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
                entry["gap_stderr"] = float(math.hypot(spread, np.sqrt((run_errors**2).sum()) / len(gaps)))
            for name in ("kl", "mode_recall", "mode_precision", "best_of_20", "calibration_ks", "train_seconds"):
                entry[name] = float(np.mean([float(r[name]) for r in ok]))
            entry["parameters"] = int(np.mean([float(r["parameters"]) for r in ok]))
        summary[key] = entry
    return summary


def _cell(entry: dict | None, digits: int = 3) -> str:
    if entry is None:
        return "–"
    if "gap" not in entry:
        return "failed" if entry["failures"] and "timeout" not in entry["failures"][0] else "timeout"
    text = f"{entry['gap']:.{digits}f}"
    if math.isfinite(entry["gap_stderr"]):
        text += f" ± {entry['gap_stderr']:.{digits}f}"
    if entry["ok"] < entry["runs"]:
        text += f" ({entry['runs'] - entry['ok']} of {entry['runs']} failed)"
    return text


def readme_section(rows: list[dict]) -> str:
    """The README's results: per dataset, the gap of every model at every size, the best model of each
    size, and the oracles' gaps; generated from the CSV, so the README cannot drift from it."""
    summary = summarise(rows)
    models = [m for m in MODEL_NAMES if any(key[2] == m for key in summary)]
    lines = [
        f"Gap to the Bayes floor in nats (mean over seeds ± standard error; each run scored on {N_TEST:,} fresh",
        "points), from `benchmarks/results/leaderboard.csv`; the full table with KL, modes, best-of-20, calibration,",
        "seconds and parameters is `benchmarks/results/leaderboard.md`. Regenerate both and this section with",
        "`python benchmarks/leaderboard.py --report`.",
        "",
    ]
    per_cell = Counter(entry["runs"] for entry in summary.values())
    lines += [
        "Seeds per cell (each seed draws its own dataset parameters, so seeds differ as problems, not only as "
        "samples): " + ", ".join(f"{runs} in {cells} cells" for runs, cells in sorted(per_cell.items())) + ".",
        "",
    ]
    for dataset in DATASET_NAMES:
        sizes = sorted({key[1] for key in summary if key[0] == dataset})
        if not sizes:
            continue
        lines += [f"**{dataset}**", "", "| model | " + " | ".join(f"{n:,}" for n in sizes) + " |"]
        lines.append("|---|" + "---|" * len(sizes))
        for model in models:
            lines.append(f"| {model} | " + " | ".join(_cell(summary.get((dataset, n, model))) for n in sizes) + " |")
        best = []
        for n in sizes:
            fitted = {m: e["gap"] for (d, s, m), e in summary.items() if d == dataset and s == n and "gap" in e}
            fitted = {m: g for m, g in fitted.items() if not m.startswith("oracle")}
            if fitted:
                winner = min(fitted, key=fitted.get)
                best.append(f"{n:,}: {winner} ({fitted[winner]:.3f})")
        lines += ["", "Best model by size: " + "; ".join(best) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def markdown_table(rows: list[dict]) -> str:
    """Every metric, one row per dataset, size and model."""
    summary = summarise(rows)
    header = ("| dataset | n | model | gap | KL | mode recall | mode precision | best-of-20 | calibration KS | "
              "train s | parameters |")  # fmt: skip
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(MODEL_NAMES)}
    for (dataset, n, model), e in sorted(summary.items(), key=lambda kv: (DATASET_NAMES.index(kv[0][0]), kv[0][1],
                                                                          order.get(kv[0][2], 99))):  # fmt: skip
        if "gap" not in e:
            lines.append(f"| {dataset} | {n:,} | {model} | {_cell(e)} | | | | | | | |")
            continue
        lines.append(
            f"| {dataset} | {n:,} | {model} | {_cell(e)} | {e['kl']:.3f} | {e['mode_recall']:.2f} | "
            f"{e['mode_precision']:.2f} | {e['best_of_20']:.3g} | {e['calibration_ks']:.3f} | "
            f"{e['train_seconds']:.1f} | {e['parameters']:,} |"
        )
    return "\n".join(lines) + "\n"


def write_report(path: Path = CSV_PATH, readme: Path = README_PATH) -> None:
    rows = read_rows(path)
    MARKDOWN_PATH.write_text(markdown_table(rows))
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section to write the results into")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{readme_section(rows)}{END}{tail}")


def execute_notebook(path: Path = NOTEBOOK_PATH) -> None:
    """Run a notebook top to bottom in place, as ``jupyter execute --inplace`` does, from the repository root:
    ``compare_models.ipynb`` redraws its figures from the CSV (a few seconds; it trains nothing)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    nbformat.write(notebook, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASET_NAMES), choices=DATASET_NAMES)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at a time")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is killed")
    parser.add_argument("--csv", type=Path, default=CSV_PATH, help="where the rows go (and are resumed from)")
    parser.add_argument("--quick", action="store_true", help="300 training points, seed 0: a check in under 2 min")
    parser.add_argument(
        "--report", action="store_true", help="only write the markdown table, the README section and the notebook"
    )
    args = parser.parse_args()
    if args.report:
        write_report(args.csv)
        execute_notebook()
        return
    if args.quick:
        args.sizes, args.seeds = [300], [0]
    done = {(r["dataset"], int(r["n_train"]), int(r["seed"]), r["model"]) for r in read_rows(args.csv)}
    # one seed over everything before the next (an interrupted run still covers every cell), the
    # biggest runs first within a seed, so the slowest finish while the small ones fill the gaps
    tasks = [(d, n, s, m) for s in args.seeds for n in sorted(args.sizes, reverse=True) for d in args.datasets
             for m in args.models if (d, n, s, m) not in done]  # fmt: skip
    print(f"{len(tasks)} runs to do ({len(done)} already in {args.csv}), {args.jobs} at a time", flush=True)
    started = time.perf_counter()
    run(tasks, args.jobs, args.timeout, args.csv)
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    if args.csv == CSV_PATH:  # the committed CSV: its table, README section and notebook follow it
        write_report(args.csv)
        execute_notebook()


if __name__ == "__main__":
    main()

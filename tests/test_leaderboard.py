"""The leaderboard: its quick run, resuming, failures kept in their rows, and the README against the CSV."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import leaderboard  # noqa: E402


def test_quick_run_writes_rows_and_resumes(tmp_path):
    """``--quick`` on a few fast models: every run leaves a row, and a second call has nothing to do."""
    path = tmp_path / "board.csv"
    command = [sys.executable, str(ROOT / "benchmarks" / "leaderboard.py"), "--quick", "--csv", str(path),
               "--datasets", "linear", "--models", "GMR", "oracle: best single Gaussian", "--jobs", "2"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    rows = leaderboard.read_rows(path)
    assert sorted((r["model"], r["n_train"], r["seed"], r["status"]) for r in rows) == [
        ("GMR", "300", "0", "ok"),
        ("oracle: best single Gaussian", "300", "0", "ok"),
    ]
    gmr = next(r for r in rows if r["model"] == "GMR")
    oracle = next(r for r in rows if r["model"] == "oracle: best single Gaussian")
    assert 0 <= float(gmr["gap"]) < 0.5 < float(oracle["gap"])  # GMR's family holds the linear truth
    assert float(gmr["bayes_floor"]) == float(oracle["bayes_floor"])  # the same fresh points
    assert 0 <= float(gmr["calibration_ks"]) < 0.2 and int(gmr["parameters"]) > 0
    again = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    assert "0 runs to do" in again.stdout
    assert len(leaderboard.read_rows(path)) == 2


def test_calibration_of_the_truth_is_uniform():
    from generate_dataset import DATASETS

    data = DATASETS["sinusoid"](n_samples=300, seed=0)
    x, y, _ = data.sample(1000, seed=1)
    assert leaderboard.calibration_ks(data.truth, x, y, seed=0) < 0.06  # the KS noise at 1,000 points is ~0.04


def test_failures_stay_in_the_table():
    rows = [
        {"dataset": "linear", "n_train": "300", "seed": str(s), "model": "MDN", "status": "ok", "gap": str(g),
         "gap_stderr": "0.01", "kl": "0.1", "mode_recall": "1", "mode_precision": "1", "best_of_20": "0.1",
         "calibration_ks": "0.05", "train_seconds": "1", "parameters": "10"}
        for s, g in ((0, 0.1), (1, 0.3))
    ]  # fmt: skip
    rows.append({**rows[0], "seed": "2", "status": "timeout (600 s)", "gap": ""})
    rows.append({**rows[0], "model": "KDE", "status": "failed: FloatingPointError: NaN"})
    summary = leaderboard.summarise(rows)
    mdn = summary["linear", 300, "MDN"]
    assert mdn["gap"] == pytest.approx(0.2)
    assert mdn["gap_stderr"] == pytest.approx(np.hypot(0.1, np.sqrt(2) * 0.01 / 2))
    section = leaderboard.readme_section(rows)
    assert "0.200 ± 0.100 (1 of 3 failed)" in section
    assert "| KDE | failed |" in section
    assert "Best model by size: 300: MDN (0.200)." in section


def test_readme_results_are_the_committed_csv():
    rows = leaderboard.read_rows()
    assert rows, "benchmarks/results/leaderboard.csv is missing: run python benchmarks/leaderboard.py"
    readme = (ROOT / "README.md").read_text()
    section = readme.split(leaderboard.START, 1)[1].split(leaderboard.END, 1)[0]
    assert section.strip() == leaderboard.readme_section(rows).strip(), "run python benchmarks/leaderboard.py --report"
    assert (ROOT / "benchmarks" / "results" / "leaderboard.md").read_text() == leaderboard.markdown_table(rows)
    with (ROOT / "benchmarks" / "results" / "leaderboard.csv").open() as handle:
        assert next(csv.reader(handle)) == leaderboard.COLUMNS


def test_the_notebook_is_redrawn_from_the_csv(tmp_path):
    """The report's last step runs compare_models.ipynb in place: a copy without outputs comes back executed,
    its cells counted 1..n, its figures drawn, no error."""
    import nbformat

    path = tmp_path / "compare_models.ipynb"
    notebook = nbformat.read(ROOT / "compare_models.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)
    leaderboard.execute_notebook(path)
    executed = nbformat.read(path, as_version=4)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell.outputs]
    assert not any(output.output_type == "error" for output in outputs)
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 4
    assert f"{len(leaderboard.read_rows())} runs" in "".join(output.get("text", "") for output in outputs)

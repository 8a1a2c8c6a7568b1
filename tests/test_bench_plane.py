"""The planar benchmark's README tables are generated from its CSV, so the README cannot drift from it."""

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_plane", ROOT / "benchmarks" / "bench_plane.py")
bench_plane = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_plane)


def write_csv(path: Path, runs: list[tuple]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(bench_plane.FIELDS)
        writer.writerows(runs)


def test_the_readme_tables_are_the_csvs_means(tmp_path):
    runs = [
        ("robot_arm", 900, 0, "MDN", 0.2, 0.01, 3.0),
        ("robot_arm", 900, 1, "MDN", 0.4, 0.03, 5.0),
        ("robot_arm", 20000, 0, "MDN", 0.05, 0.002, 30.0),
        ("robot_arm", 20000, 1, "MDN", 0.07, 0.004, 40.0),
        ("robot_arm", 20000, 0, "binned truth (oracle)", 0.07, 0.002, 0.0),
        ("room", 900, 0, "MDN", 0.5, 0.02, 2.0),
    ]
    write_csv(tmp_path / "plane.csv", runs)
    section = bench_plane.readme_section(bench_plane.read_rows(tmp_path / "plane.csv"))
    assert "mean of seeds 0, 1" in section
    assert "| MDN | 0.300 ± 0.020 | 0.060 ± 0.003 | 35.0 |" in section  # the arm: means over the two seeds
    assert "| binned truth (oracle) |  | 0.070 ± 0.002 |  |" in section  # no seconds for an oracle
    assert "| MDN | 0.500 ± 0.020 |  |  |" in section  # the room: no run at 20,000, so no seconds either
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{bench_plane.START}\nold\n{bench_plane.END}\ntail\n")
    bench_plane.write_readme(str(tmp_path / "plane.csv"), str(readme))
    text = readme.read_text()
    assert text.startswith("head\n") and text.endswith(f"{bench_plane.END}\ntail\n") and "old" not in text
    assert section in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- plane:start -->"):
        bench_plane.write_readme(str(tmp_path / "plane.csv"), str(readme))

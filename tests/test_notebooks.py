"""Every notebook at the repository root runs top to bottom in a real Jupyter kernel.

The notebook is executed in memory (a copy): the committed file is not touched. A second test checks
that the committed file itself was run top to bottom (counts 1..n, no errors, figures present), so
what a reader opens on the web is current.
"""

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert "explore_dataset.ipynb" in {path.name for path in NOTEBOOKS}


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError, with the failing cell and traceback, on any error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_executed(path):
    cells = [
        c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]
    assert [c["execution_count"] for c in cells] == list(range(1, len(cells) + 1)), "run it top to bottom"
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    # A static viewer (GitHub, nbviewer) shows a widget as its placeholder text ("0%| 0/400") and a
    # redrawn text bar as every redraw: the final state of a training must be saved as plain text.
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets, f"{len(widgets)} widget outputs: commit text progress instead"
    redrawn = [o for o in outputs if o["output_type"] == "stream" and "\r" in "".join(o["text"])]
    assert not redrawn, "a progress bar's redraws ('\\r') are saved in the outputs"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the outputs"


# A decimal in the text: digits, a point, digits; a version (2.13.0) is not one.
_DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.]*\d)")
# A number printed by a cell: plain or scientific (1e-3, 2.5e+04).
_PRINTED = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# References to sections, figures and equations of a text, which are not quantities.
_REFERENCE = re.compile(r"(§|\bFigs?\.|\bFigures?|\bsection|\bSection|\bTable|\bEq\.|\bchapter)\s*[\d.–\- ,and]*$")


def _decimals_in_markdown(source: str) -> list[str]:
    """The decimals a markdown cell quotes, outside inline code (a suggestion to try, not a claim), link
    targets and references to a text's sections and figures."""
    text = re.sub(r"`[^`]*`", " ", source)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return [
        m.group(1) for m in _DECIMAL.finditer(text) if not _REFERENCE.search(text[max(0, m.start() - 20) : m.start()])
    ]


def _printed_numbers(cell: dict) -> list[float]:
    """Every number a code cell sets in its source or prints in its outputs (streams and text results)."""
    texts = ["".join(cell["source"])]
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            texts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}):
            texts.append("".join(output["data"]["text/plain"]))
    return [float(m.group()) for text in texts for m in _PRINTED.finditer(text)]


def unprinted_decimals(cells: list[dict]) -> list[tuple[int, str]]:
    """(cell index, decimal) for each decimal a markdown cell quotes that no code cell above it sets or
    prints, to the quoted precision: 0.065 is printed by 0.0652, not by 0.0662."""
    printed: list[float] = []
    missing = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            printed.extend(_printed_numbers(cell))
        elif cell["cell_type"] == "markdown":
            values = np.array(printed)
            for quoted in _decimals_in_markdown("".join(cell["source"])):
                half_unit = 0.5 * 10.0 ** -len(quoted.split(".")[1])
                if not np.any(np.abs(values - float(quoted)) <= half_unit * (1 + 1e-9)):
                    missing.append((index, quoted))
    return missing


def test_unprinted_decimals_are_found():
    code = {"cell_type": "code", "source": ["x_star = 5.12\n"], "outputs": [
        {"output_type": "stream", "text": ["gap 0.0652 ± 0.0044, floor -0.93\n"]}]}  # fmt: skip
    text = (
        "Gap 0.065 ± 0.004 at $x^* = 5.12$, floor $-0.93$; not 0.066 nor 1.07 (PRML Fig. 5.21, §5.6); try `noise=0.5`."
    )
    cells = [{"cell_type": "markdown", "source": ["0.0652 before it is printed"]}, code,
             {"cell_type": "markdown", "source": [text]}]  # fmt: skip
    assert unprinted_decimals(cells) == [(0, "0.0652"), (2, "0.066"), (2, "1.07")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_every_decimal_in_the_text_is_printed_above_it(path):
    missing = unprinted_decimals(json.loads(path.read_text())["cells"])
    assert not missing, f"decimals in the markdown that no cell above prints or sets (cell, number): {missing}"

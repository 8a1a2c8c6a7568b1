"""Every notebook at the repository root runs top to bottom in a real Jupyter kernel.

The notebook is executed in memory (a copy): the committed file is not touched. A second test checks
that the committed file itself was run top to bottom (counts 1..n, no errors, figures present), so
what a reader opens on the web is current.
"""

import json
from pathlib import Path

import nbformat
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

"""The notebooks in ``examples/`` run as a user runs them: a Jupyter kernel executes every cell
in a fresh folder, none raises, and the outputs hold what the prose promises."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_your_model_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(ROOT / "examples" / "your_model.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "dataset labels; abstract nodes: max over descendant labels" in text, text
    assert "| GMLA |" in text and "| MLA-C |" in text, "the paper's table"
    assert "fr_s_mean" in text and "<Figure" in text, "the DataFrame and the plot"
    assert "Warning" not in text, f"a cell warned: {text}"
    assert (tmp_path / "results.duckdb").exists() and (tmp_path / "hierarchy.csv").exists()

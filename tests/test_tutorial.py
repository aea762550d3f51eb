"""docs/tutorial.ipynb runs top to bottom in a fresh kernel (its own asserts check what its text claims)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT

TUTORIAL = ROOT / "docs" / "tutorial.ipynb"
TIMEOUT_S = 600  # per cell; the whole notebook takes about a minute on two cores


def execute(path: Path, cwd: Path):
    """The notebook at `path`, executed by a python3 kernel in `cwd` (its file is left unchanged)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


@pytest.mark.slow
def test_tutorial_runs_and_shows_its_results(tmp_path):
    pytest.importorskip("nbclient", reason="the notebook tools come with the dev extra: pip install -e '.[dev]'")
    notebook = execute(TUTORIAL, tmp_path)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "continuous Bernoulli integrates to 1.0000" in text and "cb-fashion test -ELBO" in text
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pictures) == 5  # loss curves, prior samples, reconstructions, traversals, cb reconstructions
    assert list(tmp_path.iterdir()) == []  # the tutorial writes only into its own temporary folder

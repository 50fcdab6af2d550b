"""examples/tutorial.ipynb runs end to end (nbclient, a fresh kernel) in a temporary folder."""
import os

import pytest

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tutorial.ipynb")


@pytest.mark.slow
def test_tutorial_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbclient: pip install -e \".[test]\"")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient: pip install -e \".[test]\"")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    # The kernel inherits this process's environment (PYTHONPATH, HVAE_REPR_OFFLINE) and works in tmp_path.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert os.path.isfile(tmp_path / "runs" / "tutorial" / "eval_result.json")
    assert os.path.isfile(tmp_path / "sweep" / "figures" / "rate_plane.png")
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors

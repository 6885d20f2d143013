"""docs/quickstart.ipynb runs top to bottom in a real Jupyter kernel, and shows what it says."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_runs_in_a_jupyter_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(ROOT / "docs" / "quickstart.ipynb", as_version=4)
    os.environ["XAI_QUICKSTART_EPOCHS"] = "8"
    os.environ["XAI_QUICKSTART_RUN"] = str(tmp_path / "run")
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        del os.environ["XAI_QUICKSTART_EPOCHS"], os.environ["XAI_QUICKSTART_RUN"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<b>Explanation</b>" in h and "gradcam" in h for h in html)
    assert any("saliency" in h for h in html)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the three plot cells each show a figure
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    text = "".join(o.get("text", "") for o in outputs)
    assert "steps per sample" in text

"""Both notebooks run top to bottom (fast settings, no network)."""

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import REPO

NOTEBOOKS = REPO / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deepdream_mnist.ipynb", "deepdream.ipynb"])
def test_notebook_runs(name, tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("INTERP_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("INTERP_DATA_DIR", str(mnist_root))
    monkeypatch.delenv("INTERP_VGGFACE2_WEIGHTS", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"{name} displayed only {len(images)} images"
    text = "".join(o.get("text", "") for o in outputs)
    if name == "deepdream.ipynb":  # the face-api network by default (weights in $INTERP_DATA_DIR/face-api), else random
        assert "face-api.js FaceRecognitionNet" in text or "RANDOM weights" in text
    else:
        assert "unit 32 top-16 training indices" in text

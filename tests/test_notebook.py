"""examples/quickstart.ipynb is executed top to bottom, so it cannot rot."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

nbclient = pytest.importorskip("nbclient", reason="nbclient is in the dev extra")
nbformat = pytest.importorskip("nbformat", reason="nbformat is in the dev extra")


def test_quickstart_notebook_runs(tmp_path) -> None:
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    resources = {"metadata": {"path": str(ROOT)}}
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources)
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    results = [o for o in outputs if o.get("output_type") == "execute_result"]
    html = [o["data"]["text/html"] for o in results if "text/html" in o.get("data", {})]
    assert any("<table>" in h and "exact_dedup" in h for h in html)  # RunResult renders as a table
    assert any("train.jsonl" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)

"""The fact explorer notebook runs top to bottom on the tiny world."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NB = Path(__file__).resolve().parents[1] / "notebooks" / "fact_explorer.ipynb"


def test_fact_explorer_executes(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("FACT_EXPLORER_QUICK", "1")
    monkeypatch.setenv("FACT_EXPLORER_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NB, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "held-out known facts are wrong after SFT" in text
    assert "restores the fact" in text
    assert (tmp_path / "runs" / "sft" / "metrics.json").exists()

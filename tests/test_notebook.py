"""The notebooks run top to bottom on the tiny world and produce their plots; they are committed
with their outputs (``notebooks/execute.py``), and their cells are exactly what the builder
scripts write."""
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, cwd: Path) -> list:
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(outputs) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def _images(outputs) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


MAX_NOTEBOOK_BYTES = 600_000  # outputs are for reading on the repository page, not an archive


@pytest.mark.parametrize("name", ["fact_explorer.ipynb", "hypothesis_walkthrough.ipynb"])
def test_notebook_has_small_outputs_and_its_builders_cells(name, tmp_path):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") is None for c in code)  # no counts: a re-run changes only real output
    assert sum(bool(c.get("outputs")) for c in code) >= len(code) // 2  # executed: a reader sees what it shows
    text = (NB_DIR / name).read_text()
    assert len(text.encode()) < MAX_NOTEBOOK_BYTES
    root = str(Path(__file__).resolve().parents[1])
    assert root not in text and "/tmp/" not in text  # no machine's paths in the committed outputs
    builder = NB_DIR / ("build_" + name.replace(".ipynb", ".py"))
    subprocess.run([sys.executable, str(builder), str(tmp_path / name)], check=True)
    built = nbformat.read(tmp_path / name, as_version=4)
    assert [(c.cell_type, c.source, c.id) for c in built.cells] == [(c.cell_type, c.source, c.id) for c in nb.cells]


def test_fact_explorer_executes(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("FACT_EXPLORER_QUICK", "1")
    monkeypatch.setenv("FACT_EXPLORER_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend puts figures in the outputs
    out = _execute("fact_explorer.ipynb", tmp_path)
    text = _text(out)
    assert "held-out known facts are wrong after SFT" in text
    assert "nearest new facts" in text and "logit lens under SFT" in text
    assert "forecast vs outcome: sft: risk" in text  # the forecast's call beside what the SFT run did
    assert _images(out) >= 1  # the four-panel fact page
    assert len(list((tmp_path / "runs").glob("*/metrics.json"))) == 2  # sft and self_distill, trained once


def test_hypothesis_walkthrough_executes(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HYP_QUICK", "1")
    monkeypatch.setenv("HYP_NAME", "localized")
    monkeypatch.setenv("HYP_DIR", str(tmp_path / "hyp"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    out = _execute("hypothesis_walkthrough.ipynb", tmp_path)
    text = _text(out)
    assert "endpoint (pre-registered)" in text and "verdict:" in text
    assert (tmp_path / "hyp" / "localized" / "verdict.json").exists()
    assert _images(out) >= 2  # our endpoint plot and the hypothesis' own figure

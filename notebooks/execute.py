"""Run every notebook here top to bottom and keep its outputs, so a reader of the repository page
sees what each cell prints and draws (as TransformerLens's demos do), not code only.

    python notebooks/execute.py            # both notebooks, in place (quick world: a few minutes)
    python notebooks/execute.py NAME.ipynb

Each builder writes the cells (``build_*.py``; what is reviewed); this script adds the outputs.
They run on the quick world in a throwaway run cache, and the repository's absolute path is
written as ``.`` in the outputs, so a committed output names no machine's directories.
Execution counts and timings are dropped: a re-run changes only what the cells really print.
``tests/test_notebook.py`` checks the cells still equal the builders', the outputs are there and
small, and runs both notebooks again.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ("fact_explorer.ipynb", "hypothesis_walkthrough.ipynb")


def scrub(nb, replace: dict[str, str]) -> None:
    """Drop execution counts, per-cell timing metadata and library warnings on stderr (tqdm's
    "IProgress not found" names the environment, not the notebook); replace machine paths in
    text outputs."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        c.execution_count = None
        c.metadata.pop("execution", None)
        c.outputs = [o for o in c.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr"
                                                           and "Warning" in _replace(o.get("text", ""), {}))]
        for o in c.outputs:
            o.pop("execution_count", None) if o.get("output_type") != "execute_result" else o.update(execution_count=None)
            for key in ("text",):
                if key in o:
                    o[key] = _replace(o[key], replace)
            data = o.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = _replace(data["text/plain"], replace)


def _replace(text, replace: dict[str, str]):
    text = "".join(text) if isinstance(text, list) else text
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def execute(name: str) -> Path:
    path = HERE / name
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FACT_EXPLORER_QUICK": "1", "HYP_QUICK": "1", "INTERFERENCE_CACHE": str(Path(tmp) / "cache"),
               "FACT_EXPLORER_RUNS": str(Path(tmp) / "runs"), "HYP_DIR": str(Path(tmp) / "hyp"), "OMP_NUM_THREADS": "1"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend puts figures in the outputs
        try:
            nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                    resources={"metadata": {"path": str(HERE)}}).execute()
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        scrub(nb, {tmp: "<tmp>", str(ROOT): "."})
    nbformat.write(nb, path)
    return path


def main(argv: list[str]) -> int:
    for name in argv or NOTEBOOKS:
        print("executed", execute(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

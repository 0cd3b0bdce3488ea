"""Writes a notebook from a list of cells: the one piece every ``build_*.py`` here shares.

Why the notebooks are built from code: they are reviewed like code, and what is in git is exactly
what a builder writes; ``execute.py`` adds the outputs (``tests/test_notebook.py`` checks both).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat as nbf


def write_notebook(cells: list[tuple[str, str]], default_path: Path, argv: list[str] | None = None) -> Path:
    """Write ``cells`` (("md" | "code", source) pairs) as a notebook to ``argv[1]`` when given (the
    tests write elsewhere), else to ``default_path``."""
    argv = sys.argv if argv is None else argv
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i}"  # fixed ids (nbformat draws random ones), so a rebuild changes nothing in git
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = Path(argv[1]) if len(argv) > 1 else Path(default_path)
    nbf.write(nb, path)
    return path

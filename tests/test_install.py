"""The package as a user installs it: a wheel, outside the checkout, runs every command.

Why: the forecast's combiners and the figure configs were once looked up beside the source
checkout, so ``pip install .`` broke two commands while every in-checkout test passed.

How, in well under a minute: the wheel is built from a copy of the sources (``pip wheel --no-deps
--no-build-isolation``: no network, no build venv) and installed with ``pip install --no-deps
--target DIR``. ``--target`` rather than a fresh venv: a venv made with
``--system-site-packages`` sees the *base* interpreter's packages, not this venv's torch and
transformer_lens, so it would have to reinstall gigabytes; a target directory placed first on
``PYTHONPATH`` shadows the editable checkout while reusing this venv's dependencies. Each command
then runs from a directory outside the checkout, and the test checks the installed copy, not the
checkout, is what ran.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("finetune", "pretrain", "run_hypothesis", "forecast", "figures")

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "interference", src / "interference",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, cwd=src)
    wheel = next(wheels.glob("interference-*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True)
    return target


def _run(installed: Path, cwd: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1",
           "INTERFERENCE_CACHE": str(cache or cwd / "cache")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_copy_is_what_runs(installed, tmp_path):
    r = _run(installed, tmp_path, "-c", "import interference, interference.figures.config as c; "
             "print(interference.__file__); print(c.CONFIG_DIR)")
    assert r.returncode == 0, r.stderr
    here, configs = r.stdout.split()
    assert Path(here).is_relative_to(installed) and Path(configs).is_relative_to(installed)


@pytest.mark.parametrize("cli", CLIS)
def test_help_of_every_command_from_outside_the_checkout(installed, tmp_path, cli):
    r = _run(installed, tmp_path, "-m", f"interference.{cli}", "--help")
    assert r.returncode == 0, r.stderr
    assert "--device" in r.stdout and "--no-progress" in r.stdout and "--config" in r.stdout


def test_quick_paths_from_outside_the_checkout(installed, tmp_path, ft_base_dir):
    """pretrain, finetune, forecast (the packaged combiner) and figures (the packaged configs)
    each do real work from an empty directory. run_hypothesis has no path shorter than its
    minutes-long --quick grid and reads no packaged file, so it is covered by --help above."""
    dev = ["--device", "cpu", "--no-progress"]
    r = _run(installed, tmp_path, "-m", "interference.pretrain", "--quick", "--steps", "10", "--out", "base", *dev)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "base" / "model.safetensors").is_file()
    r = _run(installed, tmp_path, "-m", "interference.finetune", "--method", "sft", "--quick", "--base-dir",
             ft_base_dir, "--steps", "4", "--n-facts", "16", "--n-task", "4", "--n-stability", "16",
             "--eval-every", "2", "--out", "ft", *dev)
    assert r.returncode == 0, r.stderr
    r = _run(installed, tmp_path, "-m", "interference.forecast", "--sft-data", "ft", "--base", ft_base_dir,
             "--out", "fc", *dev)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fc" / "at_risk_sft.json").is_file()
    r = _run(installed, tmp_path, "-m", "interference.figures", "--quick", "--plan", "--runs", "runs", *dev)
    assert r.returncode == 0, r.stderr
    assert "curves" in r.stdout

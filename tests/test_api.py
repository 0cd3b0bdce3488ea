"""The public API: ``import interference`` is cheap, every exported name resolves, and the
README's Python example runs as written."""
import os
import re
import subprocess
import sys
from pathlib import Path

import interference

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- API-EXAMPLE -->\s*```python\n(.*?)```\s*<!-- /API-EXAMPLE -->", text, re.S)
    assert m, "README.md lost its API-EXAMPLE block"
    return m.group(1)


def test_every_exported_name_resolves_to_a_documented_object():
    for name in interference.__all__:
        obj = getattr(interference, name)
        assert (obj.__doc__ or "").strip(), f"interference.{name} has no docstring"
    try:
        interference.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def test_no_api_name_is_shadowed_by_a_submodule():
    # importing a submodule binds its name on the package: an API function of the same name would
    # turn into the module once some code ran `import interference.<name>` (the CLIs do)
    import importlib
    import pkgutil
    subs = {m.name for m in pkgutil.iter_modules(interference.__path__)}
    for name in set(interference.__all__) & subs:  # only modules exported as themselves (hooks, methods)
        assert getattr(interference, name) is importlib.import_module(f"interference.{name}"), name
    importlib.import_module("interference.finetune")  # the CLI module
    assert callable(interference.fine_tune) and interference.fine_tune.__module__ == "interference.train"


def test_import_interference_loads_no_torch():
    code = "import sys, interference; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_readme_example_runs(tmp_path):
    code = readme_example()
    assert len([l for l in code.splitlines() if l.strip()]) <= 10, "the README example must stay ten lines"
    env = {**os.environ, "INTERFERENCE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    forgotten = float(re.search(r"known facts forgotten: ([0-9.e-]+)", res.stdout).group(1))
    assert 0.0 <= forgotten <= 1.0
    word = res.stdout.strip().splitlines()[-1].split()[0]
    assert word in ("main_driver", "contributes", "not_supported", "inconclusive")
    assert (tmp_path / "runs/example/metrics.json").exists()
    assert (tmp_path / "runs/example-hypotheses/behavior_cloning/verdict.json").exists()

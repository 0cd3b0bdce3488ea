"""Pinned bases: a fixed memorisation length, and the committed weights served to exactly their spec.

Why these tests: a base whose length depends on where a slowly creeping accuracy first crosses a
threshold came out three different lengths for one spec; and a committed base served to a spec
that differs in any field would silently give a verdict on other weights than it claims.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from interference import bases
from interference.bases import BaseSpec, PretrainConfig, install_pinned, pinned_dir, pinned_fingerprint
from interference.consolidation import ConsolidationRule


def test_fixed_memorisation_step_ignores_the_accuracy_before_it_and_reports_it_at_it():
    rule = ConsolidationRule(consolidation=1.0, fixed_step=500)
    rule.observe(250, 0.99)  # memorised early by the criterion's reading: m does not move
    assert rule.memorised_step is None
    rule.observe(500, 0.95)
    assert (rule.memorised_step, rule.memorised, rule.total_steps) == (500, False, 1000)
    rule.observe(750, 0.99)  # m is decided once
    assert rule.memorised_step == 500
    again = ConsolidationRule(consolidation=0.5, fixed_step=500)
    again.observe(500, 0.98)
    assert (again.memorised, again.total_steps) == (True, 750)


def test_memorise_steps_are_epochs_of_the_corpus_rounded_up_to_a_check():
    cfg = PretrainConfig()  # 16 epochs, batch 128, checks every 250
    assert cfg.memorise_steps(18_000) == 2250  # 16 x 140.625 = 2250 exactly: no rounding
    assert cfg.memorise_steps(18_001) == 2500  # one example more: the next check
    assert cfg.memorise_steps(10) == 250  # never below one check
    assert dataclasses.replace(cfg, memorise_epochs=None).memorise_steps(18_000) is None


def test_old_configs_read_as_the_criterion_recipe():
    d = BaseSpec.default().to_dict()
    del d["pretrain"]["memorise_epochs"]
    assert BaseSpec.from_dict(d).pretrain.memorise_epochs is None


@pytest.fixture
def pinned_store(tmp_path, monkeypatch, quick_base, quick_spec):
    """A pinned store holding the quick base (a finished, sealed run) under its spec's hash."""
    root = tmp_path / "pinned"
    shutil.copytree(quick_base[3], root / f"base-{quick_spec.hash()}")
    monkeypatch.setattr(bases, "pinned_root", lambda: root)
    return root


def test_the_pinned_base_is_installed_for_its_spec_and_never_for_another(pinned_store, quick_spec, quick_base, tmp_path):
    from interference.pretrain import pretrain
    assert pinned_dir(quick_spec) == pinned_store / f"base-{quick_spec.hash()}"
    fp = pinned_fingerprint(quick_spec)
    assert fp == bases.base_fingerprint(quick_base[3])
    out = tmp_path / "installed"
    metrics = pretrain(quick_spec, out, device="cpu", progress=False)
    assert bases.base_fingerprint(out) == fp
    assert metrics == json.loads((quick_base[3] / "metrics.json").read_text())
    assert not (out / "checkpoint").exists()  # nothing was trained
    # any other field, any other spec: no pinned weights
    for other in (quick_spec.with_width(32), quick_spec.with_consolidation(2.0),
                  dataclasses.replace(quick_spec, pretrain=dataclasses.replace(quick_spec.pretrain, seed=1))):
        assert pinned_dir(other) is None and not install_pinned(other, tmp_path / other.hash())


def test_a_pinned_dir_whose_config_names_another_spec_is_not_served(pinned_store, quick_spec):
    cfg_file = pinned_store / f"base-{quick_spec.hash()}" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["pretrain"]["seed"] = 5  # the folder's name says one spec, its content another
    cfg_file.write_text(json.dumps(cfg))
    assert pinned_dir(quick_spec) is None


def test_damaged_pinned_weights_are_refused_in_one_sentence(pinned_store, quick_spec, tmp_path, capsys):
    w = pinned_store / f"base-{quick_spec.hash()}" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    assert not install_pinned(quick_spec, tmp_path / "out")
    err = capsys.readouterr().err
    assert "damaged" in err and "git checkout" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_recreate_without_a_pinned_base_is_refused(capsys, cache_dir):
    from interference.pretrain import main
    rc = main(["--quick", "--width", "32", "--recreate", "--no-progress"])
    assert rc == 2
    assert "none is pinned" in capsys.readouterr().err


def test_every_committed_base_is_sealed_and_names_its_own_spec():
    """The repository's pinned bases: each verifies against its seal and its config hashes to its name."""
    from interference.io import verify_run_dir
    root = bases.pinned_root()
    dirs = sorted(root.glob("base-*")) if root.is_dir() else []
    assert pinned_dir(BaseSpec.default()) in dirs  # the default base is one of them
    for d in dirs:
        spec = BaseSpec.from_dict(json.loads((d / "config.json").read_text()))
        assert d.name == f"base-{spec.hash()}"
        assert verify_run_dir(d, bases.RUN_FILES + (bases.FINGERPRINT_FILE,)) == ""
        assert pinned_dir(spec) == d


def test_a_directory_that_holds_anything_is_never_replaced_by_the_pinned_base(pinned_store, quick_spec, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert not install_pinned(quick_spec, out)
    assert (out / "notes.txt").read_text() == "mine" and not (out / "model.safetensors").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert install_pinned(quick_spec, empty) and (empty / "model.safetensors").exists()


def test_every_committed_base_carries_its_sealed_format_teacher():
    """Self-distillation's teacher is pinned with its base: the check script finds each one sealed."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "scripts" / "pin_teachers.py"
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("committed and sealed") == len(list(bases.pinned_root().glob("base-*")))


def test_an_installed_pinned_base_serves_its_teacher_without_training(cache_dir, monkeypatch):
    from interference import teacher as teacher_mod
    from interference.hypotheses.context import Context
    from interference.train import SFTSpec

    def refuse(*a, **k):
        raise AssertionError("the format teacher was trained, not loaded from the pinned copy")
    monkeypatch.setattr(teacher_mod, "sft_copy", refuse)
    spec = BaseSpec.default()
    ctx = Context(spec, out=cache_dir / "out", progress=False)
    t = ctx.teacher(SFTSpec().teacher_recipe(), spec)
    assert not any(p.requires_grad for p in t.parameters())


def test_pin_base_commits_only_a_sealed_run_of_its_own_spec_and_never_replaces_one(tmp_path, monkeypatch, quick_base,
                                                                                  quick_spec):
    """``pretrain --pin``'s step: the pinned copy holds the sealed files (no checkpoint), serves
    exactly its spec afterwards, and every wrong input is refused before anything is written."""
    root = tmp_path / "pinned"
    monkeypatch.setattr(bases, "pinned_root", lambda: root)
    src = tmp_path / "run"
    shutil.copytree(quick_base[3], src)
    (src / "checkpoint").mkdir(exist_ok=True)
    (src / "checkpoint" / "junk.pt").write_bytes(b"not part of a base")
    with pytest.raises(ValueError, match=f"holds the base of spec '{quick_spec.hash()}', not"):
        bases.pin_base(quick_spec.with_width(32), src)
    assert not root.exists() or not any(root.iterdir())
    dest = bases.pin_base(quick_spec, src)
    assert dest == root / f"base-{quick_spec.hash()}" and pinned_dir(quick_spec) == dest
    assert not (dest / "checkpoint").exists()
    assert pinned_fingerprint(quick_spec) == bases.base_fingerprint(quick_base[3])
    assert install_pinned(quick_spec, tmp_path / "installed")  # what every command then does with it
    with pytest.raises(ValueError, match="exists already: the repository pins one base per spec"):
        bases.pin_base(quick_spec, src)
    unsealed = tmp_path / "unsealed"
    shutil.copytree(quick_base[3], unsealed)
    (unsealed / "model.safetensors").write_bytes(b"damaged")
    with pytest.raises(ValueError, match="cannot be pinned: .*finish pre-training it first"):
        bases.pin_base(quick_spec.with_width(32), unsealed)
    assert sorted(p.name for p in root.iterdir()) == [dest.name]  # no half-made copy left behind


def test_pin_of_a_spec_the_repository_pins_already_is_refused_before_training(capsys, cache_dir):
    from interference.pretrain import main
    rc = main(["--width", "64", "--pin", "--no-progress"])  # the committed default d64 base
    assert rc == 2
    err = capsys.readouterr().err
    assert "is pinned already; drop --pin" in err and err.count("\n") == 1, err


def test_pin_with_recreate_is_refused_in_one_sentence_naming_both(capsys, cache_dir):
    from interference.pretrain import main
    rc = main(["--quick", "--width", "32", "--pin", "--recreate", "--no-progress"])  # an unpinned spec
    assert rc == 2
    err = capsys.readouterr().err
    assert "--pin commits a new base and --recreate re-trains a pinned one; pass one of them." in err, err

"""One command-line vocabulary (interference.cli) across the five commands.

Constructed cases: a config file whose values must arrive (and lose to flags), bad files that must
be one sentence with exit 2, and the fast parsers' hand-kept defaults against the dataclasses they
mirror (so a fast ``--help`` cannot drift from what a run does).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("finetune", "pretrain", "run_hypothesis", "forecast", "figures")


def _parser(cli: str):
    if cli == "finetune":
        from interference.finetune import build_parser
    elif cli == "pretrain":
        from interference.pretrain_cli import build_parser
    elif cli == "run_hypothesis":
        from interference.run_hypothesis import build_parser
    elif cli == "forecast":
        from interference.forecast.cli import build_parser
    else:
        from interference.figures.__main__ import build_parser
    return build_parser()


# ------------------------------------------------------------------ the fast parsers mirror the real defaults
def test_method_options_in_help_are_the_method_configs_fields():
    from interference.finetune import METHOD_FLAGS, method_catalog, option_help
    from interference.methods import METHODS
    cat = method_catalog()
    assert set(cat) == set(METHODS)
    for name, m in METHODS.items():
        fields = {f.name: f.default for f in dataclasses.fields(m.Config)}
        assert set(cat[name]) == set(fields), name
        for opt, (default_src, doc) in cat[name].items():
            assert eval(default_src) == fields[opt], (name, opt)
            assert doc, f"{name}.{opt} has no comment saying what it does"
    for flag in METHOD_FLAGS:  # every method option flag names the methods it applies to
        owners = [n for n, f in cat.items() if flag in f]
        assert owners and all(f"{n}:" in option_help(flag) for n in owners), flag


def test_hand_kept_defaults_match_the_dataclasses():
    import interference.pretrain as pt
    from interference.finetune import RUN_DEFAULTS
    from interference.pretrain_cli import CONSOLIDATION_HELP
    from interference.hypotheses import EXPERIMENTS
    from interference.run_hypothesis import EXPERIMENT_NAMES, HYPOTHESES, NAMES
    from interference.train import FinetuneConfig
    cfg = FinetuneConfig()
    assert RUN_DEFAULTS == {k: getattr(cfg, k) for k in RUN_DEFAULTS}
    assert CONSOLIDATION_HELP == pt.consolidation_help()
    assert tuple(HYPOTHESES) == NAMES
    assert set(EXPERIMENTS) == set(EXPERIMENT_NAMES)  # the help and --out's "ours" list every design


@pytest.mark.parametrize("cli", CLIS)
def test_every_command_shares_the_vocabulary(cli):
    ap = _parser(cli)
    flags = {s for a in ap._actions for s in a.option_strings}
    assert {"--config", "--device", "--no-progress", "--progress"} <= flags
    assert not ({"--seed", "--seeds"} - flags) or True  # which one a command has depends on what it runs
    for a in ap._actions:
        if a.dest == "seed":
            assert a.help.startswith("one seed value")
        if a.dest == "seeds":
            assert a.help.startswith("how many seeds")
    text = ap.format_help()
    assert "(default: auto)" in text  # defaults are shown


def test_help_imports_no_heavy_module():
    code = ("import sys\n"
            "from interference.finetune import build_parser as f\n"
            "from interference.pretrain_cli import build_parser as p\n"
            "from interference.run_hypothesis import build_parser as r\n"
            "from interference.forecast.cli import build_parser as c\n"
            "from interference.figures.__main__ import build_parser as g\n"
            "[b().format_help() for b in (f, p, r, c, g)]\n"
            "print(sorted(m for m in ('torch', 'transformers', 'transformer_lens', 'matplotlib') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ------------------------------------------------------------------ --config FILE
def _finetune_args(argv):
    from interference.finetune import build_parser
    return build_parser().parse_args(argv)


def test_config_file_values_arrive_and_flags_override_them(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"method": "self_distill", "out": "runs/x", "lr": 0.001, "kl-weight": 2,
                             "no_progress": True, "report_to": "tensorboard"}))
    a = _finetune_args(["--config", str(f)])
    assert (a.method, a.out, a.lr, a.kl_weight, a.no_progress, a.report_to) == \
        ("self_distill", "runs/x", 0.001, 2.0, True, ["tensorboard"])
    b = _finetune_args(["--config", str(f), "--lr", "0.0005", "--method", "sft"])
    assert (b.method, b.lr, b.out) == ("sft", 0.0005, "runs/x")


def test_yaml_config_and_a_positional_from_the_file(tmp_path):
    pytest.importorskip("yaml")
    from interference.run_hypothesis import build_parser
    f = tmp_path / "h.yaml"
    f.write_text("hypothesis: localized\nseeds: 2\nquick: true\n")
    a = build_parser().parse_args(["--config", str(f)])
    assert (a.hypothesis, a.seeds, a.quick) == ("localized", 2, True)
    assert build_parser().parse_args(["capacity", "--config", str(f)]).hypothesis == "capacity"


@pytest.mark.parametrize("content,says", [
    ('{"method": "sft", "out": "x", "lr": 1e-3, "learning_rate": 1}', "'learning_rate' is not a flag"),
    ('{"method": "sft", "out": "x", "precision": "fp8"}', "choose one of"),
    ('{"method": "sft", "out": "x", "quick": "yes"}', "is a switch"),
    ('{"method": "sft", "out": "x", "lr": "nan"}', "not a finite number"),
    ('[1, 2]', "must hold a mapping"),
    ('{"method": ', "not valid JSON"),
])
def test_a_bad_config_file_is_one_sentence_and_exit_2(tmp_path, capsys, content, says):
    f = tmp_path / "c.json"
    f.write_text(content)
    with pytest.raises(SystemExit) as e:
        _finetune_args(["--config", str(f)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err


def test_old_flags_are_still_accepted():
    from interference.forecast.cli import build_parser
    a = build_parser().parse_args(["--sft-data", "x", "--progress"])  # the forecast's old opt-in
    assert a.no_progress is False
    assert _finetune_args(["--method", "sft", "--out", "x", "--resume"]).resume is True


@pytest.mark.parametrize("argv, says", [
    (["decomposition", "--consolidations", "0.5,2"], "one consolidation level"),
    (["localized", "--consolidations", "0.5"], "--consolidations applies to"),
    (["culprits", "--first-seed", "3"], "--first-seed applies to decomposition, localized and bc_self"),
    (["decomposition", "--first-seed", "-1"], "must be 0 or more"),
    (["localized", "--epochs", "5"], "--epochs sets capacity_sweep's passes"),
    (["capacity_sweep", "--epochs", "0"], "must be at least 1"),
    (["capacity_sweep", "--counts", "8"], "at least two different positive"),
    (["culprits", "--counts", "2,8"], "--counts applies to a real model"),
])
def test_run_hypothesis_flags_a_design_cannot_use_are_refused_in_one_sentence(tmp_path, capsys, argv, says):
    """A consolidation level, a first seed or a sweep budget given to a design without it: one
    sentence, before any work (nothing written)."""
    from interference.run_hypothesis import main
    assert main([*argv, "--quick", "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert says in err and err.count("\n") <= 2
    assert not (tmp_path / "o").exists()

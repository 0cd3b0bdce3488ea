"""Every command the README and docs/REAL_MODELS.md print (the exact Qwen2.5-1.5B ones included)
parses with the parser of the command it names, so a renamed or dropped flag breaks a test here
and not a reader's run. Only parsing: no model is loaded."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/REAL_MODELS.md")
PARSERS = {  # module run with -m -> where its torch-free parser is built
    "interference.finetune": "interference.finetune",
    "interference.run_hypothesis": "interference.run_hypothesis",
    "interference.pretrain": "interference.pretrain_cli",
    "interference.forecast": "interference.forecast.cli",
    "interference.figures": "interference.figures.__main__",
}
_MODULE = re.compile(r"(?:^|\s)-m\s+(interference[\w.]*)")


def doc_commands(text: str) -> list[str]:
    """Commands of a markdown text: code lines, indented or fenced (joined over trailing
    backslashes), and inline code spans that run ``-m interference...`` with arguments, outside
    tables (a benchmark table names the command it timed, whose ``--out`` it chose)."""
    out, lines = [], text.splitlines()
    fenced, i = False, 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif (fenced or line.startswith("    ")) and _MODULE.search(" " + line.strip()):
            cmd = line.strip()
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
            out.append(cmd)
        i += 1
    prose = "\n".join(x for x in lines if not x.lstrip().startswith("|"))
    out += [m for m in re.findall(r"`([^`\n]*-m interference[\w.]* [^`\n]+)`", prose)]
    return [c.split(" #")[0].strip() for c in out]


def module_and_args(cmd: str) -> tuple[str, list[str]] | None:
    """(module, argv) of a command; None for a sketch holding ``...`` or a placeholder like DIR."""
    words = shlex.split(cmd)
    if "..." in words or "-m" not in words:
        return None
    k = words.index("-m")
    return words[k + 1], words[k + 2:]


def _all():
    found = []
    for doc in DOCS:
        for cmd in doc_commands((REPO / doc).read_text()):
            parsed = module_and_args(cmd)
            if parsed and parsed[0] in PARSERS:
                found.append((doc, cmd, *parsed))
    return found


def test_the_docs_print_the_qwen_commands():
    qwen = [c for _, c, _, _ in _all() if "Qwen2.5-1.5B" in c]
    mods = {m for _, c, m, _ in _all() if "Qwen2.5-1.5B" in c}
    assert len(qwen) >= 8 and {"interference.finetune", "interference.run_hypothesis"} <= mods


@pytest.mark.parametrize("doc, cmd, module, argv", _all(), ids=lambda x: x if isinstance(x, str) and len(x) < 40 else None)
def test_every_printed_command_parses(doc, cmd, module, argv, capsys):
    build = importlib.import_module(PARSERS[module]).build_parser
    try:
        args = build().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{doc}: {cmd!r} does not parse ({capsys.readouterr().err.strip()}); exit {e.code}")
    if module == "interference.run_hypothesis" and getattr(args, "model", None):
        from interference.hypotheses import real_world
        assert args.hypothesis in (*real_world.NAMES, "capacity"), f"{doc}: {cmd!r} runs a hypothesis no real model takes"
        from interference.hypotheses import localized
        left = [a for a in (args.leave_out or "").split(",") if a]
        assert all(a in localized.ARMS and a not in localized.CORE for a in left), cmd


def test_the_extractor_reads_continued_lines_and_skips_sketches():
    text = ("Run:\n\n    python -m interference.finetune --method sft \\\n        --lr 1e-5 --out r\n\n"
            "and `python -m interference.finetune --method sft ... --out q` too.\n")
    cmds = doc_commands(text)
    assert cmds[0] == "python -m interference.finetune --method sft --lr 1e-5 --out r"
    assert module_and_args(cmds[0]) == ("interference.finetune", ["--method", "sft", "--lr", "1e-5", "--out", "r"])
    assert module_and_args(cmds[1]) is None

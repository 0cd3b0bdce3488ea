"""Fault injection, second round (issue 23): nothing silently wrong, nothing outside the seals,
nothing deleted that is not ours. Each test injects one fault and asserts the outcome: one
sentence and exit 2 (or a refusal), or a correct result with a note; nothing deleted that the run
did not write; nothing created before a refusal."""
from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch

from interference import checkpoint as ck
from interference.io import RunDirError, verify_run_dir, write_checked_json
from interference.models import ModelError


def _exit_code(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# ------------------------------------------------------------------ 1. rotation deletes only ours
def _toy():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return model, opt, sched


def test_rotation_deletes_only_the_checkpoint_it_replaces(tmp_path):
    root = tmp_path / "checkpoints"
    foreign = root / "step-9999999"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not a checkpoint")
    empty_foreign = root / "step-0000001"  # named like ours, holds something else
    empty_foreign.mkdir()
    (empty_foreign / "model.safetensors.bak").write_text("keep")
    model, opt, sched = _toy()
    ck.save_checkpoint(root, model, opt, sched, 2, {})
    ck.save_checkpoint(root, model, opt, sched, 4, {})
    assert not (root / "step-0000002").exists()  # ours, replaced: gone
    assert (root / "step-0000004").is_dir()
    assert (foreign / "notes.txt").read_text() == "not a checkpoint"
    assert (empty_foreign / "model.safetensors.bak").exists()
    ck.clear_checkpoints(root)  # a finished run's cleanup
    assert _tree(root) == ["step-0000001", "step-0000001/model.safetensors.bak", "step-9999999",
                           "step-9999999/notes.txt"]


def test_symlinked_checkpoint_folder_is_refused_and_nothing_behind_it_deleted(ft_config, tmp_path, capsys):
    from interference.train import finetune

    class Stop:  # interrupt the run after its checkpoint at step 2
        def on_eval(self, ctx, step):
            if step == 4:
                raise KeyboardInterrupt
    cfg = ft_config(steps=6, ckpt_every=2, eval_every=2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, out, callbacks=[Stop()], progress=False, device="cpu")
    from interference.io import release_run_dir
    release_run_dir(out)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(out / "checkpoints"), elsewhere)
    (elsewhere / "step-9999999").mkdir()
    (elsewhere / "step-9999999" / "model.safetensors").write_text("someone else's")
    (out / "checkpoints").symlink_to(elsewhere)
    before = _tree(elsewhere)
    with pytest.raises(RunDirError, match="symbolic link"):
        finetune(cfg, out, progress=False, device="cpu", resume=True)
    assert _tree(elsewhere) == before
    release_run_dir(out)


# ------------------------------------------------------------------ 2. seals
@pytest.fixture()
def base_copy(ft_base_dir, tmp_path):
    d = tmp_path / "base"
    shutil.copytree(ft_base_dir, d, ignore=shutil.ignore_patterns(".lock", "teachers"))
    return d


def test_edited_base_fingerprint_is_not_believed(base_copy, capsys):
    from interference.bases import base_fingerprint
    true = base_fingerprint(base_copy)
    assert "fingerprint.json" in json.loads((base_copy / "checksums.json").read_text())  # inside the seal
    (base_copy / "fingerprint.json").write_text(json.dumps({"weights": "0" * 16}))
    assert base_fingerprint(base_copy) == true
    assert "0000000000000000" in capsys.readouterr().err
    for junk in ("[1, 2]", '{"weights": ', ""):  # a list, truncated, empty: computed, never a traceback
        (base_copy / "fingerprint.json").write_text(junk)
        assert base_fingerprint(base_copy) == true
    assert not verify_run_dir(base_copy, ())  # written back as it was sealed


def test_edited_memorised_state_is_not_used(cache_dir, quick_spec, quick_base, tmp_path, capsys):
    from interference.consolidation import MEMORISED_FILE, memorised_state
    memo = tmp_path / "memo"
    shutil.copytree(cache_dir / f"memorised-{quick_spec.phase1_hash()}", memo)
    true = memorised_state(memo)
    assert isinstance(true["memorised_step"], int)
    (memo / MEMORISED_FILE).write_text(json.dumps({"memorised_step": 1, "memorised": True}))
    assert memorised_state(memo) == true
    assert "disagrees" in capsys.readouterr().err
    latest = json.loads((memo / "checkpoint" / "latest.json").read_text())
    (memo / "checkpoint" / latest["dir"] / "train_state.json").write_text("{}")  # the sealed copy damaged
    with pytest.raises(ModelError, match="does not match its checksum"):
        memorised_state(memo)


def test_swapped_format_teacher_is_trained_again(quick_base, tmp_path, capsys):
    from safetensors.torch import save_file

    from interference.bases import load_slick
    from interference.sft_data import known_qa_facts
    from interference.teacher import TeacherRecipe, format_teacher
    model, tok, world, run_dir = quick_base
    facts = known_qa_facts(world, load_slick(run_dir), 16, random.Random(0))
    recipe = TeacherRecipe(lr=1e-3, batch_size=8)
    t1 = format_teacher(model, tok, facts, recipe, base_dir=tmp_path, fingerprint="a" * 16)
    (entry,) = (tmp_path / "teachers").iterdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(entry / "model.safetensors"))  # valid, wrong
    t2 = format_teacher(model, tok, facts, recipe, base_dir=tmp_path, fingerprint="a" * 16)
    assert "do not match its checksum" in capsys.readouterr().err
    assert all(torch.equal(p, q) for p, q in zip(t1.parameters(), t2.parameters()))


def test_snapshots_are_inside_the_run_seal(ft_config, tmp_path):
    from interference.figures.runs import ParamPathCallback
    from interference.probes import ProbeCallback
    from interference.train import RUN_FILES, finetune
    out = tmp_path / "run"
    finetune(ft_config(), out, callbacks=[ProbeCallback(("stability",), every=2), ParamPathCallback(2)],
             progress=False, device="cpu")
    sums = json.loads((out / "checksums.json").read_text())
    assert any(f.startswith("param_path/") for f in sums) and any(f.startswith("probes/") for f in sums)
    assert "param_path/index.json" in sums  # the end-of-run snapshot was written before the seal
    assert not verify_run_dir(out, RUN_FILES)
    snaps = sorted((out / "param_path").glob("step_*.safetensors"))
    shutil.copy(snaps[0], snaps[-1])  # a swapped snapshot
    assert verify_run_dir(out, RUN_FILES) == f"param_path/{snaps[-1].name} does not match its checksum"


def test_figure_data_carries_a_checksum(tmp_path, capsys):
    from interference.figures.__main__ import _cached_data
    f = tmp_path / "fig.json"
    key = {"figure": "x"}
    write_checked_json(f, {"key": key, "data": {"y": [1, 2]}})
    assert _cached_data(f, key) == {"y": [1, 2]}
    stored = json.loads(f.read_text())
    stored["data"]["y"] = [1, 3]
    f.write_text(json.dumps(stored))
    assert _cached_data(f, key) is None and "does not match its checksum" in capsys.readouterr().err
    f.write_text(json.dumps({"key": key, "data": {"y": [1, 2]}}))  # no checksum: recomputed too
    assert _cached_data(f, key) is None


def _slick_rows(n: int) -> dict[str, dict]:
    return {f"P1.train:{i}": {"category": "HighlyKnown", "p_greedy": 1.0, "p_sample": 1.0, "answer": "London",
                              "relation": "P1", "split": "train"} for i in range(n)}


def test_truncated_or_edited_slick_cache_is_not_read(tmp_path):
    from interference.real_data import SLICK_SEAL, _read_slick
    f = tmp_path / "slick.jsonl"
    table = _slick_rows(92)
    lines = [json.dumps({"fact_id": k, **v}) + "\n" for k, v in table.items()]
    f.write_text("".join(lines))
    assert _read_slick(f, set(table))[0] == table  # an unsealed (older) complete table is read
    f.write_text("".join(lines[:30]))  # truncated at a line boundary: parses fine
    got, why = _read_slick(f, set(table))
    assert got is None and "covers 30 of the 92" in why
    f.write_text("".join(lines))
    from interference.io import sha256_file
    write_checked_json(tmp_path / SLICK_SEAL, {"file_sha256": sha256_file(f)})
    assert _read_slick(f, set(table))[0] == table
    f.write_text("".join(lines).replace("HighlyKnown", "Unknown", 1))  # edited, complete
    assert _read_slick(f, set(table))[0] is None
    f.write_text("".join(json.dumps({"fact_id": k, "relation": "P1"}) + "\n" for k in table))  # rows lack category
    (tmp_path / SLICK_SEAL).unlink()
    assert "no valid category" in _read_slick(f, set(table))[1]


def test_base_rows_without_category_and_config_without_world_are_one_sentence(base_copy):
    from interference.bases import base_world
    from interference.bases import load_slick
    (base_copy / "slick.jsonl").write_text(json.dumps({"fact_id": "e0:r0", "split": "unseen"}) + "\n")
    with pytest.raises(ModelError, match="no SliCK category"):
        load_slick(base_copy)
    cfg = json.loads((base_copy / "config.json").read_text())
    cfg.pop("world")
    (base_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="names no world"):
        base_world(base_copy)


def test_run_from_a_retrained_base_is_refused(ft_config, base_copy, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from interference.io import seal_run_dir
    from interference.bases import FINGERPRINT_FILE, RUN_FILES as BASE_RUN_FILES, base_fingerprint
    from interference.train import finetune
    cfg = ft_config(base_dir=str(base_copy), steps=2)
    out = tmp_path / "run"
    rec = finetune(cfg, out, progress=False, device="cpu")
    old = rec.metrics["base_fingerprint"]
    # the base re-trained under the same config: new weights, a new (valid) seal
    state = load_file(str(base_copy / "model.safetensors"))
    k = sorted(state)[0]
    state[k] = state[k] + 1e-3
    save_file(state, str(base_copy / "model.safetensors"))
    (base_copy / FINGERPRINT_FILE).unlink()
    new = base_fingerprint(base_copy)
    seal_run_dir(base_copy, BASE_RUN_FILES + (FINGERPRINT_FILE,))
    assert new != old
    with pytest.raises(RunDirError, match=f"base weights {old}.*weights {new}"):
        finetune(cfg, out, progress=False, device="cpu")


def test_real_model_fingerprint_reads_every_byte(tmp_path):
    from interference.real_data import legacy_model_fingerprint, model_dir_fingerprint
    d = tmp_path / "m"
    d.mkdir()
    blob = bytearray(random.Random(0).randbytes(5 << 20))
    (d / "model.safetensors").write_bytes(bytes(blob))
    fp, legacy = model_dir_fingerprint(d), legacy_model_fingerprint(d)
    blob[len(blob) // 2] ^= 1  # one bit in the middle
    (d / "model.safetensors").write_bytes(bytes(blob))
    os.utime(d / "model.safetensors", ns=(1, 1))  # another mtime: the in-process memo must not answer
    assert model_dir_fingerprint(d) != fp
    assert legacy_model_fingerprint(d) == legacy  # what the old fingerprint missed


# ------------------------------------------------------------------ 3. data that contradicts itself
def _eq(d: Path, rows: list[dict], test_rows: list[dict] = ()) -> Path:
    d.mkdir()
    (d / "P1.train.json").write_text(json.dumps(rows))
    if test_rows:
        (d / "P1.test.json").write_text(json.dumps(list(test_rows)))
    return d


def test_duplicate_and_contradicting_questions_are_noted_and_never_both_kept(tmp_path, capsys):
    from interference.data import load_qa_records
    rows = [{"question": f"Where was Person{i} born ?", "answers": ["London"]} for i in range(6)]
    recs = load_qa_records(_eq(tmp_path / "dup", rows, rows))  # every question twice (train and test)
    err = capsys.readouterr().err
    assert len(recs) == 6 and "6 duplicate question(s)" in err and len(err.strip().splitlines()) == 1
    clash = rows + [{"question": "Where was Person0 born ?", "answers": ["Paris"]}]
    recs = load_qa_records(_eq(tmp_path / "clash", clash))
    err = capsys.readouterr().err
    assert "contradicting answers" in err and "Where was Person0 born ?" in err and "['Paris']" in err
    assert all("Person0" not in r.fact.prompt for r in recs) and len(recs) == 5


def test_held_out_question_that_is_also_trained_on_is_refused():
    from interference.data import Fact
    from interference.sft_data import SFTData, SFTDataError

    def fact(i, prompt):
        return Fact(fact_id=f"f{i}", subject="s", relation="r", answer="a", prompt=prompt, split="train")
    with pytest.raises(SFTDataError, match="also in the SFT set"):
        SFTData(train=[fact(0, "Q: x? A:")], eval_sets={"task": [], "plasticity": [], "stability": [fact(1, "Q: x? A:")]})


def _model_copy(tmp_path, arch: str) -> Path:
    import real_fixtures as rf
    d = tmp_path / arch
    shutil.copytree(rf.model_dir(arch), d)
    return d


def test_question_longer_than_the_models_positions_is_one_sentence(tmp_path, capsys):
    import real_fixtures as rf

    from interference.finetune import main
    rows = [{"question": "Where was " + " ".join(["Ada"] * 200) + " born ?", "answers": ["London"]}]
    data = _eq(tmp_path / "eq", rows + [{"question": "Where was Alan born ?", "answers": ["Paris"]}])
    out = tmp_path / "run"
    assert _exit_code(main, ["--method", "sft", "--model", str(rf.model_dir("gpt2")), "--data", str(data),
                             "--out", str(out), "--no-progress", "--device", "cpu"]) == 2
    assert "more than the model's 128 positions" in _one_error(capsys)
    assert not out.exists()


def test_model_whose_weights_lack_tensors_is_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    from interference.models import load_hf_model
    d = _model_copy(tmp_path, "llama")
    state = load_file(str(d / "model.safetensors"))
    gone = "model.layers.1.mlp.down_proj.weight"
    save_file({k: v for k, v in state.items() if k != gone}, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError, match=f"lack 1 tensor.*{gone}"):
        load_hf_model(d, device="cpu")


def test_config_of_another_family_than_the_weights_is_refused(tmp_path):
    from interference.models import load_hf_model
    d = _model_copy(tmp_path, "gpt2")
    import real_fixtures as rf
    (d / "config.json").write_text((rf.model_dir("llama") / "config.json").read_text())
    with pytest.raises(ModelError, match="tensor"):
        load_hf_model(d, device="cpu")


# ------------------------------------------------------------------ 4. divergence
def test_divergence_rule():
    from interference.loop import DivergenceError, check_divergence
    check_divergence(4.0, 5.0, 3)
    check_divergence(900.0, 0.01, 3)  # a base that knew its facts may fluctuate far above its first loss
    with pytest.raises(DivergenceError, match="step 7"):
        check_divergence(math.nan, 5.0, 7)
    with pytest.raises(DivergenceError, match="step 9.*6e\\+13"):
        check_divergence(6e13, 5.0, 9)
    check_divergence(math.inf, 5.0, 7, fp16=True)  # the loss scaler's case: it skips that update


def test_finetune_with_an_absurd_lr_stops_with_the_step(ft_base_dir, tmp_path, capsys):
    from interference.finetune import main
    code = _exit_code(main, ["--method", "sft", "--quick", "--base-dir", ft_base_dir, "--lr", "1e6", "--steps", "20",
                             "--out", str(tmp_path / "run"), "--no-progress"])
    err = _one_error(capsys)
    assert code == 2 and "diverged at step" in err, err
    assert not (tmp_path / "run" / "metrics.json").exists()


# ------------------------------------------------------------------ 5. where things go
@pytest.mark.parametrize("cli", ["finetune", "pretrain", "run_hypothesis"])
def test_empty_out_is_refused_and_nothing_written_here(cli, ft_base_dir, tmp_path, monkeypatch, capsys):
    import importlib
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(f"interference.{cli}").main
    argv = {"finetune": ["--method", "sft", "--quick", "--base-dir", ft_base_dir],
            "pretrain": ["--quick"], "run_hypothesis": ["capacity", "--quick"]}[cli]
    assert _exit_code(main, argv + ["--out", "", "--no-progress"]) == 2
    assert "empty path" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_empty_cache_variable_is_refused(tmp_path, monkeypatch, capsys):
    from interference.pretrain import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTERFERENCE_CACHE", "")
    assert _exit_code(main, ["--quick", "--no-progress"]) == 2
    assert "INTERFERENCE_CACHE is set but empty" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_run_hypothesis_refuses_a_foreign_non_empty_out(tmp_path, capsys):
    from interference.run_hypothesis import main
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert _exit_code(main, ["capacity", "--quick", "--seeds", "1", "--out", str(out), "--no-progress"]) == 2
    assert "holds no hypothesis run of ours" in _one_error(capsys)
    assert _tree(out) == ["thesis.tex"]


def test_out_through_a_missing_folder_and_dotdot_claims_nothing(ft_base_dir, capsys):
    from interference.finetune import main
    base = Path(ft_base_dir)
    before = _tree(base.parent)
    trick = base.parent / "x" / ".." / base.name
    assert _exit_code(main, ["--method", "sft", "--quick", "--base-dir", ft_base_dir, "--steps", "2",
                             "--out", str(trick), "--no-progress"]) == 2
    assert "already holds a different" in _one_error(capsys)
    assert _tree(base.parent) == before  # no x/, nothing in the base


@pytest.mark.parametrize("argv, msg", [
    (["capacity", "--quick", "--seeds", str(10**30)], "between 1 and"),
])
def test_run_hypothesis_seeds_that_cannot_finish(tmp_path, capsys, argv, msg):
    from interference.run_hypothesis import main
    assert _exit_code(main, argv + ["--out", str(tmp_path / "h"), "--no-progress"]) == 2
    assert msg in _one_error(capsys)
    assert not (tmp_path / "h").exists()


def test_world_whose_names_cannot_be_drawn_is_refused_not_a_hang():
    from interference.world import WorldConfig, WorldConfigError
    bad = {**WorldConfig.quick().to_dict(), "n_pieces": 5, "min_name_pieces": 6, "max_name_pieces": 6}
    with pytest.raises(WorldConfigError, match="distinct pieces"):
        WorldConfig.from_dict(bad)


@pytest.mark.parametrize("flag", ["--seed", "--data-seed"])
def test_huge_seed_is_one_sentence(ft_base_dir, tmp_path, capsys, flag):
    from interference.finetune import main
    out = tmp_path / "run"
    assert _exit_code(main, ["--method", "sft", "--quick", "--base-dir", ft_base_dir, flag, str(2**70),
                             "--out", str(out), "--no-progress"]) == 2
    assert "outside 0.." in _one_error(capsys)
    assert not out.exists()


# ------------------------------------------------------------------ 6. tracebacks -> one sentence
def test_full_disk_during_a_safetensors_write_names_the_file_and_stays_resumable(ft_config, tmp_path, capsys,
                                                                                   monkeypatch):
    from interference.cli import run_main
    from interference.train import RUN_FILES, finetune
    real = ck.save_file
    calls = []

    def full_at_step_4(state, path, *a, **k):  # the step-4 checkpoint's weights hit a full disk
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(state, path, *a, **k)
    monkeypatch.setattr(ck, "save_file", full_at_step_4)
    cfg, out = ft_config(steps=6, ckpt_every=2), tmp_path / "run"
    assert run_main(lambda: finetune(cfg, out, progress=False, device="cpu") and 0) == 2
    err = _one_error(capsys)
    assert "step-0000004/model.safetensors" in err and "MiB free" in err and "No space left" in err, err
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 2  # the last good one
    assert not list((out / "checkpoints").rglob("*.tmp"))  # no half-written file left
    from interference.io import release_run_dir
    release_run_dir(out)
    monkeypatch.setattr(ck, "save_file", real)
    rec = finetune(cfg, out, progress=False, device="cpu")  # resumes from step 2
    assert [h["step"] for h in rec.metrics["history"]] == [0, 2, 4, 6]
    assert not verify_run_dir(out, RUN_FILES)


def test_safetensors_own_disk_full_error_is_recognised(tmp_path):
    from interference.io import atomic_save

    class SafetensorError(Exception):
        pass

    def save(tmp):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" }) (os error 28)")
    with pytest.raises(OSError) as got:
        atomic_save(tmp_path / "model.safetensors", save)
    assert got.value.errno == errno.ENOSPC and got.value.filename == str(tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_figures_bad_device_is_one_sentence(tmp_path, capsys):
    from interference.figures.__main__ import main
    assert _exit_code(main, ["--quick", "--device", "bogus", "--out", str(tmp_path / "f")]) == 2
    assert "not a device" in _one_error(capsys)
    assert not (tmp_path / "f").exists()


def test_interrupted_finetune_says_how_to_resume(capsys, monkeypatch):
    from interference import finetune as ft
    monkeypatch.setattr("interference.train.finetune", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code = ft.main(["--method", "sft", "--quick", "--out", "x", "--no-progress"])
    assert code == 130 and "run the same command again" in capsys.readouterr().err  # finetune resumes by itself


def test_absurd_lora_rank_is_refused_before_allocating(ft_base_dir, tmp_path, capsys):
    from interference.finetune import main
    out = tmp_path / "run"
    assert _exit_code(main, ["--method", "lora", "--quick", "--base-dir", ft_base_dir, "--option", f"rank={10**11}",
                             "--out", str(out), "--no-progress"]) == 2
    assert "exceeds the model's widest layer" in _one_error(capsys)
    assert not out.exists()

"""Real architectures and real QA data through the same code: tiny random GPT-2 / Llama / Qwen2 /
Mistral / GPT-NeoX saved to disk with a tokenizer, and an EntityQuestions-format fixture."""
import json
import shutil

import pytest
import torch

from interference import finetune
from interference.data import load_qa_records
from interference.evaluate import SLICK_CATEGORIES, score_facts
from interference.models import FAMILIES, GROUPS, ModelError, load_hf_model, param_group, parameter_groups
from interference.real_data import SliCKConfig, build_real_sft_data, kept_relations, slick_real
from interference.sft_data import SFTDataConfig, SFTDataError

import real_fixtures as rf

ARCHS = ("gpt2", "llama", "qwen2", "mistral", "gpt_neox")


@pytest.fixture(autouse=True)
def _private_cache(cache_dir):  # SliCK tables and teachers go to the session's private cache
    yield


@pytest.mark.parametrize("arch", ARCHS)
def test_family_groups_cover_every_parameter_once_and_hooks_fire(arch):
    model, tok = load_hf_model(rf.model_dir(arch), device="cpu")
    groups = parameter_groups(model)  # raises if a parameter matches no rule or several
    assert set(groups) == {n for n, _ in model.named_parameters()}
    assert {"attn", "mlp", "embed", "norm"} <= {g for g, _ in groups.values()} <= set(GROUPS)
    assert {layer for g, layer in groups.values() if g in ("attn", "mlp")} == {0, 1}

    from interference.metrics.attribution import parameter_units
    units = parameter_units(model)
    assert sorted(n for names in units.values() for n in names) == sorted(groups)  # attribution covers all
    assert {"attn.0", "attn.1", "mlp.0", "mlp.1", "embed"} <= set(units)

    from interference.probes import capture
    facts = [r.fact for r in load_qa_records(rf.eq_dir())][:5]
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.1.hook_mlp_out"]
    acts = capture(model, tok, facts, hooks, positions=["subject_last", "last"])
    assert all(acts[h].shape == (5, 2, 32) and torch.isfinite(acts[h]).all() for h in hooks)
    res = score_facts(model, tok, facts)
    assert len(res) == 5 and all(r.gold_logprob < 0 for r in res)
    # the same number as the raw HF model, so the bridge adds nothing to what we measure
    import transformers
    from interference.tokenizer import encode_qa
    hf = transformers.AutoModelForCausalLM.from_pretrained(rf.model_dir(arch), attn_implementation="eager").eval()
    p, a = encode_qa(tok, facts[0].prompt, facts[0].answer)
    with torch.no_grad():
        ref = hf(torch.tensor([p])).logits[0, -1].double().log_softmax(-1)[a[0]]
    # two float32 code paths may reduce in another order: relative tolerance
    assert res[0].gold_logprob == pytest.approx(float(ref), rel=1e-4, abs=1e-4)


def test_every_family_row_is_reachable_and_unknown_names_are_refused():
    assert {f.name for f in FAMILIES} >= {"gpt2", "llama", "qwen2", "mistral", "gpt_neox"}
    assert param_group("model.layers.3.post_attention_layernorm.weight") == ("norm", 3)
    assert param_group("transformer.h.0.attn.c_attn.weight") == ("attn", 0)
    with pytest.raises(ModelError, match="matches no group"):
        param_group("mystery.weight")


def test_unsupported_family_is_one_sentence(tmp_path):
    import transformers as t
    tok = rf.tokenizer()
    t.OPTForCausalLM(t.OPTConfig(vocab_size=len(tok), hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                 num_attention_heads=2, word_embed_proj_dim=16)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"'opt' is not in the parameter-group table; supported families: "
                                         r"gpt2, llama, qwen2, mistral, gpt_neox\."):
        load_hf_model(tmp_path, device="cpu")


def _copy_model(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(rf.model_dir("llama"), d)
    return d


@pytest.mark.parametrize("damage,pattern", [
    ("not a model", "is not a Hugging Face model directory"),
    ("config", "config.json is not valid JSON"),
    ("weights", "weights in .* could not be loaded"),
    ("no weights", "weights in .* could not be loaded"),
    ("tokenizer", "tokenizer files in .* are unreadable"),
    ("no tokenizer", "holds no tokenizer"),
])
def test_broken_model_directories_are_one_sentence(tmp_path, damage, pattern):
    d = _copy_model(tmp_path)
    if damage == "not a model":
        d = tmp_path / "empty"
        d.mkdir()
    elif damage == "config":
        (d / "config.json").write_text('{"model_type": "llama",')
    elif damage == "weights":
        (d / "model.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "no weights":
        (d / "model.safetensors").unlink()
    elif damage == "tokenizer":
        (d / "tokenizer.json").write_text("{not json")
    elif damage == "no tokenizer":
        for f in d.glob("tokenizer*"):
            f.unlink()
    with pytest.raises(ModelError, match=pattern) as e:
        load_hf_model(d, device="cpu")
    assert "\n" not in str(e.value)


def _slick_table():
    model, tok = load_hf_model(rf.taught_model_dir(), device="cpu")
    records = load_qa_records(rf.eq_dir())
    return records, slick_real(model, tok, records, SliCKConfig(n_exemplar_sets=2, n_samples=2))


def test_slick_on_real_data_categorises_and_filters_relations():
    records, table = _slick_table()
    assert set(table) == {r.fact.fact_id for r in records}
    assert {row["category"] for row in table.values()} <= set(SLICK_CATEGORIES)
    share = {rel: sum(r["category"] != "Unknown" for r in table.values() if r["relation"] == rel)
             / sum(r["relation"] == rel for r in table.values()) for rel in ("P1", "P2", "P3")}
    # the taught model answers each relation's majority value: P1 3/4 London, P2 1/2 math, P3 none
    assert share["P1"] >= 0.6 and 0.3 <= share["P2"] <= 0.7 and share["P3"] < 0.3
    assert kept_relations(table, 0.3) == ["P1", "P2"]
    data = build_real_sft_data(records, table, SFTDataConfig(n_facts=8, n_task=4, n_stability=8))
    assert len(data.known_ids) == 4 and len(data.unknown_ids) == 4
    assert all(table[i]["category"] == "HighlyKnown" for i in data.known_ids)
    assert all(table[i]["category"] == "Unknown" for i in data.unknown_ids)
    assert {f.relation for f in data.train} <= {"P1", "P2"}

    p3 = {k: v for k, v in table.items() if v["relation"] == "P3"}
    with pytest.raises(SFTDataError, match="no relation keeps >= 30% Known facts"):
        build_real_sft_data([r for r in records if r.fact.relation == "P3"], p3, SFTDataConfig(n_facts=4))


REAL = ["--quick", "--steps", "2", "--eval-every", "2", "--n-facts", "8", "--n-task", "4", "--n-stability", "8",
        "--exemplar-sets", "2", "--samples", "2", "--no-progress", "--device", "cpu"]
RUN_FILES = {"config.json", "metrics.json", "timeline.jsonl", "sft_data.json", "model"}


@pytest.mark.parametrize("method", ["sft", "self_distill", "freeze", "l2_init", "ewc", "replay", "lora"])
def test_finetune_cli_runs_every_method_on_a_real_model(tmp_path, method, capsys):
    out = tmp_path / "run"
    extra = ["--option", "n_fisher=4"] if method == "ewc" else []
    rc = finetune.main(["--method", method, "--model", str(rf.taught_model_dir()), "--data", str(rf.eq_dir()),
                        "--out", str(out), *REAL, *extra])
    assert rc == 0, capsys.readouterr().err
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["real"]["model"] == str(rf.taught_model_dir().resolve()) and cfg["real"]["trust_remote_code"] is False
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 2 and [h["step"] for h in m["history"]] == [0, 2]
    rows = [json.loads(x) for x in (out / "timeline.jsonl").read_text().splitlines()]
    assert {r["set"] for r in rows} == {"task", "plasticity", "stability"} and len(rows) == 2 * (4 + 4 + 8)
    model, tok = load_hf_model(out / "model", device="cpu")  # the run's model reloads as a HF model
    assert len(tok) == len(rf.tokenizer())


@pytest.mark.parametrize("argv,pattern", [
    (["--model", "/nonexistent/model"], "is not a Hugging Face model directory"),
    (["--model", "{llama}", "--data", "{bad}"], r"P1\.test\.json line 2 lacks field 'answers'"),
    (["--model", "{opt}"], "is not in the parameter-group table; supported families"),
    (["--model", "{llama}", "--data", "{p3}"], "no relation keeps >= 30% Known facts"),
])
def test_finetune_cli_bad_real_input_is_one_sentence(tmp_path, capsys, argv, pattern):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "P1.test.json").write_text('{"question": "Where was Ada Lovelace born ?", "answers": ["London"]}\n'
                                      '{"question": "Where was Alan Turing born ?"}\n')
    p3 = tmp_path / "p3"
    p3.mkdir()
    for f in rf.eq_dir().glob("P3.*"):
        shutil.copy(f, p3 / f.name)
    opt = tmp_path / "opt"
    shutil.copytree(rf.model_dir("llama"), opt)
    cfg = json.loads((opt / "config.json").read_text())
    (opt / "config.json").write_text(json.dumps({**cfg, "model_type": "opt", "architectures": ["OPTForCausalLM"]}))
    subst = {"{llama}": str(rf.taught_model_dir()), "{bad}": str(bad), "{opt}": str(opt), "{p3}": str(p3)}
    argv = [subst.get(a, a) for a in argv]
    if "--data" not in argv:
        argv += ["--data", str(rf.eq_dir())]
    out = tmp_path / "run"
    capsys.readouterr()  # drop what building the fixtures printed
    rc = finetune.main(["--method", "sft", "--out", str(out), *argv, *REAL])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert __import__("re").search(pattern, err), err
    assert not out.exists()  # refused before anything was claimed


HYP = rf.HYP_ARGS


@pytest.mark.parametrize("name,extra,pattern", [
    ("capacity", ["--counts", "4"], "at least two different positive whole numbers"),
    ("capacity", ["--leave-out", "uuid"], "capacity's count sweep has none to leave out"),
    ("localized", ["--counts", "4,8"], "--counts sets capacity's count sweep"),
    ("all", [], "all does not run on a given real model"),
    ("localized", [], r"only 0 watched HighlyKnown facts have a subject of 3 or more tokens whose first two are "
                      r"specific to it"),
    ("behavior_cloning", ["--precision", "fp16"], "fp16 needs a CUDA GPU"),
    ("localized", ["--consolidations", "2"], "--consolidations does not apply to a real model"),
    ("behavior_cloning", ["--lr", "1e-2"], r"at --lr 0.01 Known-only SFT for 40 steps already loses 100% of the "
                                           r"watched facts the base knows, so the model is destroyed"),
    ("behavior_cloning", [], r"the new facts reach only \d+% \(< 95%\) in 40 steps; raise the step budget or pass --lr"),
    ("behavior_cloning", ["--leave-out", "disjoint"], "none can be left out"),
    ("localized", ["--leave-out", "uuid"], "the core arms"),
])
def test_run_hypothesis_refuses_what_a_real_model_cannot_give_in_one_sentence(tmp_path, capsys, name, extra, pattern):
    from interference import run_hypothesis
    capsys.readouterr()
    rc = run_hypothesis.main([name, "--model", str(rf.taught_model_dir()), "--data", str(rf.eq_dir()),
                              "--out", str(tmp_path / "h"), *HYP, *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert __import__("re").search(pattern, err), err
    assert not (tmp_path / "h").exists()  # refused before the output directory was claimed


def test_slick_cache_is_keyed_by_content_not_mtime(tmp_path):
    import os
    from interference.real_data import RealSpec, slick_cache_dir
    data = tmp_path / "eq"
    shutil.copytree(rf.eq_dir(), data)
    spec = RealSpec(model=str(rf.model_dir("llama")), data=str(data))
    before = slick_cache_dir(spec)
    f = data / "P1.test.json"
    st = os.stat(f)
    f.write_text(f.read_text().replace("London", "Paris", 1))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert slick_cache_dir(spec) != before
    assert slick_cache_dir(RealSpec(model=spec.model, data=str(rf.eq_dir()))) == slick_cache_dir(
        RealSpec(model=spec.model, data=str(rf.eq_dir())))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["sft", "lora"])
def test_a_trained_model_saves_and_reloads_as_the_same_function(tmp_path, arch, method):
    """Training moves what the bridge runs (GPT-NeoX: split q/k/v copies of the fused qkv; LoRA:
    adapters merged back), and the saved HF model must compute exactly what was trained."""
    from interference.methods import get_method
    from interference.models import model_logits, save_hf_model
    model, tok = load_hf_model(rf.model_dir(arch), device="cpu")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = model_logits(model, ids)
    m = get_method(method, rank=2) if method == "lora" else get_method(method)
    prepared = m.prepare(model, None)
    torch.manual_seed(0)
    with torch.no_grad():
        for _, p in m.trainable_parameters(prepared):
            p.add_(0.05 * torch.randn_like(p))  # a "training step" on everything the method trains
    model = m.finalize(prepared)
    with torch.no_grad():
        trained = model_logits(model, ids)
    assert not torch.allclose(trained, before, atol=1e-3)
    save_hf_model(model, tok, tmp_path / "saved")
    again, _ = load_hf_model(tmp_path / "saved", device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(model_logits(again, ids).double(), trained.double(), rtol=1e-4, atol=1e-5)


def test_the_frozen_teacher_shares_nothing_with_the_student_and_is_never_trained(tmp_path, monkeypatch):
    """Self-distillation on a real model: the format teacher is a separate frozen copy (no tensor
    storage in common with the student, nothing requires grad), its logits carry no autograd
    graph, and after training every teacher weight is what it was before."""
    from interference import train
    from interference.methods import self_distill
    from interference.real_data import RealSpec, SliCKConfig
    seen = {}

    class Watch:
        def on_start(self, ctx):
            t, s = ctx.teacher, ctx.model
            seen["shared"] = {p.untyped_storage().data_ptr() for p in t.parameters()} & \
                {p.untyped_storage().data_ptr() for p in s.parameters()}
            seen["grad"] = [n for n, p in t.named_parameters() if p.requires_grad]
            seen["before"] = {n: p.detach().clone() for n, p in t.named_parameters()}
            seen["teacher"] = t

    real_logits = self_distill.model_logits
    graphs = []

    def logits(m, ids):
        out = real_logits(m, ids)
        if m is seen.get("teacher"):
            graphs.append(out.requires_grad)
        return out
    monkeypatch.setattr(self_distill, "model_logits", logits)
    spec = RealSpec(model=str(rf.taught_model_dir().resolve()), data=str(rf.eq_dir().resolve()),
                    slick=SliCKConfig(n_exemplar_sets=2, n_samples=2).to_dict())
    cfg = train.FinetuneConfig.quick(method="self_distill", method_options={"teacher": "format"}, steps=3,
                                     eval_every=3, real=spec.to_dict(),
                                     data=SFTDataConfig(n_facts=8, n_task=4, n_stability=8))
    rec = train.finetune(cfg, tmp_path / "run", callbacks=[Watch()], progress=False, device="cpu")
    assert rec.metrics["steps"] == 3
    assert seen["shared"] == set() and seen["grad"] == []
    assert graphs and not any(graphs)  # the teacher ran on every step, never building a graph
    for n, p in seen["teacher"].named_parameters():
        assert torch.equal(p, seen["before"][n]), n


def test_known_only_drift_is_read_at_the_step_the_arm_learned():
    """A constructed pair of seeds: the watched facts a, b, c known to the base (d is not); the
    Known-only run reads them at steps 10, 20, 30 and the share2 arm learned at step 20 (seed 0)
    and 10 (seed 1). The matched drift is the share of a, b, c wrong at that step; the final one at 30."""
    from interference.hypotheses.real_world import KNOWN_ONLY, known_only_drift_at
    fids = ["a", "b", "c", "d"]
    base = {"arm": "base", "fact_ids": fids, "base_ok": [True, True, True, False]}
    res = [base]
    for seed, step in ((0, 20), (1, 10)):
        res.append({"arm": "share2", "seed": seed, "fact_ids": fids, "reads": {"learned": {"step": step}}})
        res.append({"arm": KNOWN_ONLY, "seed": seed, "fact_ids": fids,
                    "correct_at": {"10": "1111", "20": "1011", "30": "0001"}})
    d = known_only_drift_at(res, [0, 1])
    assert [r["matched"] for r in d["per_seed"]] == pytest.approx([1 / 3, 0.0])
    assert d["matched"]["value"] == pytest.approx(1 / 6) and d["matched"]["n"] == 2
    assert d["final"]["value"] == pytest.approx(1.0)  # d was never known, so it does not count
    res[1]["reads"]["learned"] = None  # an arm that never learned has no matched read
    assert known_only_drift_at(res, [0, 1])["matched"]["n"] == 1


def test_real_localized_runs_its_core_arms_on_more_seeds_than_its_secondary_ones():
    """The real-model default (``REAL_SEEDS``): the core arms, which carry the endpoint, and the
    Known-only reference on every seed; the secondary arms, which the rule never reads, on the
    first ``SECONDARY_SEEDS`` only; core cells first, so a run cut short still has the endpoint."""
    import dataclasses
    from types import SimpleNamespace
    from interference.hypotheses import localized as loc
    from interference.hypotheses.real_world import KNOWN_ONLY, REAL_SEEDS, SECONDARY_SEEDS, loc_cells
    ctx = SimpleNamespace(spec=SimpleNamespace(hash=lambda: "fixture"))
    cfg = dataclasses.replace(loc.LocalizedConfig(seeds=REAL_SEEDS), first_seed=3)
    cells = loc_cells(cfg, ctx)[1:]
    by = {}
    for c in cells:
        by.setdefault(c.key["arm"], []).append(c.key["seed"])
    seeds = list(range(3, 3 + REAL_SEEDS))
    assert REAL_SEEDS > SECONDARY_SEEDS
    for a in (*loc.CORE, KNOWN_ONLY):
        assert by[a] == seeds
    for a in (a for a in loc.ARMS if a not in loc.CORE):
        assert by[a] == seeds[:SECONDARY_SEEDS]
    n_first = REAL_SEEDS * (len(loc.CORE) + 1)
    assert {c.key["arm"] for c in cells[:n_first]} == {*loc.CORE, KNOWN_ONLY}

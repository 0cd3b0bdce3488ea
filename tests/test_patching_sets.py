"""The mended activation-patching instrument: position sets, every layer from the embedding output
on, the mean-ablation control, and its statistics, on constructed cases with known answers.

The constructed "fine-tuned" model is the quick base with the embedding rows of a few name pieces
overwritten by another piece's row. Only those rows differ, so at the embedding output patching
the base's states at every corrupted token makes the forward pass the base's own (the fact is
restored with the base's exact log-probability), and patching a token whose row is unchanged
changes nothing at all (the fine-tuned log-probability, exactly)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from interference import hooks
from interference.metrics.patching import (MEAN_MIN_POOL, POSITION_SETS, layer_label, patch_hooks, patched_answers,
                                           patched_at, position_sets, restore_rate, sequence_states)


@pytest.fixture(scope="module")
def first_piece_case(quick_base, one_thread):
    """The base, a copy whose embedding rows of some known facts' *first* subject piece are
    overwritten, the watched facts, and per fact whether its only corrupted token is the subject's
    first (and the subject has more than one token)."""
    model, tok, world, _ = quick_base
    facts = world.facts(world.split("statement_only"))
    base_out = patched_answers(model, tok, facts, None)
    known = [f for f, c in zip(facts, base_out.correct) if c and len(f.subject.split()) > 1]
    victims = sorted({f.subject.split()[0] for f in known[::5]})[:6]
    donor_piece = next(p for p in world.pieces if p not in victims)
    ft = copy.deepcopy(model)
    emb = next(p for n, p in ft.named_parameters() if "embed" in n and p.shape[0] == len(tok))
    with torch.no_grad():
        for v in victims:
            emb[tok.convert_tokens_to_ids(v)] = emb[tok.convert_tokens_to_ids(donor_piece)]
    words = [f.prompt.split() for f in facts]
    first_only = np.array([len(f.subject.split()) > 1 and f.subject.split()[0] in victims
                           and not set(w) - {f.subject.split()[0]} & set(victims) for f, w in zip(facts, words)])
    ft_out = patched_answers(ft, tok, facts, None)
    lost = base_out.correct & ~ft_out.correct & first_only
    assert lost.sum() >= 5, "the constructed corruption must make the model forget some facts"
    return model, ft, tok, facts, base_out, ft_out, lost


def _own(states, n, hook):
    return [states.rows[i][hook] for i in range(n)]


def test_hook_sweep_and_labels(quick_base):
    model = quick_base[0]
    n = int(model.cfg.n_layers)
    hs = patch_hooks(n)
    assert hs == [hooks.EMBED_OUT] + [hooks.resid_post(i) for i in range(n)]
    assert [layer_label(h) for h in hs] == ["embed"] + [f"L{i}" for i in range(n)]
    assert all(h in model.hook_dict for h in hs)
    with pytest.raises(ValueError, match="no layer label"):
        layer_label(hooks.mlp_out(0))


def test_position_sets_follow_the_kept_name_positions(quick_base):
    _, tok, world, _ = quick_base
    fact = next(f for f in world.facts(world.split("statement_only")) if len(f.subject.split()) == 3)
    ids = tok(fact.prompt)["input_ids"]
    start = ids.index(tok.convert_tokens_to_ids(fact.subject.split()[0]))  # word-level: one id per piece
    assert ids[start + 2] == tok.convert_tokens_to_ids(fact.subject.split()[2])
    p = position_sets(tok, fact, (0, 1))
    assert p["subject"] == [start, start + 1, start + 2]
    assert p["shared"] == [start, start + 1] and p["subject_last"] == [start + 2]
    assert position_sets(tok, fact, (2,))["shared"] == [start + 2]
    assert position_sets(tok, fact, None)["shared"] == [] == position_sets(tok, fact, ())["shared"]
    assert position_sets(tok, fact, (0, 5))["shared"] == [start]  # past the end of the name: skipped
    assert set(p) == set(POSITION_SETS)


def test_every_corrupted_token_restores_exactly_and_an_untouched_one_changes_nothing(first_piece_case):
    base, ft, tok, facts, base_out, ft_out, lost = first_piece_case
    h = hooks.EMBED_OUT
    states = sequence_states(base, tok, facts, [h], range(len(facts)))
    own = _own(states, len(facts), h)
    sets = [position_sets(tok, f, (0,)) for f in facts]
    whole = patched_at(ft, tok, facts, h, own, [s["subject"] for s in sets])
    assert restore_rate(whole, lost) == 1.0
    np.testing.assert_allclose(whole.gold_logprob[lost], base_out.gold_logprob[lost], rtol=1e-4, atol=1e-4)
    shared = patched_at(ft, tok, facts, h, own, [s["shared"] for s in sets])  # the corrupted first piece
    assert restore_rate(shared, lost) == 1.0
    np.testing.assert_allclose(shared.gold_logprob[lost], base_out.gold_logprob[lost], rtol=1e-4, atol=1e-4)
    last = patched_at(ft, tok, facts, h, own, [s["subject_last"] for s in sets])  # its row was never touched
    assert restore_rate(last, lost) == 0.0
    np.testing.assert_allclose(last.gold_logprob[lost], ft_out.gold_logprob[lost], rtol=1e-5, atol=1e-5)
    nothing = patched_at(ft, tok, facts, h, own, [[] for _ in facts])
    np.testing.assert_allclose(nothing.gold_logprob, ft_out.gold_logprob, rtol=1e-5, atol=1e-5)


def test_subject_last_reading_is_the_original_instrument(first_piece_case):
    """``patched_at`` at the last subject token = ``patched_answers`` with captured subject_last
    states: the original reading is one of the new position sets."""
    from interference.probes import capture
    base, ft, tok, facts, *_ = first_piece_case
    h = hooks.resid_post(0)
    states = sequence_states(base, tok, facts, [h], range(len(facts)))
    new = patched_at(ft, tok, facts, h, _own(states, len(facts), h),
                     [position_sets(tok, f, None)["subject_last"] for f in facts])
    old = patched_answers(ft, tok, facts, h, capture(base, tok, facts, [h], "subject_last")[h])
    np.testing.assert_array_equal(new.correct, old.correct)
    np.testing.assert_allclose(new.gold_logprob, old.gold_logprob, rtol=1e-5, atol=1e-5)


def test_mean_control_is_the_other_entities_mean_of_the_same_relation_and_length(quick_base):
    model, tok, world, _ = quick_base
    facts = world.facts(world.split("statement_only"))
    h = hooks.resid_post(0)
    st = sequence_states(model, tok, facts, [h], range(len(facts)), batch_size=7)  # groups span batches
    length = [len(tok(f.prompt)["input_ids"]) for f in facts]
    i = next(k for k in range(len(facts)) if st.pool(k) >= MEAN_MIN_POOL)
    peers = [j for j in range(len(facts)) if j != i and facts[j].relation == facts[i].relation
             and length[j] == length[i]]
    assert st.pool(i) == len(peers)
    want = torch.stack([st.rows[j][h] for j in peers]).mean(0)
    torch.testing.assert_close(st.mean_of(i, h), want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(st.mean_of(i, h), st.rows[i][h])  # the fact itself is left out
    small = sequence_states(model, tok, facts[:3], [h], range(3))
    assert all(small.mean_of(k, h) is None for k in range(3))  # too few others to average


def test_donor_of_another_length_is_refused(first_piece_case):
    base, ft, tok, facts, *_ = first_piece_case
    with pytest.raises(ValueError, match="same length"):
        patched_at(ft, tok, facts[:1], hooks.EMBED_OUT, [torch.zeros(1, 4)], [[0]])
    with pytest.raises(ValueError, match="one donor sequence"):
        patched_at(ft, tok, facts[:2], hooks.EMBED_OUT, [torch.zeros(1, 4)], [[0], [0]])


def test_patch_forgotten_writes_every_set_layer_and_donor(first_piece_case):
    """The cell record of the mended instrument on the constructed model: every set x layer x
    donor for a look-alike arm, no ``shared`` set without one, and the original keys unchanged."""
    from interference.hypotheses.localized_train import patch_forgotten
    base, ft, tok, facts, base_out, ft_out, lost_first = first_piece_case
    n = int(base.cfg.n_layers)
    p = patch_forgotten(base, ft, tok, facts, seed=0, n_layers=n, keep=(0,))
    lost = base_out.correct & ~ft_out.correct
    assert p["fact_ids"] == [f.fact_id for f, x in zip(facts, lost) if x]
    labels = ["embed"] + [f"L{i}" for i in range(n)]
    assert list(p["sets"]) == list(POSITION_SETS) and p["not_applicable"] == []
    for rec in p["sets"].values():
        assert set(rec) == {"own", "control", "mean"}
        assert all(list(rec[d]) == labels and all(len(b) == lost.sum() for b in rec[d].values()) for d in rec)
    assert p["own"] == {str(i): p["sets"]["subject_last"]["own"][f"L{i}"] for i in range(n)}
    assert p["control"] == {str(i): p["sets"]["subject_last"]["control"][f"L{i}"] for i in range(n)}
    # every corrupted token is a subject token: the whole subject at the embedding restores all
    assert set(p["sets"]["subject"]["own"]["embed"]) == {"1"}
    # the last layer's subject states are read by nothing: nothing restored there
    assert set(p["sets"]["subject"]["own"][f"L{n - 1}"]) == {"0"}
    first = lost_first[lost]  # among the lost: facts whose only corrupted token is the 1st
    assert all(p["sets"]["subject_last"]["own"]["embed"][k] == "0" for k in np.where(first)[0])
    assert all(p["sets"]["shared"]["own"]["embed"][k] == "1" for k in np.where(first)[0])
    assert len(p["mean_pool"]) == lost.sum() and p["mean_usable"].count("1") > 0
    none = patch_forgotten(base, ft, tok, facts, seed=0, n_layers=n, keep=None)
    assert "shared" not in none["sets"] and none["not_applicable"] == ["shared"]
    assert none["sets"]["subject"] == p["sets"]["subject"]  # same donors, same facts


# ------------------------------------------------------------------ statistics on constructed cells
def _bits(mask):
    return "".join("1" if x else "0" for x in mask)


def _cells(own_subject: list[bool], ctrl: list[bool], mean: list[bool], mean_ok: list[bool]):
    """One seed: 4 watched facts of entities 1 (the target) and 2, all known to the base; share2
    and uuid forget every one; their patching records are the given bits at every layer."""
    fids = ["1:a", "1:b", "2:a", "2:b"]
    base = {"arm": "base", "fact_ids": fids, "base_ok": [True] * 4, "gold_logprob": [-0.1] * 4}
    read = {"step": 10, "plasticity": 1.0, "correct": "0000", "predictions": ["v"] * 4}
    labels = ["embed", "L0", "L1"]

    def rec(sets):
        return {"fact_ids": fids, "own": {"0": _bits(own_subject), "1": _bits(own_subject)},
                "control": {"0": _bits(ctrl), "1": _bits(ctrl)}, "control_usable": "1110",
                "mean_usable": _bits(mean_ok), "mean_pool": [9, 9, 9, 2], "not_applicable":
                [s for s in POSITION_SETS if s not in sets],
                "sets": {s: {"own": {x: _bits(own_subject) for x in labels},
                             "control": {x: _bits(ctrl) for x in labels},
                             "mean": {x: _bits(mean) for x in labels}} for s in sets}}

    out = [base]
    for arm, sets in (("share2", POSITION_SETS), ("uuid", ("subject", "subject_last"))):
        out.append({"arm": arm, "seed": 0, "fact_ids": fids, "entity_ids": ["1", "1", "2", "2"], "target_eids": ["1"],
                    "pair_value": {}, "reads": {"learned": read, "final": read}, "patching": rec(sets)})
    return out


def test_patching_statistics_from_constructed_cells():
    from interference.hypotheses.localized_summary import index_results, patching_readings, per_seed
    res = _cells(own_subject=[True, True, False, True], ctrl=[False, True, False, False],
                 mean=[False, False, True, True], mean_ok=[True, True, True, False])
    base, runs = index_results(res)
    m = per_seed(0, base, runs, ("share2", "uuid"), n_layers=2)
    t, r = "patch/share2/targets", "patch/share2/rest"
    assert m[f"{t}/subject/own/embed"] == 1.0 and m[f"{r}/shared/own/L1"] == 0.5
    assert m[f"{t}/shared/control/L0"] == 0.5 and m[f"{t}/shared/own_minus_control/L0"] == 0.5
    # rest: fact 2:b has no random donor (control_usable 0) and no mean (mean_usable 0): 2:a only
    assert m[f"{r}/subject/control/L0"] == 0.0 and m[f"{r}/subject/own_minus_control/L0"] == 0.0
    assert m[f"{r}/subject/mean/L0"] == 1.0 and m[f"{r}/subject/own_minus_mean/L0"] == -1.0
    assert m[f"{t}/subject_last/own_minus_mean/embed"] == 1.0
    # the original keys are still there, unchanged in meaning (own over all, control over usable)
    assert m[f"{t}/own/L0"] == 1.0 and m[f"{t}/control/L0"] == 0.5 and m[f"{r}/own/L1"] == 0.5
    assert m["patch/uuid/all/subject/own/L1"] == 0.75
    assert not any(k.startswith("patch/uuid/all/shared/") for k in m)
    info = patching_readings(runs, [0], n_layers=2)
    assert info["layers"] == ["embed", "L0", "L1"]
    assert info["arms"]["uuid"]["position_sets"] == ["subject", "subject_last"]
    assert "shared" in info["arms"]["uuid"]["not_applicable"] and info["arms"]["share2"]["not_applicable"] == {}
    assert info["arms"]["share2"]["mean_pool"] == {"min": 2, "median": 9.0}
    assert info["cells_without_mended_patching"] == []


def test_cells_made_before_the_mended_instrument_keep_their_readings_and_get_no_new_keys():
    from interference.hypotheses.localized_summary import index_results, patching_readings, per_seed
    res = _cells([True] * 4, [False] * 4, [False] * 4, [True] * 4)
    for r in res[1:]:
        r["patching"] = {k: r["patching"][k] for k in ("fact_ids", "own", "control", "control_usable")}
    base, runs = index_results(res)
    m = per_seed(0, base, runs, ("share2", "uuid"), n_layers=2)
    assert m["patch/share2/targets/own_minus_control/L1"] == 1.0
    assert not [k for k in m if k.count("/") > 4]
    info = patching_readings(runs, [0], n_layers=2)
    assert info["cells_without_mended_patching"] == ["share2 seed 0", "uuid seed 0"]


def test_patching_figure_draws_from_constructed_statistics(tmp_path):
    from interference.metrics.stats import estimate
    from interference.plots import plot_localized_patching
    layers = ["embed", "L0", "L1"]
    st = {f"patch/share2/targets/{s}/{d}/{x}": estimate([0.5, 0.7]) for s in POSITION_SETS
          for d in ("own", "control", "mean") for x in layers}
    st.update({f"patch/uuid/all/subject/{d}/{x}": estimate([0.1, math.nan]) for d in ("own", "control", "mean")
               for x in layers})
    paths = plot_localized_patching({"statistics": st, "patching": {"layers": layers}}, tmp_path)
    assert [p.name for p in paths] == ["localized_patching.png", "localized_patching.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert plot_localized_patching({"statistics": {}, "patching": {}}, tmp_path / "none") == []

"""The synthetic world: deterministic, key styles measured, bad configs refused."""
import json

import pytest

from interference.world import World, WorldConfig, WorldConfigError, shared_piece_count
from interference.tokenizer import world_tokenizer


def _fingerprint(w: World):
    return [(e.pieces, e.split, e.values) for e in w.entities]


def test_generation_is_deterministic_per_seed():
    assert _fingerprint(World(WorldConfig.quick(seed=3))) == _fingerprint(World(WorldConfig.quick(seed=3)))
    assert _fingerprint(World(WorldConfig.quick(seed=3))) != _fingerprint(World(WorldConfig.quick(seed=4)))
    a = World(WorldConfig.quick(seed=3)).new_entities(20, "semantic", seed=1)
    b = World(WorldConfig.quick(seed=3)).new_entities(20, "semantic", seed=1)
    assert [e.pieces for e in a] == [e.pieces for e in b]


def test_config_json_round_trip(tmp_path):
    cfg = WorldConfig(seed=7, relations=("born_in", "speaks"), n_values=12)
    cfg.save(tmp_path / "w.json")
    assert WorldConfig.load(tmp_path / "w.json") == cfg
    assert json.loads((tmp_path / "w.json").read_text())["relations"] == ["born_in", "speaks"]


def test_names_are_unique_and_share_pieces():
    w = World(WorldConfig())
    names = [e.pieces for e in w.entities]
    assert len(set(names)) == len(names)
    # names share tokens the way real names do: most pieces are used by many entities
    uses = {p: sum(p in e.pieces for e in w.entities) for p in w.pieces}
    assert min(uses.values()) >= 5


def _corpus_token_ids(w, tok):
    """Token ids of everything pre-training shows the model (statements, QA, filler)."""
    from interference.corpus import pretraining_pairs, qa_pairs
    pairs = pretraining_pairs(w) + qa_pairs(w, "pretrain_qa")
    return {i for p, a in pairs for i in tok(f"{p} {a}")["input_ids"]}


def test_key_styles_share_what_they_promise():
    w = World(WorldConfig())
    tok = world_tokenizer(w)
    corpus = _corpus_token_ids(w, tok)
    watched = {p for e in w.split("statement_only") for p in e.pieces}
    name_pieces = {p for e in w.entities for p in e.pieces}
    sem = w.new_entities(200, "semantic", seed=0)
    uid = w.new_entities(200, "uuid", seed=0)
    dis = w.new_entities(200, "disjoint", seed=0)
    ids = lambda e: set(tok(e.name)["input_ids"])  # noqa: E731
    # every key style uses only tokens pre-training trained: no embedding row is new
    assert all(ids(e) <= corpus for e in sem + uid + dis)
    assert {tok.convert_tokens_to_ids(p) for p in w.uuid_pieces} <= corpus  # the whole inventory
    # semantic names recombine watched pieces; uuid names share no piece with any name at all
    assert all(set(e.pieces) <= set(w.pieces) for e in sem)
    assert all(not (set(e.pieces) & name_pieces) for e in uid)
    assert all(not (set(e.pieces) & watched) for e in uid + dis)
    # disjoint pieces occur in pre-training names, but only in never-watched (pretrain_qa) entities
    users = {p: {e.split for e in w.entities if p in e.pieces} for p in w.disjoint_pieces}
    assert all(u == {"pretrain_qa"} for u in users.values() if u)
    assert set().union(*(set(e.pieces) for e in dis)) <= set(w.disjoint_pieces)
    assert sum(e.key_style == "disjoint" for e in w.split("pretrain_qa")) == w.config.n_disjoint_pretrain
    # no new name repeats an existing one
    old_names = {e.pieces for e in w.entities}
    assert not ({e.pieces for e in sem + uid + dis} & old_names)


def test_uuid_pieces_occur_in_pretraining_only_as_filler():
    w = World(WorldConfig.quick())
    filler = w.filler_pairs()
    assert len(filler) == w.config.n_filler
    seen = {p for prefix, _ in filler for p in prefix.split()[1:]}
    assert seen == set(w.uuid_pieces)  # every piece, in no name
    assert all(prefix.split()[1] == answer for prefix, answer in filler)  # copy the first piece
    from interference.corpus import pretraining_pairs
    statements = [p for p, _ in pretraining_pairs(w) if not p.startswith("code ")]
    assert not any(set(s.split()) & set(w.uuid_pieces) for s in statements)


def test_too_little_filler_is_refused():
    with pytest.raises(WorldConfigError, match="n_filler"):
        WorldConfig(n_uuid_pieces=96, n_filler=10)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("style, split", [("semantic", "statement_only"), ("disjoint", "pretrain_qa")])
def test_graded_overlap_with_chosen_targets(k, style, split):
    w = World(WorldConfig())
    targets = [e for e in w.split(split) if len(e.pieces) == 3 and e.key_style == style][:50]
    new = w.new_entities(50, style, seed=2, overlap_with=targets, shared_pieces=k)
    assert [shared_piece_count(n, t) for n, t in zip(new, targets)] == [k] * len(targets)
    assert all(n.key_style == style for n in new)


def test_overlap_targets_must_match_the_key_style():
    w = World(WorldConfig.quick())
    with pytest.raises(WorldConfigError, match="inventory"):
        w.new_entities(3, "disjoint", overlap_with=w.split("statement_only")[:3])
    with pytest.raises(WorldConfigError, match="uuid keys share no pieces"):
        w.new_entities(3, "uuid", overlap_with=w.split("statement_only")[:3])


def test_values_from_pairs_entities_fact_for_fact():
    w = World(WorldConfig.quick())
    sem = w.new_entities(10, "semantic", seed=0)
    uid = w.new_entities(10, "uuid", seed=0, values_from=sem)
    assert [e.values for e in uid] == [e.values for e in sem]
    assert {e.eid for e in uid}.isdisjoint({e.eid for e in sem} | {e.eid for e in w.entities})


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_pretrain_qa=0, n_statement_only=0, n_unseen=0), "at least one entity"),
    (dict(n_values=1), "at least 2"),
    (dict(relations=("born_in", "flies_to")), "unknown relation"),
    (dict(n_pieces=4, n_pretrain_qa=400), "do not fit"),
])
def test_impossible_configs_are_refused_in_one_sentence(kwargs, words):
    with pytest.raises(WorldConfigError, match=words):
        WorldConfig(**kwargs)


def test_unknown_key_style_and_bad_file(tmp_path):
    w = World(WorldConfig.quick())
    with pytest.raises(WorldConfigError, match="unknown key style"):
        w.new_entities(3, "emoji")
    bad = tmp_path / "w.json"
    bad.write_text("{not json")
    with pytest.raises(WorldConfigError, match="not valid JSON"):
        WorldConfig.load(bad)
    bad.write_text(json.dumps({"n_entities": 3}))
    with pytest.raises(WorldConfigError, match="unknown world config field"):
        WorldConfig.load(bad)


def test_tokenizer_round_trips_every_rendered_fact():
    w = World(WorldConfig())
    tok = world_tokenizer(w)
    new = w.new_entities(50, "semantic", seed=0) + w.new_entities(50, "uuid", seed=0) + \
        w.new_entities(50, "disjoint", seed=0)
    texts = []
    for e in w.entities + new:
        for r in w.config.relations:
            texts += [f"{p} {v}" for p, v in w.render_statements(e, r)]
            texts += [" ".join(w.render_qa(e, r, t)) for t in range(w.config.n_qa_templates)]
    texts += [f"{p} {a}" for p, a in w.filler_pairs()]
    unk = tok.unk_token_id
    for t in texts:
        ids = tok(t)["input_ids"]
        assert unk not in ids, t
        assert tok.decode(ids) == t


def test_facts_carry_entity_and_relation_fields():
    """Who a fact is about is a field (entity_id), so nothing needs to parse fact ids."""
    world = World(WorldConfig.quick())
    ents = world.split("statement_only")[:3]
    facts = world.facts(ents)
    rels = world.config.relations
    assert [f.entity_id for f in facts] == [str(e.eid) for e in ents for _ in rels]
    assert [f.relation for f in facts] == list(rels) * len(ents)
    assert len({f.fact_id for f in facts}) == len(facts)

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


def test_semantic_keys_share_pieces_and_uuid_keys_share_none():
    w = World(WorldConfig())
    existing = {p for e in w.entities for p in e.pieces}
    sem = w.new_entities(200, "semantic", seed=0)
    uid = w.new_entities(200, "uuid", seed=0)
    assert all(set(e.pieces) <= existing for e in sem)
    assert all(not (set(e.pieces) & existing) for e in uid)
    # at the token level too: uuid names use ids the pre-training corpus never contains
    tok = world_tokenizer(w)
    corpus_ids = {i for e in w.entities for i in tok(e.name)["input_ids"]}
    assert all(not (set(tok(e.name)["input_ids"]) & corpus_ids) for e in uid)
    assert all(set(tok(e.name)["input_ids"]) <= corpus_ids for e in sem)
    old_names = {e.pieces for e in w.entities}
    assert not ({e.pieces for e in sem} & old_names)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_graded_overlap_with_chosen_targets(k):
    w = World(WorldConfig())
    targets = [e for e in w.split("statement_only") if len(e.pieces) == 3][:50]
    new = w.new_entities(50, "semantic", seed=2, overlap_with=targets, shared_pieces=k)
    assert [shared_piece_count(n, t) for n, t in zip(new, targets)] == [k] * 50


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
    new = w.new_entities(50, "semantic", seed=0) + w.new_entities(50, "uuid", seed=0)
    texts = []
    for e in w.entities + new:
        for r in w.config.relations:
            texts += [f"{p} {v}" for p, v in w.render_statements(e, r)]
            texts += [" ".join(w.render_qa(e, r, t)) for t in range(w.config.n_qa_templates)]
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

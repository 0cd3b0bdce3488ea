"""SFT set and evaluation sets, on a constructed SliCK table with known categories."""
from __future__ import annotations

import pytest

from interference.sft_data import SFTDataConfig, SFTDataError, build_sft_data, kept_relations
from interference.world import World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig.quick())


def slick_table(world, known_every: int = 2, drop_relation: str | None = None):
    """statement_only: every `known_every`-th fact HighlyKnown, the rest Unknown (all Unknown for
    `drop_relation`); unseen: all Unknown; pretrain_qa: all HighlyKnown."""
    rows = {}
    for split in ("pretrain_qa", "statement_only", "unseen"):
        for i, f in enumerate(world.facts(world.split(split))):
            if split == "pretrain_qa":
                cat = "HighlyKnown"
            elif split == "unseen" or f.relation == drop_relation:
                cat = "Unknown"
            else:
                cat = "HighlyKnown" if i % known_every == 0 else "MaybeKnown"
            rows[f.fact_id] = {"category": cat, "split": split}
    return rows


def test_sizes_disjoint_and_fraction(world):
    cfg = SFTDataConfig(n_facts=20, unknown_fraction=0.25, n_task=5, n_stability=30)
    d = build_sft_data(world, slick_table(world), cfg)
    assert len(d.train) == 20 and len(d.unknown_ids) == 5 and len(d.known_ids) == 15
    ids = {k: {f.fact_id for f in v} for k, v in d.eval_sets.items()}
    assert len(ids["task"]) == 5 and len(ids["stability"]) == 30
    assert not (set(d.known_ids) & ids["task"]) and not (set(d.known_ids) & ids["stability"])
    assert not (ids["task"] & ids["stability"])
    assert ids["plasticity"] == set(d.unknown_ids)
    assert all(f.split == "unseen" for f in d.eval_sets["plasticity"])
    assert all(f.split == "statement_only" for f in d.eval_sets["stability"])
    assert [f.fact_id for f in d.format_facts] == d.known_ids


def test_deterministic_and_seeded(world):
    s = slick_table(world)
    a = build_sft_data(world, s, SFTDataConfig(n_facts=20, n_task=5, n_stability=20))
    b = build_sft_data(world, s, SFTDataConfig(n_facts=20, n_task=5, n_stability=20))
    c = build_sft_data(world, s, SFTDataConfig(n_facts=20, n_task=5, n_stability=20, seed=1))
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()


def test_relation_filter_drops_mostly_unknown_relation(world):
    s = slick_table(world, drop_relation="speaks")
    assert kept_relations(world, s, 0.3) == ["born_in", "works_as"]
    d = build_sft_data(world, s, SFTDataConfig(n_facts=20, n_task=5, n_stability=20))
    assert all(f.relation != "speaks" for f in d.train + d.eval_sets["stability"])


def test_all_unknown_uses_pretrain_qa_format_facts(world):
    d = build_sft_data(world, slick_table(world), SFTDataConfig(n_facts=12, unknown_fraction=1.0, n_task=4, n_stability=10))
    assert not d.known_ids and len(d.unknown_ids) == 12
    assert d.format_facts and all(f.split == "pretrain_qa" for f in d.format_facts)


def test_new_entities_are_the_unknown_facts(world):
    new = world.new_entities(5, key_style="uuid", seed=3)
    d = build_sft_data(world, slick_table(world), SFTDataConfig(n_facts=10, unknown_source="new", n_task=4, n_stability=10),
                       new_entities=new)
    assert len(d.unknown_ids) == 5 * len(world.config.relations)
    assert all(f.key_style == "uuid" for f in d.eval_sets["plasticity"])


@pytest.mark.parametrize("kw, msg", [
    ({"unknown_fraction": 1.5}, "outside [0, 1]"),
    ({"unknown_fraction": -0.1}, "outside [0, 1]"),
    ({"unknown_source": "web"}, "unknown_source"),
    ({"n_facts": 0}, "at least one"),
])
def test_bad_config(kw, msg):
    with pytest.raises(SFTDataError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        SFTDataConfig(**kw)


def test_not_enough_known_facts(world):
    with pytest.raises(SFTDataError, match="HighlyKnown"):
        build_sft_data(world, slick_table(world, known_every=50), SFTDataConfig(n_facts=40, unknown_fraction=0.0))


def test_new_source_without_entities(world):
    with pytest.raises(SFTDataError, match="new_entities"):
        build_sft_data(world, slick_table(world), SFTDataConfig(n_facts=10, unknown_source="new"))


def test_json_round_trip():
    cfg = SFTDataConfig(n_facts=7, unknown_fraction=0.3)
    assert SFTDataConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SFTDataError, match="unknown SFT data field"):
        SFTDataConfig.from_dict({"n_fact": 3})

"""The one training loop: batches, schedule, callbacks, stop, resume; and the package-wide rules
it exists for (one optimizer.step, no import circle, a teacher stage that methods only receive)."""
from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
import torch

from interference.batching import Packed
from interference.loop import LoopConfig, batch_at, epoch_batches, lr_multiplier, train_loop

PKG = Path(__file__).resolve().parents[1] / "interference"


# ------------------------------------------------------------------ pure pieces
def test_epoch_batches_cover_every_example_once_keeping_the_last_partial_batch():
    batches = epoch_batches(10, 4, seed=3, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    # step 3 is the first batch of epoch 1, a different permutation of the same examples
    assert torch.equal(batch_at(3, 10, 4, seed=3), epoch_batches(10, 4, 3, 1)[0])
    assert torch.equal(batch_at(2, 10, 4, seed=3), batches[2])
    assert not torch.equal(torch.cat(epoch_batches(10, 4, 3, 1)), torch.cat(batches))


def test_lr_multiplier_warms_up_linearly_then_decays_to_the_floor():
    total, warm, floor = 100, 10, 0.1
    assert lr_multiplier(0, total, warm, floor) == pytest.approx(0.1)
    assert lr_multiplier(9, total, warm, floor) == pytest.approx(1.0)
    assert lr_multiplier(10, total, warm, floor) == pytest.approx(1.0)
    mid = 10 + (total - 10) // 2
    assert lr_multiplier(mid, total, warm, floor) == pytest.approx(floor + (1 - floor) * 0.5, rel=1e-6)
    assert lr_multiplier(total, total, warm, floor) == pytest.approx(floor)
    vals = [lr_multiplier(s, total, warm, floor) for s in range(10, total)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_loop_config_round_trips_and_refuses_nonsense():
    cfg = LoopConfig(lr=1e-3, batch_size=8, steps=20, warmup_steps=3, eval_every=5)
    assert LoopConfig.from_dict(cfg.to_dict()) == cfg and cfg.warmup == 3
    assert LoopConfig(lr=1e-3, batch_size=8, steps=200).warmup == 10  # 5% of the steps
    with pytest.raises(ValueError, match="positive"):
        LoopConfig(lr=0, batch_size=8, steps=20)
    with pytest.raises(ValueError, match="unknown loop config field"):
        LoopConfig.from_dict({**cfg.to_dict(), "epochz": 2})


def test_every_run_kind_becomes_a_loop_config_through_one_translation():
    """``LoopConfig.from_settings`` copies every loop field a settings class states (non-default
    values here, so a field it dropped would show) and leaves the rest at the loop's defaults."""
    from interference.bases import PretrainConfig
    from interference.pretrain import phase_loop_config
    from interference.teacher import TeacherRecipe
    from interference.train import SFTSpec

    r = TeacherRecipe(lr=3e-4, batch_size=7, seed=5, warmup_frac=0.2, min_lr_ratio=0.3, grad_clip=0.5, epochs=2)
    assert r.loop_config(14) == LoopConfig(lr=3e-4, batch_size=7, steps=4, warmup_frac=0.2, min_lr_ratio=0.3,
                                           grad_clip=0.5, seed=5)
    spec = SFTSpec(lr=2e-3, batch_size=6, max_steps=9, warmup_frac=0.1, min_lr_ratio=0.2, seed=4, eval_every=3)
    assert spec.loop_config() == LoopConfig(lr=2e-3, batch_size=6, steps=9, warmup_frac=0.1, min_lr_ratio=0.2,
                                            seed=4, eval_every=3)
    pc = PretrainConfig(lr=1e-3, batch_size=5, steps=40, weight_decay=0.05, grad_clip=0.7, seed=3, eval_every=10)
    got = phase_loop_config(pc, "fixed")
    assert got == LoopConfig(lr=1e-3, batch_size=5, steps=40, warmup_steps=pc.warmup, min_lr_ratio=pc.min_lr_ratio,
                             weight_decay=0.05, grad_clip=0.7, seed=3, eval_every=10)
    with pytest.raises(TypeError, match="not LoopConfig fields"):
        LoopConfig.from_settings(r, stepz=3)


# ------------------------------------------------------------------ the loop on a toy problem
class Toy(torch.nn.Module):
    """Regression y = x @ w through the loop's Packed batches: ids hold x (as ints), mask y."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))


def _toy_data(n=10):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (n, 3), generator=g)
    return Packed(x, torch.ones(n, 3, dtype=torch.bool))


def _toy_loss(model, batch, step):
    x = batch.ids.float()
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    return ((x @ model.w - y) ** 2).mean(), {"n": len(batch)}


class Log:
    def __init__(self):
        self.events = []

    def on_start(self, s):
        self.events.append(("start", s.step))

    def on_eval(self, s):
        self.events.append(("eval", s.step, s.model.training))

    def on_step(self, s):
        self.events.append(("step", s.step, s.logs["n"]))

    def on_end(self, s):
        self.events.append(("end", s.step))


def test_loop_learns_and_calls_back_in_order():
    model, log = Toy(), Log()
    cfg = LoopConfig(lr=0.1, batch_size=4, steps=6, eval_every=3, warmup_steps=0)
    state = train_loop(model, model.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[log])
    assert state.step == 6
    kinds = [e[0] for e in log.events]
    assert kinds == ["start", "eval", "step", "step", "eval", "step", "step", "step", "eval", "step", "end"]
    assert all(not e[2] for e in log.events if e[0] == "eval")  # evaluations see an eval-mode model
    assert [e[2] for e in log.events if e[0] == "step"][:3] == [4, 4, 2]  # last partial batch kept
    with torch.no_grad():
        loss0, loss6 = float(_toy_loss(Toy(), _toy_data(), 0)[0]), float(_toy_loss(model, _toy_data(), 0)[0])
    assert loss6 < 0.7 * loss0  # 12.6 -> 6.8 when written


def test_a_callback_can_stop_training():
    class StopAt:
        def on_eval(self, s):
            if s.step >= 4:
                s.stop = True

    model = Toy()
    state = train_loop(model, model.parameters(), _toy_data(), LoopConfig(lr=0.1, batch_size=4, steps=50, eval_every=2),
                       _toy_loss, callbacks=[StopAt()])
    assert state.step == 4


def test_checkpoint_resume_is_bit_identical(tmp_path, monkeypatch):
    from interference import checkpoint
    from interference.callbacks import Checkpoints

    cfg = LoopConfig(lr=0.1, batch_size=4, steps=9, eval_every=3)
    ref = Toy()
    train_loop(ref, ref.parameters(), _toy_data(), cfg, _toy_loss)

    real = checkpoint.save_checkpoint

    def crash(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", crash)
    m = Toy()
    with pytest.raises(KeyboardInterrupt):
        train_loop(m, m.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[Checkpoints(tmp_path, 4)])
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    again, log = Toy(), Log()
    train_loop(again, again.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[Checkpoints(tmp_path, 4), log])
    assert log.events[0] == ("start", 4) and ("eval", 0, False) not in log.events
    assert torch.equal(again.w, ref.w)


# ------------------------------------------------------------------ package-wide rules
def _sources():
    return sorted(PKG.rglob("*.py"))


def test_exactly_one_place_steps_an_optimizer():
    hits = [(p.relative_to(PKG).as_posix(), n) for p in _sources()
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"\b(opt|optim|optimizer)\.step\(\)", line)]
    assert len(hits) == 1 and hits[0][0] == "loop.py", hits
    built = [p.name for p in _sources() if "optim.AdamW(" in p.read_text() or "optim.SGD(" in p.read_text()]
    assert built == ["loop.py"], built


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> interference modules it imports anywhere in its body (lazy imports included:
    an import inside a function is how the old train -> methods -> train circle was hidden)."""
    mods = {_module_name(p): p for p in _sources()}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in mods:
                    n = n.rsplit(".", 1)[0] if "." in n else ""
                if n and n != m and n != "interference":
                    graph[m].add(n)
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state:
                found = visit(v)
                if found:
                    return found
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return None


def test_import_graph_has_no_circle():
    graph = import_graph()
    assert "interference.loop" in graph["interference.train"]  # the parser sees real edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_planted_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_methods_import_no_training_module():
    graph = import_graph()
    training = {"interference.train", "interference.loop", "interference.teacher", "interference.pretrain",
                "interference.callbacks"}
    for m, deps in graph.items():
        if m.startswith("interference.methods"):
            assert not (deps & training) - {"interference.pretrain"}, (m, deps & training)


def test_lr_decays_in_a_real_run():
    """The scheduler the loop builds follows lr_multiplier."""
    model = Toy()
    lrs = []

    class Lr:
        def on_step(self, s):
            lrs.append(s.opt.param_groups[0]["lr"])

    cfg = LoopConfig(lr=0.1, batch_size=4, steps=20, warmup_steps=4, min_lr_ratio=0.1)
    train_loop(model, model.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[Lr()])
    want = [0.1 * lr_multiplier(s, 20, 4, 0.1) for s in range(1, 21)]
    assert lrs == pytest.approx(want, rel=1e-9) and math.isclose(lrs[-1], 0.01, rel_tol=1e-9)


# ------------------------------------------------------------------ length groups (less padding, same loss)
def test_needed_lengths_run_through_the_last_answer_token():
    from interference.batching import needed_lengths
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 2] = True  # position 2 predicts token 3: 4 tokens needed
    mask[1, 3:5] = True  # a two-token answer ending at token 5: all 6
    assert needed_lengths(mask).tolist() == [4, 6, 1]  # no answer token: 1


def test_length_groups_minimise_padded_tokens_plus_a_cost_per_group():
    from interference.batching import length_groups
    lengths = torch.tensor([10, 2, 10, 3])
    # one group: 4 x 10 + 5 = 45; {2, 3} + {10, 10}: 2 x 3 + 5 + 2 x 10 + 5 = 36; three groups: 40
    groups = length_groups(lengths, overhead=5)
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 2], [1, 3]]
    assert [sorted(g.tolist()) for g in length_groups(lengths, overhead=1000)] == [[0, 1, 2, 3]]
    assert sum(len(g) for g in length_groups(torch.randint(1, 13, (128,)), 16)) == 128  # a partition


def test_grouping_by_length_gives_the_padded_batch_gradient(monkeypatch):
    """The pre-training loop runs a batch as length groups trimmed to their own longest example;
    each group's mean loss weighted by its share of the answer tokens must reproduce the whole
    padded batch's loss and gradient."""
    import interference.loop as loop
    from interference.models import ModelConfig, build_model

    monkeypatch.setitem(loop.GROUP_OVERHEAD_TOKENS, "cpu", 0.0)  # split whenever it saves a token
    g = torch.Generator().manual_seed(1)
    n, width = 24, 10
    ids = torch.zeros(n, width, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.bool)
    for i in range(n):
        length = 4 + i % 7  # 4..10 tokens, the last one or two of them the answer
        ids[i, :length] = torch.randint(1, 30, (length,), generator=g)
        mask[i, length - 1 - (1 + i % 2): length - 1] = True
    data = Packed(ids, mask)

    def run(grouped: bool):
        torch.manual_seed(0)
        model = build_model(ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=16), 30, device="cpu")
        widths, grads = [], []

        def loss_fn(m, batch, step):
            widths.append(batch.ids.shape[1])
            return loop.default_loss(m, batch, step)

        class Grab:
            def on_step(self, s):
                grads.append([p.grad.detach().clone() for p in s.params])

        state = train_loop(model, model.parameters(), data, LoopConfig(lr=1e-3, batch_size=n, steps=1),
                           loss_fn, callbacks=[Grab()], group_lengths=grouped)
        return state.loss, grads[0], widths

    loss0, grads0, widths0 = run(False)
    loss1, grads1, widths1 = run(True)
    assert widths0 == [width] and len(widths1) > 1 and max(widths1) == width and min(widths1) < width
    assert math.isclose(loss0, loss1, rel_tol=1e-5)
    for a, b in zip(grads0, grads1):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)

"""Data-parallel pieces: each process's share of a global batch and its loss factor give, after
averaging over processes, exactly the single-process gradient; and the evaluation batch size
follows free memory."""
import pytest
import torch

from interference.batching import Packed, answer_loss
from interference.distributed import (Distributed, DistributedError, eval_batch_size, local_indices,
                                      loss_factor, micro_split)


def _grad(model, batch: Packed, factor: float = 1.0) -> torch.Tensor:
    model.zero_grad()
    (answer_loss(model(batch.ids), batch) * factor).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


@pytest.mark.parametrize("world,accum", [(2, 1), (3, 2), (2, 4)])
def test_shares_and_factors_reproduce_the_global_gradient(world, accum):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 20))
    ids = torch.randint(0, 20, (11, 6))
    mask = torch.zeros(11, 6, dtype=torch.bool)
    for i in range(11):  # answers of 1 to 3 tokens, so shares carry different token counts
        mask[i, 5 - (i % 3) - 1: 5] = True
    data = Packed(ids, mask)
    idx = torch.randperm(11)
    full = _grad(model, data.subset(idx))
    weights = data.loss_mask.sum(1)
    total = torch.zeros_like(full)
    for rank in range(world):
        for m in micro_split(local_indices(idx, rank, world), accum):
            total += _grad(model, data.subset(m), loss_factor(float(weights[m].sum()), float(weights[idx].sum()), world))
    # float32 reduction order moves single entries by ~1e-6 relative; a wrong factor moves them by ~10%
    torch.testing.assert_close(total / world, full, rtol=1e-4, atol=1e-7)


def test_eval_batch_size_follows_free_memory():
    kw = dict(n_layers=28, d_model=1536, d_vocab=151936, seq_len=80)
    small, big = eval_batch_size(free_bytes=8 << 30, **kw), eval_batch_size(free_bytes=64 << 30, **kw)
    assert 1 <= small < big <= 4096 and big == pytest.approx(8 * small, rel=0.05)
    assert eval_batch_size(free_bytes=None, **kw) == 512  # CPU default
    assert eval_batch_size(free_bytes=1, **kw) == 1


def test_single_process_is_the_identity_and_bad_settings_are_refused():
    d = Distributed(device="cpu")
    assert d.world_size == 1 and d.is_main and d.precision == "fp32"
    idx = torch.tensor([3, 1, 2])
    (m, f), = d.micro_batches(idx, torch.tensor([1, 1, 2, 1]))
    assert m.tolist() == [3, 1, 2] and f == 1.0
    assert d.gather([1, 2]) == [1, 2] and d.all_sum([1, 2]) == [1.0, 2.0]
    with pytest.raises(DistributedError, match="unknown precision"):
        Distributed(precision="fp8")
    with pytest.raises(DistributedError, match="needs a GPU with bfloat16"):
        Distributed(precision="bf16", device="cpu")
    with pytest.raises(DistributedError, match="smaller than 1 processes x 4"):
        Distributed(grad_accum=4, device="cpu").check_batch(2)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TWO_PROC_ARGS = ["--quick", "--method", "sft", "--steps", "6", "--batch-size", "8", "--eval-every", "3",
                 "--no-progress", "--device", "cpu"]


def _env():
    import os
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory, quick_base):
    import subprocess
    import sys
    out = tmp_path_factory.mktemp("dist") / "one"
    one = subprocess.run([sys.executable, "-m", "interference.finetune", *TWO_PROC_ARGS, "--out", str(out)],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    return out


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_the_single_process_run_at_the_same_global_batch(tmp_path, single_process_run, quick_base,
                                                                           strategy):
    """``accelerate launch`` with 2 CPU processes vs 1 process, both at global batch 8, with the
    model replicated (ddp) or sharded by FSDP2 (fsdp: each process holds half of every parameter).

    ``--multi_gpu`` is what starts several processes: ``accelerate launch --cpu --num_processes 2``
    starts only one (accelerate 1.15's simple launcher). With no GPU visible, torchrun's processes
    join a gloo group on the CPU. Tolerance: the gradient average (DDP's all-reduce or FSDP's
    reduce-scatter) is exact up to float32 reduction order (~1e-7 relative), so losses agree to
    1e-5 relative, every per-fact answer is the same, gold log-probs (rounded to 5 decimals) within
    1e-3, and the saved weights differ by under 5% of how far training moved them.
    """
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        accelerate = shutil.which("accelerate")
    assert accelerate, "accelerate's launcher is part of the environment"
    two = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
                          "-m", "interference.finetune", *TWO_PROC_ARGS, "--strategy", strategy,
                          "--out", str(tmp_path / "two")],
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    dirs = {"one": single_process_run, "two": tmp_path / "two"}
    cfg = {d: json.loads((p / "config.json").read_text()) for d, p in dirs.items()}
    assert cfg["one"]["world_size"] == 1 and cfg["two"]["world_size"] == 2 and cfg["two"].get("strategy", "ddp") == strategy  # ddp, the default, is left out of the hash
    m = {d: json.loads((p / "metrics.json").read_text()) for d, p in dirs.items()}
    # FSDP: the main process held half of the trained parameters (odd sizes round up); DDP: all of them
    share = m["two"]["trainable_on_main"] / m["two"]["n_trainable"]
    assert (0.5 <= share < 0.55) if strategy == "fsdp" else share == 1.0
    for a, b in zip(m["one"]["history"], m["two"]["history"]):
        assert a["step"] == b["step"] and {k: a[k] for k in ("task", "plasticity", "stability")} == \
            {k: b[k] for k in ("task", "plasticity", "stability")}
        if a["loss"] is not None:
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    rows = {d: [json.loads(x) for x in (p / "timeline.jsonl").read_text().splitlines()] for d, p in dirs.items()}
    assert [(r["fact_id"], r["step"], r["correct"], r["prediction"]) for r in rows["one"]] == \
        [(r["fact_id"], r["step"], r["correct"], r["prediction"]) for r in rows["two"]]
    assert max(abs(a["gold_logprob"] - b["gold_logprob"]) for a, b in zip(rows["one"], rows["two"])) < 1e-3
    # the saved weights: AdamW divides every gradient entry by its own running scale, so entries
    # whose gradient is ~0 turn float32 reduction-order noise into visible steps (4e-5 here, in
    # DDP and FSDP alike); the two runs must still be far closer to each other than to the base
    w = {d: load_file(str(p / "model" / "model.safetensors")) for d, p in dirs.items()}
    base = load_file(str(Path(quick_base[3]) / "model.safetensors"))
    assert w["one"].keys() == w["two"].keys() == base.keys()
    apart = max(float((w["two"][k] - w["one"][k]).abs().max()) for k in base)
    moved = max(float((w["one"][k] - base[k]).abs().max()) for k in base)
    assert apart < 0.05 * moved, (apart, moved)
    assert not list(tmp_path.glob(".two.rank*"))  # the second process's scratch copy is gone


def test_fsdp_refuses_methods_that_hold_unsharded_parameters_in_one_sentence():
    d = Distributed(device="cpu", strategy="fsdp")
    d.check_method("self_distill")
    with pytest.raises(DistributedError, match="--strategy fsdp supports the methods .* ewc keeps references") as e:
        d.check_method("ewc")
    assert "\n" not in str(e.value)
    with pytest.raises(DistributedError, match="unknown strategy 'zero3'"):
        Distributed(device="cpu", strategy="zero3")


# ------------------------------------------------------------------ fp16: the loss scaler inside the one loop
class _Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))


def _lin_loss(model, batch, step):
    x = batch.ids.float()
    return ((x @ model.w - x @ torch.tensor([1.0, -2.0, 0.5])) ** 2).mean(), {}


_REAL_CLIP = torch.nn.utils.clip_grad_norm_


def _scaled_run(monkeypatch, scaler, loss_fn=_lin_loss, steps=4):
    """(per-step weights, gradient norms the clip saw, final state) of a short loop run with an
    optional loss scaler; ``grad_clip`` is small so clipping acts on every step."""
    from interference.loop import LoopConfig, train_loop
    norms = []

    def clip(params, max_norm, **kw):
        params = list(params)
        norms.append(float(torch.cat([p.grad.flatten() for p in params]).norm()))
        return _REAL_CLIP(params, max_norm, **kw)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    g = torch.Generator().manual_seed(0)
    data = Packed(torch.randint(-3, 4, (8, 3), generator=g), torch.ones(8, 3, dtype=torch.bool))
    model = _Lin()
    dist = Distributed.single()
    dist.scaler = scaler
    weights = []

    class Keep:
        def on_step(self, s):
            weights.append(s.model.w.detach().clone())
    cfg = LoopConfig(lr=0.1, batch_size=4, steps=steps, warmup_frac=0.0, grad_clip=0.05)
    state = train_loop(model, list(model.parameters()), data, cfg, loss_fn, callbacks=[Keep()], dist=dist)
    return weights, norms, state


def test_fp16_loss_scaler_unscales_before_clipping_and_skips_inf_steps(monkeypatch):
    """The scaler multiplies the loss by 2^10 (exact in float32); gradients must be unscaled before
    the clip sees them (else the clip would see norms 1024x too large and the update would differ),
    and a step with an inf gradient must leave the weights alone and halve the scale."""
    plain_w, plain_norms, _ = _scaled_run(monkeypatch, None)
    w, norms, state = _scaled_run(monkeypatch, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10))
    assert norms == pytest.approx(plain_norms, rel=1e-6) and state.skipped == 0
    for a, b in zip(w, plain_w):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    def inf_at_step_2(model, batch, step):
        loss, logs = _lin_loss(model, batch, step)
        return (loss * float("inf") if step == 2 else loss), logs
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    w, _, state = _scaled_run(monkeypatch, scaler, inf_at_step_2)
    assert state.skipped == 1 and scaler.get_scale() == 2.0 ** 9
    torch.testing.assert_close(w[2], w[1], rtol=0, atol=0)  # the inf step changed nothing
    assert not torch.equal(w[3], w[2]) and torch.isfinite(w[3]).all()  # training went on


def test_fp16_is_refused_on_cpu_in_one_sentence():
    with pytest.raises(DistributedError, match="fp16 needs a CUDA GPU") as e:
        Distributed(precision="fp16", device="cpu")
    assert "\n" not in str(e.value)


def test_fp16_scaler_state_goes_into_checkpoints_and_comes_back(tmp_path):
    """A resumed fp16 run continues at the scale it had: the scaler's state is saved with the
    checkpoint's extra state (through the real checkpoint files) and restored."""
    from interference.checkpoint import load_checkpoint, save_checkpoint
    from interference.loop import LoopConfig, make_optimizer
    from interference.train import with_scaler_state
    model = _Lin()
    opt, sched = make_optimizer(list(model.parameters()), LoopConfig(lr=0.1, batch_size=1, steps=3))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    scaler.scale(model.w.sum() * float("inf")).backward()
    scaler.step(opt)
    scaler.update()  # the inf halves the scale: 2^9
    got = {}
    extra, _ = with_scaler_state(lambda: {"history": [1]}, None, scaler)
    save_checkpoint(tmp_path, model, opt, sched, 1, extra())
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    _, restore = with_scaler_state(None, got.update, fresh)
    step, x = load_checkpoint(tmp_path, model, opt, sched)
    restore(x)
    assert step == 1 and got["history"] == [1] and fresh.get_scale() == 2.0 ** 9
    assert with_scaler_state(dict, got.update, None) == (dict, got.update)  # fp32/bf16: unchanged

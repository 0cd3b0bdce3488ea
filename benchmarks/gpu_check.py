"""GPU check: SFT and self-distillation step cost on a ~100M-parameter Llama-style model.

    python benchmarks/gpu_check.py                # one GPU, < 10 min; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --tiny         # a 2-layer model on CPU in seconds (CI / tests)
    python benchmarks/gpu_check.py --out other.json --steps 50
    python benchmarks/gpu_check.py --precision fp16   # float16 autocast + loss scaler (GPUs without bf16)

Nothing is downloaded: a Llama config with random weights and a word-level tokenizer over the
synthetic world's vocabulary are written to a temporary directory and loaded through
``interference.models.load_hf_model``, the path every real model takes (TransformerBridge,
eager attention so hooks see the scores). Batches are few-shot QA prompts of the world's facts,
about as long as SliCK's 4-shot EntityQuestions prompts.

Per method it reports steps/s, tokens/s (real, non-pad tokens) and peak memory (CUDA: peak
allocated bytes of that phase; CPU: the process's peak RSS so far), and the
self-distillation / SFT step-time ratio: the teacher's extra no-grad forward pass is what
self-distillation costs over SFT. Steps go through the package's one training loop with the
``Distributed`` helper, so ``--precision`` means what it means for ``finetune``: ``auto`` is bf16
autocast on a GPU with bfloat16 (fp32 elsewhere), ``fp16`` float16 autocast with the loop's loss
scaler (CUDA only; the report counts the steps it skipped), ``fp32`` no autocast.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interference.batching import pack  # noqa: E402
from interference.distributed import Distributed  # noqa: E402
from interference.io import atomic_write_json  # noqa: E402
from interference.loop import LoopConfig, batch_at, train_loop  # noqa: E402
from interference.methods import get_method  # noqa: E402
from interference.models import clone_model, load_hf_model, model_logits  # noqa: E402
from interference.tokenizer import world_tokenizer  # noqa: E402
from interference.world import World, WorldConfig  # noqa: E402

# 14 layers x d768 with a 2048-wide SwiGLU MLP and 12 heads: ~99M in the blocks plus embeddings,
# the "~100M" size class (GPT-2 small, Pythia-160M's blocks) that fills a GPU step meaningfully.
FULL = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=14, num_attention_heads=12,
            num_key_value_heads=12)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def build_model_dir(d: Path, tiny: bool) -> Path:
    """A random Llama with the world tokenizer, saved as a Hugging Face directory."""
    import transformers as t
    world = World(WorldConfig.quick() if tiny else WorldConfig())
    tok = world_tokenizer(world)
    cfg = t.LlamaConfig(vocab_size=len(tok), max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **(TINY if tiny else FULL))
    torch.manual_seed(0)
    t.LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def few_shot_data(tok, tiny: bool, n: int, shots: int, seed: int = 0):
    """``n`` packed few-shot QA prompts (the asked fact's answer is the loss target)."""
    import random
    world = World(WorldConfig.quick() if tiny else WorldConfig())
    facts = world.facts(world.split("pretrain_qa"))
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        ex = rng.sample(facts, shots + 1)
        prefix = " ".join(f"{f.prompt} {f.answer}" for f in ex[:-1])
        pairs.append((f"{prefix} {ex[-1].prompt}", ex[-1].answer))
    return pack(tok, pairs)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


class _Timer:
    """Loop callback: wall time and real tokens of the updates after ``warmup``."""

    def __init__(self, dev, warmup: int, data, batch: int, seed: int, pad_id: int):
        self.dev, self.warmup, self.data, self.batch, self.seed, self.pad = dev, warmup, data, batch, seed, pad_id
        self.t0, self.tokens, self.seconds = None, 0, 0.0

    def on_step(self, state) -> None:
        if state.step == self.warmup:
            _sync(self.dev)
            self.t0 = time.perf_counter()
        elif state.step > self.warmup:
            idx = batch_at(state.step - 1, len(self.data), self.batch, self.seed)
            self.tokens += int((self.data.ids[idx] != self.pad).sum())

    def on_end(self, state) -> None:
        _sync(self.dev)
        self.seconds = time.perf_counter() - self.t0


def time_method(name: str, model, tok, data, dist, steps: int, warmup: int, batch: int) -> dict:
    """Steps/s, tokens/s and peak memory of ``steps`` updates of ``name`` through the one training
    loop (``interference.loop.train_loop``, under ``dist``'s precision)."""
    method = get_method(name, teacher="base") if name == "self_distill" else get_method(name)
    student = clone_model(model).train()
    if name == "self_distill":
        # the teacher: a frozen copy sharing no tensor with the student, run under no_grad
        teacher = clone_model(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        method.teacher, method.pad_id = teacher, tok.pad_token_id
    if dist.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dist.device)
    cfg = LoopConfig(lr=1e-4, batch_size=batch, steps=warmup + steps, warmup_frac=0.0, seed=0)
    timer = _Timer(dist.device, warmup, data, batch, cfg.seed, tok.pad_token_id)
    last = {}

    def loss_fn(m, b, step):
        loss, _ = method.loss(m, b, model_logits(m, b.ids), None)
        last["loss"] = float(loss.detach())
        return loss, {}

    state = train_loop(student, [p for p in student.parameters() if p.requires_grad], data.to(dist.device), cfg,
                       loss_fn, callbacks=[timer], dist=dist)
    dt = timer.seconds
    out = {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "tokens_per_s": timer.tokens / dt,
           "step_seconds": dt / steps, "peak_memory_bytes": _peak(dist.device), "final_loss": last["loss"],
           "skipped_steps": state.skipped}
    del student, method
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="2-layer model on CPU, seconds (for tests)")
    ap.add_argument("--steps", type=int, help="timed steps per method (default 40, --tiny 3)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 5, --tiny 1)")
    ap.add_argument("--batch-size", type=int, help="default 32, --tiny 4")
    ap.add_argument("--shots", type=int, default=7, help="QA exemplars before each asked fact")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                    help="as finetune's: auto = bf16 on a GPU that has it, else fp32; fp16 needs CUDA")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = ap.parse_args(argv)
    steps = args.steps if args.steps is not None else (3 if args.tiny else 40)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    batch = args.batch_size if args.batch_size is not None else (4 if args.tiny else 32)
    if steps < 1 or batch < 1 or warmup < 0:
        print("error: --steps and --batch-size must be positive and --warmup non-negative.", file=sys.stderr)
        return 2
    from interference.distributed import DistributedError
    try:
        dist = Distributed(precision=args.precision,
                           device="cpu" if args.tiny and args.device == "auto" else args.device)
    except DistributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dev = dist.device
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        model, tok = load_hf_model(build_model_dir(Path(d), args.tiny), device=dev)
    n_params = sum(p.numel() for p in model.original_model.parameters())
    data = few_shot_data(tok, args.tiny, 8 * batch, args.shots)
    results = {m: time_method(m, model, tok, data, dist, steps, warmup, batch) for m in ("sft", "self_distill")}
    report = {
        "what": "SFT vs self-distillation step cost, random Llama-style model, few-shot QA batches",
        "command": "python benchmarks/gpu_check.py" + (" --tiny" if args.tiny else "")
                   + (f" --precision {args.precision}" if args.precision != "auto" else ""),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "dtype": {"bf16": "bf16 autocast", "fp16": "fp16 autocast + loss scaler"}.get(dist.precision, "float32"),
        "precision": dist.precision,
        "n_parameters": n_params, "batch_size": batch, "seq_len": int(data.ids.shape[1]),
        "torch": torch.__version__, **results,
        "self_distill_over_sft_step_time": results["self_distill"]["step_seconds"] / results["sft"]["step_seconds"],
        "total_seconds": time.perf_counter() - t_start,
    }
    atomic_write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("device", "n_parameters", "self_distill_over_sft_step_time")}))
    print(f"sft {results['sft']['steps_per_s']:.2f} steps/s, {results['sft']['tokens_per_s']:.0f} tok/s; "
          f"self_distill {results['self_distill']['steps_per_s']:.2f} steps/s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU check: SFT and self-distillation step cost on a ~100M-parameter Llama-style model.

    python benchmarks/gpu_check.py                # one GPU, < 10 min; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --tiny         # a 2-layer model on CPU in seconds (CI / tests)
    python benchmarks/gpu_check.py --out other.json --steps 50

Nothing is downloaded: a Llama config with random weights and a word-level tokenizer over the
synthetic world's vocabulary are written to a temporary directory and loaded through
``interference.models.load_hf_model``, the path every real model takes (TransformerBridge,
eager attention so hooks see the scores). Batches are few-shot QA prompts of the world's facts,
about as long as SliCK's 4-shot EntityQuestions prompts.

Per method it reports steps/s, tokens/s (real, non-pad tokens) and peak memory (CUDA: peak
allocated bytes of that phase; CPU: the process's peak RSS so far), and the
self-distillation / SFT step-time ratio: the teacher's extra no-grad forward pass is what
self-distillation costs over SFT. On CUDA the step runs under bf16 autocast (fp16 where the card
has no bf16), as ``finetune`` does there.
"""
from __future__ import annotations

import argparse
import copy
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
from interference.io import atomic_write_json  # noqa: E402
from interference.methods import get_method  # noqa: E402
from interference.models import load_hf_model, model_logits, resolve_device  # noqa: E402
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


def few_shot_batches(tok, tiny: bool, batch: int, shots: int, n_batches: int, seed: int = 0):
    """``n_batches`` packed batches of few-shot QA prompts (answers are the loss targets)."""
    import random
    world = World(WorldConfig.quick() if tiny else WorldConfig())
    facts = world.facts(world.split("pretrain_qa"))
    rng = random.Random(seed)
    out = []
    for _ in range(n_batches):
        pairs = []
        for _ in range(batch):
            ex = rng.sample(facts, shots + 1)
            prefix = " ".join(f"{f.prompt} {f.answer}" for f in ex[:-1])
            pairs.append((f"{prefix} {ex[-1].prompt}", ex[-1].answer))
        out.append(pack(tok, pairs))
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def time_method(name: str, model, tok, batches, dev, steps: int, warmup: int, amp_dtype) -> dict:
    """Steps/s, tokens/s and peak memory of ``steps`` optimizer steps of ``name`` on ``model``."""
    method = get_method(name, teacher="base") if name == "self_distill" else get_method(name)
    student = copy.deepcopy(model).train()
    if name == "self_distill":
        # the teacher: a frozen copy sharing no tensor with the student, run under no_grad
        method.use_teacher(copy.deepcopy(model), student, tok.pad_token_id)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95))
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    tokens = 0
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(dev)
            t0 = time.perf_counter()
        b = batches[i % len(batches)].to(dev)
        with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model_logits(student, b.ids)
            loss, _ = method.loss(student, b, logits, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= warmup:
            tokens += int((b.ids != tok.pad_token_id).sum())
    _sync(dev)
    dt = time.perf_counter() - t0
    out = {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "tokens_per_s": tokens / dt,
           "step_seconds": dt / steps, "peak_memory_bytes": _peak(dev), "final_loss": float(loss.detach())}
    del student, opt, method
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="2-layer model on CPU, seconds (for tests)")
    ap.add_argument("--steps", type=int, help="timed steps per method (default 40, --tiny 3)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 5, --tiny 1)")
    ap.add_argument("--batch-size", type=int, help="default 32, --tiny 4")
    ap.add_argument("--shots", type=int, default=7, help="QA exemplars before each asked fact")
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = ap.parse_args(argv)
    steps = args.steps if args.steps is not None else (3 if args.tiny else 40)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    batch = args.batch_size if args.batch_size is not None else (4 if args.tiny else 32)
    if steps < 1 or batch < 1 or warmup < 0:
        print("error: --steps and --batch-size must be positive and --warmup non-negative.", file=sys.stderr)
        return 2
    dev = resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    amp = None
    if dev.type == "cuda":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        model, tok = load_hf_model(build_model_dir(Path(d), args.tiny), device=dev)
    n_params = sum(p.numel() for p in model.original_model.parameters())
    batches = few_shot_batches(tok, args.tiny, batch, args.shots, n_batches=8)
    results = {m: time_method(m, model, tok, batches, dev, steps, warmup, amp) for m in ("sft", "self_distill")}
    report = {
        "what": "SFT vs self-distillation step cost, random Llama-style model, few-shot QA batches",
        "command": "python benchmarks/gpu_check.py" + (" --tiny" if args.tiny else ""),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "dtype": str(amp).replace("torch.", "") + " autocast" if amp else "float32",
        "n_parameters": n_params, "batch_size": batch, "seq_len": int(batches[0].ids.shape[1]),
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

"""Scale-out of the one training loop through ``accelerate``: one object the loop calls.

    accelerate launch --num_processes 8 -m interference.finetune --method sft --model DIR --data DIR ...
    accelerate launch --cpu --num_processes 2 -m interference.finetune --quick --method sft --out runs/ddp

What the loop asks of ``Distributed`` (a single process gets the same object with world size 1,
where every call is a no-op or the identity, so there is one code path):

- ``micro_batches(idx, weights)``: this process's share of a *global* batch (the global batch is
  what ``batch_size`` means, whatever the number of processes), cut into ``grad_accum``
  micro-batches, each with the factor its mean loss is multiplied by so that, after gradients
  are averaged over processes, the update is exactly the single-process one: a micro-batch of
  ``w`` answer tokens out of ``W`` in the global batch gets ``w * world_size / W``.
- ``backward(loss)`` then ``sync_gradients(params)``: gradients are averaged over processes
  after the last micro-batch, in flat buckets (what DDP does, without overlapping it with the
  backward pass: methods hold references to the unwrapped model's parameters - anchors, Fisher
  weights, LoRA adapters - so the model is never wrapped).
- ``autocast()``: bf16 on GPUs that have it, fp16 when asked for (``precision="fp16"``, GPUs
  without bfloat16 such as V100/T4), fp32 elsewhere. fp16 comes with ``scaler``, a
  ``torch.amp.GradScaler`` the loop uses: the loss is scaled before ``backward`` (so small
  gradients do not underflow float16), gradients are unscaled before clipping (the clip threshold
  is in true gradient units), and a step whose gradients hold inf/nan is skipped with the scale
  halved. Gradients are averaged over processes while still scaled (the same factor everywhere),
  and an inf on one process is inf in the average, so every process skips the same steps (under
  FSDP, where each process sees only its shards, ``ShardedGradScaler`` agrees on the skip).
- ``shard(items)`` / ``gather(rows)``: evaluation work split over processes and collected on
  every process; ``all_sum`` for counts and the logged loss.
- ``is_main``: the only process that writes into the run directory; the others write their
  copies into a private scratch directory (``rank_out``), so no write site needs a guard.

Two strategies (``strategy``):

- ``ddp`` (default): the model is replicated on every process and gradients are averaged by
  ``sync_gradients``, as above.
- ``fsdp``: for models whose weights, gradients and AdamW moments do not fit on one device.
  ``shard_model`` applies FSDP2 (``torch.distributed.fsdp.fully_shard``) to every transformer
  block and then to the whole model, after the method has chosen its trainable parameters, so
  each process holds 1/world of every parameter (a DTensor), all-gathers a block's weights for
  its forward and backward, and reduce-scatters (averages) gradients itself: ``sync_gradients``
  then does nothing, and the loop's loss factors, clipping (a global norm over DTensors), AdamW
  and loss scaler act on the shards unchanged. Every FSDP forward is a collective, so every
  process must run the same forward passes: evaluation is not split over processes (``shard``
  returns every item, ``gather`` this process's rows, which are every row) and its batch size is
  the smallest any process chose. Only methods whose loss reads nothing but the forward pass
  (sft, self_distill) are sharded; the others hold references to unsharded parameters (anchors,
  Fisher weights, adapters). The final weights are gathered to the main process to be saved;
  checkpoints are not written under FSDP (an interrupted FSDP run starts over).

The frozen teacher and base copies are never prepared, sharded or synced: they share no tensor
with the student, have ``requires_grad=False`` and run under ``no_grad``.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Sequence

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
STRATEGIES = ("ddp", "fsdp")
FSDP_METHODS = ("sft", "self_distill")  # methods whose loss reads only the forward pass


class DistributedError(ValueError):
    """A launch configuration the loop cannot honour."""


def local_indices(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This process's rows of a global batch: a strided slice, so shares differ by at most one."""
    return idx[rank::world]


def micro_split(idx: torch.Tensor, grad_accum: int) -> list[torch.Tensor]:
    """``idx`` cut into ``grad_accum`` contiguous pieces (empty ones dropped)."""
    return [c for c in torch.tensor_split(idx, grad_accum) if len(c)]


def loss_factor(micro_weight: float, global_weight: float, world: int) -> float:
    """Multiplier of a micro-batch's *mean* loss so that averaging gradients over ``world``
    processes gives the global batch's mean: sum_r sum_m factor * mean_m = global mean * world."""
    return micro_weight * world / global_weight if global_weight > 0 else 0.0


def eval_batch_size(n_layers: int, d_model: int, d_vocab: int, seq_len: int, free_bytes: int | None,
                    bytes_per_value: int = 4, share: float = 0.5, cap: int = 4096) -> int:
    """Prompts per evaluation forward pass that fit in ``share`` of ``free_bytes``.

    Per prompt an evaluation holds the logits of every position (seq_len x vocab, in float32
    for the log-softmax) and, in a no-grad forward, about a dozen d_model-wide activations per
    position per layer alive at once; ``None`` (CPU) gives the CPU default of 512.
    """
    if free_bytes is None:
        return 512
    per_prompt = seq_len * (2 * d_vocab * 4 + 12 * n_layers * d_model * bytes_per_value)
    return int(max(1, min(cap, share * free_bytes // max(1, per_prompt))))


def eval_batch_size_for(model, tokenizer, facts) -> int:
    """``eval_batch_size`` for ``facts`` on ``model``'s device: the longest prompt (by characters)
    is tokenized to size the sequence; on CPU this is 512, what ``score_facts`` always used."""
    dev = next(model.parameters()).device
    free = free_memory(dev)
    if free is None or not facts:
        return 512
    longest = max(facts, key=lambda f: len(f.prompt) + len(f.answer))
    seq = len(tokenizer(longest.prompt + " " + longest.answer)["input_ids"])
    cfg = model.cfg
    return eval_batch_size(int(cfg.n_layers), int(cfg.d_model), int(cfg.d_vocab), seq, free)


def free_memory(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


class Distributed:
    """See the module docstring. ``Distributed()`` inside ``accelerate launch`` joins the process
    group; outside it, it is a single process."""

    def __init__(self, precision: str = "auto", grad_accum: int = 1, device: str | None = None,
                 strategy: str = "ddp") -> None:
        if precision not in PRECISIONS:
            raise DistributedError(f"unknown precision {precision!r}; use one of {list(PRECISIONS)}.")
        if strategy not in STRATEGIES:
            raise DistributedError(f"unknown strategy {strategy!r}; use one of {list(STRATEGIES)}.")
        self.strategy = strategy
        if grad_accum < 1:
            raise DistributedError(f"grad_accum {grad_accum} must be at least 1.")
        self.grad_accum = grad_accum
        self.acc = None
        self.world_size, self.rank = 1, 0
        self._scratch: Path | None = None
        if _launched():
            from accelerate import Accelerator
            cpu = device == "cpu" or not torch.cuda.is_available()
            self.acc = Accelerator(cpu=cpu)
            self.world_size, self.rank = self.acc.num_processes, self.acc.process_index
            self.device = self.acc.device
        else:
            from interference.models import resolve_device
            self.device = resolve_device(device)
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        if precision == "bf16" and not bf16_ok:
            raise DistributedError("--precision bf16 needs a GPU with bfloat16 support; use auto or fp32.")
        if precision == "fp16" and self.device.type != "cuda":
            raise DistributedError("--precision fp16 needs a CUDA GPU (float16 autocast with a loss scaler); "
                                   "on CPU use fp32 (or auto).")
        self.precision = "fp16" if precision == "fp16" else (
            "bf16" if precision in ("auto", "bf16") and bf16_ok else "fp32")
        self.scaler = None
        if self.precision == "fp16":
            # under FSDP each process checks only its shards for inf: the sharded scaler agrees on
            # skipping over all processes (DDP's gradients are already identical everywhere)
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
            self.scaler = ShardedGradScaler(device="cuda") if self.sharded else torch.amp.GradScaler("cuda")

    @classmethod
    def single(cls) -> "Distributed":
        """One process, fp32, no accumulation: the loop's default, where every call is a no-op."""
        d = cls.__new__(cls)
        d.grad_accum, d.acc, d.world_size, d.rank, d._scratch, d.strategy = 1, None, 1, 0, None, "ddp"
        d.device, d.precision, d.scaler = torch.device("cpu"), "fp32", None
        return d

    def mean_loss(self, local: torch.Tensor) -> torch.Tensor:
        """The global batch's loss from this process's factor-weighted sum (sum over processes /
        world size, as the gradients are averaged)."""
        if self.world_size == 1:
            return local
        return torch.tensor(self.all_sum([float(local)])[0] / self.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True when the model is split over processes (FSDP with more than one process)."""
        return self.strategy == "fsdp" and self.world_size > 1

    def check_method(self, method: str) -> None:
        if self.strategy == "fsdp" and method not in FSDP_METHODS:
            raise DistributedError(f"--strategy fsdp supports the methods {list(FSDP_METHODS)}; {method} keeps "
                                   "references to unsharded parameters (anchors, Fisher weights or adapters), so "
                                   "run it with --strategy ddp.")

    # -------------------------------------------------------------- FSDP
    def shard_model(self, model) -> None:
        """FSDP2 in place: every block (the model's ModuleList of ``n_layers`` modules), then the
        rest of the model (embeddings, final norm, unembedding: tied weights stay in one group).
        The parameters become DTensor shards: collect the trainable ones again by name after."""
        if not self.sharded:
            return
        from torch.distributed.fsdp import fully_shard
        n = int(model.cfg.n_layers)
        blocks = next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n), None)
        if blocks is None:
            raise DistributedError(f"the model has no list of its {n} blocks to shard; use --strategy ddp.")
        for block in blocks:
            fully_shard(block)
        fully_shard(model)

    def full_state_dict(self, model) -> dict:
        """The whole model's weights, on every process (each one seals its own run directory).
        Every process must call it: the shards are gathered collectively."""
        if not self.sharded:
            return model.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        return {k: v.detach().cpu() for k, v in full.items()}

    def same_everywhere(self, n: int) -> int:
        """The smallest ``n`` over processes (an evaluation batch size every FSDP process runs)."""
        if not self.sharded:
            return n
        import torch.distributed as dist
        t = torch.tensor([n], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def check_batch(self, batch_size: int) -> None:
        if batch_size < self.world_size * self.grad_accum:
            raise DistributedError(f"global batch size {batch_size} is smaller than {self.world_size} processes x "
                                   f"{self.grad_accum} accumulation steps; raise --batch-size.")

    # -------------------------------------------------------------- training
    def micro_batches(self, idx: torch.Tensor, weights: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
        """[(row indices, loss factor)] of this process for the global batch ``idx``;
        ``weights[i]`` is row i's loss weight (its number of answer tokens)."""
        total = float(weights[idx].sum())
        mine = local_indices(idx, self.rank, self.world_size)
        return [(m, loss_factor(float(weights[m].sum()), total, self.world_size))
                for m in micro_split(mine, self.grad_accum)]

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, through the loss scaler under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def sync_gradients(self, params: Sequence[torch.nn.Parameter], bucket_bytes: int = 64 << 20) -> None:
        """Average gradients over processes (a parameter without a gradient counts as zero, so
        every process reduces the same buckets)."""
        if self.world_size == 1 or self.sharded:  # FSDP reduce-scatters (averages) gradients itself
            return
        import torch.distributed as dist
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []
        size = 0
        for p in list(params) + [None]:
            if p is not None:
                bucket.append(p.grad)
                size += p.grad.numel() * p.grad.element_size()
            if bucket and (p is None or size >= bucket_bytes):
                flat = torch._utils._flatten_dense_tensors(bucket)
                dist.all_reduce(flat)
                flat /= self.world_size
                for g, v in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket)):
                    g.copy_(v)
                bucket, size = [], 0

    # -------------------------------------------------------------- evaluation and logging
    def shard(self, items: Sequence) -> list:
        if self.sharded:  # every FSDP forward is a collective: every process runs all of them
            return list(items)
        return list(items[self.rank::self.world_size])

    def gather(self, rows: list) -> list:
        """Every process's ``rows`` concatenated, in rank order, on every process."""
        if self.world_size == 1 or self.sharded:
            return list(rows)
        import torch.distributed as dist
        out: list = [None] * self.world_size
        dist.all_gather_object(out, rows)
        return [r for part in out for r in part]

    def all_sum(self, values: Sequence[float]) -> list[float]:
        if self.world_size == 1:
            return [float(v) for v in values]
        import torch.distributed as dist
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist
            dist.barrier()

    # -------------------------------------------------------------- files
    def rank_out(self, out: str | Path, keep: Sequence[str] = ()) -> Path:
        """The directory this process writes to: ``out`` on the main process; elsewhere a private
        scratch directory beside it holding ``out``'s ``keep`` entries (what a resume reads),
        hard-linked where the file system allows (checkpoint writes replace files by rename, so
        a link never lets a process change the main's copy). All processes wait here until the
        copies exist, so the main process changes nothing before the others have read it."""
        out = Path(out)
        if self.is_main:
            self.barrier()
            return out
        import os
        mine = out.parent / f".{out.name}.rank{self.rank}"
        shutil.rmtree(mine, ignore_errors=True)
        mine.mkdir(parents=True)
        self._scratch = mine

        def link(src, dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        for name in keep:
            src = out / name
            if src.is_dir():
                shutil.copytree(src, mine / name, copy_function=link)
            elif src.is_file():
                shutil.copy2(src, mine / name)  # the timeline is appended to in place: a real copy
        self.barrier()
        return mine

    def close(self) -> None:
        self.barrier()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _launched() -> bool:
    """True inside ``accelerate launch`` / torchrun with more than one process."""
    import os
    return int(os.environ.get("WORLD_SIZE", "1")) > 1

"""The one per-fact gradient alignment: how a step on the new facts moves each watched fact's loss.

Per-example gradient inner products through the linear-layer factorisation, so the gradient
alignment of 10,000 known facts with 1,000 SFT facts costs seconds, not 10,000 backward passes.
Every gradient-alignment number of the package is a view of ``alignment`` here:
``metrics.attribution.gradient_alignment`` (per-unit cosines, the training-time callback),
``metrics.predictors.gradient_conflict`` (the localized experiment's a-priori predictor) and the
forecast's ``rise_ / conflict_ / sens_ / pair_`` features (``forecast.predict``). Pure: a model and
facts in, arrays out; the model's ``requires_grad`` flags, ``.grad`` buffers and mode are restored.

For a linear layer ``y = W a (+ b)``, the loss gradient of one example is
``dL/dW = sum_t d_t a_t^T`` (``d_t = dL/dy_t``, ``a_t`` the input at position ``t``; a bias is a
constant input 1 appended to ``a``). Two examples' gradients then have the inner product

    g_i . g_j = sum_{t,s} (a_it . a_js) (d_it . d_js)

and one example's gradient against any fixed matrix ``M`` (e.g. the summed SFT gradient) is
``g_i . M = sum_t d_it^T M a_it``. Both need only the activations and output-gradients, which
forward/backward hooks collect in **one batched forward + backward pass per set** (examples in a
batch are independent, so the backward of the summed per-example losses hands each example its
own ``d``). Embedding tables are the same with one-hot inputs: ``g_i . G = sum_t d_it . G[tok_it]``.

What we compute (``alignment``):
- per *unit* (``embed``, ``attn.{l}``, ``mlp.{l}``, ``unembed``; the units of
  ``metrics.attribution``; LayerNorm gains are left out: a few hundred parameters, and a gradient
  step on them is not a per-fact lever), for each watched fact ``i``:
  ``ip``: g_i . G (G = summed gradient of the SFT set's loss; SFT's first step moves the
  parameters by -lr G, so -ip is the watched loss's first-order increase), ``cos`` (the same as a
  cosine) and ``sq`` (|g_i|^2, how sensitive the fact is to any step in that unit).
  Tried and dropped (no AUROC gain on the default world, a third of the cost each): G weighted
  by each SFT fact's initial loss, and G rescaled per coordinate as Adam's early steps are.
- per pair, at the answer position only (the factorisation's cheap case, one position each),
  summed over the linear units: ``pair[i, j]`` = g_i . g_j restricted to that position; its most
  negative entries name the SFT facts driving a watched fact's risk.

Per-example loss: ``reduction="mean"`` (each example's answer loss averaged over its answer
tokens, the training loss per example) or ``"sum"`` (summed over its answer tokens: the summed NLL
that the localized predictor states its first-order rise in).

Per method: ``units`` restricts everything to the parameters a method trains (freezing), and
``kl`` adds the self-distillation term's gradient (token-level KL to a frozen teacher on every real
position of the SFT prompts) to the SFT facts' loss.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from interference.batching import Packed, answer_loss, pack
from interference.data import Fact
from interference.models import model_device, model_logits, param_group



def unit_of_module(name: str) -> str | None:
    """The attribution unit (``attn.0``, ``mlp.3``, ``embed``, ``unembed``) of a module name, or
    None for LayerNorms; the same table as parameter names (``models.param_group``)."""
    group, layer = param_group(name + ".weight")
    if group == "norm":
        return None
    return group if layer is None else f"{group}.{layer}"


def linear_modules(model) -> dict[str, torch.nn.Module]:
    """Every nn.Linear and nn.Embedding that holds parameters, by module name."""
    # Named by their weight's *parameter* name: a TransformerBridge reaches one module under
    # several paths (``embed`` and ``tok_embed``), and only the parameter names are the ones the
    # parameter-group table maps.
    pname = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for mod in model.modules():
        w = getattr(mod, "weight", None)
        if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) and id(w) in pname:
            name = pname[id(w)][: -len(".weight")]
            if name not in out and unit_of_module(name) is not None:
                out[name] = mod
    return out


@dataclass
class Collected:
    """Inputs ``a`` [b, T, d_in] (token ids [b, T] for embeddings) and output-gradients ``d``
    [b, T, d_out] of every hooked module, for one batch."""
    a: dict[str, torch.Tensor] = field(default_factory=dict)
    d: dict[str, torch.Tensor] = field(default_factory=dict)


@contextlib.contextmanager
def hooked(model, modules: dict[str, torch.nn.Module]):
    """Forward hooks that store each module's input and register a gradient hook on its output;
    embedding outputs are made leaves that require grad, so the backward reaches every module
    while no parameter gradient is computed. Hooks are removed on exit, also after an error."""
    store = Collected()
    handles = []

    def make(name, is_embed):
        def fwd(mod, inputs, out):
            store.a[name] = inputs[0].detach()
            if is_embed:
                out = out.detach().requires_grad_(True)
            out.register_hook(lambda g: store.d.__setitem__(name, g.detach()))
            return out if is_embed else None
        return fwd

    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for name, mod in model.named_modules():  # every embedding output is a leaf, hooked or not
            if isinstance(mod, torch.nn.Embedding) and name not in modules:
                handles.append(mod.register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True)))
        for name, mod in modules.items():
            handles.append(mod.register_forward_hook(make(name, isinstance(mod, torch.nn.Embedding))))
        yield store
    finally:
        for h in handles:
            h.remove()
        for p, f in flags:
            p.requires_grad_(f)


def _with_bias(a: torch.Tensor, mod) -> torch.Tensor:
    if not isinstance(getattr(mod, "bias", None), torch.nn.Parameter):  # a fixed (buffer) bias never trains
        return a
    return torch.cat([a, torch.ones(*a.shape[:-1], 1, dtype=a.dtype, device=a.device)], -1)


def per_example_loss(model, batch: Packed, teacher=None, kl_weight: float = 0.0, temperature: float = 0.5,
                     pad_id: int = 0, reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """([b] loss, [b, vocab] log-probs at the first answer position). ``reduction``: each
    example's answer loss averaged ("mean") or summed ("sum") over its answer tokens. With a
    teacher, each example's loss adds ``kl_weight`` x its mean token-level KL(teacher || student)
    over its real positions (self-distillation's term, the library's ``token_kl`` per example)."""
    from interference.methods.self_distill import kl_mask, token_kl
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r} is not 'mean' or 'sum'.")
    logits = model_logits(model, batch.ids)
    loss = answer_loss(logits, batch, reduction="per_example" if reduction == "mean" else "per_example_sum")
    if teacher is not None and kl_weight > 0:
        with torch.no_grad():
            t_logits = model_logits(teacher, batch.ids)
        mask = kl_mask(batch, "all", pad_id)
        kl = torch.stack([token_kl(logits[i:i + 1], t_logits[i:i + 1], mask[i:i + 1], temperature)
                          for i in range(len(batch))])
        loss = loss + kl_weight * kl
    first = batch.loss_mask.float().argmax(1)  # first answer-predicting position
    lp = logits[torch.arange(len(batch)), first].float().log_softmax(-1)
    return loss, lp.detach()


def collect(model, tok, facts: Sequence[Fact], modules, batch_size: int = 256, teacher=None,
            kl_weight: float = 0.0, temperature: float = 0.5, reduction: str = "mean"):
    """Yield (rows, Packed, Collected, per-example loss [b], log-probs [b, V]) batch by batch:
    one forward and one backward pass per batch."""
    dev = model_device(model)
    was = model.training
    model.eval()
    try:
        for s in range(0, len(facts), batch_size):
            chunk = facts[s:s + batch_size]
            batch = pack(tok, [(f.prompt, f.answer) for f in chunk], int(model.cfg.n_ctx)).to(dev)
            with hooked(model, modules) as store:
                loss, lp = per_example_loss(model, batch, teacher, kl_weight, temperature, tok.pad_token_id, reduction)
                loss.sum().backward()
            yield range(s, s + len(chunk)), batch, store, loss.detach(), lp
    finally:
        model.train(was)


def _answer_pos(batch: Packed) -> torch.Tensor:
    return batch.loss_mask.float().argmax(1)


@dataclass
class SetGradients:
    """The SFT set summarised per module: G (the sum of its per-example gradients) and the
    answer-position factors of every SFT fact, for the pair products."""
    G: dict[str, torch.Tensor]
    a_last: dict[str, torch.Tensor]  # [n, d_in(+1)] (linears only)
    d_last: dict[str, torch.Tensor]  # [n, d_out]
    loss: np.ndarray  # [n] initial loss of each SFT fact
    n: int


def _summed_grad(mod, a, d) -> torch.Tensor:
    """sum over examples and positions of d_t a_t^T: the batch's summed gradient, [out, in] (an
    embedding: [V, d], rows of the tokens used)."""
    if isinstance(mod, torch.nn.Embedding):
        return torch.zeros(mod.num_embeddings, d.shape[-1]).index_add_(0, a.reshape(-1), d.reshape(-1, d.shape[-1]))
    ab = _with_bias(a, mod)
    return d.reshape(-1, d.shape[-1]).T @ ab.reshape(-1, ab.shape[-1])


def summarise_set(model, tok, facts: Sequence[Fact], modules, batch_size: int = 256, teacher=None,
                  kl_weight: float = 0.0, temperature: float = 0.5, reduction: str = "mean") -> SetGradients:
    """One forward+backward pass over the SFT set; sums accumulate in float64 (thousands of terms),
    the per-batch products run in float32."""
    G, al, dl, losses = {}, {n: [] for n in modules}, {n: [] for n in modules}, []
    for rows, batch, st, loss, _ in collect(model, tok, facts, modules, batch_size, teacher, kl_weight, temperature,
                                            reduction):
        pos = _answer_pos(batch)
        idx = torch.arange(len(batch))
        losses.append(loss.cpu().numpy())
        for name, mod in modules.items():
            a, d = st.a[name], st.d[name].float()
            G[name] = G.get(name, 0) + _summed_grad(mod, a, d).double()
            if not isinstance(mod, torch.nn.Embedding):
                al[name].append(_with_bias(a[idx, pos], mod).float())
                dl[name].append(d[idx, pos])
    lin = [n for n, m in modules.items() if not isinstance(m, torch.nn.Embedding)]
    return SetGradients(G, {n: torch.cat(al[n]) for n in lin}, {n: torch.cat(dl[n]) for n in lin},
                        np.concatenate(losses) if losses else np.zeros(0), len(facts))


def _apply(mod, a, d, M) -> torch.Tensor:
    """[b] = g_b . M for every example of a batch (sum over positions): d_t^T M a_t."""
    if isinstance(mod, torch.nn.Embedding):  # M [V, d]: the rows of the tokens used
        return (d * M[a]).sum((1, 2))
    return ((d @ M) * _with_bias(a, mod)).sum((1, 2))


def _sqnorm(mod, a, d) -> torch.Tensor:
    """[b] = |g_b|^2 = sum_{t,s} (a_t.a_s)(d_t.d_s) (embeddings: tokens equal instead of a_t.a_s)."""
    dd = d @ d.transpose(1, 2)
    if isinstance(mod, torch.nn.Embedding):
        aa = (a[:, :, None] == a[:, None, :]).to(d.dtype)
    else:
        ab = _with_bias(a, mod)
        aa = ab @ ab.transpose(1, 2)
    return (aa * dd).sum((1, 2))


@dataclass
class Alignment:
    units: list[str]
    ip: np.ndarray  # [n_watch, n_units] g_i . G
    sq: np.ndarray  # |g_i|^2 per unit
    g_sq: np.ndarray  # |G|^2 per unit
    pair: np.ndarray  # [n_watch, n_new] answer-position pair products, summed over units
    logprobs: np.ndarray  # [n_watch, V] base log-probs at the first answer position
    new_loss: np.ndarray  # [n_new] initial loss of each SFT fact

    def cos(self, unit: str | None = None) -> np.ndarray:
        if unit is None:
            return self.ip.sum(1) / np.sqrt(self.sq.sum(1) * self.g_sq.sum() + 1e-300)
        j = self.units.index(unit)
        return self.ip[:, j] / np.sqrt(self.sq[:, j] * self.g_sq[j] + 1e-300)


def alignment(model, tok, watch: Sequence[Fact], train: Sequence[Fact], units: Sequence[str] | None = None,
              teacher=None, kl_weight: float = 0.0, temperature: float = 0.5, batch_size: int = 256,
              reduction: str = "mean") -> Alignment:
    """Gradient alignment of every watched fact with the SFT set ``train`` (see the module
    docstring): one forward+backward pass over ``train``, one over ``watch``. ``reduction`` is
    the per-example loss of both sets (``per_example_loss``).

    ``units``: the units that train (None: all). Columns exist for every unit, so forecasts of
    different methods share one feature set: a frozen unit does not move (G = 0 there), so its
    alignment and pair terms are 0, while the fact's sensitivity ``sq`` is still measured."""
    mods = linear_modules(model)
    trains = set(mods) if units is None else {n for n in mods if unit_of_module(n) in set(units)}
    if not trains:
        raise ValueError(f"no linear or embedding parameters in units {sorted(units or [])}; nothing would train.")
    unit_names = sorted({unit_of_module(n) for n in mods}, key=_unit_order)
    col = {u: unit_names.index(u) for u in unit_names}
    sg = summarise_set(model, tok, train, mods, batch_size=batch_size, teacher=teacher, kl_weight=kl_weight,
                       temperature=temperature, reduction=reduction)
    n, U = len(watch), len(unit_names)
    ip, sq = np.zeros((n, U)), np.zeros((n, U))
    g_sq = np.zeros(U)
    for name in mods:
        if name not in trains:
            sg.G[name] = torch.zeros_like(sg.G[name])
        g_sq[col[unit_of_module(name)]] += float((sg.G[name] ** 2).sum())
    pair = np.zeros((n, sg.n))
    lps = []
    Ms = {name: sg.G[name].float() for name in mods}
    for rows, batch, st, _, lp in collect(model, tok, watch, mods, batch_size, reduction=reduction):
        r = np.arange(rows.start, rows.stop)
        pos = _answer_pos(batch)
        idx = torch.arange(len(batch))
        lps.append(lp.cpu().numpy())
        pr = torch.zeros(len(batch), sg.n)
        for name, mod in mods.items():
            a, d = st.a[name], st.d[name].float()
            j = col[unit_of_module(name)]
            sq[r, j] += _sqnorm(mod, a, d).double().numpy()
            if name not in trains:
                continue
            ip[r, j] += _apply(mod, a, d, Ms[name]).double().numpy()
            if not isinstance(mod, torch.nn.Embedding):
                aw, dw = _with_bias(a[idx, pos], mod), d[idx, pos]
                pr += (aw @ sg.a_last[name].T) * (dw @ sg.d_last[name].T)
        pair[r] = pr.double().numpy()
    return Alignment(unit_names, ip, sq, g_sq, pair, np.concatenate(lps) if lps else np.zeros((0, 0)),
                     sg.loss)


def _unit_order(u: str) -> tuple[int, int]:
    head, _, layer = u.partition(".")
    rank = {"embed": 0, "attn": 1, "mlp": 2, "unembed": 3}.get(head, 4)
    return (0, 0) if head == "embed" else ((2, 0) if head == "unembed" else (1, int(layer) * 2 + (rank == 2)))

"""SFT that trains only named parameter groups (the paper's attention-only vs MLP-only test).

A spec is a comma-separated list of ``group`` or ``group:first-last`` (or ``group:layer``) items,
e.g. ``attn``, ``mlp:0-1``, ``attn:2-3,unembed``. Groups come from the one table in
``interference.models`` (``param_group``), so freezing and attribution agree on what "attn" is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from interference.methods.base import Method, MethodConfig, MethodError
from interference.models import GROUPS, param_group


@dataclass(frozen=True)
class FreezeConfig(MethodConfig):
    groups: str = "attn"  # the parameter groups that train (attn, mlp, embed, unembed, norm, mlp:0-1; the rest freeze); the paper's headline contrast is attn vs mlp

    def __post_init__(self) -> None:
        parse_spec(self.groups)  # syntax and group names; layer ranges are checked against the model


def parse_spec(spec: str) -> list[tuple[str, int | None, int | None]]:
    """``"attn:0-1,mlp"`` -> [("attn", 0, 1), ("mlp", None, None)]; raises MethodError on bad input."""
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise MethodError(f"freeze spec {spec!r} names no group, so it would freeze everything; "
                          f"name at least one of {list(GROUPS)}.")
    out = []
    for item in items:
        group, _, rng = item.partition(":")
        if group not in GROUPS:
            raise MethodError(f"unknown parameter group {group!r} in freeze spec {spec!r}; valid groups are {list(GROUPS)}.")
        if not rng:
            out.append((group, None, None))
            continue
        lo, _, hi = rng.partition("-")
        try:
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise MethodError(f"layer range {rng!r} in {item!r} is not 'N' or 'N-M' with integers.") from None
        if first > last or first < 0:
            raise MethodError(f"layer range {rng!r} in {item!r} is empty or negative; write first-last with first <= last.")
        out.append((group, first, last))
    return out


def select_parameters(model, spec: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters a freeze spec trains, checked against the model's real layers."""
    n_layers = int(model.cfg.n_layers)
    items = parse_spec(spec)
    for group, first, last in items:
        if first is not None and last >= n_layers:
            raise MethodError(f"layer range {first}-{last} for {group!r} is outside the model, whose layers are 0-{n_layers - 1}.")
    chosen = []
    for name, p in model.named_parameters():
        g, layer = param_group(name)
        for group, first, last in items:
            if g == group and (first is None or (layer is not None and first <= layer <= last)):
                chosen.append((name, p))
                break
    if not chosen:
        raise MethodError(f"freeze spec {spec!r} selects no parameter of this model (e.g. a layer range on a group "
                          "without layers), so it would freeze everything; name a group that exists.")
    return chosen


class Freeze(Method):
    name = "freeze"
    Config = FreezeConfig

    def trainable_parameters(self, model):
        return select_parameters(model, self.config.groups)

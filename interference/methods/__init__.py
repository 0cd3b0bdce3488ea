"""Fine-tuning methods, registered by name. ``get_method("freeze", groups="attn")`` builds one.

Each method is one small file: a typed config (validated in ``__post_init__``) and a loss; the
loop lives in ``interference.train``.
"""
from __future__ import annotations

from interference.methods.base import Method, MethodConfig, MethodError, RunContext
from interference.methods.ewc import EWC
from interference.methods.freeze import Freeze
from interference.methods.l2_init import L2Init
from interference.methods.lora import LoRA
from interference.methods.replay import Replay
from interference.methods.self_distill import SelfDistill
from interference.methods.sft import SFT

METHODS: dict[str, type[Method]] = {m.name: m for m in (SFT, SelfDistill, Freeze, L2Init, EWC, Replay, LoRA)}


def get_method(name: str, **options) -> Method:
    """A method object by registry name, with its options validated."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; valid methods are {sorted(METHODS)}.")
    try:
        return METHODS[name](**options)
    except TypeError as e:  # a wrong option type that the dataclass did not catch
        raise MethodError(f"bad options {options} for method {name!r} ({e}).") from None


__all__ = ["METHODS", "Method", "MethodConfig", "MethodError", "RunContext", "get_method"]

"""Plain supervised fine-tuning: cross-entropy on the answer tokens, every parameter trains.

The reference point every other method is measured against; all behaviour is the ``Method``
default, so this file only names it.
"""
from __future__ import annotations

from dataclasses import dataclass

from interference.methods.base import Method, MethodConfig


@dataclass(frozen=True)
class SFTConfig(MethodConfig):
    """Plain SFT has no options: lr, batch and schedule belong to the loop (FinetuneConfig)."""


class SFT(Method):
    name = "sft"
    Config = SFTConfig

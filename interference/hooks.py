"""The hook vocabulary: TransformerLens hook names, spelled in one place.

Why a table: a hook name built by hand in several modules is a typo waiting to capture nothing
(``probes.capture`` refuses a name that does not fire, but only at run time). These are the names
``TransformerBridge`` exposes for every family here (TransformerLens spells them the same for a
``HookedTransformer``), so a notebook written against TransformerLens reads the same strings.
"""
from __future__ import annotations

EMBED_OUT = "embed.hook_out"  # token embeddings, before block 0


def resid_post(layer: int) -> str:
    """The residual stream after block ``layer`` (``blocks.{layer}.hook_resid_post``)."""
    return f"blocks.{int(layer)}.hook_resid_post"


def mlp_out(layer: int) -> str:
    """Block ``layer``'s MLP output (``blocks.{layer}.hook_mlp_out``)."""
    return f"blocks.{int(layer)}.hook_mlp_out"


def attn_out(layer: int) -> str:
    """Block ``layer``'s attention output (``blocks.{layer}.hook_attn_out``)."""
    return f"blocks.{int(layer)}.hook_attn_out"


def resid_posts(n_layers: int) -> list[str]:
    """``resid_post`` of every block, in order."""
    return [resid_post(i) for i in range(int(n_layers))]

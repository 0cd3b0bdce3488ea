"""LoRA through ``peft``: low-rank adapters on the attention and MLP linears, base weights frozen.

``peft.inject_adapter_in_model`` works on the bridge's wrapped ``nn.Linear`` modules (checked:
identical outputs at init, adapters train). After training the adapters are merged and the
weights copied into a plain model of the base's structure, so the saved model loads like any
other run's.
"""
from __future__ import annotations

from dataclasses import dataclass

from interference.methods.base import Method, MethodConfig, MethodError
from interference.models import clone_model

TARGETS = ("attn", "mlp", "all")  # which groups' linears (models.FAMILIES names them per family)


@dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    rank: int = 8  # rank of each adapter; small next to d_model 128; the capacity question is what LoRA probes
    alpha: float = 16.0  # scale alpha/rank = 2, peft's common default ratio
    targets: str = "all"  # which linears get adapters: attn, mlp or all

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise MethodError(f"rank {self.rank} must be at least 1.")
        if self.targets not in TARGETS:
            raise MethodError(f"unknown LoRA targets {self.targets!r}; use one of {sorted(TARGETS)}.")


class LoRA(Method):
    name = "lora"
    Config = LoRAConfig

    def prepare(self, model, ctx):
        from peft import LoraConfig, inject_adapter_in_model
        self.plain = clone_model(model)  # structure to merge back into
        from interference.models import model_family
        linears = model_family(model).linears
        names = "|".join(linears[g] for g in (("attn", "mlp") if self.config.targets == "all" else (self.config.targets,)))
        pattern = rf".*\.({names})\._original_component$"
        widest = int(max(model.cfg.d_model, getattr(model.cfg, "d_mlp", 0) or 0))
        if self.config.rank > widest:  # a full-rank update and more: refused before allocating it
            raise MethodError(f"LoRA rank {self.config.rank} exceeds the model's widest layer ({widest}), so it is "
                              "no low-rank adapter; use a rank below that.")
        lc = LoraConfig(r=self.config.rank, lora_alpha=self.config.alpha, target_modules=pattern, lora_dropout=0.0)
        return inject_adapter_in_model(lc, model)

    def trainable_parameters(self, model):
        return [(n, p) for n, p in model.named_parameters() if ".lora_" in n]

    def finalize(self, model):
        from peft.tuners.lora import LoraLayer
        merged = clone_model(model)
        for mod in merged.modules():
            if isinstance(mod, LoraLayer):
                mod.merge()
        state = {n.replace(".base_layer", ""): t for n, t in merged.state_dict().items() if ".lora_" not in n}
        plain = clone_model(self.plain)
        plain.load_state_dict(state)
        return plain

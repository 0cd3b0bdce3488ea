"""What a hypothesis runs with: the base model spec, the output directory, the device, and the
bases and format teachers it loads once and shares between cells.

Bases are found or pre-trained lazily (cached by hash), so a fully reused grid trains nothing; a
real model's context (``interference.hypotheses.real_world.RealContext``) offers the same
attributes for a Hugging Face model.
"""
from __future__ import annotations

import random
from pathlib import Path

from interference.bases import base_dir, base_fingerprint, load_slick
from interference.io import config_hash
from interference.pretrain import base_model
from interference.sft_data import known_qa_facts
from interference.teacher import TeacherRecipe, format_teacher
from interference.world import World


class Context:
    """The base model spec, output directory and device a hypothesis runs with. Bases are loaded
    (pre-trained on first use, cached by hash) lazily, so a fully reused grid trains nothing."""

    def __init__(self, spec, out: str | Path, device: str | None = None, progress: bool = True, jobs: int = 1):
        self.spec, self.out, self.device, self.progress, self.jobs = spec, Path(out), device, progress, jobs
        self.world = World(spec.world)
        self.n_layers = spec.model.n_layers
        self.dist = None  # one process, fp32: the synthetic grids (a real model's RealContext sets its precision)
        self._bases: dict[str, tuple] = {}
        self._teachers: dict[str, object] = {}
        self._fingerprints: dict[str, str] = {}

    def base(self, spec=None):
        """(model, tokenizer) of the cached base for ``spec`` (default: this context's)."""
        spec = spec or self.spec
        if spec.hash() not in self._bases:
            # a missing base is pre-trained here (minutes, once: cached by hash) with its own bar
            model, tok, _, _ = base_model(spec, device=self.device, progress=self.progress)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)  # the base is a frozen reference; fine-tuning deep-copies it
            self._bases[spec.hash()] = (model, tok)
        return self._bases[spec.hash()]

    def base_dir(self, spec=None) -> Path:
        return base_dir(spec or self.spec)

    def fingerprint(self, spec=None) -> str:
        """The weights fingerprint of the cached base for ``spec`` (pre-trained first if missing)."""
        spec = spec or self.spec
        if spec.hash() not in self._fingerprints:
            if not (self.base_dir(spec) / "metrics.json").exists():
                self.base(spec)
            self._fingerprints[spec.hash()] = base_fingerprint(self.base_dir(spec))
        return self._fingerprints[spec.hash()]

    def teacher(self, recipe: TeacherRecipe, spec=None, n_facts: int = 400):
        """The frozen format teacher of the base (one epoch of SFT on ``n_facts`` HighlyKnown QA
        facts of pre-training entities, whose QA the base already saw, so no watched fact is
        touched), built once through the one loop and cached beside the base."""
        spec = spec or self.spec
        key = config_hash({"base": spec.hash(), "recipe": recipe.to_dict(), "n": n_facts})
        if key not in self._teachers:
            model, tok = self.base(spec)
            facts = known_qa_facts(self.world, load_slick(self.base_dir(spec)), n_facts, random.Random("format-teacher"))
            self._teachers[key] = format_teacher(model, tok, facts, recipe, base_dir=self.base_dir(spec),
                                                 fingerprint=self.fingerprint(spec))
        return self._teachers[key]

    def cache(self) -> Path:
        return self.out / "cells"

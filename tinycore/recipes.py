"""Recipes: a model configuration, a training configuration and a batch size that belong together,
for the runs the chapters make and the benchmarks time (like nanoGPT's config files).

`SHAKESPEARE_GPT` (chapter 11) and `SHAKESPEARE_LLAMA` (chapter 12) train character-level models
on Tiny Shakespeare (V = 65) on a laptop CPU in well under a minute: Muon for the matrices inside
the blocks, AdamW for the rest (tinycore.train). Their numbers were chosen by measurement: see
benchmarks/training.py and its README entry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .lm import LMConfig, TransformerLM, gpt_config
from .train import TrainConfig

__all__ = ["Recipe", "SHAKESPEARE_GPT", "SHAKESPEARE_LLAMA"]


@dataclass(frozen=True)
class Recipe:
    model: LMConfig
    train: TrainConfig
    batch_size: int

    def build(self, device=None, **overrides) -> TransformerLM:
        """A freshly initialised model; `overrides` replace fields of the model config."""
        return TransformerLM.from_config(replace(self.model, **overrides), device=device)


SHAKESPEARE_GPT = Recipe(
    model=gpt_config(vocab_size=65, context_length=64, d_model=128, num_layers=4, num_heads=4),
    train=TrainConfig(steps=300, lr=5e-3, warmup_steps=30, betas=(0.9, 0.99), eval_every=50, eval_batches=10,
                      optimizer="muon", muon_lr=1.2e-2),
    batch_size=24,
)

SHAKESPEARE_LLAMA = Recipe(
    model=LMConfig(vocab_size=65, context_length=64, d_model=128, num_layers=4, num_heads=4, d_ff=344),
    train=TrainConfig(steps=300, lr=3e-3, warmup_steps=50, betas=(0.9, 0.99), eval_every=50, eval_batches=10,
                      optimizer="muon", muon_lr=6e-3),
    batch_size=24,
)

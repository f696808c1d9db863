"""A small, complete training loop: AdamW, linear warm-up then cosine decay, gradient clipping,
periodic evaluation on fixed batches, and a history to plot.

One loop trains every model in the course: it takes a `loss_fn(model, batch) -> loss` and a
`train_batch(generator) -> batch` sampler, so a language model, an encoder, a translator and
an image classifier differ only in those two functions.

AdamW (Loshchilov & Hutter, 2019) decays the weight matrices only: biases, norm gains and
embedding tables are left alone, as in GPT-2 and LLaMA's recipes.

`optimizer="muon"` trains the weight matrices inside the blocks with Muon (Jordan et al., 2024;
tinycore.muon), which replaces each matrix's momentum by about the nearest semi-orthogonal matrix,
so that every direction of the update has the same size. Embedding tables, output heads, biases
and norm gains stay with AdamW, as in Muon's own recipe. Muon's step is scaled to AdamW's size, so
`muon_lr` reads like `lr`; it follows the same schedule.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .data import get_batch
from .muon import Muon

__all__ = ["TrainConfig", "History", "lr_at", "make_optimizer", "Optimizers", "train_step", "evaluate", "train",
           "lm_batches"]


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3  # the peak learning rate, reached at the end of warm-up
    min_lr: float | None = None  # the end of the cosine; None: lr / 10
    warmup_steps: int = 100  # linear warm-up from lr / warmup_steps; 0: none
    decay: str = "cosine"  # or "constant": hold lr after warm-up
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; None: no clipping
    eval_every: int = 100  # steps between evaluations (and the last step)
    eval_batches: int = 10  # batches averaged per evaluation, the same ones every time
    seed: int = 0  # batch sampling; the model's initialisation is the caller's
    optimizer: str = "adamw"  # or "muon": Muon for the blocks' weight matrices, AdamW for the rest
    muon_lr: float | None = None  # Muon's peak learning rate (AdamW-matched scale); None: lr

    def __post_init__(self):
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"TrainConfig.optimizer must be 'adamw' or 'muon', got {self.optimizer!r}")


@dataclass
class History:
    step: list[int] = field(default_factory=list)  # every step: its training loss and learning rate
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)  # at each evaluation
    val_loss: list[float] = field(default_factory=list)
    eval_train_loss: list[float] = field(default_factory=list)  # on fixed training batches, comparable to val
    elapsed: list[float] = field(default_factory=list)  # seconds since the start, at each evaluation
    grad_norm: list[float] = field(default_factory=list)  # every step, before clipping

    def first_step_below(self, loss: float) -> int | None:
        """The first evaluated step whose validation loss is <= loss, or None."""
        return next((s for s, v in zip(self.eval_step, self.val_loss) if v <= loss), None)


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate at `step` (0-based): linear warm-up, then cosine decay to min_lr."""
    min_lr = config.lr / 10 if config.min_lr is None else config.min_lr
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.decay == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (config.lr - min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _is_table(name: str) -> bool:
    return "embedding" in name or name.endswith(("cls_token", "pos_embedding", "relative_position_bias_table"))


def _is_head(name: str) -> bool:
    """An output layer (lm_head, head, mlm_head, cls_head): Muon's recipe leaves these to AdamW."""
    return name.rsplit(".", 2)[0].endswith("head")


class Optimizers:
    """Several optimizers stepped as one (Muon for matrices beside AdamW for the rest).

    `param_groups` lists every group; a group's "lr_scale" multiplies the scheduled learning rate.
    """

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self) -> dict:
        return {p: state for optimizer in self.optimizers for p, state in optimizer.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW | Optimizers:
    """AdamW with weight decay on matrices (ndim >= 2, except embedding tables) and none elsewhere;
    with config.optimizer == "muon", Muon for the matrices inside the blocks (not tables, not heads)."""
    muon, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or _is_table(name):
            no_decay.append(p)
        elif config.optimizer == "muon" and p.ndim == 2 and not _is_head(name):
            muon.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # PyTorch's fused kernel does the same update in one pass over all parameters (about twice as fast on a CPU)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas,
                              fused=fused or None)
    if not muon:
        return adamw
    muon_lr = config.lr if config.muon_lr is None else config.muon_lr
    matrices = Muon(muon, lr=muon_lr, weight_decay=config.weight_decay)
    matrices.param_groups[0]["lr_scale"] = muon_lr / config.lr  # follows the schedule of lr
    return Optimizers(adamw, matrices)


def train_step(model: nn.Module, optimizer, loss_fn, batch, lr: float,
               grad_clip: float | None = None) -> tuple[float, float]:
    """One optimisation step at learning rate `lr` (times a group's "lr_scale", if it has one);
    returns (loss, gradient norm before clipping)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    loss = loss_fn(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss became {loss.item()} (lr {lr:.2e}): "
                                 "lower the learning rate, add warm-up or clip gradients")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = grad_clip if grad_clip is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item(), grad_norm.item()


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, batches) -> float:
    """Mean loss over a list of batches, in eval mode."""
    was_training = model.training
    model.eval()
    losses = [float(loss_fn(model, batch)) for batch in batches]
    model.train(was_training)
    return sum(losses) / len(losses)


def _show_progress(progress: bool | None) -> bool:
    """Progress lines only for a person watching: off under CI, tests and the refresh script."""
    if progress is not None:
        return progress
    return not (os.environ.get("CI") or os.environ.get("TINYCORE_QUIET"))


def train(model: nn.Module, loss_fn, train_batch, config: TrainConfig, device, val_batch=None,
          progress: bool | None = None) -> History:
    """Train `model` in place for config.steps steps and return its History.

    loss_fn(model, batch) -> scalar loss; train_batch(generator) -> a batch on `device`;
    val_batch(generator) -> a held-out batch (None: evaluate on training batches only).
    """
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    fixed = torch.Generator().manual_seed(config.seed + 1)  # the same evaluation batches every time
    eval_train = [train_batch(fixed) for _ in range(config.eval_batches)]
    eval_val = [val_batch(fixed) for _ in range(config.eval_batches)] if val_batch is not None else None
    history, show, start = History(), _show_progress(progress), time.perf_counter()
    for step in range(config.steps):
        lr = lr_at(step, config)
        loss, grad_norm = train_step(model, optimizer, loss_fn, train_batch(generator), lr, config.grad_clip)
        history.step.append(step)
        history.train_loss.append(loss)
        history.lr.append(lr)
        history.grad_norm.append(grad_norm)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            history.eval_step.append(step + 1)
            history.eval_train_loss.append(evaluate(model, loss_fn, eval_train))
            if eval_val is not None:
                history.val_loss.append(evaluate(model, loss_fn, eval_val))
            history.elapsed.append(time.perf_counter() - start)
            if show:
                val = f", val {history.val_loss[-1]:.3f}" if eval_val is not None else ""
                print(f"\rstep {step + 1}/{config.steps}: train {history.eval_train_loss[-1]:.3f}{val} "
                      f"({history.elapsed[-1]:.0f} s)", end="", file=sys.stderr, flush=True)
    if show:
        print(file=sys.stderr)
    return history


def lm_batches(data: torch.Tensor, batch_size: int, context_length: int, device):
    """A sampler for `train`: generator -> (x, y) windows of `data` (see tinycore.data.get_batch)."""

    def sample(generator: torch.Generator):
        return get_batch(data, batch_size, context_length, generator=generator, device=device)

    return sample

"""Checkers for chapter 9 (the transformer block): the pre-norm and post-norm blocks, and the
learning-rate schedule with linear warm-up and cosine decay.

The blocks are checked against PyTorch's own `nn.TransformerEncoderLayer` (LayerNorm, GELU, biases,
no dropout, a causal mask; `norm_first=True` is pre-norm, `False` post-norm): the learner receives
that layer's own sub-modules, so the two compute with the same weights. One more case uses
LLaMA-style parts (RMSNorm, rotary attention, SwiGLU), for which the block's equations are the
reference. The schedule is compared with `tinycore.lr_at`, the one `tinycore.train` follows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import MultiHeadSelfAttention, causal_mask
from ..ffn import SwiGLU
from ..norms import RMSNorm
from ..positions import RotaryEmbedding
from ..train import TrainConfig, lr_at
from .core import Case, CheckFailed, Diagnosis, call_learner, compare, compare_grads, describe, passed, require_callable

__all__ = ["pre_norm_block", "post_norm_block", "warmup_cosine_lr"]


class _TorchCausalSelfAttention(nn.Module):
    """nn.MultiheadAttention as a function of x alone: causal self-attention, (B, T, D) -> (B, T, D)."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        self.mha = mha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocked = ~causal_mask(x.shape[1], device=x.device)  # nn.MultiheadAttention: True = may NOT attend
        return self.mha(x, x, x, attn_mask=blocked, need_weights=False)[0]


def _block_cases(norm_first: bool, seed: int) -> list[tuple[Case, nn.Module | None]]:
    """(case, oracle) pairs: case.args = (x, ln1, attn, ln2, ffn); oracle is the nn.TransformerEncoderLayer
    they come from, or None for the LLaMA-style case (then the block's equations are the reference)."""
    with torch.random.fork_rng(devices=[]):  # the modules' initial weights; the learner's random state is left alone
        torch.manual_seed(seed)
        return _build_block_cases(norm_first, torch.Generator().manual_seed(seed))


def _build_block_cases(norm_first: bool, gen: torch.Generator) -> list[tuple[Case, nn.Module | None]]:
    pairs = []
    for (b, t, d, h, f), scale, dtype in [
        ((2, 5, 12, 3, 20), 1.0, torch.float64),
        ((3, 7, 8, 2, 16), 4.0, torch.float32),
        ((1, 6, 16, 4, 24), 0.3, torch.float64),
    ]:
        layer = nn.TransformerEncoderLayer(d, h, dim_feedforward=f, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=norm_first, dtype=dtype)
        with torch.no_grad():  # gains and biases away from 1 and 0, and different in the two norms
            for norm in (layer.norm1, layer.norm2):
                norm.weight.copy_(1 + 0.5 * torch.randn(d, generator=gen, dtype=dtype))
                norm.bias.copy_(0.3 * torch.randn(d, generator=gen, dtype=dtype))
        attn = _TorchCausalSelfAttention(layer.self_attn)
        ffn = nn.Sequential(layer.linear1, nn.GELU(), layer.linear2)  # the layer's own FFN: w2(gelu(w1 x))
        x = scale * torch.randn(b, t, d, generator=gen, dtype=dtype)
        kind = "" if dtype == torch.float32 else " float64"
        label = (f"x ({b}, {t}, {d}){kind} with values ~{scale:g}; LayerNorms, causal attention with {h} heads, "
                 f"GELU FFN of width {f} (the sub-modules of an nn.TransformerEncoderLayer)")
        pairs.append((Case((x, layer.norm1, attn, layer.norm2, ffn), label), layer))
    d, h, f, t = 12, 2, 20, 6
    rope = RotaryEmbedding(10000.0, d // h, t, device="cpu")
    ln1, ln2 = RMSNorm(d, dtype=torch.float64), RMSNorm(d, dtype=torch.float64)
    with torch.no_grad():
        ln1.weight.copy_(1 + 0.5 * torch.randn(d, generator=gen, dtype=torch.float64))
        ln2.weight.copy_(1 + 0.5 * torch.randn(d, generator=gen, dtype=torch.float64))
    attn = MultiHeadSelfAttention(d, h, rope=rope, dtype=torch.float64)
    ffn = SwiGLU(d, f, dtype=torch.float64)
    x = torch.randn(4, t, d, generator=gen, dtype=torch.float64)
    label = (f"x (4, {t}, {d}) float64; RMSNorms, causal rotary attention with {h} heads, SwiGLU of width {f} "
             "(LLaMA-style)")
    pairs.append((Case((x, ln1, attn, ln2, ffn), label), None))
    return pairs


def _pre_norm(x, ln1, attn, ln2, ffn):
    x = x + attn(ln1(x))  # (B, T, D)
    return x + ffn(ln2(x))  # (B, T, D)


def _post_norm(x, ln1, attn, ln2, ffn):
    x = ln1(x + attn(x))  # (B, T, D)
    return ln2(x + ffn(x))  # (B, T, D)


def _check_block(name: str, fn, norm_first: bool, hint: str, diagnoses: list[Diagnosis]) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    require_callable(fn, name)
    equations = _pre_norm if norm_first else _post_norm
    pairs = _block_cases(norm_first, seed=90 if norm_first else 91)
    for case, layer in pairs:
        x, *parts = case.args
        x_ref, x_learner = (x.detach().clone().requires_grad_(True) for _ in range(2))
        if layer is not None:  # PyTorch's own block, with a boolean mask: True = may NOT attend
            want = layer(x_ref, src_mask=~causal_mask(x.shape[1]))
        else:
            want = equations(x_ref, *parts)
        got = call_learner(fn, name, Case((x_learner, *parts), case.label), hint)
        compare(name, got, want, case, rtol=1e-4, atol=1e-5, hint=hint, diagnoses=diagnoses)
        compare_grads(name, got, want, (x_learner,), (x_ref,), case, 1e-4, 1e-5, ("x",))
    passed(name, len(pairs), grad=True)


def pre_norm_block(fn) -> None:
    """fn(x (B, T, D), ln1, attn, ln2, ffn) -> (B, T, D): x + attn(ln1(x)), then + ffn(ln2(.))."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_block(
        "pre_norm_block", fn, norm_first=True,
        hint=("each sub-layer reads a normalised copy of the stream and adds its output to the stream itself: "
              "first attention (through ln1), then the FFN (through ln2) on the updated stream."),
        diagnoses=[
            Diagnosis(_post_norm, "that is the post-norm block: in pre-norm the norm goes on the sub-layer's input, "
                                  "inside the residual branch, and the sum is left un-normalised."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: ffn(ln2(attn(ln1(x)))),
                      "the residual connections are missing: add each sub-layer's output to its input, "
                      "x + attn(ln1(x))."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: x + attn(ln1(x)) + ffn(ln2(x)),
                      "the FFN read the block's input x; it must read the stream after attention has added to it "
                      "(adding both to x is the 'parallel' block of GPT-J and PaLM, a different model)."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: _pre_norm(ln1(x), lambda h: h, attn, ln2, ffn),
                      "you added attention's output to the normalised x: the residual stream itself is never "
                      "normalised in a pre-norm block; only the copy each sub-layer reads is."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: _pre_norm(x, ln1, attn, ln1, ffn),
                      "the FFN's input went through ln1; it has its own norm, ln2."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: _pre_norm(x, ln2, attn, ln1, ffn),
                      "ln1 and ln2 are swapped: ln1 normalises attention's input, ln2 the FFN's."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: (lambda h: h + ln2(ffn(h)))(x + ln1(attn(x))),
                      "you normalised the sub-layers' outputs; pre-norm normalises their inputs: x + attn(ln1(x))."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: ln2(_pre_norm(x, ln1, attn, lambda h: h, ffn)),
                      "ln2 goes on the FFN's input, not on the block's output."),
        ],
    )


def post_norm_block(fn) -> None:
    """fn(x (B, T, D), ln1, attn, ln2, ffn) -> (B, T, D): ln1(x + attn(x)), then ln2(. + ffn(.))."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    _check_block(
        "post_norm_block", fn, norm_first=False,
        hint=("each sub-layer reads the stream as it is, its output is added to the stream, and the sum is "
              "normalised: ln1 after attention's residual addition, ln2 after the FFN's."),
        diagnoses=[
            Diagnosis(_pre_norm, "that is the pre-norm block: in post-norm the sub-layers read the stream as it is "
                                 "and the norm comes after each residual addition."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: (lambda h: h + ln2(ffn(h)))(x + ln1(attn(x))),
                      "you normalised the sub-layer's output before adding it; post-norm normalises the sum: "
                      "ln1(x + attn(x))."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: ln2(ffn(ln1(attn(x)))),
                      "the residual connections are missing: add each sub-layer's input to its output before "
                      "the norm."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: ln2(ln1(x + attn(x)) + ffn(x)),
                      "the FFN read the block's input x; it must read the stream after ln1."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: _post_norm(x, ln2, attn, ln1, ffn),
                      "ln1 and ln2 are swapped: ln1 follows attention, ln2 the FFN."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: (lambda h: h + ffn(h))(ln1(x + attn(x))),
                      "the block must end with ln2 applied to the FFN's residual sum."),
            Diagnosis(lambda x, ln1, attn, ln2, ffn: (lambda h: ln2(h + ffn(h)))(x + attn(x)),
                      "ln1 is missing: normalise the sum x + attn(x) before the FFN reads it."),
        ],
    )


# ---------- the learning-rate schedule ----------

def _reference_schedule(max_lr, warmup_steps, total_steps, min_lr, steps):
    config = TrainConfig(steps=total_steps, lr=max_lr, min_lr=min_lr, warmup_steps=warmup_steps, decay="cosine")
    return torch.tensor([lr_at(s, config) for s in range(steps)], dtype=torch.float64)


def _schedule_from(rule):
    """A wrong answer written as rule(step, max_lr, warmup, total, min_lr), as the whole schedule."""
    def schedule(max_lr, warmup_steps, total_steps, min_lr, steps):
        return torch.tensor([float(rule(s, max_lr, warmup_steps, total_steps, min_lr)) for s in range(steps)],
                            dtype=torch.float64)
    return schedule


def _cosine(progress, max_lr, min_lr):
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def _after_warmup(rule):
    """rule(step, max_lr, warmup, total, min_lr) after a correct warm-up."""
    def lr(step, max_lr, warmup, total, min_lr):
        return max_lr * (step + 1) / warmup if step < warmup else rule(step, max_lr, warmup, total, min_lr)
    return lr


_SCHEDULE_DIAGNOSES = [
    Diagnosis(_schedule_from(lambda s, m, w, n, lo: m * s / w if s < w
                             else _cosine(min((s - w) / (n - w), 1.0), m, lo)),
              "your warm-up starts at 0, so step 0 does not train at all: step s of the warm-up should use "
              "max_lr * (s + 1) / warmup_steps, reaching max_lr at the last warm-up step."),
    Diagnosis(_schedule_from(_after_warmup(lambda s, m, w, n, lo: _cosine(min((s - w) / (n - w), 1.0), m, 0.0))),
              "the cosine should end at min_lr, not at 0: min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2."),
    Diagnosis(_schedule_from(_after_warmup(lambda s, m, w, n, lo: _cosine(min(s / n, 1.0), m, lo))),
              "the cosine starts when the warm-up ends: "
              "progress = (step - warmup_steps) / (total_steps - warmup_steps)."),
    Diagnosis(_schedule_from(_after_warmup(lambda s, m, w, n, lo: m - (m - lo) * min((s - w) / (n - w), 1.0))),
              "that is a linear decay; the schedule follows half a cosine from max_lr down to min_lr."),
    Diagnosis(_schedule_from(_after_warmup(lambda s, m, w, n, lo: _cosine((s - w) / (n - w), m, lo))),
              "after total_steps the rate must stay at min_lr: cap the progress at 1 "
              "(the cosine rises again past pi)."),
    Diagnosis(_schedule_from(_after_warmup(lambda s, m, w, n, lo: _cosine(min((s - w) / (n - w), 1.0) * 2, m, lo))),
              "that is a whole cosine period (down and back up); the decay is half a period: cos(pi * progress)."),
]


def warmup_cosine_lr(fn) -> None:
    """fn(step, max_lr, warmup_steps, total_steps, min_lr) -> float, as tinycore.lr_at."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "warmup_cosine_lr"
    require_callable(fn, name)
    hint = ("for step < warmup_steps: max_lr * (step + 1) / warmup_steps; afterwards "
            "min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2 with progress = "
            "(step - warmup_steps) / (total_steps - warmup_steps), capped at 1.")
    schedules = [(1e-3, 10, 50, 1e-4), (3e-2, 0, 40, 0.0), (6e-4, 25, 30, 6e-5), (1.0, 7, 100, 0.25)]
    for max_lr, warmup, total, min_lr in schedules:
        steps = total + 6  # a few steps past the end: the rate stays at min_lr
        label = (f"max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:g}, "
                 f"steps 0..{steps - 1} (the index below is the step)")
        values = []
        for step in range(steps):
            case = Case((step, max_lr, warmup, total, min_lr), f"step={step}, {label}")
            value = call_learner(fn, name, case, hint)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CheckFailed(f"{name} returned {describe(value)}; it should return a number (a Python float)"
                                  f"\n  on input: {case.label}")
            values.append(float(value))
        got = torch.tensor(values, dtype=torch.float64)
        want = _reference_schedule(max_lr, warmup, total, min_lr, steps)
        compare(name, got, want, Case((max_lr, warmup, total, min_lr, steps), label), rtol=1e-5, atol=1e-6 * max_lr,
                hint=hint, diagnoses=_SCHEDULE_DIAGNOSES, what="schedule")
    passed(name, len(schedules))

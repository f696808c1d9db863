# %% [markdown]
# # A LLaMA-style decoder
#
# Chapter 11 trained a GPT-2-style language model on Tiny Shakespeare. Four years after GPT-2, Meta's LLaMA
# {cite:p}`touvron2023llama` kept the same decoder-only design, the same pre-norm residual stream and the
# same training objective, and changed a handful of details: RMSNorm instead of LayerNorm, a gated SwiGLU
# feed-forward network instead of GELU, rotary position embeddings instead of a learned table, no biases,
# and an output matrix of its own. LLaMA 2 {cite:p}`touvron2023llama2` added grouped-query attention to
# its largest model. Each change is small, most language models since have made the same ones, and
# each one is a single field of tinycore's `LMConfig`, so you can test them one at a time.
#
# **What you will learn**
#
# - the five differences between a GPT-2 block and a LLaMA block, why each was made, and what each does to
#   the parameter count (a ledger that you check against the real models);
# - an ablation: starting from chapter 11's GPT recipe, swap in RMSNorm, SwiGLU, RoPE, and finally the
#   bias-free, untied layout, one at a time, and train each for the same number of steps;
# - the full LLaMA-style recipe, trained to a validation loss of 1.89 nats per character or better, the
#   result of nanoGPT's CPU example;
# - grouped-query attention in this model: what it saves in parameters and in KV-cache bytes;
# - the KV cache: one cached decoding step derived by hand, tinycore's cached generation proven identical to
#   the uncached one, and timed;
# - sampling with a temperature and nucleus (top-p) filtering, with a widget to regenerate samples.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import dataclasses
import math

import matplotlib.pyplot as plt
import torch
from ipywidgets import FloatSlider, interact
from matplotlib.patches import FancyBboxPatch

import tinycore
from tinycore import (CharTokenizer, best_time_ms, check_shape, checks, count_parameters, generate, get_device,
                      lm_batches, load_tiny_shakespeare, merge_heads, next_token_loss, set_seed, train,
                      train_val_split)
from tinycore.plotting import use_style
from tinycore.recipes import SHAKESPEARE_GPT, SHAKESPEARE_LLAMA

gen = set_seed(0)
use_style()
device = get_device()

text = load_tiny_shakespeare()
tokenizer = CharTokenizer(text)
train_ids, val_ids = train_val_split(tokenizer.encode(text))  # (N_train,), (N_val,) token ids
print(f"{len(text):,} characters, vocabulary of {tokenizer.vocab_size}; "
      f"{len(train_ids):,} for training, {len(val_ids):,} for validation")

# %% [markdown]
# ## From GPT-2 to LLaMA
#
# Both models are a stack of pre-norm blocks (chapter 9): each block adds an attention sub-layer and a
# feed-forward sub-layer to the residual stream (the blue arrows), each reading a normalised copy of it.
# What differs is inside the boxes. In the figure, the parts that LLaMA changed are coloured.

# %%
def draw_stack(ax, title, rows, changed):
    """A model as a column of boxes, from the input (bottom) to the logits (top)."""
    for i, label in enumerate(rows):
        y = 0.35 + 1.1 * i
        color = "#f6c9a8" if i in changed else "#dde4ee"
        ax.add_patch(FancyBboxPatch((0.05, y), 0.9, 0.8, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=color, edgecolor="0.35"))
        ax.text(0.5, y + 0.4, label, ha="center", va="center", fontsize=9)
        if i:
            ax.annotate("", xy=(0.5, y), xytext=(0.5, y - 0.3), arrowprops=dict(arrowstyle="->", color="0.35"))
    for lo, hi in [(2, 3), (4, 5)]:  # the residual connections around the two sub-layers of a block
        y0, y1 = 0.35 + 1.1 * lo - 0.15, 0.35 + 1.1 * hi + 0.95
        ax.plot([0.5, -0.06, -0.06], [y0, y0, y1], color="C0", lw=1.2)
        ax.annotate("", xy=(0.5, y1), xytext=(-0.06, y1), arrowprops=dict(arrowstyle="->", color="C0", lw=1.2))
        ax.text(0.56, y1 - 0.02, "+", color="C0", ha="center", va="center", fontsize=11)
    ax.add_patch(plt.Rectangle((-0.16, 2.4), 1.16, 4.55, fill=False, ls="--", ec="0.5"))
    ax.text(1.02, 4.7, "× N\nblocks", va="center", fontsize=9, color="0.35")
    ax.set(xlim=(-0.2, 1.25), ylim=(0, 9.4), title=title)
    ax.axis("off")


gpt_rows = ["token embedding (V × D)", "+ learned position table (L × D)", "LayerNorm (gain and bias)",
            "attention, biased projections", "LayerNorm (gain and bias)", "GELU FFN, F = 4D, biased",
            "final LayerNorm", "logits = h · embeddingᵀ (tied)"]
llama_rows = ["token embedding (V × D)", "no position table", "RMSNorm (gain only)",
              "attention, RoPE on q and k, no biases", "RMSNorm (gain only)", "SwiGLU FFN, F ≈ 8D/3, no biases",
              "final RMSNorm", "logits = lm_head(h), its own V × D"]
fig, axes = plt.subplots(1, 2, figsize=(10, 5.6))
draw_stack(axes[0], "GPT-2 (chapter 11)", gpt_rows, changed=set())
draw_stack(axes[1], "LLaMA (this chapter)", llama_rows, changed={1, 2, 3, 4, 5, 6, 7})
plt.tight_layout()
plt.show()

# %% [markdown]
# In tinycore both are the same `TransformerLM` with different fields of its `LMConfig`. The two recipes this
# chapter trains, `SHAKESPEARE_GPT` (chapter 11's model) and `SHAKESPEARE_LLAMA`, live in `tinycore.recipes`
# with the training settings that go with them. Their model configurations, field by field:

# %%
GPT, LLAMA = SHAKESPEARE_GPT.model, SHAKESPEARE_LLAMA.model
print(f"{'LMConfig field':16s} {'SHAKESPEARE_GPT':>16s} {'SHAKESPEARE_LLAMA':>18s}")
for field in dataclasses.fields(GPT):
    a, b = getattr(GPT, field.name), getattr(LLAMA, field.name)
    print(f"{field.name:16s} {a!s:>16s} {b!s:>18s}{'   <- differs' if a != b else ''}")

# %% [markdown]
# The sizes match: the same width $D$, depth, heads and context. Five choices differ, and LLaMA's FFN is
# narrower. Here is why each was made.
#
# ### 1. RMSNorm: re-scale, don't re-centre
#
# LayerNorm subtracts the mean of the features, divides by their standard deviation, then applies a gain
# $\gamma$ and a bias $\beta$. RMSNorm {cite:p}`zhang2019root` (chapter 3) skips the mean and the bias:
#
# $$
# \mathrm{LayerNorm}(\mathbf{x}) = \frac{\mathbf{x} - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \boldsymbol{\gamma} + \boldsymbol{\beta},
# \qquad
# \mathrm{RMSNorm}(\mathbf{x}) = \frac{\mathbf{x}}{\sqrt{\frac{1}{D}\sum_i x_i^2 + \epsilon}} \odot \boldsymbol{\gamma} .
# $$
#
# Zhang and Sennrich argued, and found in their experiments, that LayerNorm's re-scaling rather than its
# re-centring is what helps training; RMSNorm does one reduction over the features instead of two. It saves
# $D$ parameters per norm (the bias), and a little time; chapter 3 measured both.
#
# ### 2. SwiGLU: a gated FFN, made narrower to keep the parameters
#
# GPT-2's FFN is $W_2\,\mathrm{GELU}(W_1 \mathbf{x})$ with a hidden width $F = 4D$: two matrices, $8D^2$
# weights. SwiGLU {cite:p}`shazeer2020glu` (chapter 4) multiplies a SiLU-activated *gate* with a second
# linear projection:
#
# $$
# \mathrm{SwiGLU}(\mathbf{x}) = W_2\big(\mathrm{SiLU}(W_1 \mathbf{x}) \odot W_3 \mathbf{x}\big),
# \qquad W_1, W_3 \in \mathbb{R}^{F' \times D},\; W_2 \in \mathbb{R}^{D \times F'} .
# $$
#
# Three matrices of $D F'$ weights each, so the same parameter budget means $3DF' = 8D^2$, i.e.
# $F' = \tfrac{8}{3}D$. Shazeer found gated FFNs better than ungated ones at equal parameters and compute;
# LLaMA uses $F' = \tfrac{2}{3} \cdot 4D$ rounded up to a multiple of 256. The recipe's width:

# %%
D, F_gpt, F_llama = LLAMA.d_model, GPT.d_ff, LLAMA.d_ff
print(f"D = {D}: GELU FFN F = {F_gpt}, 2 x D x F = {2 * D * F_gpt:,} weights")
print(f"8D/3 = {8 * D / 3:.1f}; the LLaMA recipe uses F' = {F_llama}: 3 x D x F' = {3 * D * F_llama:,} weights "
      f"({3 * D * F_llama / (2 * D * F_gpt) - 1:+.1%})")

# %% [markdown]
# ### 3. RoPE: relative positions, no table
#
# GPT-2 adds a learned vector to each token's embedding, one row of a `(context_length, D)` table per
# position. That is $\text{context} \times D$ parameters, and a hard limit: no row was ever trained for a
# position past the table. RoPE {cite:p}`su2021roformer` (chapter 8) instead rotates each head's queries and
# keys by an angle proportional to the position, so the score between two tokens depends only on their
# offset. Its angles are computed, not learned, so it has no parameters, and the same weights can be loaded
# into a model with a longer context. (Whether the model then does well at positions it never saw in
# training is another matter: chapter 8.) Try both with twice the context:

# %%
gpt_model = SHAKESPEARE_GPT.build()
table = gpt_model.position_embeddings.weight
print("GPT's position table:", tuple(table.shape), f"= {table.numel():,} parameters")
longer = 2 * GPT.context_length
try:
    SHAKESPEARE_GPT.build(context_length=longer).load_state_dict(gpt_model.state_dict())
except RuntimeError as err:
    print(f"GPT weights into a {longer}-position GPT: RuntimeError:", str(err).splitlines()[1].strip())
llama_long = SHAKESPEARE_LLAMA.build(context_length=longer)
print(f"LLaMA weights into a {longer}-position LLaMA:",
      llama_long.load_state_dict(SHAKESPEARE_LLAMA.build().state_dict()))

# %% [markdown]
# ### 4. No biases, and 5. an untied output head
#
# LLaMA has no bias in any linear layer; PaLM {cite:p}`chowdhery2023palm` reported that dropping them made
# large-scale training more stable, and they are a negligible share of the parameters. GPT-2 *ties* its output
# matrix to the token embedding (the logits are $\mathbf{h}\,E^\top$), which saves $V \times D$ parameters;
# LLaMA gives `lm_head` a matrix of its own. Here:

# %%
biases = sum(p.numel() for name, p in gpt_model.named_parameters() if name.endswith("bias"))
print(f"GPT: {biases:,} parameters are biases (LayerNorm's included), "
      f"lm_head is the token embedding: {gpt_model.lm_head.weight is gpt_model.token_embeddings.weight}")
print(f"an untied head costs V x D = {LLAMA.vocab_size} x {D} = {LLAMA.vocab_size * D:,} parameters")

# %% [markdown]
# ### The swaps as a ledger
#
# The ablation below applies the five choices cumulatively, starting from the GPT recipe's model and
# taking each new value from the LLaMA recipe, so that the last row is exactly the LLaMA recipe's model. With
# $L$ layers, the change in parameters at each step is:
#
# | swap | fields | change in parameters |
# |---|---|---|
# | + RMSNorm | `norm` | $-(2L + 1)D$: the biases of the $2L + 1$ norms |
# | + SwiGLU | `ffn`, `d_ff` | $L\,[3DF' + 2F' + D - (2DF + F + D)]$, biases still on |
# | + RoPE | `positions` | $-\,\text{context} \times D$: the position table |
# | + no biases, untied head | `bias`, `tie_embeddings` | $-L\,(4D + 2F' + D) + VD$ |
#
# Build each model and count:

# %%
SWAPS = [  # (row, the LMConfig fields that take the LLaMA recipe's values)
    ("GPT recipe", ()),
    ("+ RMSNorm", ("norm",)),
    ("+ SwiGLU", ("ffn", "d_ff")),
    ("+ RoPE", ("positions",)),
    ("+ no biases, untied head", ("bias", "tie_embeddings")),
]
overrides, chain = {}, {}  # chain: row -> the overrides of SHAKESPEARE_GPT.model for that row
for row, fields in SWAPS:
    overrides = {**overrides, **{f: getattr(LLAMA, f) for f in fields}}
    chain[row] = overrides
print("the last row is the LLaMA recipe's model:", dataclasses.replace(GPT, **overrides) == LLAMA)

L, V, ctx = GPT.num_layers, GPT.vocab_size, GPT.context_length
predicted_change = {
    "+ RMSNorm": -(2 * L + 1) * D,
    "+ SwiGLU": L * (3 * D * F_llama + 2 * F_llama + D - (2 * D * F_gpt + F_gpt + D)),
    "+ RoPE": -ctx * D,
    "+ no biases, untied head": -L * (4 * D + 2 * F_llama + D) + V * D,
}
counts = {row: count_parameters(SHAKESPEARE_GPT.build(**o)) for row, o in chain.items()}
print(f"\n{'model':26s} {'parameters':>10s} {'change':>8s} {'predicted':>10s}")
previous = None
for row, n in counts.items():
    change = "" if previous is None else f"{n - previous:+8,d} {predicted_change[row]:+10,d}"
    print(f"{row:26s} {n:10,d} {change}")
    previous = n

# %% [markdown]
# Every change matches its formula, and the totals stay within half a percent of each other: the ablation
# compares architectures, not model sizes.
#
# ## The ablation: one swap at a time
#
# Now train each row of the ledger with the GPT recipe's training settings (the same learning-rate schedule,
# batch size, batches and initial seed for every row) for the same, short budget: a fraction of the
# recipe's steps. That fraction is the experiment's one knob; the validation loss is measured on the same
# held-out batches for every row.

# %%
ABLATION_FRACTION = 0.12  # of SHAKESPEARE_GPT.train.steps: the one knob of this experiment
steps = round(ABLATION_FRACTION * SHAKESPEARE_GPT.train.steps)
ablation_config = dataclasses.replace(SHAKESPEARE_GPT.train, steps=steps, eval_every=steps)  # evaluate at the end
batch_size, context = SHAKESPEARE_GPT.batch_size, GPT.context_length
print(ablation_config, f"batch_size={batch_size}", sep="\n")

train_batches = lm_batches(train_ids, batch_size, context, device)  # generator -> (x, y), each (B, T)
val_batches = lm_batches(val_ids, batch_size, context, device)
ablation, ablation_models = {}, {}
for row, o in chain.items():
    set_seed(0)  # the same seed for every row's initial weights
    model = SHAKESPEARE_GPT.build(device=device, **o)
    ablation[row] = train(model, next_token_loss, train_batches, ablation_config, device, val_batch=val_batches)
    ablation_models[row] = model

print(f"\n{'model':26s} {'parameters':>10s} {'val loss':>9s} {'change':>7s}")
previous = None
for row, history in ablation.items():
    val = round(history.val_loss[-1], 3)
    change = "" if previous is None else f"{val - previous:+7.3f}"
    print(f"{row:26s} {counts[row]:10,d} {val:9.3f} {change}")
    previous = val

# %% [markdown]
# The training loss of every step, smoothed over 20 steps, shows where the differences arise (the GPT and
# RMSNorm curves lie on top of each other):

# %%
def smooth(values, width=20):
    """Moving average over `width` steps (shorter at the start)."""
    t = torch.tensor(values)
    cum = torch.cat([torch.zeros(1), t.cumsum(0)])  # (n + 1,)
    idx = torch.arange(1, len(t) + 1)
    return (cum[idx] - cum[(idx - width).clamp(min=0)]) / (idx - (idx - width).clamp(min=0))


fig, ax = plt.subplots(figsize=(7.5, 4))
for row, history in ablation.items():
    ax.plot(history.step, smooth(history.train_loss), label=row, lw=1.5)
ax.axhline(2.48, color="0.5", ls=":", lw=1)
ax.text(0, 2.45, "bigram model (chapter 1)", ha="left", va="top", fontsize=8, color="0.4")
ax.set(xlabel="step", ylabel="training loss (nats per character)", ylim=(2.0, 3.6),
       title=f"{steps} steps of the GPT recipe's training, one swap at a time")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What to expect. **RoPE is the big win** at this budget: its change in the table is several times larger
# than any other. A character model gets past the bigram model's 2.48 nats by looking at the previous few
# characters, and for that attention needs to know which key sits just before the query. With a learned
# table that knowledge must first be learned (the table starts as small random vectors); with RoPE it is
# built into every score from the first step. You can watch this happen. Many trained language models have
# a *previous-token head*, one that puts most of its weight on the position just before the query. For each
# trained model, take every head of every layer, average the weight that position $i$ gives to position
# $i - 1$ over a validation batch, and report the largest such average (attention spread evenly over the
# past would give about 0.06):

# %%
def previous_token_weight(model, ids):
    """The largest, over layers and heads, of the mean attention weight from position i to position i - 1."""
    seen = []  # (attention module, its input, its token positions), recorded by hooks during one forward pass
    hooks = [layer.attn.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((module, args[0], kwargs.get("token_positions"))), with_kwargs=True)
        for layer in model.layers]
    model.eval()
    with torch.no_grad():
        model(ids)
        weights = [attn.attention_weights(x, token_positions=pos) for attn, x, pos in seen]  # L x (B, H, T, T)
    for hook in hooks:
        hook.remove()
    to_previous = torch.stack([w.diagonal(offset=-1, dim1=-2, dim2=-1) for w in weights])  # (L, B, H, T - 1)
    return to_previous.mean(dim=(1, 3)).max().item()  # mean over batch and positions, max over layers and heads


x_probe, _ = val_batches(torch.Generator().manual_seed(3))  # (B, T): one fixed validation batch
uniform = (1 / torch.arange(2, context + 1)).mean().item()  # position i spreading its weight over i + 1 keys
print(f"evenly spread attention: {uniform:.2f}")
for row, model in ablation_models.items():
    print(f"{row:26s} previous-token weight of the best head: {previous_token_weight(model, x_probe):.2f}")

# %% [markdown]
# In the models with a learned table no head has yet found the previous character: their best head is
# barely above an even spread. With RoPE one head already gives a large share of its attention to it.
#
# **RMSNorm** leaves the loss where it was: its gains are speed and simplicity, not quality. Differences of a
# few hundredths are within what a different seed changes (try `set_seed(1)` in the loop).
#
# **SwiGLU** *raises* the loss at this budget, by more than a seed would. Its advantage at equal
# parameters, a few hundredths of a nat in chapter 4's experiment and in {cite:t}`shazeer2020glu`'s, is
# measured after much longer training; at the start the gate holds it back. Its output is a product of two
# projections, $\mathrm{SiLU}(W_1\mathbf{x}) \odot W_3\mathbf{x}$, and with GPT-2's small initial weights
# both factors are small, so the FFN starts out contributing far less to the residual stream than GELU's
# (and each factor's gradient is scaled by the other, small, factor):

# %%
with torch.no_grad():
    for row in ("+ RMSNorm", "+ SwiGLU"):  # the rows before and after the swap, at their initial weights
        set_seed(0)
        fresh = SHAKESPEARE_GPT.build(device=device, **chain[row]).eval()
        block = fresh.layers[0]
        positions = torch.arange(context, device=device)  # (T,)
        h = fresh.token_embeddings(x_probe) + fresh.position_embeddings(positions)  # (B, T, D) + (T, D)
        ffn_out = block.ffn(block.ln2(h))  # (B, T, D): the first FFN applied to the normalised embeddings
        print(f"{row:10s} ({fresh.config.ffn} FFN): RMS of the FFN's output at initialisation "
              f"{ffn_out.pow(2).mean().sqrt().item():.4f}")

# %% [markdown]
# The gated FFN starts several times quieter, and in a run this short it is still catching up. When this
# chapter was written, a full-length run of the GPT recipe with and without the swap (not run here: it costs
# more than this whole ablation) had SwiGLU level after about a third of the steps and slightly ahead at the
# end. **No biases and an untied head** move the loss by a few hundredths, about
# what a seed does. Short ablations like this one measure how fast each model *starts* to learn, which is
# worth knowing (a cheap experiment can mislead you about the long run); the full run below shows where the
# complete recipe ends up.
#
# ## The LLaMA-style recipe, trained in full
#
# `SHAKESPEARE_LLAMA` is the last row of the ablation trained for its full budget, with its own training
# settings. The target is nanoGPT's CPU example {cite:p}`karpathy2022nanogpt`: a GPT of the same size
# (4 layers, 4 heads, width 128, context 64, no dropout) trained for 2,000 steps of 12 windows, which "runs in
# about ~3 minutes, but gets us a loss of only 1.88". Chapter 11's table has tinycore's own run of that
# recipe: 1.886. The LLaMA-style recipe:

# %%
recipe = SHAKESPEARE_LLAMA
print(recipe.model, recipe.train, f"batch_size={recipe.batch_size}", sep="\n")

# %%
set_seed(0)
llama = recipe.build(device=device)
context = recipe.model.context_length
history = train(llama, next_token_loss, lm_batches(train_ids, recipe.batch_size, context, device), recipe.train,
                device, val_batch=lm_batches(val_ids, recipe.batch_size, context, device))
TARGET = 1.89
tokens_seen = recipe.train.steps * recipe.batch_size * context
nanogpt_tokens = 2000 * 12 * 64  # nanoGPT's CPU example: 2,000 steps of 12 windows of 64 characters
print(f"{count_parameters(llama):,} parameters, {recipe.train.steps} steps of {recipe.batch_size} x {context} tokens: "
      f"{tokens_seen:,} tokens ({tokens_seen / nanogpt_tokens:.0%} of nanoGPT's CPU example), "
      f"{tokens_seen / len(train_ids):.2f} passes over the training text")
print(f"final validation loss: {history.val_loss[-1]:.3f}")
print(f"first evaluation at or below {TARGET}: step {history.first_step_below(TARGET)}")

# %% tags=["nbval-ignore-output"]
seconds = history.elapsed[-1]
print(f"training took {seconds:.0f} s ({1e3 * seconds / recipe.train.steps:.0f} ms per step, evaluations included)")

# %% [markdown]
# The validation loss is measured, as in chapter 11, on the same fixed validation batches at every
# evaluation (`eval_batches` of them, printed with the recipe). An estimate from so few batches moves by
# about $\pm 0.02$ with the choice of batches, so a result within a hundredth or two of the target is a tie.
#
# On a laptop CPU with two threads expect the run to take 20 to 25 seconds, evaluations included.
# `benchmarks/training.py` trains this recipe and nanoGPT's side by side on the same machine and compares
# the training time each needs to reach 1.89: the LLaMA-style recipe gets there in less than three quarters
# of nanoGPT's time (chapter 11 lists nanoGPT's recipe at 82 s on the course's 2-core machine). The
# validation curve, with the target and the bigram baseline:

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(history.step, smooth(history.train_loss), color="C0", lw=1, alpha=0.6, label="training (smoothed)")
ax.plot(history.eval_step, history.val_loss, "o-", color="C3", label="validation")
ax.axhline(TARGET, color="0.3", ls="--", lw=1, label=f"{TARGET}: nanoGPT's CPU result")
ax.axhline(2.48, color="0.5", ls=":", lw=1, label="bigram model")
ax.set(xlabel="step", ylabel="loss (nats per character)", ylim=(1.5, 3.6), title="SHAKESPEARE_LLAMA")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Samples, 200 characters each from the same prompt: greedy decoding (always the most likely character),
# and sampling at temperature 0.8 (chapter 11). The context holds 64
# characters, so `generate` slides a 64-character window over the text as it grows.

# %%
prompt = tokenizer.encode("ROMEO:\n")[None].to(device)  # (1, 7)
for name, settings in [("greedy", dict(temperature=0.0)), ("temperature 0.8", dict(temperature=0.8))]:
    sample_gen = torch.Generator(device).manual_seed(1)
    out = generate(llama, prompt, 200, generator=sample_gen, use_cache=False, **settings)  # (1, 207)
    print(f"--- {name} ---\n{tokenizer.decode(out[0].tolist())}\n")

# %% [markdown]
# Greedy decoding soon falls into a loop: the single most likely continuation of a phrase leads back to the
# phrase. Sampling keeps the text moving, with the spelling mistakes of a model that predicts one
# character at a time and has seen less than one pass over its training text (printed above).
#
# ## Generation with a KV cache
#
# ### The cost of generating without a cache
#
# To generate token $t + 1$ a decoder needs the last position's output, which attends over the keys and
# values of positions $0, \dots, t$. Run naively, `generate` feeds the whole sequence through the model at
# every step: $t + 1$ positions of every layer recomputed, $\tfrac{n(n+1)}{2}$ positions in all for $n$ new
# tokens. But in a causal model the key and value of position $j$ depend only on tokens $0, \dots, j$, so
# they never change once computed. A **KV cache** keeps them: each step then runs only the new token
# through the model, computes its query, key and value, appends the key and value to the cache, and
# attends over everything stored. The work per step becomes one position instead of $t + 1$ (the attention
# itself still reads all $t + 1$ keys), and the memory is $2 \times L \times H_{kv} \times D_h$ numbers per
# position (chapter 6; {cite:t}`pope2023efficiently` analyse what this costs at scale).
#
# ### One cached step, by hand
#
# Take the trained model's first attention layer and a batch of two 20-character sequences. The reference is
# the ordinary (uncached) attention over all 20 positions; we want its last row. The cache holds the keys and
# values of the first $S = 19$ positions; the new token at position $S$ brings its own query, key and value,
# rotated at its true position $S$ (chapter 8):
#
# $$
# K = \begin{bmatrix} K_{\text{cache}} \\ \mathbf{k}_S \end{bmatrix},\quad
# V = \begin{bmatrix} V_{\text{cache}} \\ \mathbf{v}_S \end{bmatrix},\qquad
# \mathbf{o}_S = \mathrm{softmax}\!\Big(\frac{\mathbf{q}_S K^\top}{\sqrt{D_h}}\Big) V .
# $$
#
# No mask is needed: the newest token may see every position before it and itself.

# %%
llama.eval()
attn = llama.layers[0].attn
B, T, H, Dh = 2, 20, attn.num_heads, attn.d_head
S = T - 1
ids = torch.stack([tokenizer.encode(s[:T]) for s in ("First Citizen:\nBefore", "KING RICHARD III:\nNow")]).to(device)
with torch.no_grad():
    x = llama.layers[0].ln1(llama.token_embeddings(ids))  # (B, T) -> (B, T, D): the input of layer 0's attention
    full = attn(x)  # (B, T, D): causal attention over all T positions, no cache

    _, k_cache, v_cache = attn.qkv(x[:, :S])  # (B, H, S, Dh) each: what the cache holds after S positions
    q_new, k_new, v_new = attn.qkv(x[:, S:], token_positions=torch.tensor([S], device=device))  # (B, H, 1, Dh) each
    k_all = torch.cat([k_cache, k_new], dim=2)  # (B, H, S, Dh) -> (B, H, S + 1, Dh): append along the tokens
    v_all = torch.cat([v_cache, v_new], dim=2)  # (B, H, S + 1, Dh)
    scores = q_new @ k_all.transpose(-2, -1) / math.sqrt(Dh)  # (B, H, 1, Dh) @ (B, H, Dh, S + 1) -> (B, H, 1, S + 1)
    out = scores.softmax(dim=-1) @ v_all  # (B, H, 1, S + 1) @ (B, H, S + 1, Dh) -> (B, H, 1, Dh)
    step = attn.output_proj(merge_heads(out))  # (B, H, 1, Dh) -> (B, 1, D)
check_shape(step, (B, 1, llama.config.d_model), "B 1 D", "cached step")
print("one cached step == the last row of full attention (to 1e-5):",
      torch.allclose(step, full[:, -1:], rtol=0, atol=1e-5))

# %% [markdown]
# ### tinycore's cache
#
# `TransformerLM.make_cache(B)` allocates a `KVCache`: one `LayerKVCache` per layer, each holding keys and
# values of shape `(B, Hkv, context_length, Dh)`, filled up to its `length`. Passing `cache=` to the model
# runs only the new positions, appends their keys and values in every layer, and continues the positions
# (and RoPE's angles) where the cache ends. Prompt first (the *prefill*), then one token at a time:

# %%
with torch.no_grad():
    cache = llama.make_cache(B)
    logits_prompt = llama(ids[:, :S], cache=cache)  # (B, S, V): the prompt, all at once
    print("after the prompt: cache.length =", cache.length, "| keys of layer 0:", tuple(cache[0].k.shape))
    logits_step = llama(ids[:, S:], cache=cache)  # (B, 1, V): only the new token goes in
    print("after one step:   cache.length =", cache.length)
    logits_full = llama(ids)  # (B, T, V): no cache, everything recomputed
print("cached logits == uncached, prompt and step (to 1e-5):",
      torch.allclose(logits_prompt, logits_full[:, :S], rtol=0, atol=1e-5),
      torch.allclose(logits_step, logits_full[:, S:], rtol=0, atol=1e-5))
print(f"cache memory: {cache.num_bytes():,} bytes for {B} sequences of up to {cache.max_len} positions")

# %% [markdown]
# `tinycore.generate(..., use_cache=True)` (the default) runs exactly this loop; `use_cache=False` re-runs
# the whole window every step. With the same random generator they produce the same tokens, greedy or
# sampled:

# %%
start = tokenizer.encode("\n")[None].to(device)  # (1, 1)
new = llama.config.context_length - 1  # as many as the cache can hold
for name, settings in [("greedy", dict(temperature=0.0)), ("sampled, temperature 1", dict(temperature=1.0))]:
    outs = [generate(llama, start, new, generator=torch.Generator(device).manual_seed(2), use_cache=c, **settings)
            for c in (True, False)]  # (1, 64) each
    print(f"{name}: cached and uncached tokens identical: {torch.equal(*outs)}")
print(repr(tokenizer.decode(outs[0][0].tolist())))

# %% [markdown]
# Is it faster? The next cell times `generate` both ways for 63 tokens from a one-character prompt, and then
# a single decoding step at longer contexts: one new position with a cache holding the others, against the
# whole sequence run without one (untrained copies of the recipe's model with a longer `context_length`; the
# weights do not change the time). What to expect on a laptop CPU: at this 64-token context the cached loop
# is faster, but only by a factor of about 1.5 to 2. A model this small spends most of each step on fixed
# costs, a few dozen small operations per layer whatever the number of positions, so running 64 positions
# costs little more than running one. The uncached step grows with the context while the cached one hardly
# does: at 256 positions a cached step is several times cheaper, at 1,024 tens of times.
# `benchmarks/training.py` measures the generation ratio on a quiet machine.

# %% tags=["nbval-ignore-output"]
times = {c: best_time_ms(lambda: generate(llama, start, new, generator=torch.Generator(device).manual_seed(2),
                                          use_cache=c), repeats=2) for c in (True, False)}
print(f"generate {new} tokens: cached {times[True]:.0f} ms, uncached {times[False]:.0f} ms "
      f"({times[False] / times[True]:.1f} times faster with the cache)")
for n in (64, 256, 1024):
    long_model = SHAKESPEARE_LLAMA.build(device=device, context_length=n).eval()
    seq = torch.randint(0, tokenizer.vocab_size, (1, n), generator=gen).to(device)  # (1, n)
    with torch.no_grad():
        long_cache = long_model.make_cache(1)
        long_model(seq[:, :-1], cache=long_cache)  # n - 1 positions cached

        def cached_step():
            for layer in long_cache.layers:
                layer.length = n - 1  # forget the previous timing's step: always the n-th position
            long_model(seq[:, -1:], cache=long_cache)

        uncached_ms = best_time_ms(lambda: long_model(seq), repeats=5)
        cached_ms = best_time_ms(cached_step, repeats=5)
    print(f"one step at position {n:5d}: uncached {uncached_ms:7.1f} ms, cached {cached_ms:5.1f} ms "
          f"({uncached_ms / cached_ms:.0f} times)")

# %% [markdown]
# The work, counted rather than timed, for this model: positions run through the model per step, and
# query-key scores computed per step in one head (the cache saves the recomputation, not the attention over
# the stored keys).

# %%
t = torch.arange(1, llama.config.context_length + 1)  # sequence length after each step
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(t, t, label="without cache: t positions")
axes[0].plot(t, torch.ones_like(t), label="with cache: 1 position")
axes[0].set(xlabel="sequence length t", ylabel="positions run per step", title="work per step")
axes[1].plot(t, t * (t + 1) // 2, label="without cache: t(t+1)/2 scores (causal)")
axes[1].plot(t, t, label="with cache: t scores")
axes[1].set(xlabel="sequence length t", ylabel="query-key scores per step, per head", title="attention per step")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"positions run to generate {new} tokens from 1: without cache {sum(range(1, new + 1)):,}, with cache {new}")

# %% [markdown]
# ## Grouped-query attention
#
# LLaMA 2's 34B and 70B models {cite:p}`touvron2023llama2` share each key/value head among a group of query
# heads (grouped-query attention, {cite:t}`ainslie2023gqa`; chapter 6). In this model that is one more field,
# `num_kv_heads`: with 4 query heads, 2 key/value heads form groups of 2, and 1 is multi-query attention
# {cite:p}`shazeer2019fast`. Only `k_proj` and `v_proj` shrink, and the cache shrinks in proportion:

# %%
H, Dh, L = LLAMA.num_heads, LLAMA.d_model // LLAMA.num_heads, LLAMA.num_layers
print(f"{'num_kv_heads':>12s} {'parameters':>11s} {'change':>7s} {'KV cache, 1 sequence':>21s} {'per position':>13s} "
      f"{'formula':>8s}")
mha_params = count_parameters(SHAKESPEARE_LLAMA.build(num_kv_heads=H))
for kv_heads in (H, 2, 1):
    m = SHAKESPEARE_LLAMA.build(num_kv_heads=kv_heads)
    cache_bytes = m.make_cache(1).num_bytes()  # float32, context_length positions
    per_position = cache_bytes // m.config.context_length
    formula = 2 * L * kv_heads * Dh * 4  # keys and values, L layers, Hkv heads of Dh float32 numbers
    print(f"{kv_heads:12d} {count_parameters(m):11,d} {count_parameters(m) / mha_params - 1:+7.1%} "
          f"{cache_bytes:15,d} bytes {per_position:7,d} bytes "
          f"{per_position == formula!s:>8s}")

# %% [markdown]
# The parameters fall by about a tenth (`k_proj` and `v_proj` are two of the seven matrices of a block, and
# only they shrink), while the cache halves with every halving of the key/value heads. At this size that is
# kilobytes; for LLaMA-2 70B, with 8 key/value heads instead of 64, it is the difference between 320 KiB and
# 2.5 MiB per token in float16 (chapter 6's table), for every token of every sequence in a batch.
#
# ## Sampling: nucleus (top-p)
#
# Chapter 11 sampled with a temperature $\tau$, which divides the logits before the softmax
# ($\tau < 1$ sharpens the distribution, $\tau \to 0$ is greedy decoding), and with top-k, which keeps the
# $k$ likeliest tokens. A fixed $k$ ignores how sure the model is: inside a word, after "Wha", nearly all
# of the probability is on "t", and any $k > 1$ lets in characters that can only derail the word; at the
# start of a word many characters are plausible, and a small $k$ cuts some of them off. **Nucleus sampling**
# {cite:p}`holtzman2020curious` adapts: it samples from the *nucleus*, the smallest set of likeliest tokens
# whose probabilities sum to at least $p$. Sort the probabilities in descending order,
# $p_{(1)} \ge p_{(2)} \ge \dots$, and keep token $(k)$ while the mass before it is below $p$:
#
# $$
# \text{keep } (k) \iff \sum_{j < k} p_{(j)} < p .
# $$
#
# The likeliest token is always kept, and so is the token whose probability carries the sum past $p$.
# `tinycore.top_p_filter` sets every other logit to $-\infty$ (`generate(..., top_p=...)` applies it after
# the temperature), and the softmax renormalises what is left. How large is the nucleus in practice? Over
# the positions of 8 validation windows, for $p = 0.9$:

# %%
x_val, _ = lm_batches(val_ids, 8, context, device)(torch.Generator().manual_seed(3))  # (8, T) windows
with torch.no_grad():
    val_logits = llama(x_val)  # (8, T, V): a next-character distribution at every position
nucleus_size = torch.isfinite(tinycore.top_p_filter(val_logits, 0.9)).sum(dim=-1).flatten().cpu()  # (8 * T,)
print(f"{len(nucleus_size)} positions, nucleus size for p = 0.9: median {nucleus_size.median().item()}, "
      f"from {nucleus_size.min().item()} to {nucleus_size.max().item()} characters")
print(f"1 character: {(nucleus_size == 1).float().mean():.0%} of positions; "
      f"more than 5: {(nucleus_size > 5).float().mean():.0%}; more than 10: {(nucleus_size > 10).float().mean():.0%}")
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.hist(nucleus_size, bins=torch.arange(0.5, nucleus_size.max().item() + 1.5).tolist(), color="C1")
ax.set(xlabel="characters in the nucleus (p = 0.9)", ylabel="positions", title="How many characters top-p keeps")
plt.show()

# %% [markdown]
# The nucleus ranges from a single character, where the model is sure, to a couple of dozen, where it is
# not: no single $k$ fits both. Two distributions up close, inside a word and at the start of one, with the
# nucleus for $p = 0.9$ in orange:

# %%
nucleus_prompts = ["KING HENRY:\nWha", "KING HENRY:\nWhat say "]  # inside a word; at the start of one
with torch.no_grad():
    prompt_logits = [llama(tokenizer.encode(s)[None].to(device))[0, -1].cpu() for s in nucleus_prompts]  # V each


def draw_next_char(ax, logits, prompt, temperature=1.0, top_p=0.9, shown=20):
    """Bars: the likeliest next characters at this temperature; orange: those in the nucleus."""
    scaled = logits / temperature
    probs = scaled.softmax(dim=-1)  # (V,)
    kept = torch.isfinite(tinycore.top_p_filter(scaled, top_p))  # (V,) bool: the nucleus
    order = probs.argsort(descending=True)[:shown]
    labels = [{" ": "␣", "\n": "\\n"}.get(ch, ch) for ch in (tokenizer.decode([int(i)]) for i in order)]
    ax.bar(range(shown), probs[order], color=["C1" if kept[i] else "0.75" for i in order])
    ax.set_xticks(range(shown), labels, fontsize=9)
    ax.set(ylabel="probability", ylim=(0, 1))
    ax.set_title(f"after {prompt!r}: {int(kept.sum())} of {len(probs)} kept ({probs[kept].sum():.0%} of the mass)",
                 fontsize=10)


def draw_nuclei(temperature=1.0, top_p=0.9):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, logits, prompt in zip(axes, prompt_logits, nucleus_prompts):
        draw_next_char(ax, logits, prompt, temperature, top_p)
    fig.suptitle(f"temperature {temperature:g}, top-p {top_p:g}", fontsize=10)
    plt.tight_layout()
    plt.show()


draw_nuclei()
for logits, prompt in zip(prompt_logits, nucleus_prompts):
    probs = logits.softmax(dim=-1)
    print(f"after {prompt!r}: the likeliest character {tokenizer.decode([int(probs.argmax())])!r} "
          f"has probability {probs.max():.2f}")

# %% [markdown]
# Lower the temperature and the nucleus shrinks, because the top characters take more of the mass; raise it
# and the nucleus grows. The sliders below redraw both distributions and regenerate a 30-character
# continuation of the second prompt with the cache, with the same random generator each time, so any change
# in the text comes from the settings. Try $\tau = 0.1$ (nearly greedy), $\tau = 1.5$ with $p = 1$ (the
# unlikely characters appear, and the words fall apart), and then $\tau = 1.5$ with $p = 0.5$, where the
# nucleus cuts the unlikely tail away again.

# %% tags=["nbval-ignore-output"]
def explore_sampling(temperature=1.0, top_p=0.9):
    draw_nuclei(temperature, top_p)
    ids_in = tokenizer.encode(nucleus_prompts[1])[None].to(device)  # (1, T)
    out = generate(llama, ids_in, 30, temperature=temperature, top_p=top_p,
                   generator=torch.Generator(device).manual_seed(0))  # (1, T + 30)
    print(repr(tokenizer.decode(out[0].tolist())))


_ = interact(
    explore_sampling,
    temperature=FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1, description="temperature"),
    top_p=FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05, description="top-p"),
)

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} One attention step with a KV cache
# :label: ex-llama-cached-attention-step
# ```
# Write `cached_attention_step(q_new, k_cache, v_cache, k_new, v_new)`: append the new keys and values to the
# cached ones and let the new queries attend over all of them. Return the attention output (before merging
# the heads and `output_proj`) and the grown cache.
#
# - Shapes: `q_new`, `k_new`, `v_new` are `(B, H, t, Dh)` for $t$ new positions; `k_cache`, `v_cache` are
#   `(B, H, S, Dh)` for the $S$ positions already cached ($S$ may be 0). Return `(out, k_all, v_all)` with
#   `out` of shape `(B, H, t, Dh)` and `k_all`, `v_all` of shape `(B, H, S + t, Dh)`.
# - With $t > 1$ new positions (a prompt, or several tokens at once) a causal mask is needed: new query $i$
#   sits at position $S + i$ and may attend keys $0, \dots, S + i$.
# - The checker compares values and gradients with PyTorch's attention, with $t = 1$, $t > 1$ and $S = 0$.
#
# Hint: `torch.cat(..., dim=2)` appends along the tokens. Hint: the mask is a `(t, S + t)` lower triangle
# shifted right by $S$: `torch.ones(t, S + t, dtype=torch.bool).tril(diagonal=S)`. Beware:
# `F.scaled_dot_product_attention(..., is_causal=True)` aligns its triangle to the *top-left* corner.

# %%
def cached_attention_step(q_new, k_cache, v_cache, k_new, v_new):
    raise NotImplementedError("Exercise: implement cached_attention_step")


# %% tags=["raises-exception"]
checks.cached_attention_step(cached_attention_step)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-llama-cached-attention-step
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def cached_attention_step(q_new, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat([k_cache, k_new], dim=2)  # (B, H, S, Dh) + (B, H, t, Dh) -> (B, H, S + t, Dh)
    v_all = torch.cat([v_cache, v_new], dim=2)  # (B, H, S + t, Dh)
    S, t = k_cache.shape[2], q_new.shape[2]
    scores = q_new @ k_all.transpose(-2, -1) / math.sqrt(q_new.shape[-1])  # (B, H, t, S + t)
    allowed = torch.ones(t, S + t, dtype=torch.bool, device=q_new.device).tril(diagonal=S)  # query i sees keys <= S + i
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # (B, H, t, S + t)
    return weights @ v_all, k_all, v_all  # (B, H, t, Dh), (B, H, S + t, Dh), (B, H, S + t, Dh)


checks.cached_attention_step(cached_attention_step)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Nucleus (top-p) filtering
# :label: ex-llama-top-p-filter
# ```
# Write `top_p_filter(logits, p)`: in each row of logits, keep the smallest set of most likely tokens whose
# probabilities (the softmax of the row) sum to at least `p`, and set every other logit to `-inf`.
#
# - Shapes: `logits` is `(..., V)` (the checker uses `(V,)`, `(B, V)` and `(B, T, V)`, float32 and float64),
#   `p` a float in $(0, 1]$; return a tensor of the same shape and dtype, with the kept logits unchanged.
# - The most likely token is always kept, and so is the token whose probability carries the sum past `p`.
#
# Hint: sort each row in descending order (`sort` returns the values and their original indices), compute the
# mass *before* each token as a cumulative sum minus its own probability, and map the keep/drop decisions back
# to vocabulary order with `scatter` (or by indexing with the inverse permutation).

# %%
def top_p_filter(logits, p):
    raise NotImplementedError("Exercise: implement top_p_filter")


# %% tags=["raises-exception"]
checks.top_p_filter(top_p_filter)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-llama-top-p-filter
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def top_p_filter(logits, p):
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V) each
    probs = sorted_logits.softmax(dim=-1)  # (..., V), largest first
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V): what the tokens ranked above already hold
    drop_sorted = mass_before >= p  # the first token always stays: nothing is above it
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


checks.top_p_filter(top_p_filter)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Greedy decoding with a KV cache
# :label: ex-llama-cached-greedy-decode
# ```
# Write `cached_greedy_decode(model, token_ids, max_new_tokens)`: extend each row of `token_ids` by
# `max_new_tokens` tokens, each the most likely next token (the argmax of the logits), using one KV cache so
# that every token goes through the model only once.
#
# - `model` behaves like a `tinycore.TransformerLM`: `model.make_cache(B)` returns an empty cache, and
#   `model(ids, cache=cache)` runs the positions `ids` of shape `(B, t)` after those already in the cache and
#   returns their logits, `(B, t, V)`.
# - Shapes: `token_ids` is `(B, T)`; return `(B, T + max_new_tokens)`, the prompt followed by the new tokens
#   (as `tinycore.generate` does).
# - The checker compares your tokens with greedy decoding that re-runs the whole sequence every step, on three
#   small models (one GPT-style with learned positions, one with a single key/value head), and watches how you
#   call the model: one cache, the prompt once, then one new token per call.
#
# Hint: the logits of the *last* position predict the next token. Hint: after the first call, feed the token
# you just chose, shaped `(B, 1)`.

# %%
def cached_greedy_decode(model, token_ids, max_new_tokens):
    raise NotImplementedError("Exercise: implement cached_greedy_decode")


# %% tags=["raises-exception"]
checks.cached_greedy_decode(cached_greedy_decode)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-llama-cached-greedy-decode
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
@torch.no_grad()
def cached_greedy_decode(model, token_ids, max_new_tokens):
    cache = model.make_cache(token_ids.shape[0])
    out, step_input = token_ids, token_ids  # the first call runs the whole prompt (the prefill)
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache)  # (B, t, V): t = T the first time, then 1
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, V) -> (B, 1)
        out = torch.cat([out, next_id], dim=1)  # (B, T + i) -> (B, T + i + 1)
        step_input = next_id  # only the new token goes in next time
    return out


checks.cached_greedy_decode(cached_greedy_decode)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - A LLaMA-style decoder is a GPT-2-style decoder with five choices changed: RMSNorm (re-scaling only, one
#   reduction, no bias), a SwiGLU FFN of width about $8D/3$ (three matrices, the same parameters as a $4D$
#   GELU FFN), rotary positions (relative, no table, no parameters), no biases, and an untied output head.
#   Each is a field of `LMConfig`, and the parameter ledger of every swap matches its formula.
# - Swapped in one at a time for a short, fixed budget, RoPE makes the large difference: with relative
#   positions built into every score, a previous-token head appears within a few dozen steps, while a
#   learned position table must be learned first. RMSNorm and the bias-free, untied layout move the loss by
#   about as much as a change of seed; SwiGLU starts slower, because its gated product of two small
#   projections begins several times quieter than GELU's FFN. Short ablations measure early learning speed.
# - The full `SHAKESPEARE_LLAMA` recipe is trained to nanoGPT's CPU result, 1.89 nats per character, on a
#   fraction of nanoGPT's training tokens.
# - Grouped-query attention shrinks `k_proj`, `v_proj` and the KV cache by $H / H_{kv}$; the cache holds
#   $2 L H_{kv} D_h$ numbers per position.
# - A KV cache stores each position's keys and values once; a decoding step then runs one position through the
#   model and attends over the stored keys. New queries sit at positions $S, S+1, \dots$: their RoPE angles and
#   their causal mask are offset by the cache length $S$. Cached generation gives the same tokens as uncached
#   generation; it is faster even at a 64-token context, where fixed costs dominate a model this small, and
#   tens of times faster per step at 1,024 positions.
# - Nucleus (top-p) sampling keeps the smallest set of likeliest tokens that holds probability $p$, always
#   including the top token; unlike top-k it adapts to the model's confidence, from one character inside a
#   word to a couple of dozen at the start of one.
#
# ## References
#
# - LLaMA and LLaMA 2, the recipe of this chapter: {cite:t}`touvron2023llama`, {cite:t}`touvron2023llama2`.
# - RMSNorm: {cite:t}`zhang2019root`. SwiGLU and other gated FFNs: {cite:t}`shazeer2020glu`. RoPE:
#   {cite:t}`su2021roformer`. Dropping biases at scale: {cite:t}`chowdhery2023palm`.
# - Multi-query and grouped-query attention: {cite:t}`shazeer2019fast`, {cite:t}`ainslie2023gqa`.
# - The cost of inference with a KV cache: {cite:t}`pope2023efficiently`.
# - Nucleus sampling: {cite:t}`holtzman2020curious`.
# - GPT-2, the starting point: {cite:t}`radford2019language`; nanoGPT, whose CPU example sets the target:
#   {cite:t}`karpathy2022nanogpt`.

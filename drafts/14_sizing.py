# %% [markdown]
# # Sizing a transformer
#
# How many parameters does a model have, how much arithmetic does one token cost, how much memory will
# generation and training need, and how long will training take? You can answer all four with a pencil
# from the model's configuration, before building anything. This chapter derives the formulas from the
# architecture of chapters 9 to 12 and checks every one of them against a measurement: models with
# billions of parameters built on PyTorch's `meta` device (shapes without memory), PyTorch's own FLOP
# counter, the bytes a KV cache and an optimizer really hold, and a stopwatch on your machine.
#
# **What you will learn**
#
# - to count the parameters of a transformer language model component by component (embeddings,
#   attention with grouped-query heads, GELU or SwiGLU feed-forward networks, norms with or without bias,
#   learned positions, a tied or separate output head, biases), and to check the count against
#   `sum(p.numel())` of GPT-2 124M and LLaMA-2 7B built on the `meta` device in a fraction of a second;
# - why a forward pass costs about $2N$ FLOPs per token, what attention adds ($4LTD$), how the conventions
#   of Kaplan et al., Chinchilla and PaLM differ, and how to check all of it with
#   `torch.utils.flop_counter.FlopCounterMode`, including where that counter is blind;
# - why training costs three forward passes, hence the rule $C \approx 6ND$, and how far the exact count
#   is from it for GPT-3 and LLaMA-2;
# - the memory of the KV cache ($2 L H_{kv} D_h$ values per token) with and without grouped-query
#   attention, and of training with AdamW (16 bytes per parameter, plus activations);
# - to measure your own machine's peak matrix-multiplication speed and the *model-FLOPs utilisation* (MFU)
#   a training step reaches on it.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import inspect
from dataclasses import replace

import matplotlib.pyplot as plt
import torch
from ipywidgets import Dropdown, FloatLogSlider, IntSlider, interact
from torch.utils.flop_counter import FlopCounterMode

import tinycore
from tinycore import LMConfig, TransformerLM, checks, gpt_config, set_seed
from tinycore import sizing
from tinycore.plotting import use_style

gen = set_seed(0)
use_style()

# %% [markdown]
# ## Where the parameters are
#
# A transformer language model has few kinds of parts: a table of token embeddings ($V \times D$), a
# stack of $L$ identical layers, each with an attention and a feed-forward network (FFN) and two norms,
# a final norm, and an output head that scores the $V$ vocabulary entries. The sizes of the parts scale
# differently: the tables grow with $V D$, the layers with $L D^2$. So the *shape* of a model decides
# where its parameters are.
#
# To see it, we build six well-known models: GPT-2 small and XL {cite:p}`radford2019language`, GPT-3
# 175B (the same architecture, larger), and LLaMA-2 7B, 13B and 70B {cite:p}`touvron2023llama2`. The
# largest would take 700 GB in float32, but we build them on the **`meta` device**: a meta tensor has a
# shape and a dtype and no storage at all, so a 175-billion-parameter model costs nothing to create.
# `sizing.count_by_component` sums `p.numel()` over the model's parameters, grouped by the part they
# belong to (its source is short):

# %%
print(inspect.getsource(sizing.component_of))
print(inspect.getsource(sizing.count_by_component))

# %%
MODELS = {  # (V, context, D, L, H[, F]) from the papers; gpt_config makes GPT-2's choices (F = 4D, tied head, biases)
    "GPT-2 124M": gpt_config(50257, 1024, 768, 12, 12),
    "GPT-2 XL 1.5B": gpt_config(50257, 1024, 1600, 48, 25),
    "GPT-3 175B": gpt_config(50257, 2048, 12288, 96, 96),
    "LLaMA-2 7B": LMConfig(32000, 4096, 4096, 32, 32, 11008),
    "LLaMA-2 13B": LMConfig(32000, 4096, 5120, 40, 40, 13824),
    "LLaMA-2 70B": LMConfig(32000, 4096, 8192, 80, 64, 28672, num_kv_heads=8),  # grouped-query attention
}
measured = {}
for name, config in MODELS.items():
    model = TransformerLM.from_config(config, device="meta")  # shapes only: no memory, no arithmetic
    measured[name] = sizing.count_by_component(model)
    print(f"{name:14s} {sum(measured[name].values()):>16,} parameters   first weight on: {model.lm_head.weight.device}")

# %% tags=["gallery"]
labels = {"token_embeddings": "token embeddings", "position_embeddings": "learned positions",
          "attention": "attention", "ffn": "feed-forward", "norms": "norms", "lm_head": "output head"}
colours = {"token_embeddings": "C0", "position_embeddings": "C9", "attention": "C1", "ffn": "C2",
           "norms": "C7", "lm_head": "C4"}
fig, ax = plt.subplots(figsize=(9, 3.6))
for row, (name, counts) in enumerate(measured.items()):
    total, left = sum(counts.values()), 0.0
    for part, n in counts.items():
        ax.barh(row, n / total, left=left, color=colours[part], label=labels[part] if row == 0 else None)
        if n / total > 0.04:
            ax.text(left + n / total / 2, row, f"{100 * n / total:.0f}%", ha="center", va="center", fontsize=8)
        left += n / total
ax.set_yticks(range(len(measured)), [f"{name}\n({sum(c.values()) / 1e9:.3g} B)" for name, c in measured.items()])
ax.invert_yaxis()
ax.set(xlim=(0, 1), xlabel="fraction of the parameters")
ax.legend(ncol=6, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
ax.grid(False)
plt.tight_layout()
plt.show()

# %% [markdown]
# Three things stand out. In GPT-2 small almost a third of the parameters are the token embeddings: a
# vocabulary of 50,257 entries times 768 features. In every larger model the layers dominate, and within
# them the feed-forward network holds two thirds: a layer has $4D^2$ attention weights and $8D^2$ FFN
# weights. And LLaMA-2 70B's attention is a smaller share (18%, against 32% in 7B) because its grouped-query
# attention has 8 key/value heads for 64 query heads. The output head is absent from GPT-2 and GPT-3: it is
# *tied* to the token embeddings, one matrix used twice.
#
# ## Counting parameters
#
# ### The formulas
#
# Write $V$ for the vocabulary, $D$ for the width, $L$ for the layers, $H$ for the heads and
# $D_h = D/H$ for the head width, $H_{kv}$ for the key/value heads ($H_{kv} = H$ without grouped-query
# attention), $F$ for the FFN's hidden width and $T_{\max}$ for the context length. A `Linear(d_in, d_out)`
# holds a `(d_out, d_in)` weight and, if it has one, a bias of `d_out` numbers. Then, from the modules of
# chapters 4 to 12:
#
# $$
# \begin{aligned}
# \text{token embeddings} &= V D \\
# \text{learned positions} &= T_{\max} D \quad (\text{RoPE: } 0) \\
# \text{attention, per layer} &= \underbrace{2D^2}_{W_Q,\; W_O} + \underbrace{2 D H_{kv} D_h}_{W_K,\; W_V}
#   \;+\; [\text{bias}]\,(2D + 2 H_{kv} D_h) \\
# \text{FFN, per layer} &= 2 D F \;(\text{GELU}) \;\text{ or }\; 3 D F \;(\text{SwiGLU})
#   \;+\; [\text{bias}]\,(F + D \;\text{ or }\; 2F + D) \\
# \text{norms} &= (2L + 1)\, D \;(\text{RMSNorm}) \;\text{ or }\; (2L + 1)\, 2D \;(\text{LayerNorm: gain and bias}) \\
# \text{output head} &= V D \;\text{ untied, }\; 0 \;\text{ tied}
# \end{aligned}
# $$
#
# where $[\text{bias}]$ is 1 for a model with biases and 0 without. The total is the sum, with the attention
# and FFN terms multiplied by $L$. Each layer has two norms
# (`ln1` before attention, `ln2` before the FFN) and one more, `ln_final`, follows the last layer.
#
# ### GPT-2 124M by hand
#
# GPT-2 small has $V = 50257$, $T_{\max} = 1024$, $D = 768$, $L = 12$, $H = 12$, $F = 4D = 3072$,
# LayerNorm, a GELU FFN, learned positions, biases in every `Linear`, and its head tied to the token
# embeddings. Term by term:

# %%
V, T_max, D, L, H, F = 50257, 1024, 768, 12, 12, 3072
by_hand = {
    "token_embeddings": V * D,  # (V, D)
    "position_embeddings": T_max * D,  # (T_max, D)
    "attention": L * (4 * D * D + 4 * D),  # q, k, v, output: (D, D) weights and D biases each (H_kv = H)
    "ffn": L * (2 * D * F + F + D),  # w1 (F, D) + bias F, w2 (D, F) + bias D
    "norms": (2 * L + 1) * 2 * D,  # ln1, ln2 per layer and ln_final: LayerNorm's gain and bias
    "lm_head": 0,  # tied: lm_head.weight is token_embeddings.weight
}
for part, n in by_hand.items():
    print(f"{part:20s} {n:>12,}")
print(f"{'total':20s} {sum(by_hand.values()):>12,}")

# %% [markdown]
# 124,439,808: the number usually quoted for GPT-2 small. tinycore's `sizing.param_counts` is the same
# arithmetic for any `LMConfig`, written with one helper per component:

# %%
print(inspect.getsource(sizing.attention_params))
print(inspect.getsource(sizing.ffn_params))
print(inspect.getsource(sizing.param_counts))

# %% [markdown]
# ### Checked against models built on the meta device
#
# Now the formula against `sum(p.numel())` of the real modules, component by component, for GPT-2 124M
# and LLaMA-2 7B ($V = 32000$, $D = 4096$, $L = 32$, $H = 32$, $F = 11008$, RMSNorm, SwiGLU, RoPE, no biases,
# a separate output head):

# %%
def comparison_table(name):
    config = MODELS[name]
    formula, counted = sizing.param_counts(config), measured[name]
    print(f"{name}: formula vs sum(p.numel()) of the model built on the meta device")
    for part in sizing.COMPONENTS:
        print(f"  {labels[part]:18s} {formula[part]:>15,} {counted[part]:>15,}  {formula[part] == counted[part]}")
    print(f"  {'total':18s} {sum(formula.values()):>15,} {sum(counted.values()):>15,}  "
          f"{sum(formula.values()) == sum(counted.values())}")


comparison_table("GPT-2 124M")
comparison_table("LLaMA-2 7B")

# %% [markdown]
# Both agree to the last parameter: 124,439,808 and 6,738,415,616, the "7B" of LLaMA-2. The other four
# models agree too (GPT-3: 174.6 billion, the "175B" of its name; LLaMA-2 70B: 68,976,648,192):

# %%
print(all(sizing.param_counts(config) == measured[name] for name, config in MODELS.items()))

# %% [markdown]
# ### Three ways to get a different number
#
# Published counts of the same model differ, and usually for one of three reasons.
#
# - **A tied matrix counted twice.** `model.parameters()` lists a shared tensor once; `model.state_dict()`
#   lists it under both names (`token_embeddings.weight` and `lm_head.weight`), so summing the state dict
#   over-counts GPT-2 by $V D$ = 38.6 million.
# - **Leaving out the embeddings.** {cite:t}`kaplan2020scaling` fit their scaling laws to
#   the *non-embedding* parameters. nanoGPT prints GPT-2 small as "123.65M": it subtracts the position
#   table but keeps the tied token table, because that matrix also does the output head's work.
# - **The rule of thumb.** $12 L D^2$ counts only the layers' matrices ($4D^2 + 8D^2$), which is exact for
#   a bias-free GELU model with $F = 4D$ and close for SwiGLU with $F \approx 8D/3$ (three matrices of
#   $D \cdot 8D/3$ make $8D^2$ again).

# %%
gpt2 = TransformerLM.from_config(MODELS["GPT-2 124M"], device="meta")
n_parameters = sum(p.numel() for p in gpt2.parameters())
n_state_dict = sum(t.numel() for t in gpt2.state_dict().values())
print(f"sum over parameters():  {n_parameters:>13,}")
print(f"sum over state_dict():  {n_state_dict:>13,}  (lm_head.weight counted again)")
print(f"without the positions:  {n_parameters - gpt2.position_embeddings.weight.numel():>13,}  (nanoGPT's 123.65M)")
print()
print(f"{'model':14s} {'parameters':>16s} {'12 L D^2':>16s} {'ratio':>6s}")
for name, config in MODELS.items():
    n, rule = sizing.lm_params(config), 12 * config.num_layers * config.d_model ** 2
    print(f"{name:14s} {n:>16,} {rule:>16,} {rule / n:6.2f}")

# %% [markdown]
# The rule misses a third of GPT-2 small (its embeddings) but is within 7% of every model from 1.5 billion
# parameters up. The furthest, LLaMA-2 70B, departs from both of the rule's assumptions: with grouped-query
# attention its attention matrices hold $2D^2 + 2D^2/8$ instead of $4D^2$, and to make up for it its FFN is
# wider than $8D/3$ (28,672 = $3.5D$, so $10.5D^2$ instead of $8D^2$).
#
# ## FLOPs per token
#
# ### The maths
#
# A FLOP here is one floating-point addition or multiplication, so a multiply-add counts 2. Multiplying a
# $(T \times D_{in})$ matrix of activations by a $(D_{in} \times D_{out})$ weight matrix takes
# $T D_{in} D_{out}$ multiply-adds: **2 FLOPs per weight per token**. So the weights of a transformer cost
# $2 N_{mm}$ FLOPs per token in the forward pass, where $N_{mm}$ counts the parameters that *multiply*
# activations: the attention and FFN matrices and the output head ($VD$, also when tied). The embedding
# lookup is a gather, not a multiplication, and norms, biases and the rest are elementwise.
#
# Attention adds products that involve no weights at all. For a sequence of $T$ tokens, each query is
# compared with $T$ keys across all heads ($2 T H D_h = 2TD$ FLOPs for the scores $QK^\top$) and takes a
# weighted sum of $T$ values ($2TD$ again). Per token, with $L$ layers:
#
# $$
# C_{\text{forward}} \;=\; 2 N_{mm} \;+\; 4 L T D \quad \text{FLOPs per token.}
# $$
#
# This counts all $T \times T$ scores, although a causal mask discards the upper half; that is the
# convention of the PaLM paper's appendix B {cite:p}`chowdhery2023palm`, and what the unfused attention of
# chapter 5 actually computes. Against the layers' matrices ($2 \times 12LD^2$) the attention term is
# $T / 6D$, so it matters once the context is a few times wider than the model: it is 13% of the total for
# GPT-2 at $T = 1024$ and 14% for LLaMA-2 7B at $T = 4096$.

# %%
print(inspect.getsource(sizing.matmul_params))
print(inspect.getsource(sizing.forward_flops_per_token))

# %% [markdown]
# ### Measured by PyTorch's FLOP counter
#
# `torch.utils.flop_counter.FlopCounterMode` intercepts every operation a forward (or backward) pass runs
# and adds up the FLOPs of the matrix multiplications (`mm`, `bmm`, `addmm`), convolutions and the fused
# attention kernels it knows. First a small LLaMA-style model with grouped-query attention, run for real on
# the CPU with `fused=False`, so that attention goes through chapter 5's explicit matmuls. The counter
# reports the weights' `mm` and attention's `bmm` separately; we compare each with its term:

# %%
small = LMConfig(vocab_size=65, context_length=64, d_model=96, num_layers=2, num_heads=6, d_ff=256, num_kv_heads=2)
B, T = 4, 64
model = TransformerLM.from_config(small, fused=False)
token_ids = torch.randint(0, small.vocab_size, (B, T), generator=gen)  # (B, T)

forward_counter = FlopCounterMode(display=False)
with forward_counter:
    logits = model(token_ids)  # (B, T) -> (B, T, V)
backward_counter = FlopCounterMode(display=False)
with backward_counter:
    logits.sum().backward()

ops = {str(op).split(".")[-1]: n for op, n in forward_counter.get_flop_counts()["Global"].items()}
tokens = B * T
weights_term, attention_term = 2 * sizing.matmul_params(small), 4 * small.num_layers * T * small.d_model
print(f"mm  (the weights):            {ops['mm'] // tokens:>9,} per token;  2 N_mm = {weights_term:>9,}")
print(f"bmm (scores, weighted sum):   {ops['bmm'] // tokens:>9,} per token;  4 L T D = {attention_term:>8,}")
print(f"forward, total:               {forward_counter.get_total_flops() // tokens:>9,} per token;  formula = "
      f"{sizing.forward_flops_per_token(small, T):>9,}")
print(f"backward / forward:           {backward_counter.get_total_flops() / forward_counter.get_total_flops()}")

# %% [markdown]
# Exact agreement, and the backward pass costs **exactly twice** the forward. Every matmul $Y = XW$ needs two
# products in the backward pass, $\partial X = \partial Y\, W^\top$ for the layer below and
# $\partial W = X^\top \partial Y$ for the update, each as large as the forward product (attention's two
# `bmm`s likewise). So a training step costs three forward passes: $6 N_{mm} + 12 L T D$ per token.
#
# Two things to know about the counter. First, it counts only what it has formulas for: the softmax, the
# norms, SiLU or GELU, the residual additions and RoPE's rotations are not in its total, and not in our
# formula either. They cost a few operations per *element*, $O(HT)$ per token and layer for the softmax
# and $O(D + F)$ for the rest, against $O(TD)$ and $O(D^2)$ for the matmuls. A generous estimate, with the
# number of operations per element written out:

# %%
def elementwise_ops_per_token(c, T):
    """A rough upper estimate of the work FlopCounterMode and the formula leave out, per token."""
    per_layer = 5 * c.num_heads * T  # softmax: max, subtract, exp, sum, divide for each of H T scores
    per_layer += 2 * 6 * c.d_model  # two norms: mean (LayerNorm), square, sum, rsqrt, scale, gain per feature
    per_layer += 10 * c.d_ff  # GELU (erf) or SiLU, and SwiGLU's product: about 10 per hidden unit
    per_layer += 2 * c.d_model  # two residual additions
    return c.num_layers * per_layer


for name, seq_len in [("GPT-2 124M", 1024), ("LLaMA-2 7B", 4096)]:
    c = MODELS[name]
    extra = elementwise_ops_per_token(c, seq_len)
    print(f"{name}, T = {seq_len}: {extra / 1e6:.1f} M elementwise operations per token, "
          f"{extra / sizing.forward_flops_per_token(c, seq_len):.2%} of the matmuls' FLOPs")

# %% [markdown]
# Half a percent or less. Second, the counter is blind to kernels it does not know. On the CPU, PyTorch's fused
# `scaled_dot_product_attention` runs a kernel that this PyTorch version's counter has no formula for, so
# with `fused=True` (tinycore's default) the attention term silently disappears:

# %%
fused_counter = FlopCounterMode(display=False)
with fused_counter:
    TransformerLM.from_config(small)(token_ids)  # fused=True: F.scaled_dot_product_attention
print(f"fused=True on the CPU: {fused_counter.get_total_flops() // tokens:,} FLOPs per token counted "
      f"(the 2 N_mm term only: {fused_counter.get_total_flops() // tokens == 2 * sizing.matmul_params(small)})")

# %% [markdown]
# ### GPT-2 and LLaMA-2 7B, counted without computing
#
# The counter only needs shapes, so it works on the `meta` device too: a forward pass of a meta model
# computes nothing and takes a moment. (The token ids stay on the CPU, because the model checks their
# values; the result is a meta tensor.) Here is LLaMA-2 7B on a full 4096-token context, layer component
# by layer component, against the formula's terms:

# %%
def counted_flops_per_token(config, T):
    """FlopCounterMode on a meta-device forward of one sequence of T tokens: per module, per token."""
    meta_model = TransformerLM.from_config(config, device="meta", fused=False)
    counter = FlopCounterMode(display=False)
    with counter:
        out = meta_model(torch.zeros(1, T, dtype=torch.long))  # (1, T) -> (1, T, V) on meta
    assert out.device.type == "meta"
    return counter.get_flop_counts(), counter.get_total_flops() // T


config, T = MODELS["LLaMA-2 7B"], 4096
per_module, total = counted_flops_per_token(config, T)
D, L, V, kv_width = config.d_model, config.num_layers, config.vocab_size, config.d_model  # H_kv = H: width D
terms = {  # name suffix in the counter: the formula's FLOPs per token
    "q_proj": 2 * L * D * D, "k_proj": 2 * L * D * kv_width, "v_proj": 2 * L * D * kv_width,
    "output_proj": 2 * L * D * D, "w1": 2 * L * D * config.d_ff, "w3": 2 * L * D * config.d_ff,
    "w2": 2 * L * config.d_ff * D, "lm_head": 2 * V * D,
}
print(f"{'LLaMA-2 7B, T = 4096':28s} {'counted':>15s} {'formula':>15s}")
for suffix, expected in terms.items():
    got = sum(sum(ops.values()) for name, ops in per_module.items() if name.endswith("." + suffix)) // T
    print(f"{suffix:28s} {got:>15,} {expected:>15,}")
bmm = sum(n for op, n in per_module["Global"].items() if "bmm" in str(op)) // T
print(f"{'scores + weighted sum (bmm)':28s} {bmm:>15,} {4 * L * T * D:>15,}")
print(f"{'total':28s} {total:>15,} {sizing.forward_flops_per_token(config, T):>15,}")
print(f"GPT-2 124M, T = 1024: counted {counted_flops_per_token(MODELS['GPT-2 124M'], 1024)[1]:,}, "
      f"formula {sizing.forward_flops_per_token(MODELS['GPT-2 124M'], 1024):,}")

# %% [markdown]
# 15.4 GFLOPs per token for LLaMA-2 7B: about $2 \times 6.6$ billion for the weights and 2.1 billion for
# attention over 4096 tokens. The FFN's three matrices are two thirds of the weights' share.
#
# ### Other conventions
#
# Papers count slightly different things, and the numbers you meet differ accordingly:
#
# - **{cite:t}`kaplan2020scaling`**: $C_{\text{forward}} \approx 2N + 2 L\, n_{ctx}\, d_{attn}$
#   with $N$ the non-embedding parameters: no output head, and half our attention term (what a causal model
#   needs if it skips the masked half of the scores).
# - **PaLM {cite:p}`chowdhery2023palm`, appendix B**: $6N + 12 L H Q T$ per token for training, with
#   $Q$ the head width, so $HQ = D$: three times our forward count, with all the parameters as $N$. nanoGPT's
#   `estimate_mfu` uses this count.
# - **Chinchilla {cite:p}`hoffmann2022training`, appendix F**: also counts the embedding lookup as a
#   multiplication ($2VD$) and the softmax ($3HT$ per layer), and takes the backward pass as twice the
#   forward. (Below, with each model's own attention and FFN matrices.)
#
# Written as functions of an `LMConfig`, per token:

# %%
def kaplan_forward(c, T):
    non_embedding = sizing.lm_params(c) - c.vocab_size * c.d_model * (1 if c.tie_embeddings else 2) \
        - (c.context_length * c.d_model if c.positions == "learned" else 0)
    return 2 * non_embedding + 2 * c.num_layers * T * c.d_model


def palm_forward(c, T):  # PaLM's training count 6N + 12 L H Q T, divided by 3
    return (6 * sizing.lm_params(c) + 12 * c.num_layers * c.d_model * T) / 3


def chinchilla_forward(c, T):
    layers = c.num_layers * (sizing.attention_params(c.d_model, c.num_heads, c.num_kv_heads) * 2  # projections
                             + 4 * T * c.d_model + 3 * c.num_heads * T  # scores, weighted sum; softmax
                             + sizing.ffn_params(c.d_model, c.d_ff, c.ffn) * 2)  # dense block
    return 2 * c.vocab_size * c.d_model + layers + 2 * c.d_model * c.vocab_size  # embeddings, layers, logits


print(f"{'GFLOPs per token, forward':26s} {'Kaplan':>8s} {'PaLM':>8s} {'Chinchilla':>11s} {'ours':>8s}")
for name, T in [("GPT-2 124M", 1024), ("LLaMA-2 7B", 4096), ("LLaMA-2 70B", 4096)]:
    c = MODELS[name]
    print(f"{name + f', T = {T}':26s} {kaplan_forward(c, T) / 1e9:8.3f} {palm_forward(c, T) / 1e9:8.3f} "
          f"{chinchilla_forward(c, T) / 1e9:11.3f} {sizing.forward_flops_per_token(c, T) / 1e9:8.3f}")

# %% [markdown]
# For GPT-2 small the conventions disagree by almost a factor of two: Kaplan's count leaves out the output
# head (77 MFLOPs per token, as much as four of its layers) and half of attention, Chinchilla's adds the
# embedding lookup as if it were a second head. For the LLaMA-2 models, whose tables are a small part, they
# agree within about 10%, the rest being attention: Kaplan's half term, Chinchilla's softmax. When you
# compare a throughput or a compute budget with a paper's, check which convention it uses.
#
# ## Training compute: $C \approx 6ND$
#
# Training on $D_{\text{tok}}$ tokens costs three forward passes per token (you measured the factor above):
#
# $$
# C = 3 \, C_{\text{forward}} \, D_{\text{tok}} = 6 N_{mm} D_{\text{tok}} + 12 L T D\, D_{\text{tok}}
# \;\approx\; 6 N D_{\text{tok}},
# $$
#
# the rule of {cite:t}`kaplan2020scaling`. Two approximations hide in $6ND$: $N$ instead of
# $N_{mm}$ (they differ by the embedding table when untied, and the norms and biases), and attention left
# out. The GPT-3 paper used $6ND$ for its table of training costs, noting that attention is under 10% of
# the compute for its models. Here is the exact count next to the rule for a small run, the
# 0.8-million-parameter character model that nanoGPT's README suggests for training on a CPU, and for GPT-3 on its 300
# billion tokens and LLaMA-2 on 2 trillion:

# %%
nanogpt_cpu = gpt_config(65, 64, 128, 4, 4)  # nanoGPT's CPU recipe for Shakespeare characters: 4 layers, D = 128
RUNS = {  # name: (config, training tokens)
    "nanoGPT on a CPU": (nanogpt_cpu, 2000 * 12 * 64),  # 2000 steps of 12 sequences of 64 characters
    "GPT-3 175B": (MODELS["GPT-3 175B"], 300e9),
    "LLaMA-2 7B": (MODELS["LLaMA-2 7B"], 2e12),
    "LLaMA-2 13B": (MODELS["LLaMA-2 13B"], 2e12),
    "LLaMA-2 70B": (MODELS["LLaMA-2 70B"], 2e12),
}
A100_GPU_HOURS = {"LLaMA-2 7B": 184_320, "LLaMA-2 13B": 368_640, "LLaMA-2 70B": 1_720_320}  # LLaMA-2 paper, Table 2
A100_PEAK = 312e12  # FLOP/s, bfloat16 dense

print(f"{'run':16s} {'N':>8s} {'tokens':>8s} {'6ND':>9s} {'exact':>9s} {'exact/6ND':>9s} {'implied MFU':>12s}")
for name, (c, n_tokens) in RUNS.items():
    n = sizing.lm_params(c)
    rule, exact = 6 * n * n_tokens, sizing.training_flops(c, n_tokens)
    mfu = f"{exact / (A100_GPU_HOURS[name] * 3600 * A100_PEAK):.0%}" if name in A100_GPU_HOURS else "-"
    print(f"{name:16s} {n:8.2g} {n_tokens:8.2g} {rule:9.2e} {exact:9.2e} {exact / rule:9.2f} {mfu:>12s}")

# %% [markdown]
# The small run needs $8 \times 10^{12}$ FLOPs: under three minutes for a machine that sustains 50 GFLOP/s
# (you will measure yours below). The rule gives GPT-3's published $3.14 \times 10^{23}$ FLOPs; the exact
# count is 3% higher. For LLaMA-2 it is 7 to 14% higher, mostly for attention over 4096-token contexts. The
# last column divides the exact count by the A100 GPU-hours the LLaMA-2 paper reports and by the A100's peak
# of 312 TFLOP/s in bfloat16: Meta's training ran at 42 to 46% **model-FLOPs utilisation** (MFU), the
# fraction of the hardware's peak that went into the model's own arithmetic. That is a typical figure for
# large-scale training; the last section of this chapter measures the same quantity on your machine.
#
# ## Memory
#
# ### The KV cache
#
# During generation (chapter 12) every layer keeps the keys and values of all tokens so far: per token and
# sequence, $H_{kv}$ key heads and $H_{kv}$ value heads of width $D_h$ in each of the $L$ layers. For $B$
# sequences of $T$ tokens, with $b$ bytes per value:
#
# $$
# \text{KV cache} = 2 \, L \, H_{kv} \, D_h \, T \, B \, b \quad \text{bytes.}
# $$
#
# Checked against the cache a meta-device model allocates (`make_cache` preallocates $T$ positions in the
# model's dtype):

# %%
print(inspect.getsource(sizing.kv_cache_bytes))
for name, B, T, dtype in [("LLaMA-2 7B", 1, 4096, torch.float16), ("LLaMA-2 70B", 8, 4096, torch.bfloat16),
                          ("GPT-2 124M", 4, 1024, torch.float32)]:
    cache = TransformerLM.from_config(MODELS[name], device="meta", dtype=dtype).make_cache(B, max_len=T)
    formula = sizing.kv_cache_bytes(MODELS[name], T, B, bytes_per_value=torch.finfo(dtype).bits // 8)
    print(f"{name:12s} B={B} T={T} {str(dtype):15s} cache {cache.num_bytes() / 2**30:7.3f} GiB, "
          f"formula {formula / 2**30:7.3f} GiB, equal: {cache.num_bytes() == formula}")

# %% [markdown]
# The cache grows linearly with the context and the batch, and grouped-query attention divides it by
# $H / H_{kv}$ (chapter 6). The figure puts it next to the weights it serves, in float16, for one sequence:

# %%
contexts = [2 ** k for k in range(9, 18)]  # 512 .. 131072 tokens
CACHE_MODELS = {  # name: (config, colour, line style)
    "LLaMA-2 7B (H_kv = 32)": (MODELS["LLaMA-2 7B"], "C0", "-"),
    "7B with GQA, H_kv = 8 (hypothetical)": (replace(MODELS["LLaMA-2 7B"], num_kv_heads=8), "C0", "--"),
    "LLaMA-2 70B (H_kv = 8)": (MODELS["LLaMA-2 70B"], "C3", "-"),
    "70B without GQA, H_kv = 64 (hypothetical)": (replace(MODELS["LLaMA-2 70B"], num_kv_heads=None), "C3", "--"),
}
fig, ax = plt.subplots(figsize=(8, 4))
for name, (c, colour, style) in CACHE_MODELS.items():
    per_token = sizing.kv_cache_bytes(c, 1)  # bytes per token: float16, one sequence
    ax.plot(contexts, [t * per_token / 2**30 for t in contexts], style, color=colour,
            label=f"{name}: {per_token // 1024} KiB/token")
for name, colour in [("LLaMA-2 7B", "C0"), ("LLaMA-2 70B", "C3")]:
    weights_gib = 2 * sizing.lm_params(MODELS[name]) / 2**30  # float16
    ax.axhline(weights_gib, color=colour, lw=0.8, alpha=0.6)
    ax.text(560, weights_gib * 1.15, f"{name} weights (float16)", color=colour, fontsize=8)
ax.set(xscale="log", yscale="log", xlabel="tokens in the cache (one sequence)", ylabel="GiB in float16",
       title="KV cache against context length")
ax.set_xticks([512, 2048, 8192, 32768, 131072], ["512", "2k", "8k", "32k", "128k"])
ax.legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %%
for name in ("LLaMA-2 7B", "LLaMA-2 70B"):
    c = MODELS[name]
    print(f"{name}: the cache of one sequence outgrows the weights past "
          f"{2 * sizing.lm_params(c) / sizing.kv_cache_bytes(c, 1):,.0f} tokens")

# %% [markdown]
# LLaMA-2 7B's cache equals its own weights at about 26,000 tokens of context, and a batch of 8 sequences of
# 4096 tokens (32,768 tokens) already gets past them. LLaMA-2 70B, ten times larger, has a *smaller* cache
# per token (320 KiB against 512 KiB): 80 layers, but 8 key/value heads instead of 64. Without grouped-query
# attention its cache would be eight times larger.
#
# ### Training: 16 bytes per parameter, and activations
#
# Training in float32 with AdamW {cite:p}`loshchilov2019decoupled` keeps four numbers per parameter: the
# weight, its gradient, and Adam's two moving averages (the first and second moments). That is 16 bytes per
# parameter before a single activation is stored; mixed-precision training {cite:p}`micikevicius2018mixed`
# also comes to 16 (2 + 2 for half-precision weights and gradients, 4 for a float32 master copy, 8 for the
# moments), which is the figure in the ZeRO paper {cite:p}`rajbhandari2020zero`. Checked after one real
# AdamW step of tinycore's optimiser on a small model:

# %%
config = LMConfig(65, 64, 96, 2, 6, 256, num_kv_heads=2, bias=True)
model = TransformerLM.from_config(config)
optimizer = tinycore.make_optimizer(model, tinycore.TrainConfig())
x = torch.randint(0, 65, (4, 64), generator=gen)  # (B, T)
tinycore.next_token_loss(model, (x[:, :-1], x[:, 1:])).backward()
optimizer.step()
held = {
    "weights": sum(p.numel() * p.element_size() for p in model.parameters()),
    "gradients": sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()),
    "adamw_moments": sum(t.numel() * t.element_size() for state in optimizer.state.values()
                         for key, t in state.items() if key in ("exp_avg", "exp_avg_sq")),
}
print("held after one step:", held)
print("formula:            ", sizing.training_memory_bytes(config))
print(f"LLaMA-2 7B: {16 * sizing.lm_params(MODELS['LLaMA-2 7B']) / 2**30:.0f} GiB of weights, gradients and "
      f"moments; 70B: {16 * sizing.lm_params(MODELS['LLaMA-2 70B']) / 2**40:.2f} TiB")

# %% [markdown]
# 100 GiB for the 7B model does not fit on one 80 GB GPU even before the activations, which is why large
# models are trained with these states sharded across many GPUs.
#
# The **activations** come on top: everything the forward pass saves for the backward pass. PyTorch lets
# you watch them with `torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd saves;
# we add up the bytes of those that are not parameters, per token, for three sequence lengths, with and
# without the fused attention kernel:

# %%
def activation_bytes_per_token(config, B, T, fused):
    model = TransformerLM.from_config(config, fused=fused)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()  # one entry per storage: views share theirs
        return t

    x = torch.randint(0, config.vocab_size, (B, T + 1), generator=torch.Generator().manual_seed(1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tinycore.next_token_loss(model, (x[:, :-1], x[:, 1:]))
    return sum(saved.values()) / (B * T)


act_config = LMConfig(65, 256, 128, 2, 4, 344)
print(f"{'T':>5s} {'fused=False':>14s} {'fused=True':>14s}   (KiB saved per token, 2 layers, D = 128)")
for T in (64, 128, 256):
    unfused, fused = (activation_bytes_per_token(act_config, 4, T, f) / 1024 for f in (False, True))
    print(f"{T:5d} {unfused:14.1f} {fused:14.1f}")

# %% [markdown]
# With the fused kernel the activations are a nearly fixed amount per token (here about 26.5 KiB, some 26
# float32 numbers per feature and layer, the embeddings and logits included): the memory of training grows
# with the number of tokens in a batch, $B \times T$. Without it, attention stores its $T \times T$ weights
# for every head, and the memory per token grows with $T$. Avoiding that is half of what FlashAttention
# {cite:p}`dao2022flashattention` is for. For a detailed count of a GPT layer's activations, with dropout
# and in 16-bit precision, and how recomputing some of them in the backward pass saves memory, see
# {cite:t}`korthikanti2023reducing`.
#
# ## Model-FLOPs utilisation on your machine
#
# How close does *your* computer get to its peak when it trains a transformer? Two measurements:
#
# 1. **The peak.** The fastest thing a processor does is a large matrix multiplication. We time a
#    $2048 \times 2048$ float32 product ($2 \cdot 2048^3$ FLOPs) with `tinycore.best_time_ms` and call the
#    rate the machine's peak. (A vendor's peak is computed from the clock and the vector units and is
#    usually a little higher; against it, every MFU below would be a little lower.)
# 2. **A training step.** One step of a small `TransformerLM`, exactly what `tinycore.train` does per step
#    (forward, backward, gradient clipping, AdamW). Its *model FLOPs* are the formula's
#    $3 \times C_{\text{forward}}$ per token; divided by the time, that is the rate the model achieved.
#
# $$
# \mathrm{MFU} = \frac{\text{model FLOPs per step} \,/\, \text{seconds per step}}{\text{peak FLOP/s}}.
# $$
#
# The timings depend on your machine and on what else it is doing, so the outputs of the next cells are
# not checked when this book is tested.

# %% tags=["nbval-ignore-output"]
device = tinycore.get_device()


def synchronise():
    if device.type == "cuda":
        torch.cuda.synchronize()


n = 2048
a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
peak = 2 * n**3 / (tinycore.best_time_ms(lambda: (a @ b, synchronise()), repeats=5) / 1e3)  # FLOP/s
print(f"device {device}, {torch.get_num_threads()} threads: {n}x{n} float32 matmul at {peak / 1e9:,.0f} GFLOP/s")


def training_step_mfu(config, batch_size, seq_len):
    """Time one tinycore training step; return (ms per step, model FLOP/s, MFU against `peak`)."""
    model = TransformerLM.from_config(config).to(device)
    optimizer = tinycore.make_optimizer(model, tinycore.TrainConfig())
    x = torch.randint(0, config.vocab_size, (batch_size, seq_len + 1), generator=gen).to(device)  # (B, T + 1)

    def step():
        loss = tinycore.next_token_loss(model, (x[:, :-1], x[:, 1:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        synchronise()

    ms = tinycore.best_time_ms(step, repeats=3)
    model_flops = sizing.training_flops(config, batch_size * seq_len, seq_len)
    achieved = model_flops / (ms / 1e3)
    return ms, achieved, achieved / peak


ms, achieved, mfu = training_step_mfu(nanogpt_cpu, batch_size=12, seq_len=64)  # nanoGPT's CPU recipe, as above
print(f"nanoGPT's CPU recipe (D=128, L=4, B=12, T=64): {ms:.1f} ms per step, {achieved / 1e9:.1f} GFLOP/s, "
      f"MFU {mfu:.0%}")
print(f"its 2000 steps: {sizing.training_flops(nanogpt_cpu, 2000 * 12 * 64) / achieved:.0f} s at this rate")

# %% [markdown]
# What to expect: on the 2-core machine that builds this book, one thread multiplies the matrices at about
# 170 GFLOP/s, which is the chip's own limit (2 AVX-512 FMA units per core, each doing 16 float32
# multiply-adds per cycle, at 2.7 GHz: $2 \times 16 \times 2 \times 2.7 \times 10^9 = 173$ GFLOP/s); two
# threads reach about 200 GFLOP/s. A training step of nanoGPT's CPU recipe runs at roughly 35 to 55% of the
# peak, a rate at which its 2000 steps take two to three minutes. A laptop shows a similar fraction. A GPU
# shows a far higher peak and, on a model this small, a much *lower* fraction, because the matrices are too
# small to keep it busy. That is the general rule, which the next cell measures: the wider the matrices,
# the larger the share of the time spent in efficient matmuls rather than in elementwise work, Python and
# memory traffic.

# %% tags=["nbval-ignore-output"]
widths = [64, 128, 256, 512]
utilisation = []
for width in widths:
    config = LMConfig(65, 128, width, 2, max(1, width // 64), tinycore.swiglu_hidden_size(width, 8))
    ms, achieved, mfu = training_step_mfu(config, batch_size=8, seq_len=128)
    utilisation.append(mfu)
    print(f"D = {width:3d}: {ms:6.1f} ms per step, {achieved / 1e9:6.1f} GFLOP/s, MFU {mfu:.0%}")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(widths, [100 * u for u in utilisation], "o-")
ax.set(xscale="log", xlabel="d_model (2 layers, B = 8, T = 128)", ylabel="MFU (%)", ylim=(0, 100),
       title=f"Training-step MFU on {device} ({torch.get_num_threads()} threads)")
ax.set_xticks(widths, [str(w) for w in widths])
plt.tight_layout()
plt.show()

# %% [markdown]
# On the book's machine, with one thread, the utilisation climbs from about 25% at $D = 64$ to about 70% at
# $D = 512$. The gap to 100% is the work the formula does not count (softmax, norms, GELU and SiLU, AdamW's
# update of every parameter, the cross-entropy) plus matmuls too small or too oddly shaped to run at peak
# speed.
#
# ## Explore: size a model
#
# Everything in this chapter is a function of a handful of numbers. The figure shows, for a model of your
# choosing, where its parameters are (left) and how its forward FLOPs per token grow with the context
# (right: the weights' share is flat, attention's grows linearly), with the default being GPT-2 small. Below
# it, the KV cache of one sequence in float16, and the compute of a compute-optimal training run in the
# sense of Chinchilla {cite:p}`hoffmann2022training`, about 20 tokens per parameter, in days on one A100
# at 40% MFU.

# %%
ARCHITECTURES = {
    "GPT-2 style (LayerNorm, GELU 4D, learned positions, tied, biases)":
        lambda D, L, H, T, kv: gpt_config(50257, T, D, L, H, num_kv_heads=kv),
    "LLaMA style (RMSNorm, SwiGLU 8D/3, RoPE, untied)":
        lambda D, L, H, T, kv: LMConfig(32000, T, D, L, H, tinycore.swiglu_hidden_size(D, 256), num_kv_heads=kv),
}


def describe_size(d_model=768, num_layers=12, num_heads=12, context=1024,
                  architecture=list(ARCHITECTURES)[0], kv_heads="= num_heads"):
    kv = None if kv_heads == "= num_heads" else int(kv_heads)
    try:
        c = ARCHITECTURES[architecture](d_model, num_layers, num_heads, int(context), kv)
        counts = sizing.param_counts(c)
    except ValueError as err:
        print("ValueError:", err)
        return None
    n = sum(counts.values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    parts = [p for p in sizing.COMPONENTS if counts[p]]
    left.barh([labels[p] for p in parts], [counts[p] / 1e6 for p in parts], color=[colours[p] for p in parts])
    left.invert_yaxis()
    left.set(xlabel="parameters (millions)", title=f"{n / 1e6:,.1f} M parameters")
    ts = [2 ** k for k in range(7, 18)]  # 128 .. 131072 tokens, past the context too: what attention would cost
    weights = 2 * sizing.matmul_params(c) / 1e9
    right.stackplot(ts, [[weights] * len(ts), [4 * c.num_layers * t * c.d_model / 1e9 for t in ts]],
                    labels=["weights: 2 N_mm", "attention: 4 L T D"], colors=["C2", "C1"], alpha=0.8)
    right.axvline(c.context_length, color="k", lw=1, ls="--", label="context_length")
    right.set(xscale="log", xlabel="tokens in the sequence", ylabel="GFLOPs per token (forward)",
              title=f"{sizing.forward_flops_per_token(c) / 1e9:.3g} GFLOPs per token at T = {c.context_length}")
    right.set_xticks([128, 1024, 8192, 65536], ["128", "1k", "8k", "64k"])
    right.minorticks_off()
    right.legend(fontsize=8, loc="upper left")
    plt.tight_layout()
    plt.show()
    tokens = 20 * n
    compute = sizing.training_flops(c, tokens)
    print(f"KV cache of one {c.context_length}-token sequence (float16): "
          f"{sizing.kv_cache_bytes(c) / 2**20:,.1f} MiB ({sizing.kv_cache_bytes(c, 1) / 1024:,.1f} KiB per token)")
    print(f"training on 20 tokens per parameter ({tokens:.2g} tokens): {compute:.2g} FLOPs, "
          f"{compute / (0.4 * A100_PEAK) / 86400:,.3g} days on one A100 at 40% MFU")
    return c


_ = describe_size()

# %% [markdown]
# Move the sliders. Doubling `d_model` roughly quadruples the parameters of the layers but only doubles the
# embeddings; at small widths the embeddings dominate. The context length changes the parameters only
# through the learned positions, but the FLOPs per token through attention, and the KV cache in proportion.
# The number of heads changes nothing (as chapter 6 showed), except through the key/value heads: try 8 or 1.

# %% tags=["nbval-ignore-output"]
_ = interact(
    describe_size,
    d_model=IntSlider(value=768, min=64, max=8192, step=64, description="d_model"),
    num_layers=IntSlider(value=12, min=1, max=96, description="layers"),
    num_heads=IntSlider(value=12, min=1, max=128, description="heads"),
    context=FloatLogSlider(value=1024, base=2, min=7, max=17, step=1, description="context"),
    architecture=Dropdown(options=list(ARCHITECTURES), value=list(ARCHITECTURES)[0], description="style"),
    kv_heads=Dropdown(options=["= num_heads", "8", "4", "1"], value="= num_heads", description="kv heads"),
)

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} Parameters of an attention layer
# :label: ex-sizing-attention-params
# ```
# Write `attention_params(d_model, num_heads, num_kv_heads, bias)`: the number of parameters of one
# `tinycore.MultiHeadSelfAttention(d_model, num_heads, num_kv_heads=num_kv_heads, bias=bias)`, computed from
# the four numbers alone (no modules). Return an `int`.
#
# - The checker compares your count with the formula and with `sum(p.numel())` of the module built on the
#   meta device, for multi-head, grouped-query and multi-query layers (`num_kv_heads` = `num_heads`, a
#   divisor, or 1), with and without biases, up to LLaMA-2 70B's layer (`d_model=8192`, 64 heads, 8 key/value
#   heads).
#
# Hint: list the four projections with their `(d_out, d_in)` shapes. Which of them shrink when the keys and
# values have fewer heads? Hint: a bias has one number per *output* feature.

# %%
def attention_params(d_model, num_heads, num_kv_heads, bias):
    raise NotImplementedError("Exercise: implement attention_params")


# %% tags=["raises-exception"]
checks.attention_params(attention_params)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-sizing-attention-params
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def attention_params(d_model, num_heads, num_kv_heads, bias):
    kv_width = num_kv_heads * (d_model // num_heads)  # Hkv heads of width Dh for the keys and for the values
    shapes = [(d_model, d_model), (kv_width, d_model), (kv_width, d_model), (d_model, d_model)]  # q, k, v, output
    return sum(d_out * d_in + (d_out if bias else 0) for d_out, d_in in shapes)


checks.attention_params(attention_params)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Parameters of a whole model
# :label: ex-sizing-lm-params
# ```
# Write `lm_params(config)`: the number of parameters of `TransformerLM.from_config(config)` for an
# `LMConfig` (fields `vocab_size, context_length, d_model, num_layers, num_heads, d_ff, num_kv_heads`
# (None means `num_heads`), `norm` ("rmsnorm" or "layernorm"), `ffn` ("swiglu" or "gelu"), `positions`
# ("rope" or "learned"), `tie_embeddings`, `bias`), counting a tied matrix once. Return an `int`.
#
# - The checker uses small configurations that switch every option, plus GPT-2 124M and LLaMA-2 7B, and
#   compares with the formula and with the model built on the meta device.
#
# Hint: go component by component as in the table above; you may call your `attention_params`. Hint: `bias`
# applies to the `Linear` layers of attention and the FFN; LayerNorm always has its own bias, RMSNorm never.

# %%
def lm_params(config):
    raise NotImplementedError("Exercise: implement lm_params")


# %% tags=["raises-exception"]
checks.lm_params(lm_params)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-sizing-lm-params
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def lm_params(config):
    c = config
    D, L, V = c.d_model, c.num_layers, c.vocab_size
    kv = c.num_heads if c.num_kv_heads is None else c.num_kv_heads
    ffn_shapes = [(c.d_ff, D), (D, c.d_ff)] + ([(c.d_ff, D)] if c.ffn == "swiglu" else [])  # w1, w2 (, w3)
    ffn = sum(d_out * d_in + (d_out if c.bias else 0) for d_out, d_in in ffn_shapes)
    norm = 2 * D if c.norm == "layernorm" else D  # LayerNorm: gain and bias; RMSNorm: gain
    total = V * D  # token embeddings
    total += c.context_length * D if c.positions == "learned" else 0  # learned positions
    total += L * (attention_params(D, c.num_heads, kv, c.bias) + ffn + 2 * norm)  # the layers
    total += norm  # ln_final
    total += 0 if c.tie_embeddings else V * D  # the output head, unless it is the embedding matrix
    return total


checks.lm_params(lm_params)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} The KV cache
# :label: ex-sizing-kv-cache
# ```
# Write `kv_cache_bytes(config, seq_len, batch_size, bytes_per_value)`: the bytes of the KV cache of
# `TransformerLM.from_config(config)` holding `seq_len` tokens of `batch_size` sequences, stored with
# `bytes_per_value` bytes per number (2 for float16). Return an `int`.
#
# - The checker compares with the formula and with `model.make_cache(batch_size, max_len=seq_len).num_bytes()`
#   of a meta-device model in float16, float32 or float64, on small models with multi-head, grouped-query
#   and multi-query attention, LLaMA-2 7B and 70B.
#
# Hint: what does one layer store for one token of one sequence? Hint: `num_kv_heads` may be None.

# %%
def kv_cache_bytes(config, seq_len, batch_size, bytes_per_value):
    raise NotImplementedError("Exercise: implement kv_cache_bytes")


# %% tags=["raises-exception"]
checks.kv_cache_bytes(kv_cache_bytes)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-sizing-kv-cache
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def kv_cache_bytes(config, seq_len, batch_size, bytes_per_value):
    kv_heads = config.num_heads if config.num_kv_heads is None else config.num_kv_heads
    d_head = config.d_model // config.num_heads
    values_per_token = config.num_layers * 2 * kv_heads * d_head  # a key and a value per kv head, every layer
    return values_per_token * seq_len * batch_size * bytes_per_value


checks.kv_cache_bytes(kv_cache_bytes)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Forward FLOPs per token
# :label: ex-sizing-flops
# ```
# Write `flops_per_token(config, seq_len)`: the forward FLOPs per token of `TransformerLM.from_config(config)`
# on sequences of `seq_len` tokens, in this chapter's convention: 2 FLOPs per weight of every matrix
# multiplication (the attention and FFN matrices and the output head, tied or not; no embedding lookup,
# norms or biases), plus $4TD$ per layer for attention's scores and weighted sum, with $T$ = `seq_len`.
# Return an `int`.
#
# - The checker compares with the formula and with `FlopCounterMode`'s count of a forward pass of the model
#   built on the meta device (`fused=False`), on small models of every kind, GPT-2 124M at 1024 tokens and
#   LLaMA-2 7B at 256.
#
# Hint: count the matrices' weights first ($N_{mm}$); the attention term does not involve any weights.

# %%
def flops_per_token(config, seq_len):
    raise NotImplementedError("Exercise: implement flops_per_token")


# %% tags=["raises-exception"]
checks.flops_per_token(flops_per_token)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-sizing-flops
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def flops_per_token(config, seq_len):
    c = config
    kv = c.num_heads if c.num_kv_heads is None else c.num_kv_heads
    attention = attention_params(c.d_model, c.num_heads, kv, bias=False)  # the four projection matrices
    ffn = (3 if c.ffn == "swiglu" else 2) * c.d_model * c.d_ff  # w1, w2 (and w3)
    matmul_weights = c.num_layers * (attention + ffn) + c.vocab_size * c.d_model  # + the output head
    return 2 * matmul_weights + c.num_layers * 4 * seq_len * c.d_model


checks.flops_per_token(flops_per_token)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - Parameters, per layer: attention $2D^2 + 2DH_{kv}D_h$ (plus $2D + 2H_{kv}D_h$ biases), FFN $2DF$ (GELU) or
#   $3DF$ (SwiGLU) (plus biases), two norms of $D$ (RMSNorm) or $2D$ (LayerNorm); then $VD$ token embeddings,
#   $T_{\max}D$ learned positions, a final norm and a $VD$ output head unless tied. GPT-2 124M has
#   124,439,808 and LLaMA-2 7B 6,738,415,616, equal to `sum(p.numel())` of the models built on the `meta`
#   device, component by component. $12LD^2$ is a good rule from about a billion parameters up.
# - `model.parameters()` counts a tied matrix once, `model.state_dict()` twice; "non-embedding" counts leave
#   out tables. Say which count you mean.
# - A forward pass costs $2N_{mm} + 4LTD$ FLOPs per token: 2 per matmul weight (the output head included,
#   the embedding lookup not) plus attention's scores and weighted sum. `FlopCounterMode` agrees exactly,
#   on a real small model and on meta-device GPT-2 and LLaMA-2 7B (15.4 GFLOPs per token at 4096 tokens); on
#   the CPU it cannot see the fused attention kernel. Softmax, norms and activations are not matmuls and
#   are left out, as are the differences between the Kaplan, PaLM and Chinchilla conventions.
# - The backward pass costs exactly two forward passes, so training costs $6N_{mm} + 12LTD$ per token,
#   about $6ND$ in all: $3.14 \times 10^{23}$ FLOPs for GPT-3, about $9 \times 10^{22}$ for LLaMA-2 7B on 2
#   trillion tokens, which its reported A100 hours turn into roughly 45% MFU.
# - The KV cache holds $2LH_{kv}D_h$ values per token and sequence: 512 KiB for LLaMA-2 7B in float16, 320
#   KiB for 70B with grouped-query attention. Training with AdamW needs 16 bytes per parameter plus
#   activations that grow with $B \times T$ (and with $T^2$ without a fused attention kernel).
# - MFU is model FLOPs per second over peak FLOPs per second. Measure both on your own machine: wide
#   matrices get close to the peak, small models do not.
#
# ## References
#
# - Parameter and compute counts, $C \approx 6ND$ and non-embedding parameters: {cite:t}`kaplan2020scaling`.
# - Chinchilla's FLOP count (appendix F) and compute-optimal training on about 20 tokens per parameter:
#   {cite:t}`hoffmann2022training`.
# - Model-FLOPs utilisation and the $6N + 12LHQT$ count (appendix B): {cite:t}`chowdhery2023palm`.
# - The configurations: GPT-2 {cite:p}`radford2019language`, LLaMA-2 and its GPU hours
#   {cite:p}`touvron2023llama2`; GPT-3's 175 billion parameters, 300 billion tokens and
#   $3.14 \times 10^{23}$ FLOPs: {cite:t}`brown2020language`.
# - Grouped-query attention {cite:p}`ainslie2023gqa` and multi-query attention {cite:p}`shazeer2019fast`.
# - AdamW {cite:p}`loshchilov2019decoupled`; mixed precision {cite:p}`micikevicius2018mixed`; the 16 bytes per
#   parameter of mixed-precision Adam and sharding them: {cite:t}`rajbhandari2020zero`.
# - Activation memory and selective recomputation: {cite:t}`korthikanti2023reducing`.
# - FlashAttention, which avoids storing the attention weights: {cite:t}`dao2022flashattention`.
# - nanoGPT's `estimate_mfu` and its CPU recipe: {cite:t}`karpathy2022nanogpt`.

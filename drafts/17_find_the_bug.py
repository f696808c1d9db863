# %% [markdown]
# # Capstone: find the bug
#
# A transformer with a bug rarely crashes. It trains, its loss goes down, it writes something that looks
# like text, and the bug sits there until somebody compares it with something they trust. Every bug in
# this chapter has shipped in real code, and every one of them survives the question "does the loss go
# down?". What catches them is the set of habits this course has used in every chapter: shape contracts,
# equivalence with a trusted oracle on copied weights, property tests, and a few numbers you should know
# by heart.
#
# **What you will learn**
#
# - the debugging toolkit, made explicit: shape contracts, oracle tests with copied weights, property tests
#   (causality, RoPE's relative property, cache == full forward), the loss at initialisation ($\ln V$), the
#   "too good to be true" loss, and the influence matrix that shows which input moves which output;
# - six broken models taken from real bugs: scores divided by $\sqrt{D}$ instead of $\sqrt{D_h}$, a LayerNorm over
#   the wrong axes, a causal mask off by one, RoPE weights converted for the wrong layout, targets that were
#   never shifted, and a KV cache that forgets where it is; for each you will see that it *still trains*,
#   and which test catches it;
# - that no single test catches everything: a property test can pass on a model that an oracle test
#   rejects, and the other way round;
# - to write the tests yourself: three exercises whose checkers run *your test* against a zoo of correct and
#   broken models, subtle ones included.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import copy
import inspect
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from ipywidgets import Dropdown, interact
from torch import nn

import tinycore
from tinycore import (
    CharTokenizer, MultiHeadSelfAttention, RotaryEmbedding, TrainConfig, TransformerLM, check_shape, get_batch,
    load_tiny_shakespeare, next_token_loss, set_seed, train, train_val_split,
)
from tinycore import bugs, checks
from tinycore.plotting import use_style

gen = set_seed(0)
use_style()

# %% [markdown]
# Every experiment below uses the same small character-level language model on Tiny Shakespeare: 2 blocks,
# $D = 32$, $H = 4$ heads of $D_h = 8$, LayerNorm, RoPE, a context of 32 characters, trained for 100 steps of
# 16 windows with `tinycore.train`. That takes a couple of seconds on a CPU, and is enough for every bug to
# show its symptom.

# %%
text = load_tiny_shakespeare()
tokenizer = CharTokenizer(text)
ids = tokenizer.encode(text)  # (N,) long
train_ids, val_ids = train_val_split(ids)
V, CONTEXT, BATCH, STEPS = tokenizer.vocab_size, 32, 16, 100


def make_lm(seed=0):
    """The chapter's model; the same seed gives the same initial weights."""
    torch.manual_seed(seed)
    return TransformerLM(V, CONTEXT, d_model=32, num_layers=2, num_heads=4, d_ff=64, norm="layernorm")


def batches(data):
    return lambda generator: get_batch(data, BATCH, CONTEXT, generator=generator, device="cpu")  # (B, T) x and y


def fit(model, train_batch=batches(train_ids)):
    config = TrainConfig(steps=STEPS, lr=3e-3, warmup_steps=0, eval_every=50, eval_batches=4, seed=0)
    return train(model, next_token_loss, train_batch, config, "cpu", val_batch=batches(val_ids))


histories = {"tinycore": fit(good := make_lm())}
print(f"vocabulary {V}; tinycore's model after {STEPS} steps: train loss {histories['tinycore'].train_loss[-1]:.2f}, "
      f"validation loss {histories['tinycore'].val_loss[-1]:.2f} nats per character")

# %% [markdown]
# ## The debugging toolkit
#
# These are the habits of the whole course, with the bug each one is good at catching:
#
# | habit | the question it asks | catches |
# |---|---|---|
# | shape contracts (`check_shape`) | is every tensor the shape I think? | swapped axes, a missing head split |
# | oracle test, copied weights | does my module compute what PyTorch's (or the original checkpoint's) computes? | wrong scale, wrong layout, wrong axis |
# | causality property | can a later token change an earlier position's output? | mask off by one, leaks through a norm |
# | RoPE relative property | do the attention scores depend only on the offset $m - n$? | q and k rotated differently |
# | cache == full forward | does cached decoding reproduce the uncached logits? | cache and position bookkeeping |
# | loss at initialisation | is the first loss about $\ln V$? | bad initialisation, wrong loss, wrong targets |
# | "too good to be true" | is the loss below what the data allows? | leaks of the answer into the input |
# | overfit one batch, gradient norms | can the model memorise 16 windows? are the gradients sane per layer? | dead wiring, instability (chapter 9) |
#
# One tool deserves a picture, because it makes the causality property visible. The **influence matrix**
# of a language model on a sequence of $T$ tokens is the $T \times T$ table
#
# $$
# I_{ij} = \max_v \big|\, \text{logits}_{i,v}(x) - \text{logits}_{i,v}(x^{(j)}) \big|,
# $$
#
# where $x^{(j)}$ is $x$ with the token at position $j$ changed. A causal model has $I_{ij} = 0$ for every
# $j > i$: the output at position $i$ may depend only on the tokens at positions $0..i$. So the matrix must be
# lower-triangular, and anything above the diagonal is a leak.

# %%
@torch.no_grad()
def influence(model_fn, token_ids):
    """(T, T): entry [i, j] = the largest change of the logits at position i when the token at j changes."""
    base = model_fn(token_ids)  # (B, T, V)
    T = token_ids.shape[1]
    out = torch.zeros(T, T)
    for j in range(T):
        changed = token_ids.clone()
        changed[:, j] = (changed[:, j] + 1) % V  # a different token at position j only
        out[:, j] = (model_fn(changed) - base).abs().amax(dim=(0, 2))  # (B, T, V) -> (T,)
    return out


def leak(matrix):
    """The largest influence of a later token on an earlier position (0 for a causal model)."""
    return matrix.triu(diagonal=1).max().item()


probe = tokenizer.encode("First Citizen:\nBe")[None]  # (16,) -> (1, 16)
broken_mask = bugs.swap_in(copy.deepcopy(good), "attn", bugs.OffByOneMaskAttention)  # case 3 below, previewed
maps = {"tinycore's model (trained)": influence(good, probe), "a mask off by one": influence(broken_mask, probe)}

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
for ax, (name, matrix) in zip(axes, maps.items()):
    image = ax.imshow(torch.log10(matrix + 1e-8), cmap="viridis", vmin=-8, vmax=1)
    ax.set(title=name, xlabel="position j whose token changed", ylabel="position i of the logits")
fig.colorbar(image, ax=axes, label="log10 of the largest logit change")
plt.show()
for name, matrix in maps.items():
    print(f"{name:28s}: causal (no influence above the diagonal, to 1e-6): {leak(matrix) < 1e-6}")

# %% [markdown]
# Left, the trained tinycore model: everything above the diagonal is exactly zero (dark), so it is causal.
# Right, the same weights in a model whose causal mask lets position $i$ see position $i + 1$: a bright line
# just above the diagonal. Keep this picture in mind; it will come back.
#
# ## Case 1: dividing by $\sqrt{D}$ instead of $\sqrt{D_h}$
#
# **The story.** Attention divides its scores by $\sqrt{d_k}$ {cite:p}`vaswani2017attention`, and in a
# multi-head layer $d_k$ is the width of one head, $D_h = D / H$. Dividing by the square root of the model
# width $D$ instead is a mistake that keeps turning up in from-scratch implementations, tutorials included. It
# survives review because the two agree for a single head, and because nothing crashes: the scores are just
# $\sqrt{H}$ times too small, so every head's attention is flatter than it should be.
#
# **The broken model.** One line differs from tinycore's attention:

# %%
print(inspect.getsource(bugs.SqrtDModelAttention.weights))

# %% [markdown]
# **The symptom.** It trains: after 100 steps its loss is where tinycore's is. What changes is how sharp the
# attention is. With the same weights, the entropy of each query's attention distribution (in nats; $\ln T$
# for a uniform one) is higher for the broken model:

# %%
def attention_entropy(weights):
    """Mean entropy (nats) of the attention rows. weights (B, H, T, T) -> ()"""
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean().item()


histories["sqrt(D) scale"] = fit(bugs.swap_in(make_lm(), "attn", bugs.SqrtDModelAttention))

x = good.token_embeddings(probe)  # (1, T, D): a realistic input for the first block
block = good.layers[0]
right = block.attn.attention_weights(block.ln1(x))  # (1, H, T, T)
wrong_attn = bugs.swap_in(copy.deepcopy(good), "attn", bugs.SqrtDModelAttention).layers[0].attn
wrong = wrong_attn.attention_weights(block.ln1(x))  # (1, H, T, T), the same weights
print(f"validation loss after {STEPS} steps: tinycore {histories['tinycore'].val_loss[-1]:.2f}, "
      f"sqrt(D) {histories['sqrt(D) scale'].val_loss[-1]:.2f}")
print(f"attention entropy with the same weights: 1/sqrt(Dh) {attention_entropy(right):.2f} nats, "
      f"1/sqrt(D) {attention_entropy(wrong):.2f} nats (uniform over 16 keys: at most {math.log(16):.2f})")

# %% [markdown]
# **The test that catches it.** An oracle test: copy the weights into `torch.nn.MultiheadAttention`, which
# PyTorch has tested for years, and compare the outputs. `nn.MultiheadAttention` keeps q, k and v in one
# `in_proj_weight`, and its boolean mask means True = *may not* attend, the opposite of ours (chapter 6).

# %%
@torch.no_grad()
def matches_pytorch(attn, T=7):
    """True iff attn (causal self-attention) equals nn.MultiheadAttention with the same weights."""
    D, H = attn.d_model, attn.num_heads
    oracle = nn.MultiheadAttention(D, H, bias=False, batch_first=True)
    oracle.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))  # (3D, D)
    oracle.out_proj.weight.copy_(attn.output_proj.weight)
    x = torch.randn(3, T, D, generator=torch.Generator().manual_seed(0))  # (B, T, D), T != D
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # True = may NOT attend (PyTorch's convention)
    want, _ = oracle(x, x, x, attn_mask=future, need_weights=False)  # (B, T, D)
    return torch.allclose(attn(x), want, atol=1e-5)


def fresh(cls, d_model=32, num_heads=4):
    torch.manual_seed(1)
    return cls(d_model, num_heads, causal=True)


ok_good, ok_broken = matches_pytorch(fresh(MultiHeadSelfAttention)), matches_pytorch(fresh(bugs.SqrtDModelAttention))
print("oracle test: broken FAILS:", not ok_broken, "| tinycore passes:", ok_good)
print("with a single head (D = Dh) the broken one passes too:", matches_pytorch(fresh(bugs.SqrtDModelAttention, 32, 1)))

# %% [markdown]
# The last line is the lesson inside the lesson: **an oracle test only sees the configurations you give it.**
# With one head the bug does not exist, so a test with $H = 1$ passes it. Test with several heads, $T \ne D$,
# and sizes that differ from each other, so that a swapped or wrong dimension cannot hide.
#
# **The fix.** Divide by `math.sqrt(self.d_head)`, as tinycore does (or let `F.scaled_dot_product_attention`
# do the scaling: it uses the last dimension of q, which after the head split is $D_h$).
#
# ## Case 2: LayerNorm over the wrong axes
#
# **The story.** `torch.nn.LayerNorm(normalized_shape)` normalises over the *last* `len(normalized_shape)`
# dimensions. In vision code normalising over several axes is a usual choice (e.g. `LayerNorm([C, H, W])`), so
# writing `nn.LayerNorm((T, D))` for a sequence, or `x.mean(dim=(1, 2))` by hand, looks natural. LayerNorm
# is meant to normalise each token by its own features {cite:p}`ba2016layer`; this one mixes the statistics
# of the whole sequence, so every position sees every other position, the future included, through the mean
# and the variance.
#
# **The broken model.**

# %%
print(inspect.getsource(bugs.SequenceLayerNorm.forward))

# %% [markdown]
# **The symptom.** It trains exactly as well as the real thing: the future reaches each position only through
# two numbers per sequence, its mean and its variance, which is not enough to cheat with in 100 steps.

# %%
histories["LayerNorm over (T, D)"] = fit(bugs.swap_in(make_lm(), "norm", bugs.SequenceLayerNorm))
print(f"validation loss after {STEPS} steps: tinycore {histories['tinycore'].val_loss[-1]:.2f}, "
      f"LayerNorm over (T, D) {histories['LayerNorm over (T, D)'].val_loss[-1]:.2f}")

# %% [markdown]
# **The test that catches it.** Two, in fact. A *per-token* test of the norm alone: one token's output must not
# change when the *other* tokens change. And the causality test of the whole model, from the influence matrix.

# %%
@torch.no_grad()
def per_token(norm, T=6, D=32):
    """True iff the output at (0, 0) ignores every other token of the sequence."""
    x = torch.randn(1, T, D, generator=torch.Generator().manual_seed(0))  # (1, T, D)
    other = x.clone()
    other[:, 1:] = torch.randn(1, T - 1, D, generator=torch.Generator().manual_seed(1))  # new tokens 1..T-1
    return torch.allclose(norm(x)[:, 0], norm(other)[:, 0], atol=1e-6)


seq_ln = bugs.swap_in(copy.deepcopy(good), "norm", bugs.SequenceLayerNorm)
print("per-token test: broken FAILS:", not per_token(seq_ln.ln_final), "| tinycore passes:", per_token(good.ln_final))
seq_ln_influence = influence(seq_ln, probe)  # (T, T)
print("causality test: broken FAILS:", leak(seq_ln_influence) >= 1e-6,
      "| tinycore passes:", leak(maps["tinycore's model (trained)"]) < 1e-6)
print(f"the largest change of an earlier logit when a later token changes: {leak(seq_ln_influence):.1f}")

# %% [markdown]
# A change of 0.4 in a logit is not subtle, yet the loss did not improve: a leak does not have to help the
# model to be a bug. During training every position was normalised with statistics that included the future;
# during generation the future is not there, so the model you sample from computes different numbers from the
# model you trained. Leaks can also be faint (exercise {ref}`ex-debug-causality-test` has one of a part in a
# thousand), which is why a causality test compares with a tight tolerance rather than `atol=1e-2`.
#
# **The fix.** Normalise over the last dimension only: `nn.LayerNorm(D)`, or `dim=-1` by hand (chapter 2).
# BatchNorm in a causal language model has the same disease across the batch: a token's output then depends
# on the other sequences, and at generation time there is no batch to average over.
#
# ## Case 3: a causal mask off by one
#
# **The story.** Two mask conventions live side by side in PyTorch: in `F.scaled_dot_product_attention` a
# boolean True means *may attend*, in `nn.MultiheadAttention` it means *may not*. The causal mask is
# `tril(diagonal=0)` in the first and `triu(diagonal=1)` in the second, and converting one into the other by
# hand is where the off-by-one creeps in: `tril(diagonal=1)` lets position $i$ see position $i + 1$, which is
# exactly the token it is asked to predict.
#
# **The broken model.**

# %%
print(inspect.getsource(bugs.OffByOneMaskAttention.full_mask))

# %% [markdown]
# **The symptom.** The loss falls much *faster*, and far below anything a character model of this size can
# honestly reach: a bigram model scores 2.48 nats (chapter 1), and tinycore's model is near that after 100
# steps. The broken model reads the answer from the next position. At generation time that position does not
# exist yet, so its text is much worse than its loss promises.

# %%
off_by_one = bugs.swap_in(make_lm(), "attn", bugs.OffByOneMaskAttention)
histories["mask off by one"] = fit(off_by_one)
print(f"{'':18s}{'train loss':>12s}{'val loss':>10s}")
for name in ("tinycore", "mask off by one"):
    print(f"{name:18s}{histories[name].train_loss[-1]:12.2f}{histories[name].val_loss[-1]:10.2f}")

prompt = tokenizer.encode("ROMEO:\n")[None]  # (7,) -> (1, 7)


def write(model, use_cache=True):
    """24 sampled characters after the prompt, the same random numbers every time. -> (1, 31)"""
    return tinycore.generate(model, prompt, 24, temperature=0.8, generator=torch.Generator().manual_seed(0),
                             use_cache=use_cache)


for name, model in (("tinycore", good), ("mask off by one", off_by_one)):
    print(f"{name:16s} writes: {tokenizer.decode(write(model)[0].tolist())!r}")

# %% [markdown]
# Note that the *validation* loss is low too: it is computed with the same leaky forward pass, so it leaks
# just as much. A validation set protects you from overfitting, not from a model that reads the answer.
#
# **The tests that catch it.** The causality property (the influence matrix you saw at the top), and the
# "too good to be true" check: a training loss far below the bigram floor after a hundred steps of a tiny model
# is a leak until proven otherwise.

# %%
BIGRAM_FLOOR = 2.48  # chapter 1: the best loss from the previous character alone, on this split


def too_good(history, margin=0.3):
    """A tiny model 100 steps in should not beat the bigram floor by much."""
    return history.train_loss[-1] < BIGRAM_FLOOR - margin


print("causality test: broken FAILS:", leak(influence(off_by_one, probe)) >= 1e-6,
      "| tinycore passes:", leak(influence(good, probe)) < 1e-6)
print("too-good-to-be-true check: broken FAILS:", too_good(histories["mask off by one"]),
      "| tinycore passes:", not too_good(histories["tinycore"]))

# %% [markdown]
# **The fix.** `tril(diagonal=0)` for a True-means-attend mask (tinycore's `causal_mask`), and a causality
# test in your test suite so that it stays fixed.
#
# ## Case 4: RoPE weights converted for the wrong layout
#
# **The story.** RoPE rotates pairs of features {cite:p}`su2021roformer`. The RoFormer paper and Meta's LLaMA
# code pair neighbours, $(x_{2i}, x_{2i+1})$ (tinycore's layout); many other implementations pair the two
# halves, $(x_i, x_{i + D_h/2})$ ("rotate half"). Chapter 8 showed the two are equal up to a permutation of
# each head's features, which must be applied to the rows of `q_proj` and `k_proj` when weights move from one
# layout to the other; the scripts that convert LLaMA checkpoints between the two kinds of code do exactly
# that. Forget it and the model loads without a single error, and talks nonsense.
#
# Here the "checkpoint" is an attention layer written for the half-split layout; its attention weights are
# the ground truth:

# %%
D, H = 32, 4
Dh = D // H
torch.manual_seed(2)
checkpoint = {name: torch.randn(D, D) / math.sqrt(D) for name in ("q", "k")}  # (D, D) each, rows grouped by head


def rotate_half_rope(x, positions, theta=10000.0):
    """The checkpoint's RoPE: pairs (x[i], x[i + Dh/2]). x (..., T, Dh), positions (T,) -> (..., T, Dh)"""
    half = x.shape[-1] // 2
    angles = positions[:, None].float() * theta ** (-torch.arange(half).float() * 2 / x.shape[-1])  # (T, Dh/2)
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (T, Dh)
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def checkpoint_attention(x, positions):
    """The original model's causal attention weights. x (B, T, D) -> (B, H, T, T)"""
    B, T, _ = x.shape
    q = rotate_half_rope((x @ checkpoint["q"].T).view(B, T, H, Dh).transpose(1, 2), positions)  # (B, H, T, Dh)
    k = rotate_half_rope((x @ checkpoint["k"].T).view(B, T, H, Dh).transpose(1, 2), positions)  # (B, H, T, Dh)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(Dh)).masked_fill(~tinycore.causal_mask(T), float("-inf"))
    return scores.softmax(dim=-1)  # (B, H, T, T)


def load_into_tinycore(permute):
    """tinycore's attention (interleaved RoPE) with the checkpoint's q and k weights."""
    attn = MultiHeadSelfAttention(D, H, causal=True, rope=RotaryEmbedding(10000.0, Dh, 64))
    inverse = torch.argsort(tinycore.half_split_permutation(Dh))  # (Dh,): half-split order -> interleaved order
    with torch.no_grad():
        for name, proj in (("q", attn.q_proj), ("k", attn.k_proj)):
            w = checkpoint[name]
            if permute:
                w = w.view(H, Dh, D)[:, inverse].reshape(D, D)  # permute each head's rows
            proj.weight.copy_(w)  # the bug is permute=False: copy the rows as they are
    return attn


converted, unconverted = load_into_tinycore(permute=True), load_into_tinycore(permute=False)

# %% [markdown]
# **The symptom, and a test that does not catch it.** RoPE's relative property (chapter 8) says the attention
# scores depend only on the offset between positions: shifting every position by the same amount must change
# nothing. The unconverted model *passes* it, because it is still a perfectly valid RoPE model, just not the
# one in the checkpoint. Only the oracle, the checkpoint's own attention on the same input, tells them apart.

# %%
@torch.no_grad()
def relative_property(attn, shift=11, T=9):
    """True iff shifting every position by `shift` leaves the attention weights unchanged."""
    x = torch.randn(2, T, D, generator=torch.Generator().manual_seed(3))  # (B, T, D)
    positions = torch.arange(T)  # (T,)
    return torch.allclose(attn.attention_weights(x, token_positions=positions),
                          attn.attention_weights(x, token_positions=positions + shift), atol=1e-5)


@torch.no_grad()
def matches_checkpoint(attn, T=9):
    x = torch.randn(2, T, D, generator=torch.Generator().manual_seed(4))  # (B, T, D)
    got = check_shape(attn.attention_weights(x), (2, H, T, T), "B H T T", "attention weights")
    return torch.allclose(got, checkpoint_attention(x, torch.arange(T)), atol=1e-5)


print("relative-property test: unconverted passes too:", relative_property(unconverted),
      "| converted passes:", relative_property(converted))
print("checkpoint oracle test: broken FAILS:", not matches_checkpoint(unconverted),
      "| converted passes:", matches_checkpoint(converted))

# %% [markdown]
# A property test catches a model that is not *any* correct model; an oracle test catches a model that is
# not *the* correct model. You need both. (The relative property does catch the cousin of this bug, RoPE
# applied to q but not to k, because then the scores depend on the query's absolute position.)
#
# **The fix.** Permute each head's rows of `q_proj` and `k_proj` when converting (`half_split_permutation`,
# chapter 8), and make "my model reproduces the checkpoint's logits on a fixed input" the first test of any
# conversion.
#
# ## Case 5: targets that were never shifted
#
# **The story.** A language model predicts token $t+1$ from tokens $0..t$, so the targets are the inputs
# shifted by one. Libraries differ in *who* shifts: some language-model classes shift the labels inside their
# loss, others expect them shifted already. Pass pre-shifted labels to a class that shifts and it learns to
# predict two tokens ahead; shift nowhere and the model is asked to predict the token it is looking at.
#
# **The broken pipeline.** The model is fine; the batches are not:

# %%
def unshifted_batches(data):
    def sample(generator):
        x, _ = get_batch(data, BATCH, CONTEXT, generator=generator, device="cpu")  # (B, T)
        return x, x  # BUG: the targets should be the next tokens, y = data[i + 1 : i + T + 1]
    return sample


histories["unshifted targets"] = fit(make_lm(), unshifted_batches(train_ids))
print(f"unshifted targets: train loss {histories['unshifted targets'].train_loss[-1]:.2f}, "
      f"validation loss on real next tokens {histories['unshifted targets'].val_loss[-1]:.2f}")

# %% [markdown]
# The training loss collapses towards zero (copying the input is easy), while the loss on real next-character
# prediction is *worse* than predicting the character frequencies. Without a correctly built validation set
# you would see only the first number, and celebrate.
#
# **The tests that catch it.** The loss at initialisation does not: both pipelines start at about $\ln V$,
# because an untrained model is equally bad at every task. The "too good to be true" check does, and so does
# the simplest test of all, a contract on the data: $y_t = x_{t+1}$.

# %%
def data_contract(sample):
    x, y = sample(torch.Generator().manual_seed(0))  # (B, T) each
    return torch.equal(y[:, :-1], x[:, 1:])


fresh_lm = make_lm(seed=5)
with torch.no_grad():
    init_shifted = next_token_loss(fresh_lm, batches(train_ids)(torch.Generator().manual_seed(0))).item()
    init_unshifted = next_token_loss(fresh_lm, unshifted_batches(train_ids)(torch.Generator().manual_seed(0))).item()
print(f"loss at initialisation: {init_shifted:.2f} (shifted), {init_unshifted:.2f} (unshifted); "
      f"ln V = {math.log(V):.2f}")
print("data contract: broken FAILS:", not data_contract(unshifted_batches(train_ids)),
      "| tinycore's get_batch passes:", data_contract(batches(train_ids)))
print("too-good-to-be-true check: broken FAILS:", too_good(histories["unshifted targets"]),
      "| tinycore passes:", not too_good(histories["tinycore"]))

# %% [markdown]
# **The fix.** Shift exactly once, and write down where (tinycore's `get_batch` returns `y = x` shifted by one,
# and `lm_loss` does not shift again).
#
# ## Case 6: a KV cache that forgets where it is
#
# **The story.** With a KV cache {cite:p}`pope2023efficiently` each decoding step feeds only the new token;
# its position is the cache's length, not 0. Inference code that recomputes positions as `arange(T)` for the
# tokens it is given is right for the prompt and wrong for every token after it, and with RoPE (or learned
# positions) every new token is then encoded as if it stood at position 0.
#
# **The broken model.**

# %%
print(inspect.getsource(bugs.CacheWithoutOffsetAttention.forward))

# %% [markdown]
# **The symptom.** Training never touches the cache, so the model trains exactly as tinycore's does (it *is*
# tinycore's trained model, with the cached path broken). Its uncached text is tinycore's text; its cached
# text is not:

# %%
forgetful = bugs.swap_in(copy.deepcopy(good), "attn", bugs.CacheWithoutOffsetAttention)
for name, model in (("tinycore", good), ("forgetful cache", forgetful)):
    with_cache, without = write(model, use_cache=True), write(model, use_cache=False)  # (1, 31) each
    print(f"{name:15s} cached == uncached: {torch.equal(with_cache, without)}; "
          f"cached text: {tokenizer.decode(with_cache[0, 7:].tolist())!r}")

# %% [markdown]
# **The test that catches it.** Cache == full forward: decode a sequence through the cache, a prompt first and
# then one token at a time, and compare every step's logits with one uncached forward pass. Feeding the whole
# sequence through the cache in one call is *not* enough: the positions are right for the first call, and the
# bug only shows from the second. Exercise {ref}`ex-debug-kv-cache-test` asks you to write this test.
#
# **The fix.** Positions continue where the cache ends: `arange(cache.length, cache.length + T)`, as tinycore's
# `MultiHeadSelfAttention` and `TransformerLM` do.
#
# ## And post-norm without warm-up
#
# Chapter 9 ran the last classic as a full experiment: a post-norm model {cite:p}`xiong2020layer` trained at a
# high learning rate without warm-up sits at the loss of predicting character frequencies (about 3.3 nats)
# while the same model with pre-norm, or with a 40-step warm-up, trains. The tests there were the loss curve
# (a plateau at the unigram loss) and the per-layer gradient norms at initialisation, largest near the output
# for post-norm. It is not a bug in the code, which computes exactly what it should; it is a bug in the recipe.
#
# ## Which test catches which bug
#
# Here is everything this chapter ran, in one table: for each bug, each test it was given, and whether the
# test caught it (red) or let it pass (green).

# %%
REPORT = {  # bug -> {test: caught?}, every entry measured above
    "sqrt(D) scale": {"oracle": not ok_broken, "too good": too_good(histories["sqrt(D) scale"])},
    "LayerNorm over (T, D)": {"per-token / causality": leak(seq_ln_influence) >= 1e-6,
                              "too good": too_good(histories["LayerNorm over (T, D)"])},
    "mask off by one": {"per-token / causality": leak(influence(off_by_one, probe)) >= 1e-6,
                        "too good": too_good(histories["mask off by one"])},
    "RoPE layout": {"oracle": not matches_checkpoint(unconverted), "RoPE relative": not relative_property(unconverted)},
    "unshifted targets": {"too good": too_good(histories["unshifted targets"]),
                          "data contract": not data_contract(unshifted_batches(train_ids))},
    "forgetful cache": {"cache == full": not torch.equal(write(forgetful), write(forgetful, use_cache=False)),
        "per-token / causality": leak(influence(forgetful, probe)) >= 1e-6},
}
TESTS = ["oracle", "per-token / causality", "RoPE relative", "cache == full", "data contract", "too good"]
grid = torch.full((len(REPORT), len(TESTS)), float("nan"))
for r, results in enumerate(REPORT.values()):
    for test, caught in results.items():
        grid[r, TESTS.index(test)] = float(caught)

fig, ax = plt.subplots(figsize=(9, 3.8))
ax.imshow(grid, cmap="RdYlGn_r", vmin=0, vmax=1, aspect="auto")
ax.grid(False)
ax.set_xticks(range(len(TESTS)), TESTS, rotation=20, ha="right")
ax.set_yticks(range(len(REPORT)), list(REPORT))
for r in range(len(REPORT)):
    for c in range(len(TESTS)):
        if not math.isnan(grid[r, c]):
            ax.text(c, r, "caught" if grid[r, c] else "passed", ha="center", va="center", fontsize=8)
ax.set_title("each bug against the tests it was given (blank: not run)")
plt.tight_layout()
plt.show()
print("every bug caught by at least one test:", all(any(results.values()) for results in REPORT.values()))

# %% [markdown]
# Three things to read off the table. Every bug is caught by *some* test, and no test catches them all. The
# "too good" check catches the two bugs that give the answer away and is blind to the other four. And the
# causality test is blind to the forgetful cache, because the uncached forward pass, which is what it
# probes, is correct.
#
# The widget shows each bug's training curves next to tinycore's (where the bug was trained) and its row of
# the table. The figure below is its default, the off-by-one mask.

# %%
SMOOTH = 10


def smoothed(losses):
    return torch.tensor(losses).unfold(0, SMOOTH, 1).mean(dim=1)  # (STEPS,) -> (STEPS - SMOOTH + 1,)


def show_bug(bug="mask off by one"):
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    steps = range(SMOOTH, STEPS + 1)
    ax.plot(steps, smoothed(histories["tinycore"].train_loss), label="tinycore")
    if bug in histories:
        ax.plot(steps, smoothed(histories[bug].train_loss), label=bug)
    ax.axhline(BIGRAM_FLOOR, color="grey", linestyle="--", label="bigram floor (2.48)")
    ax.set(xlabel="step", ylabel="train loss (10-step mean)", ylim=(0, 4.6),
           title=bug if bug in histories else f"{bug}: training is unaffected; see its tests")
    ax.legend(fontsize=8)
    plt.show()
    print(" | ".join(f"{test}: {'caught' if caught else 'passed'}" for test, caught in REPORT[bug].items()))


show_bug()

# %% tags=["nbval-ignore-output"]
_ = interact(show_bug, bug=Dropdown(options=list(REPORT), value="mask off by one", description="bug"))

# %% [markdown]
# ## Exercises
#
# The skill this chapter teaches is writing the test, so in these exercises you write tests, and each checker
# runs *your test* against a zoo of correct and broken models, some of them subtle (a leak at one position
# only, a leak of one part in a thousand, a cache bug that appears only from the second decoding step, a
# scale that is right when there is one head). Your test must say True for every correct model and False for
# every broken one; the checker names the first model it misjudged.
#
# ```{exercise-start} A causality test
# :label: ex-debug-causality-test
# ```
#
# Write `causality_test(model_fn, vocab_size, T) -> bool`: True if and only if the model is causal, i.e. no
# logit at position $t$ depends on a token at a position after $t$. `model_fn` maps token ids `(B, T)` to
# logits `(B, T, V)` (the zoo's models compute in float64).
#
# Hint: the influence matrix is the idea; you only need its part above the diagonal. Change every position
# $j$, not only the last one, and compare positions $0..j-1$ with a tight tolerance (say `atol=1e-9`).

# %%
def causality_test(model_fn, vocab_size, T):
    raise NotImplementedError("Exercise: implement causality_test")

# %% tags=["raises-exception"]
checks.causality_test(causality_test)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-debug-causality-test
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
@torch.no_grad()
def causality_test(model_fn, vocab_size, T):
    token_ids = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(0))  # (B, T)
    base = model_fn(token_ids)  # (B, T, V)
    for j in range(1, T):
        changed = token_ids.clone()
        changed[:, j] = (changed[:, j] + 1) % vocab_size  # a different token at position j
        if not torch.allclose(model_fn(changed)[:, :j], base[:, :j], rtol=0, atol=1e-9):
            return False  # an earlier position saw token j
    return True


checks.causality_test(causality_test)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} A KV-cache consistency test
# :label: ex-debug-kv-cache-test
# ```
#
# Write `kv_cache_consistency_test(model, token_ids) -> bool`: True if and only if decoding `token_ids` `(B, T)`
# through the model's cache gives the same logits as one uncached forward pass. The model is a `TransformerLM`:
# `model.make_cache(B)` returns an empty cache, and `model(ids, cache=cache)` runs the new tokens `ids` after
# those already in the cache and returns their logits `(B, t, V)`.
#
# Hint: a prompt of a few tokens first, then the rest *one token at a time*; compare each step's logits with the
# matching row of `model(token_ids)` (`atol=1e-8`: the zoo computes in float64).

# %%
def kv_cache_consistency_test(model, token_ids):
    raise NotImplementedError("Exercise: implement kv_cache_consistency_test")

# %% tags=["raises-exception"]
checks.kv_cache_consistency_test(kv_cache_consistency_test)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-debug-kv-cache-test
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
@torch.no_grad()
def kv_cache_consistency_test(model, token_ids):
    full = model(token_ids)  # (B, T, V)
    cache = model.make_cache(token_ids.shape[0])
    steps = [model(token_ids[:, :3], cache=cache)]  # the prompt: (B, 3, V)
    for t in range(3, token_ids.shape[1]):
        steps.append(model(token_ids[:, t:t + 1], cache=cache))  # one token: (B, 1, V)
    return torch.allclose(torch.cat(steps, dim=1), full, atol=1e-8)  # (B, T, V) each


checks.kv_cache_consistency_test(kv_cache_consistency_test)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} An attention oracle test
# :label: ex-debug-attention-scale-test
# ```
#
# Write `attention_scale_test(attn) -> bool`: True if and only if `attn`, a causal multi-head self-attention
# module with `q_proj, k_proj, v_proj, output_proj` (no biases), `d_model` and `num_heads`, computes exactly
# what `F.scaled_dot_product_attention` computes with its weights. Use `attn.q_proj.weight.dtype` for your
# input (the zoo uses float64).
#
# Hint: project, split into `num_heads` heads head-major, `(B, T, D) -> (B, H, T, D / H)`, call
# `F.scaled_dot_product_attention(q, k, v, is_causal=True)`, merge the heads back and apply `output_proj`.
# Unlike `matches_pytorch` above, your oracle is written from the definition, so it does not depend on
# another module's conventions.

# %%
def attention_scale_test(attn):
    raise NotImplementedError("Exercise: implement attention_scale_test")

# %% tags=["raises-exception"]
checks.attention_scale_test(attention_scale_test)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-debug-attention-scale-test
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
@torch.no_grad()
def attention_scale_test(attn):
    B, T, D, H = 2, 7, attn.d_model, attn.num_heads
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(0), dtype=attn.q_proj.weight.dtype)  # (B, T, D)
    q, k, v = (proj(x).view(B, T, H, D // H).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
    want = attn.output_proj(out.transpose(1, 2).reshape(B, T, D))  # (B, H, T, Dh) -> (B, T, D)
    return torch.allclose(attn(x), want, atol=1e-8)


checks.attention_scale_test(attention_scale_test)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - A bug in a transformer rarely crashes and rarely stops the loss from falling; "it trains" is not evidence
#   that it is right.
# - Oracle tests with copied weights catch wrong arithmetic (a $\sqrt{D}$ scale, a weight layout), but only in
#   the configurations you test: use several heads, $T \ne D$, and sizes that differ.
# - Property tests catch models that are not *any* correct model (a leak through a mask or a norm, RoPE on q
#   only); they pass a valid model that is not *the* model you wanted.
# - The influence matrix makes causality visible: it must be lower-triangular, exactly.
# - A training loss far below what the data allows (the bigram floor, 2.48 nats here) is a leak until proven
#   otherwise; a validation loss computed with the same leaky forward pass does not protect you.
# - Cached decoding must reproduce the uncached logits step by step, from the second step on.
# - Write the test first: every bug in this chapter would have been caught by a test of a few lines.
#
# ## References
#
# The bugs are measured against the definitions of the transformer {cite:p}`vaswani2017attention`, LayerNorm
# {cite:p}`ba2016layer`, RoPE {cite:p}`su2021roformer`, the KV cache {cite:p}`pope2023efficiently`, and the
# pre-norm/post-norm analysis {cite:p}`xiong2020layer`; the oracle tests lean on PyTorch's own modules
# {cite:p}`paszke2019pytorch`.

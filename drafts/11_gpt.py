# %% [markdown]
# # A decoder-only language model (GPT)
#
# Every part of a GPT is now on your desk: token embeddings and the bigram baseline (chapter 1),
# LayerNorm (chapter 2), the feed-forward network (chapter 4), causal multi-head attention (chapters 5
# and 6), learned positions (chapter 7) and the pre-norm block (chapter 9). This chapter puts them
# together into the model of GPT-1 {cite:p}`radford2018improving` and GPT-2 {cite:p}`radford2019language`,
# trains it on Tiny Shakespeare in well under a minute on a laptop CPU, and asks it to write.
#
# **What you will learn**
#
# - the language-modelling objective: one forward pass predicts the next token at *every* position, the
#   targets are the inputs shifted by one (teacher forcing), and the causal mask is what makes this
#   legal; you will watch a model without the mask "learn" by reading the answer;
# - how to assemble GPT from tinycore parts (token and learned position embeddings, pre-LN blocks, a
#   final LayerNorm, an output layer tied to the token embeddings), count its parameters by formula, and
#   prove it equal to `tinycore.TransformerLM` with GPT-2's settings;
# - why the loss at initialisation is about $\ln 65 \approx 4.17$, and what an untamed initialisation
#   would cost;
# - how to train it with the course's recipe, and how far below the bigram model's 2.48 nats it gets;
# - how temperature and top-k reshape the next-token distribution when sampling, measured on the
#   trained model;
# - what loss to expect from each model, from a uniform guess to nanoGPT's GPU configuration
#   {cite:p}`karpathy2022nanogpt`, which you can run with the same code on a GPU.

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
import re

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from ipywidgets import FloatSlider, IntSlider, interact
from torch import nn

import tinycore
from tinycore import (
    CharTokenizer, Embedding, LayerNorm, LearnedPositionalEmbedding, Linear, TrainConfig, TransformerBlock,
    TransformerLM, bigram_counts, causal_mask, check_shape, checks, count_model_loss, count_parameters, evaluate,
    generate, get_batch, get_device, gpt_config, lm_batches, lm_loss, load_tiny_shakespeare, next_token_loss,
    set_seed, train, train_val_split,
)
from tinycore.plotting import heatmap, use_style
from tinycore.recipes import Recipe, SHAKESPEARE_GPT

gen = set_seed(0)
use_style()
device = get_device()  # the model you train runs here: "cuda" on a GPU runtime, else "cpu"

text = load_tiny_shakespeare()
tok = CharTokenizer(text)
V = tok.vocab_size  # 65 characters
ids = tok.encode(text)  # (N,) = (1115394,)
train_ids, val_ids = train_val_split(ids)  # the first 90% trains, the last 10% validates
print(f"{len(train_ids):,} training and {len(val_ids):,} validation characters, V = {V}")

# chapter 1's baselines on the validation text, the numbers every model here is measured against
unigram = (train_ids.bincount(minlength=V).double() + 1) / (len(train_ids) + V)  # (V,), add-one smoothed
unigram_val = -unigram[val_ids[1:]].log().mean().item()
bigram_val = count_model_loss(bigram_counts(train_ids, V), val_ids)  # the count table, add-one smoothed
print(f"validation loss of a uniform guess {math.log(V):.2f}, unigram {unigram_val:.2f}, bigram {bigram_val:.2f} nats")

# %% [markdown]
# ## The language-modelling objective
#
# A language model gives a probability to every text. The product rule of probability splits the
# probability of a sequence $x_0, x_1, \dots, x_T$ into one factor per token, each conditioned on
# everything before it:
#
# $$
# p(x_0, \dots, x_T) = p(x_0) \prod_{t=0}^{T-1} p(x_{t+1} \mid x_0, \dots, x_t).
# $$
#
# So a model of *the next token given all earlier ones* is a model of whole texts: it can score a text
# (multiply the factors) and write one (draw a token, append it, repeat). Training makes the training
# text as likely as possible, which means minimising the mean negative log-probability of each next
# token, the cross-entropy of chapter 1:
#
# $$
# \mathcal{L}(\theta) = -\frac{1}{BT} \sum_{b=1}^{B} \sum_{t=0}^{T-1} \log p_\theta\big(x_{b,t+1} \mid x_{b,0}, \dots, x_{b,t}\big).
# $$
#
# The bigram model of chapter 1 conditioned on $x_t$ alone. A transformer conditions on the whole
# prefix, and it computes all $T$ predictions of a window **in one forward pass**: position $t$ reads
# the characters up to $t$ (the causal mask of chapter 5 hides the rest) and predicts character $t+1$.
# The figure shows one window of 12 characters: each row is a position, the blue cells are the inputs it
# may read, and the label says which character it must predict.

# %%
def show(ch):
    """A character as a readable label."""
    return {"\n": "\\n", " ": "␣"}.get(ch, ch)


window = text[:13]  # "First Citizen": 12 inputs and, shifted by one, 12 targets
T_fig = len(window) - 1
fig, ax = plt.subplots(figsize=(6.2, 5.2))
heatmap(causal_mask(T_fig).float(), ax, cmap="Blues", colorbar=False, vmin=0, vmax=1.6,
        row_labels=[f"t={t}: {show(window[t])} → predict {show(window[t + 1])}" for t in range(T_fig)],
        col_labels=[show(c) for c in window[:-1]])
ax.set(xlabel="input characters position t may read", ylabel="position t",
       title="One pass, 12 predictions: each row sees only its past")
plt.tight_layout()
plt.show()

# %% [markdown]
# In code, a window of $T + 1$ characters gives $T$ training examples: the inputs are its first $T$
# characters and the targets its last $T$, the same window **shifted by one**. `tinycore.get_batch` cuts
# $B$ random windows and returns both:

# %%
B, T = 4, 16
x, y = get_batch(train_ids, B, T, generator=gen)  # (B, T) inputs and (B, T) targets
check_shape(x, (B, T), "B T", "x")
print("targets are the inputs shifted by one:", torch.equal(y[:, :-1], x[:, 1:]))
print("input :", repr(tok.decode(x[0])))
print("target:", repr(tok.decode(y[0])))

# %% [markdown]
# The model always reads the *true* previous characters, never its own guesses, even when its guess at
# position $t$ was wrong: this is called **teacher forcing**. It is what lets all $T$ predictions be
# computed at once, because no prediction has to wait for another. (At generation time there is no
# teacher: the model reads its own samples, one character at a time, as the sampling section shows.)
#
# The loss flattens the $B \times T$ predictions into rows and takes one cross-entropy over them;
# `next_token_loss` is the `loss_fn` the training loop will call:

# %%
print(inspect.getsource(lm_loss))
print(inspect.getsource(next_token_loss))

# %% [markdown]
# ### One pass equals $T$ separate predictions
#
# "Position $t$ reads only the prefix" is a promise you can test. Take a freshly initialised GPT from
# the recipe this chapter trains (the next section builds it piece by piece; here it is a black box that
# maps token ids `(B, T)` to logits `(B, T, V)`), run it once on a window, then run it again on every
# prefix separately and keep the last position's prediction. The two must agree: the prediction at
# position $t$ cannot depend on anything after $t$.

# %%
probe = TransformerLM.from_config(SHAKESPEARE_GPT.model)  # untrained
with torch.no_grad():
    one_pass = probe(x[:1])  # (1, T) -> (1, T, V): all T predictions at once
    separate = torch.stack([probe(x[:1, : t + 1])[0, -1] for t in range(T)])  # T runs on prefixes -> (T, V)
print("one pass == T runs on the prefixes (to 1e-5):", torch.allclose(one_pass[0], separate, atol=1e-5))

# %% [markdown]
# ### Without the mask, the model cheats
#
# Why insist on the mask? Because the target of position $t$ is the *input* at position $t + 1$. Remove
# the mask, and every position can read its own answer: copying the next input is a perfect prediction,
# and it is far easier to learn than language. Here is the experiment: a one-layer GPT (width 64, 16
# characters of context) trained for 200 steps with its causal mask switched off.

# %%
set_seed(0)
cheat_context = 16
cheater = TransformerLM.from_config(gpt_config(V, cheat_context, d_model=64, num_layers=1, num_heads=2))
cheater.layers[0].attn.causal = False  # every position may now attend to every other, the future included
cheat_config = TrainConfig(steps=200, lr=1e-2, warmup_steps=10, eval_every=200, eval_batches=4)
cheat_history = train(cheater, next_token_loss, lm_batches(train_ids, 16, cheat_context, "cpu"), cheat_config, "cpu")

xv, yv = get_batch(val_ids, 64, cheat_context, generator=torch.Generator().manual_seed(1))  # (64, 16) each
with torch.no_grad():
    cheat_logits = cheater(xv)  # (64, 16, V)
    h0 = cheater.token_embeddings(xv) + cheater.position_embeddings(torch.arange(cheat_context))  # (64, 16, D)
    cheat_weights = cheater.layers[0].attn.attention_weights(cheater.layers[0].ln1(h0))  # (64, H, 16, 16)
per_position = F.cross_entropy(cheat_logits.transpose(1, 2), yv, reduction="none").mean(0)  # (64, 16) -> (16,)
next_weight = cheat_weights.diagonal(offset=1, dim1=-2, dim2=-1).mean().item()  # weight of query t on key t + 1
print(f"validation loss, positions 0-{cheat_context - 2}: {per_position[:-1].mean():.2f} nats")
print(f"validation loss, last position {cheat_context - 1}:  {per_position[-1]:.2f} nats   "
      f"(unigram model: {unigram_val:.2f})")
print(f"attention that position t pays to position t + 1, averaged over heads: {next_weight:.2f}")

fig, ax = plt.subplots(figsize=(7, 3.4))
ax.bar(range(cheat_context), per_position, color=["C0"] * (cheat_context - 1) + ["C3"])
ax.axhline(bigram_val, ls="--", color="C2", label=f"bigram model (chapter 1): {bigram_val:.2f}")
ax.axhline(unigram_val, ls="-.", color="C1", label=f"unigram model (chapter 1): {unigram_val:.2f}")
ax.axhline(math.log(V), ls=":", color="C7", label=f"uniform guess: ln {V} = {math.log(V):.2f}")
ax.set(xlabel="position t in the window", ylabel="validation loss (nats)",
       title="A model without the causal mask: perfect until the answer is missing")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(0.0, 0.36))
plt.show()

# %% [markdown]
# Far below the bigram model's 2.48 nats at every position but the last, and at the last one worse
# than the *unigram* model, which knows nothing but how frequent each character is. The attention
# weights give the trick away: the heads look mostly at the next position and copy what they find
# there. The last position is the only one whose target lies outside the window, so it is the only
# honest test of the model, and the model fails it. Generation
# is exactly that situation at every step, since the next character does not exist yet. A loss far
# below what seems possible is a classic symptom of this bug (chapter 17 hunts it down in a broken
# model). The causal mask makes the $T$ predictions of one pass honest: each is the prediction the model
# would make at generation time, which is why training on all of them at once is legal.
#
# ## Assembling GPT from tinycore parts
#
# GPT-1 {cite:p}`radford2018improving` is a stack of 12 causal transformer blocks (width 768, 12 heads,
# GELU feed-forward networks of width 3072, learned positions), trained with exactly this objective on
# a corpus of books. GPT-2 {cite:p}`radford2019language` kept the design with three changes that matter
# here: the LayerNorm moved to the *input* of each sub-layer (pre-LN, chapter 9), a final LayerNorm was
# added after the last block, and the weights of the projections that write into the residual stream
# were initialised smaller, by $1/\sqrt{N}$ for $N$ residual layers. Both tie the output layer to the
# token embeddings {cite:p}`press2017using`: one $V \times D$ matrix $E$ turns tokens into vectors at the
# input and vectors back into token scores at the output. The whole model, for a window $x_0, \dots,
# x_{T-1}$:
#
# $$
# \begin{aligned}
# \mathbf{h}^{(0)}_t &= E_{x_t} + P_t && \text{token embedding + learned position, } t = 0, \dots, T-1 \\
# \mathbf{h} &\leftarrow \mathbf{h} + \mathrm{MHA}_{\text{causal}}\big(\mathrm{LN}_1(\mathbf{h})\big), \quad
# \mathbf{h} \leftarrow \mathbf{h} + \mathrm{FFN}\big(\mathrm{LN}_2(\mathbf{h})\big) && \text{each of the } L \text{ blocks} \\
# \mathbf{z}_t &= \mathrm{LN}_f\big(\mathbf{h}^{(L)}_t\big)\, E^\top \in \mathbb{R}^V && \text{final LayerNorm, tied head: one logit per token}
# \end{aligned}
# $$
#
# Build it in that order, with the sizes of this chapter's recipe (`SHAKESPEARE_GPT.model`, printed in
# full in the training section). First the input: token embeddings plus position embeddings.

# %%
cfg = SHAKESPEARE_GPT.model
D, H, F_ff, L_ctx = cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.context_length
token_embeddings = Embedding(V, D)  # E: (V, D)
position_embeddings = LearnedPositionalEmbedding(L_ctx, D)  # P: (context_length, D)
h = token_embeddings(x) + position_embeddings(torch.arange(T))  # (B, T, D) + (T, D) -> (B, T, D)
check_shape(h, (B, T, D), "B T D", "h0")
print(f"x {tuple(x.shape)} -> h0 {tuple(h.shape)}")

# %% [markdown]
# Then the blocks: chapter 9's `TransformerBlock` with GPT-2's choices (LayerNorm, a GELU feed-forward
# network, biases in every `Linear`, pre-norm, causal). Each maps `(B, T, D)` to `(B, T, D)`, so they
# stack:

# %%
blocks = nn.ModuleList(
    TransformerBlock(D, H, F_ff, causal=True, norm="layernorm", ffn="gelu", norm_position="pre", bias=True)
    for _ in range(cfg.num_layers)
)
print(blocks[0])
for block in blocks:
    h = block(h)  # (B, T, D) -> (B, T, D)
_ = check_shape(h, (B, T, D), "B T D", "h after the blocks")

# %% [markdown]
# Finally the output: a LayerNorm, then a product with the *same* embedding matrix, transposed. Row $j$
# of $E$ is both the vector that token $j$ enters the model as and the direction whose dot product
# with the final state scores token $j$.

# %%
ln_final = LayerNorm(D)
logits = ln_final(h) @ token_embeddings.weight.T  # (B, T, D) @ (D, V) -> (B, T, V)
check_shape(logits, (B, T, V), "B T V", "logits")
print(f"h {tuple(h.shape)} -> logits {tuple(logits.shape)}")

# %% [markdown]
# The same steps as a module. Its attribute names are tinycore's (`token_embeddings`,
# `position_embeddings`, `layers.{i}`, `ln_final`, `lm_head`), so weights can move between the two by
# name, and tying is a single assignment: `lm_head.weight` *is* `token_embeddings.weight`, one tensor
# with two names.

# %%
class GPT(nn.Module):
    """GPT-2's architecture from tinycore parts. Shapes: token_ids (B, T) -> logits (B, T, V)"""

    def __init__(self, vocab_size, context_length, d_model, num_layers, num_heads, d_ff):
        super().__init__()
        self.token_embeddings = Embedding(vocab_size, d_model)  # E: (V, D)
        self.position_embeddings = LearnedPositionalEmbedding(context_length, d_model)  # P: (context_length, D)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, causal=True, norm="layernorm", ffn="gelu", bias=True)
            for _ in range(num_layers)
        )
        self.ln_final = LayerNorm(d_model)
        self.lm_head = Linear(d_model, vocab_size)  # (V, D), no bias
        self.lm_head.weight = self.token_embeddings.weight  # tied: one parameter, two names

    def forward(self, token_ids):
        T = token_ids.shape[1]
        positions = torch.arange(T, device=token_ids.device)  # (T,)
        x = self.token_embeddings(token_ids) + self.position_embeddings(positions)  # (B, T, D)
        for layer in self.layers:
            x = layer(x)  # (B, T, D)
        return self.lm_head(self.ln_final(x))  # (B, T, D) -> (B, T, V)


mine = GPT(V, cfg.context_length, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff)
print("the head and the embedding are one tensor:", mine.lm_head.weight is mine.token_embeddings.weight)

# %% [markdown]
# ### Counting the parameters
#
# Each block holds four $D \times D$ attention projections with biases ($4D^2 + 4D$), a feed-forward
# network of width $F$ ($2DF + F + D$) and two LayerNorms ($4D$). Around the blocks sit the token table
# ($VD$), the position table ($L_{\text{ctx}} D$) and the final LayerNorm ($2D$); the tied head adds
# nothing:
#
# $$
# N = VD + L_{\text{ctx}}D + L\,(4D^2 + 2DF + 9D + F) + 2D .
# $$
#
# (With $F = 4D$ a block holds $12D^2 + 13D$: the $12 D^2$ you will meet again in chapter 14.)

# %%
def gpt_parameters(V, context_length, D, num_layers, d_ff):
    """N = V D + L_ctx D + L (4 D^2 + 2 D F + 9 D + F) + 2 D, with F = d_ff."""
    return V * D + context_length * D + num_layers * (4 * D * D + 2 * D * d_ff + 9 * D + d_ff) + 2 * D


formula = gpt_parameters(V, cfg.context_length, D, cfg.num_layers, F_ff)
print(f"formula: {formula:,}   counted: {count_parameters(mine):,}")
print(f"the tied head saves V * D = {V * D:,} parameters ({V * D / (formula + V * D):.1%} of an untied model)")

gpt2_small = TransformerLM.from_config(gpt_config(50257, 1024, 768, 12, 12), device="meta")  # shapes only, no memory
print(f"GPT-2 small (V = 50257, context 1024, D = 768, 12 layers): {count_parameters(gpt2_small):,} parameters; "
      f"formula: {gpt_parameters(50257, 1024, 768, 12, 4 * 768):,}; tying saves {50257 * 768:,}")

# %% [markdown]
# For this small character model tying hardly matters, but for GPT-2 small, with its 50,257-token
# vocabulary, it saves 39 million parameters: the famous "124M" would be 163M without it.
#
# ### Adopting `tinycore.TransformerLM`
#
# tinycore's `TransformerLM` defaults to LLaMA's choices (chapter 12); `gpt_config` switches each one to
# GPT-2's:

# %%
print(inspect.getsource(gpt_config))

# %% [markdown]
# `SHAKESPEARE_GPT.build()` is `TransformerLM.from_config` on such a configuration. Load its weights
# into your `GPT` by name, and the two models must give the same logits and the same gradients:

# %%
set_seed(0)
model = SHAKESPEARE_GPT.build()
mine.load_state_dict(model.state_dict())  # every name matches, the tied pair included
print(f"tinycore's model: {count_parameters(model):,} parameters, the same as yours:",
      count_parameters(model) == count_parameters(mine))

loss_mine = lm_loss(mine(x), y)
loss_tiny = lm_loss(model(x), y)
loss_mine.backward()
loss_tiny.backward()
grads_mine, grads_tiny = dict(mine.named_parameters()), dict(model.named_parameters())
grad_err = max((grads_mine[n].grad - p.grad).abs().max().item() for n, p in grads_tiny.items())
print("logits equal (to 1e-6):", torch.allclose(mine(x), model(x), atol=1e-6))
print("loss equal (to 1e-6):", abs(loss_mine.item() - loss_tiny.item()) < 1e-6)
print("every gradient equal (to 1e-6):", grad_err < 1e-6)
model.zero_grad()

# %% [markdown]
# tinycore's `forward` is the same loop with one addition, the KV cache that makes generation fast
# (chapter 12):

# %%
print(inspect.getsource(TransformerLM.forward))

# %% [markdown]
# ## The loss at initialisation
#
# Before any training, what loss should the model have? A model that knows nothing should spread its
# probability evenly over the 65 characters, for a loss of $\ln 65 \approx 4.17$ nats. Whether it does
# depends on the initialisation. GPT-2 draws every weight matrix from $\mathcal{N}(0, 0.02^2)$. The
# final LayerNorm hands the head a vector $\mathbf{u}$ with mean 0 and variance 1 over its $D$ features,
# so $\lVert \mathbf{u} \rVert^2 = D$, and a logit $z_j = \mathbf{u} \cdot E_j$ with a random row $E_j$
# has standard deviation
#
# $$
# \sigma_z = 0.02\,\sqrt{D},
# $$
#
# about a quarter for this recipe's width. Logits that small are nearly equal, so the softmax is nearly
# uniform: for independent Gaussian logits the expected loss is about $\ln V + \sigma_z^2/2$, a few
# hundredths above $\ln V$. Measure it on 20 validation batches:

# %%
val_batches = [get_batch(val_ids, SHAKESPEARE_GPT.batch_size, cfg.context_length,
                         generator=torch.Generator().manual_seed(s)) for s in range(20)]  # 20 fixed (B, T) batches
x0, y0 = val_batches[0]
with torch.no_grad():
    z = model(x0)  # (B, T, V)
current = z.gather(-1, x0[..., None]).squeeze(-1)  # (B, T): the logit of each position's *own* input character
others = z.scatter(-1, x0[..., None], float("nan"))  # (B, T, V), the own character blanked out
print(f"loss at initialisation: {evaluate(model, next_token_loss, val_batches):.2f} nats (ln {V} = {math.log(V):.2f})")
print(f"logits of the other characters: mean {others.nanmean():.2f}, std {others[~others.isnan()].std():.2f}"
      f"  (0.02 sqrt(D) = {0.02 * math.sqrt(D):.2f})")
print(f"logit of the position's own input character: mean {current.mean():.1f}")

# %% [markdown]
# The loss is $\ln 65$ to two decimals (the estimate assumes independent logits, and the exact value
# moves by a few hundredths with the random draw of the weights), and the logits spread as predicted,
# with one twist that comes from tying. The final state of position $t$ still contains its own input's
# embedding $E_{x_t}$ (next to the position vector and the blocks' small random contributions), and the
# tied head compares it with that same row: part of $\mathbf{u} \cdot E_{x_t}$ is a vector dotted with
# itself, so the position's own input character gets a logit near $+1$. A freshly initialised tied GPT
# mildly predicts "the same character again", which is rarely right (doubled letters are rare), but a
# logit of 1 moves little probability ($e^{1} / (64 + e^{1}) \approx 4\%$), so the loss stays at
# $\ln 65$.
#
# Now the counterfactual. tinycore's `Embedding` on its own starts with entries of size 1 (chapter 1's
# choice, where nothing is tied). Re-draw the tied table that way and the logits grow to
# $\sigma_z \approx \sqrt{D}$:

# %%
loud = copy.deepcopy(model)
nn.init.normal_(loud.token_embeddings.weight, std=1.0)  # the tied table (and so the head) at std 1
with torch.no_grad():
    loud_std = loud(x0).std().item()
loud_loss = evaluate(loud, next_token_loss, val_batches[:5])
print(f"tied table with std 1: logit std {loud_std:.0f}, loss at initialisation {loud_loss:.0f} nats")

# %% [markdown]
# A loss of dozens of nats: the model is confidently wrong about almost every character, and the first
# few hundred steps of training would be spent just shrinking the logits. With small weights the model
# starts where ignorance belongs, at $\ln 65$, and every step goes to learning.
#
# ## Sampling: temperature and top-k
#
# To write, the model predicts a distribution over the next character from the logits $\mathbf{z}$ of
# the last position, draws one, appends it and repeats. Two knobs reshape the distribution before the
# draw. The **temperature** $\tau > 0$ divides the logits (chapter 1 met it on the bigram table):
#
# $$
# p_j = \frac{\exp(z_j / \tau)}{\sum_{k=1}^{V} \exp(z_k / \tau)} ,
# $$
#
# so $\tau < 1$ sharpens the distribution towards the likeliest characters and $\tau > 1$ flattens it
# towards uniform. **Top-k** sampling {cite:p}`fan2018hierarchical` keeps only the $k$ largest logits and sets the
# others to $-\infty$, so that the softmax gives them probability 0: the long tail of unlikely
# characters, each rarely drawn but together drawn often, is cut off. `tinycore.sample_next` applies
# both, in that order, and draws with an explicit `torch.Generator`, so a re-run gives the same text:

# %%
print(inspect.getsource(tinycore.sample_next))

# %% [markdown]
# `tinycore.generate` runs the loop. A window is at most `context_length` characters long, so to write
# more than that it slides: each step feeds the model only the last `context_length` characters
# (`use_cache=False`; the KV cache of chapter 12 makes each step cheaper but cannot grow past the
# context). Here is what the *untrained* model writes, 300 characters after a newline:

# %%
def sample_text(model, num_chars=300, temperature=1.0, top_k=None, seed=0, prompt="\n"):
    """num_chars sampled characters after `prompt`, reproducibly (the generator fixes every draw)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids = tok.encode(prompt)[None].to(device)  # (1, len(prompt))
    out = generate(model, prompt_ids, num_chars, temperature=temperature, top_k=top_k, generator=generator,
                   use_cache=False)  # (1, len(prompt) + num_chars)
    return tok.decode(out[0, len(prompt):].cpu())


model.to(device)
print(sample_text(model))

# %% [markdown]
# Characters drawn almost uniformly: a monkey at a typewriter with 65 keys. (Each step of the loop
# re-runs the whole window, so these 300 characters cost 300 forward passes.)
#
# ## Training
#
# The course's recipe for this model lives in `tinycore.recipes`, like nanoGPT's configuration files:
# a model configuration, a training configuration and a batch size that belong together. Its numbers
# were chosen by measurement to train fast on a laptop CPU (`benchmarks/training.py`):

# %%
recipe = SHAKESPEARE_GPT
m_cfg, t_cfg = recipe.model, recipe.train
min_lr = t_cfg.lr / 10 if t_cfg.min_lr is None else t_cfg.min_lr
tokens_seen = t_cfg.steps * recipe.batch_size * m_cfg.context_length
print(f"model:    {m_cfg.num_layers} layers, {m_cfg.num_heads} heads, width {m_cfg.d_model}, FFN {m_cfg.d_ff}, "
      f"context {m_cfg.context_length} ({m_cfg.norm}, {m_cfg.ffn}, {m_cfg.positions} positions, "
      f"tied head: {m_cfg.tie_embeddings}); {count_parameters(model):,} parameters")
print(f"batches:  {recipe.batch_size} windows of {m_cfg.context_length} characters per step, {t_cfg.steps} steps")
print(f"AdamW:    lr {t_cfg.lr:g}, {t_cfg.warmup_steps} warm-up steps, {t_cfg.decay} decay to {min_lr:g}, "
      f"betas {t_cfg.betas}, weight decay {t_cfg.weight_decay}, gradient clipping at {t_cfg.grad_clip}")
print(f"training sees {tokens_seen:,} characters: {tokens_seen / len(train_ids):.2f} passes over the training text")
print(f"evaluation every {t_cfg.eval_every} steps on {t_cfg.eval_batches} fixed validation batches")

# %% [markdown]
# Train with tinycore's loop (chapter 9): AdamW, linear warm-up then cosine decay, gradient clipping,
# and an evaluation on fixed batches every `eval_every` steps. When you run this cell yourself, a progress
# line counts the steps; on a two-core laptop CPU the run takes well under a minute.

# %%
set_seed(0)
model = recipe.build(device)  # a fresh model: the seed fixes its initial weights
history = train(model, next_token_loss, lm_batches(train_ids, recipe.batch_size, m_cfg.context_length, device),
                recipe.train, device, val_batch=lm_batches(val_ids, recipe.batch_size, m_cfg.context_length, device))
gpt_val, gpt_train = history.val_loss[-1], history.eval_train_loss[-1]
print(f"after {history.eval_step[-1]} steps: training loss {gpt_train:.3f}, validation loss {gpt_val:.3f} nats")
print(f"below the bigram model's {bigram_val:.2f}:", gpt_val < bigram_val, "  at or below 2.0:", gpt_val <= 2.0)
print("first evaluation at or below 2.0: step", history.first_step_below(2.0))

# %% tags=["nbval-ignore-output"]
print(f"training took {history.elapsed[-1]:.0f} s on {device}")

# %% [markdown]
# The curve below shows the training loss of every step (light, noisy: each step sees a different random
# batch), the loss on fixed training and validation batches at each evaluation, and the lines
# every model is measured against.

# %% tags=["gallery"]
fig, ax = plt.subplots(figsize=(8, 4.4))
ax.plot(history.step, history.train_loss, color="C0", alpha=0.25, lw=0.8, label="training loss, each step")
ax.plot(history.eval_step, history.eval_train_loss, "o-", color="C0", label="training loss (fixed batches)")
ax.plot(history.eval_step, history.val_loss, "o-", color="C1", label="validation loss")
ax.axhline(math.log(V), ls=":", color="C7", label=f"uniform: ln {V} = {math.log(V):.2f}")
ax.axhline(bigram_val, ls="--", color="C2", label=f"bigram count model: {bigram_val:.2f}")
ax.axhline(2.0, ls="--", color="C3", label="target: 2.0")
ax.set(xlabel="step", ylabel="loss (nats per character)", ylim=(1.5, 4.5),
       title=f"A {count_parameters(model) / 1e6:.1f}M-parameter GPT on Tiny Shakespeare")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The loss starts at $\ln 65$, as predicted, and drops quickly through the bigram model's 2.48 as the
# model learns which characters follow which; below that line it is using more than one character of
# context. The validation loss stays close to the training loss, a little above it and pulling slowly
# away as training goes on: the validation text is the end of the file (other scenes, other speakers),
# and some of what the model learns is particular to the training text. With at most a pass or two over
# the training text (printed above), the model has had no chance to memorise it; the larger
# configuration at the end of the chapter, which passes over it 80 times, is where that begins.
#
# Where does the extra context help? Split the validation loss by position in the window. Position 0
# sees a single character, like the bigram model; each later position sees one more.

# %%
model.eval()
with torch.no_grad():
    by_position = torch.stack([F.cross_entropy(model(xb.to(device)).transpose(1, 2), yb.to(device), reduction="none")
                               for xb, yb in val_batches]).mean(dim=(0, 1)).cpu()  # (20, B, T) -> (T,)
print(f"validation loss at position 0: {by_position[0]:.2f}, positions 1-7: {by_position[1:8].mean():.2f}, "
      f"positions 8-{len(by_position) - 1}: {by_position[8:].mean():.2f}")
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(by_position, "o-", ms=3, label="trained GPT")
ax.axhline(bigram_val, ls="--", color="C2", label=f"bigram count model: {bigram_val:.2f}")
ax.set(xlabel="position t (it reads t + 1 characters)", ylabel="validation loss (nats)",
       title="More context, lower loss")
ax.legend()
plt.show()

# %% [markdown]
# At position 0 the model has exactly the bigram model's information, and it scores close to the bigram
# model. The loss falls steeply over the first few characters (finishing a word needs only the word so
# far) and then flattens: this small model gets most of its benefit from the last few characters.
#
# ### Samples after training
#
# The same call, the same seed, the trained model:

# %%
print(sample_text(model))

# %% [markdown]
# Not Shakespeare, but the shape of a play: names in capitals followed by a colon, line breaks, common
# words spelt right, and plausible-looking inventions in between.
#
# How do temperature and top-k change what comes out? Draw 16 samples of the context's length with each
# setting and measure two things: the share of the generated words (runs of letters) that occur anywhere
# in the training text, and the share of the generated words that are distinct (variety).

# %%
known_words = set(re.findall(r"[a-z]+", text[: len(train_ids)].lower()))  # every word of the training text


def word_stats(temperature, top_k=None, num_samples=16, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    start = torch.full((num_samples, 1), tok.stoi["\n"], device=device)  # (16, 1): each sample starts after a newline
    out = generate(model, start, m_cfg.context_length - 1, temperature=temperature, top_k=top_k,
                   generator=generator)  # (16, context_length), with the KV cache
    words = [w for row in out.cpu() for w in re.findall(r"[a-z]+", tok.decode(row).lower())]
    return sum(w in known_words for w in words) / len(words), len(set(words)) / len(words)


print(f"{'setting':<22}{'real words':>11}{'distinct words':>16}")
for temperature, top_k in [(0.5, None), (0.8, None), (1.0, None), (1.0, 5), (1.5, None)]:
    real, distinct = word_stats(temperature, top_k)
    print(f"{f'tau = {temperature}' + (f', top-k = {top_k}' if top_k else ''):<22}{real:>11.0%}{distinct:>16.0%}")

# %% [markdown]
# Lower temperatures spell better and repeat themselves more: at $\tau = 0.5$ the model sticks to the
# words it is surest of. Higher temperatures invent more, and most inventions are not words. Top-k
# with $\tau = 1$ works differently: it leaves the likely characters' odds as they are and cuts the
# tail of rare ones that derail a word, so it too spells more real words than plain sampling at
# $\tau = 1$, and repeats more. There is no best setting, only a trade between correctness and variety; the
# widget at the end of the chapter lets you feel it.
#
# ## What loss to expect
#
# Every model in this course is scored the same way, in nats per character on the same validation
# text, so the numbers line up across chapters. Below, the baselines of chapter 1 (computed again at
# the top of this chapter: they are cheap), this chapter's model, and two configurations of nanoGPT
# {cite:p}`karpathy2022nanogpt`, Karpathy's reference implementation of GPT-2, which splits Tiny
# Shakespeare the same way (first 90% for training). The last two rows are **not run here**: their numbers are published or measured
# elsewhere, as the table says.

# %%
rows = [
    ("uniform over 65 characters", math.log(V), "by definition"),
    ("unigram (character frequencies)", unigram_val, "chapter 1, computed above"),
    ("bigram (count table)", bigram_val, "chapter 1, computed above"),
    (f"this chapter's GPT, {t_cfg.steps} steps", gpt_val, "trained above"),
    ("nanoGPT CPU recipe, 2,000 steps", 1.886, "measured: benchmarks/training.py"),
    ("nanoGPT GPU config, 5,000 steps", 1.4697, "published: nanoGPT README"),
]
print(f"{'model':<36}{'val loss':>9}{'perplexity':>12}   source")
for name, loss, source in rows:
    print(f"{name:<36}{loss:>9.3f}{math.exp(loss):>12.1f}   {source}")

# %% [markdown]
# Perplexity, $e^{\mathcal{L}}$, reads as "as uncertain as a uniform choice among that many
# characters". Notes on the rows:
#
# - **This chapter's GPT** is evaluated on the recipe's fixed validation batches (their number is
#   printed in the training section), the baselines on the whole validation text; an estimate from a
#   few thousand windowed predictions moves by a few hundredths with the choice of batches.
# - **nanoGPT's CPU recipe** is the one in its README for "a macbook (or other cheap computer)": 4
#   layers, 4 heads, width 128, context 64, batch 12, 2,000 steps, learning rate $10^{-3}$ decayed to
#   $10^{-4}$, no dropout (compare with this chapter's recipe, printed in the training section). The
#   README reports a validation loss of 1.88, and tinycore's own run of that recipe
#   (`benchmarks/training.py`, on the course's 2-core CI machine) ends at 1.886 after 82 s, reaching
#   2.0 after about 62 s.
# - **nanoGPT's GPU configuration** (`config/train_shakespeare_char.py`) is a bigger model with a longer
#   context, trained on many times as many characters (the next cell counts them); the README reports a
#   best validation loss of 1.4697 after about 3 minutes on an A100 GPU.
#
# ### The GPU configuration as a tinycore recipe
#
# Here is nanoGPT's GPU configuration written as a tinycore `Recipe`. This cell only builds the
# model on PyTorch's `meta` device, which records shapes without allocating memory, to count its
# parameters; it does **not** train it.

# %%
NANOGPT_GPU = Recipe(  # nanoGPT's config/train_shakespeare_char.py, in tinycore's terms
    model=gpt_config(vocab_size=V, context_length=256, d_model=384, num_layers=6, num_heads=6),
    train=TrainConfig(steps=5000, lr=1e-3, min_lr=1e-4, warmup_steps=100, betas=(0.9, 0.99), weight_decay=0.1,
                      grad_clip=1.0, eval_every=250, eval_batches=200),
    batch_size=64,
)
big = NANOGPT_GPU.build(device="meta")  # shapes only: nothing is allocated, nothing is trained
big_tokens = NANOGPT_GPU.train.steps * NANOGPT_GPU.batch_size * NANOGPT_GPU.model.context_length
print(NANOGPT_GPU.model)
print(f"{count_parameters(big):,} parameters ({count_parameters(big) / count_parameters(model):.0f}x this chapter's); "
      f"formula: {gpt_parameters(V, 256, 384, 6, 4 * 384):,}")
print(f"{big_tokens:,} training characters ({big_tokens / tokens_seen:.0f}x this chapter's, "
      f"{big_tokens / len(train_ids):.0f} passes over the training text)")
print(f"training compute, 6 N D (chapter 14): {6 * count_parameters(big) * big_tokens:.1e} FLOPs "
      f"vs {6 * count_parameters(model) * tokens_seen:.1e} here")

# %% [markdown]
# To train it, open this chapter in Colab with a GPU runtime (Runtime → Change runtime type → GPU), run
# the cells above, and then this code in a new cell. `device` is then `"cuda"`, and every call is the
# same as this chapter's run:
#
# ```python
# set_seed(0)
# big = NANOGPT_GPU.build(device)
# context = NANOGPT_GPU.model.context_length
# big_history = train(big, next_token_loss, lm_batches(train_ids, NANOGPT_GPU.batch_size, context, device),
#                     NANOGPT_GPU.train, device, val_batch=lm_batches(val_ids, NANOGPT_GPU.batch_size, context, device))
# print(f"best validation loss {min(big_history.val_loss):.3f} at step "
#       f"{big_history.eval_step[big_history.val_loss.index(min(big_history.val_loss))]}")
# print(sample_text(big, 500))
# ```
#
# Two differences from nanoGPT to expect, since this course has not run it:
#
# - **No dropout.** nanoGPT trains this model with dropout 0.2. It passes over the training text about
#   80 times (printed above), enough to start memorising it, and dropout holds that back; tinycore has no dropout, so
#   expect the validation loss to bottom out and then rise while the training loss keeps falling.
#   nanoGPT reports the *best* validation loss of the run (it saves a checkpoint only when the
#   validation loss improves); compare that with `min(big_history.val_loss)`, not with the last value.
# - **Speed.** nanoGPT's 3 minutes use `torch.compile` and bfloat16 mixed precision; tinycore runs
#   in float32 without compilation, so expect the run to take several times longer.
#
# ## Explore: temperature and top-k
#
# The figure shows the trained model's distribution over the next character after a prompt, with the
# default settings $\tau = 1$ and no top-k (top-k = 65 keeps every character), and below it a sample
# that continues the prompt. It uses the KV cache, so it can write only until the context is full.

# %%
PROMPT = "ROMEO:\nWhat is th"


def next_char_probs(temperature, top_k):
    prompt_ids = tok.encode(PROMPT)[None].to(device)  # (1, len(PROMPT))
    with torch.no_grad():
        z = model(prompt_ids)[0, -1].float().cpu() / temperature  # (V,): the last position predicts
    return tinycore.top_k_filter(z, top_k).softmax(dim=-1)  # (V,)


def draw_next_char(temperature, top_k, ax):
    probs = next_char_probs(temperature, top_k)
    order = probs.argsort(descending=True)[:15]  # the 15 likeliest characters
    ax.bar(range(15), probs[order], color="C0")
    ax.set_xticks(range(15), [show(tok.itos[i]) for i in order.tolist()])
    ax.set(ylim=(0, 1), ylabel="probability",
           title=f"next character after {PROMPT[-10:]!r}: tau = {temperature:g}, top-k = {top_k}")


def continue_prompt(temperature, top_k, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids = tok.encode(PROMPT)[None].to(device)  # (1, len(PROMPT))
    new = min(100, m_cfg.context_length - prompt_ids.shape[1])  # the cache holds context_length positions
    out = generate(model, prompt_ids, new, temperature=temperature, top_k=top_k, generator=generator)
    return tok.decode(out[0].cpu())  # (len(PROMPT) + new,) -> str


fig, ax = plt.subplots(figsize=(8, 3.2))
draw_next_char(1.0, V, ax)
plt.show()
print(continue_prompt(1.0, V))

# %% [markdown]
# Move the sliders. Low temperatures pile the probability onto the likeliest character (at $\tau =
# 0.1$ sampling is nearly greedy, and the text tends to loop); high temperatures flatten the bars and
# the text falls apart. Top-k removes the tail: with $k = 1$ every temperature gives the same, greedy,
# text. Change the seed to draw another sample with the same settings.

# %% tags=["nbval-ignore-output"]
def explore_sampling(temperature=1.0, top_k=V, seed=0):
    fig, ax = plt.subplots(figsize=(8, 3.2))
    draw_next_char(temperature, top_k, ax)
    plt.show()
    print(continue_prompt(temperature, top_k, seed))


_ = interact(
    explore_sampling,
    temperature=FloatSlider(value=1.0, min=0.1, max=2.0, step=0.1, description="temperature"),
    top_k=IntSlider(value=V, min=1, max=V, description="top-k"),
    seed=IntSlider(value=0, min=0, max=20, description="seed"),
)

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} The causal language-modelling loss
# :label: ex-gpt-causal-lm-loss
# ```
# `get_batch` shifts the text when it cuts windows, so `lm_loss` compares logits and targets at the same
# index. Many codebases (Hugging Face's among them) instead pass the model's input ids as the labels and
# do the shift inside the loss. Write `causal_lm_loss(logits, token_ids)`: the mean cross-entropy of
# predicting `token_ids[b, t + 1]` from `logits[b, t]`, over every batch element and every position that
# has a next token.
#
# - Shapes: `logits` `(B, T, V)`, `token_ids` `(B, T)` (long); return a scalar. A window of $T$ tokens
#   holds $T - 1$ predictions. The checker tries `(B, T, V)` = `(2, 5, 7)`, `(3, 4, 65)`, `(1, 9, 11)`
#   and `(4, 2, 5)`, and compares values and gradients with PyTorch's cross-entropy.
#
# Hint: which position's logits have no target, and which token is never a target? Hint:
# `F.cross_entropy` wants `(N, V)` logits and `(N,)` targets; `.reshape(-1, V)` gets you there.

# %%
def causal_lm_loss(logits, token_ids):
    raise NotImplementedError("Exercise: implement causal_lm_loss")


# %% tags=["raises-exception"]
checks.causal_lm_loss(causal_lm_loss)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-gpt-causal-lm-loss
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def causal_lm_loss(logits, token_ids):
    V = logits.shape[-1]
    predictions = logits[:, :-1].reshape(-1, V)  # (B, T-1, V) -> (B*(T-1), V): the last position has no target
    targets = token_ids[:, 1:].reshape(-1)  # (B, T-1) -> (B*(T-1),): the first token is never predicted
    return F.cross_entropy(predictions, targets)


checks.causal_lm_loss(causal_lm_loss)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Temperature
# :label: ex-gpt-temperature-probs
# ```
# Write `temperature_probs(logits, temperature)`, the sampling distribution at temperature $\tau$:
# $p_j = \exp(z_j/\tau) / \sum_k \exp(z_k/\tau)$ over the last axis.
#
# - Shapes: `logits` `(..., V)` with any number of leading axes, `temperature` a float $> 0$; return
#   `(..., V)` probabilities, each row summing to 1. The checker tries `(2, 7)`, `(3, 4, 65)`, `(6, 9)`
#   and `(5, 11)` with temperatures 0.5, 2, 1.7 and 0.1, one case with logits near 50.
#
# Hint: a temperature below 1 must make the distribution *sharper*. Hint: logits near 50 at $\tau = 0.1$
# become 500, and `exp(500)` overflows in float32; subtract each row's maximum first, or use
# `torch.softmax`.

# %%
def temperature_probs(logits, temperature):
    raise NotImplementedError("Exercise: implement temperature_probs")


# %% tags=["raises-exception"]
checks.temperature_probs(temperature_probs)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-gpt-temperature-probs
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def temperature_probs(logits, temperature):
    scaled = logits / temperature  # (..., V)
    scaled = scaled - scaled.max(dim=-1, keepdim=True).values  # the largest becomes 0: exp cannot overflow
    weights = scaled.exp()  # (..., V)
    return weights / weights.sum(dim=-1, keepdim=True)  # (..., V) / (..., 1)


checks.temperature_probs(temperature_probs)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Top-k filtering
# :label: ex-gpt-top-k-filter
# ```
# Write `top_k_filter(logits, k)`: keep the `k` largest logits of each row unchanged and set every other
# entry to `float("-inf")`. When several logits tie with the $k$-th largest, keep all of them (nanoGPT,
# Hugging Face and tinycore all do: they compare each logit with the $k$-th largest value). Return a new
# tensor; the input must not change.
#
# - Shapes: `logits` `(..., V)`, `1 <= k <= V`; return `(..., V)`. The checker tries `(2, 9)`,
#   `(3, 4, 65)`, `(2, 10)` with ties, `(4, 6)` and `(2, 7)`, with `k` from 1 to `V`, against a plain
#   row-by-row loop.
#
# Hint: `torch.topk(logits, k, dim=-1).values` is sorted in descending order, so its last column is the
# $k$-th largest. Hint: `masked_fill` returns a new tensor.

# %%
def top_k_filter(logits, k):
    raise NotImplementedError("Exercise: implement top_k_filter")


# %% tags=["raises-exception"]
checks.top_k_filter(top_k_filter)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-gpt-top-k-filter
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def top_k_filter(logits, k):
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., V) -> (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))  # ties with the k-th largest survive


checks.top_k_filter(top_k_filter)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - A language model factorises $p(x_0, \dots, x_T)$ into next-token predictions. A decoder makes all
#   $T$ predictions of a window in one pass, with the targets equal to the inputs shifted by one
#   (teacher forcing); `lm_loss` is one cross-entropy over the $B \times T$ predictions.
# - The causal mask is what makes that legal: the one-pass predictions equal $T$ separate runs on the
#   prefixes. Without it, the model copies the next input and its loss falls far below anything honest
#   everywhere except the last position, where it is worse than a uniform guess.
# - GPT = token embeddings + learned positions, $L$ pre-LN blocks, a final LayerNorm, and a head tied
#   to the token embeddings. $N = VD + L_{\text{ctx}}D + L(4D^2 + 2DF + 9D + F) + 2D$; tying saves $VD$
#   (39M of GPT-2 small's 124M). Your assembled `GPT` equals `TransformerLM` with `gpt_config`, logits and
#   gradients, after `load_state_dict`.
# - With GPT-2's $\mathcal{N}(0, 0.02^2)$ weights the logits have spread $0.02\sqrt{D}$ (about a quarter here), so
#   the loss starts at $\ln 65 \approx 4.17$; a tied table at std 1 would start dozens of nats higher.
# - Trained with `tinycore.recipes.SHAKESPEARE_GPT`, the model passes the bigram model's 2.48 and ends
#   at the validation loss printed above; its loss falls with the position in the window as it reads more
#   context.
# - Temperature divides the logits ($\tau < 1$ sharper, $> 1$ flatter); top-k sets all but the $k$
#   largest to $-\infty$. Lower temperatures spell more real words and repeat more.
# - What to expect on Tiny Shakespeare's validation text: uniform 4.17, unigram 3.35, bigram 2.48, this
#   chapter's GPT as printed, nanoGPT's CPU recipe 1.89, nanoGPT's GPU configuration 1.47.
#
# ## References
#
# - The decoder-only transformer trained as a language model: GPT-1 {cite:t}`radford2018improving`;
#   GPT-2's pre-LN blocks, final LayerNorm and scaled initialisation: {cite:t}`radford2019language`.
# - The transformer and its causal decoder: {cite:t}`vaswani2017attention`; pre-LN:
#   {cite:t}`xiong2020layer`.
# - Tying the input and output embeddings: {cite:t}`press2017using`.
# - Top-k sampling: {cite:t}`fan2018hierarchical`;
#   nucleus (top-p) sampling, its successor: {cite:t}`holtzman2020curious`.
# - AdamW: {cite:t}`loshchilov2019decoupled`.
# - nanoGPT, its Tiny Shakespeare configurations and the published losses: {cite:t}`karpathy2022nanogpt`;
#   the dataset comes from char-rnn {cite:p}`karpathy2015charrnn`.

# %% [markdown]
# # Encoder-only models
#
# A language model like GPT reads left to right, because it has to: it writes the next token, and the
# next token does not exist yet. But many tasks hand the model the whole text at once. To decide whether
# a review is positive, tag each word of a sentence, or fill in a word someone smudged, there is no
# reason to hide the right-hand side from anybody. An **encoder** drops the causal mask: every token
# attends to every other real token, before and after it. BERT {cite:p}`devlin2019bert` made this the
# standard way to build text representations, and trained it by hiding tokens and asking the model to
# fill them in.
#
# In this chapter you will:
#
# - measure, by counting characters in Tiny Shakespeare, how much more one neighbour on each side tells
#   you about a hidden character than two neighbours on the left;
# - draw the three masks an encoder meets (causal, bidirectional, padding) and build the padding mask,
#   a `(B, 1, 1, T)` tensor that hides the padded keys from every query;
# - assemble tinycore's `TransformerEncoder` from chapter 9's blocks with `causal=False`, and prove that
#   it equals PyTorch's `nn.TransformerEncoder` with copied weights, values and gradients, padding
#   included (after turning PyTorch's padding mask the other way round);
# - implement BERT's masked-language-model objective: hide 15% of the tokens (80% `[MASK]`, 10% a random
#   token, 10% unchanged) and take the loss at those positions only;
# - train a bidirectional and a causal model of the same size for the same steps to fill masked
#   characters, and see the bidirectional one win clearly on held-out text;
# - train a `[CLS]` classifier on padded sequences of different lengths, prove that padding changes
#   nothing, and look at what the `[CLS]` token attends to.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from ipywidgets import Dropdown, IntSlider, interact

from tinycore import (
    CharTokenizer, TrainConfig, TransformerBlock, check_shape, checks, count_parameters, get_batch,
    load_tiny_shakespeare, set_seed, train, train_val_split,
)
import tinycore.encoder  # its mask_tokens and masked_lm_loss are also the names of two exercises
from tinycore.encoder import TransformerEncoder, key_padding_mask
from tinycore.plotting import heatmap, plot_curves, use_style

gen = set_seed(0)
use_style()

# %% [markdown]
# ## One side or both?
#
# Hide one character of a line of Shakespeare and try to guess it. With only the text before the gap,
# "`my lor_`" is probably "d", but "`the kin_`" could be "g", "d" or "s" (*king*, *kind*, *kinsman*). With the text after it too,
# "`the kin_ of Naples`" leaves no doubt. How much does the right-hand side help, on average? Counting
# answers that without any neural network. For each kind of context, count in the training text how often
# each character fills the gap in that context, predict with those frequencies (plus one, so that no
# probability is zero) on the held-out text, and measure the loss in nats and how often the most frequent
# character is right:

# %%
text = load_tiny_shakespeare()
tokenizer = CharTokenizer(text)
train_ids, val_ids = train_val_split(tokenizer.encode(text))
V_CHARS = tokenizer.vocab_size  # 65 characters


def count_predictor(offsets):
    """Predict the character at t from those at t + o for o in `offsets`, by add-one counting on the
    training text; return (loss in nats, accuracy of the most frequent answer) on the validation text."""
    lo, hi = min(offsets + (0,)), max(offsets + (0,))

    def contexts(ids):
        n = len(ids) - (hi - lo)  # the positions t whose whole context lies inside the text
        key = torch.zeros(n, dtype=torch.long)
        for o in offsets:  # one number per context: a base-65 code of its characters
            key = key * V_CHARS + ids[o - lo: o - lo + n]  # (n,)
        return key, ids[-lo: -lo + n]  # (n,) contexts and (n,) characters to fill

    key, target = contexts(train_ids)
    counts = torch.ones(V_CHARS ** len(offsets), V_CHARS, dtype=torch.float64)  # add-one smoothing
    counts.index_put_((key, target), torch.ones(len(key), dtype=torch.float64), accumulate=True)
    probs = counts / counts.sum(dim=1, keepdim=True)  # (contexts, 65): each row a distribution
    key, target = contexts(val_ids)
    loss = -probs[key, target].log().mean().item()
    accuracy = (probs.argmax(dim=1)[key] == target).double().mean().item()
    return loss, accuracy


counting = {}  # offsets -> (loss, accuracy), kept for the experiment below
print(f"{'context used to fill character t':38s}{'loss (nats)':>12s}{'accuracy':>10s}")
for name, offsets in [("none (character frequencies)", ()), ("t-1, one before", (-1,)),
                      ("t-2, t-1, two before", (-2, -1)), ("t-1 and t+1, one on each side", (-1, 1))]:
    counting[offsets] = count_predictor(offsets)
    print(f"{name:38s}{counting[offsets][0]:12.2f}{counting[offsets][1]:10.2f}")

# %% [markdown]
# One character on each side (1.67 nats, right 48% of the time) beats two characters on the left (2.07
# nats, 38%), although both contexts are two characters long. The previous-character row is chapter 1's
# bigram model (2.48 nats). Words are constrained from both ends, and a model that fills gaps should look
# both ways. A decoder cannot: its causal mask hides everything after the query. An encoder removes the
# mask.
#
# ## Three masks
#
# Attention scores every query $i$ against every key $j$ and, where a boolean mask $M_{ij}$ is False,
# replaces the score by $-\infty$ before the softmax, so that key $j$ gets weight zero
# (chapter 5):
#
# $$
# \alpha_{ij} = \frac{M_{ij}\, e^{s_{ij}}}{\sum_{j'} M_{ij'}\, e^{s_{ij'}}}, \qquad
# M^{\text{causal}}_{ij} = [\,j \le i\,], \qquad M^{\text{bidirectional}}_{ij} = 1, \qquad
# M^{\text{padding}}_{bij} = [\,j < n_b\,].
# $$
#
# The third one is new. Sentences in a batch have different lengths $n_b$, but a tensor needs one $T$,
# so short sentences are filled up with a `[PAD]` token. Padding is not text: no real token should attend
# to it. The padding mask depends only on the *key* $j$ (and on the sentence $b$), never on the query $i$.
# Here the three for $T = 8$, the padding one for a sentence of $n_b = 5$ real tokens:

# %%
T_DEMO, n_real = 8, 5
causal = torch.ones(T_DEMO, T_DEMO).tril()  # (T, T): j <= i
bidirectional = torch.ones(T_DEMO, T_DEMO)  # (T, T): every key
padding = (torch.arange(T_DEMO) < n_real).float().expand(T_DEMO, T_DEMO)  # (T,) -> (T, T): the same row for every query
tokens = ["[CLS]", "my", "lord", ",", "I", "[PAD]", "[PAD]", "[PAD]"]
fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.9))
for ax, mask, title in [(axes[0], causal, "causal (decoder): j <= i"),
                        (axes[1], bidirectional, "bidirectional (encoder): all j"),
                        (axes[2], padding, f"encoder with padding: j < {n_real}")]:
    heatmap(mask, ax, row_labels=tokens, col_labels=tokens, title=title, cmap="Blues", colorbar=False, vmin=0, vmax=1.3)
    ax.set_xticks(range(T_DEMO), tokens, rotation=60)
    ax.set_xlabel("key j (attended to)")
axes[0].set_ylabel("query i")
for i in range(n_real, T_DEMO):  # the padded queries: computed, then ignored
    axes[2].axhline(i, color="0.6", lw=0.5)
axes[2].text(2.0, 6.1, "padded queries:\ncomputed, never read", ha="center", va="center", fontsize=8, color="white")
plt.tight_layout()
plt.show()

# %% [markdown]
# Blue means "may attend". In the padding picture the padded *queries* (the bottom rows) still attend to
# the real tokens and produce vectors; nobody reads them. What matters is the columns: no real query
# ever puts weight on a padded key, so the real tokens' outputs are exactly what they would be without the
# padding. We will prove that in the classifier section.
#
# ### The padding mask in code
#
# A batch of sentences comes with their lengths. The mask of real tokens is a comparison of positions with
# lengths, and attention wants it as a key mask of shape `(B, 1, 1, T)`, which broadcasts against the scores'
# `(B, H, T, T)`: the same row of keys for every head and every query.

# %%
lengths = torch.tensor([8, 5, 3])  # three sentences padded to T = 8
B, T, H = 3, 8, 2
is_real = torch.arange(T)[None, :] < lengths[:, None]  # (1, T) < (B, 1) -> (B, T): True = real token
key_mask = check_shape(is_real[:, None, None, :], (B, 1, 1, T), "B 1 1 T", "key_mask")  # (B, T) -> (B, 1, 1, T)
full = check_shape(key_mask.expand(B, H, T, T), (B, H, T, T), "B H T T", "full")  # what the scores see
print("is_real (one row per sentence):")
print(is_real.int())
print("sentence 1, head 0, every query sees keys 0-4 only:", torch.equal(full[1, 0], is_real[1].expand(T, T)))

# %% [markdown]
# The wrong shape, `(B, 1, T, 1)`, would mask *queries* instead: the padded rows would be blanked, and the
# real queries would still attend to the padded keys. tinycore's `key_padding_mask` makes the key mask
# and refuses what would go wrong silently: a mask of the wrong shape or dtype, and a sentence with no
# real token at all (its queries would have nothing to attend to):

# %%
print(inspect.getsource(key_padding_mask))
for bad in (is_real.long(), is_real[:, :5], torch.zeros(3, 8, dtype=torch.bool)):
    try:
        key_padding_mask(bad, (3, 8))
    except (TypeError, ValueError) as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# Note the polarity. In this course, as in `F.scaled_dot_product_attention`, True means *may attend*. The
# padding masks of `nn.MultiheadAttention` and `nn.TransformerEncoder` (`key_padding_mask`,
# `src_key_padding_mask`) mean the opposite, True = *padding, ignore*: pass them `~is_real`.
#
# ## The encoder
#
# An encoder is the decoder of the next chapter without its causal mask: token embeddings plus learned
# position embeddings, a stack of $L$ transformer blocks (chapter 9) with `causal=False`, and a final
# LayerNorm, since the blocks are pre-norm:
#
# $$
# \mathbf{x}^{(0)}_t = E_{\mathrm{id}(t)} + P_t, \qquad
# \mathbf{x}^{(l)} = \mathrm{Block}_l\!\left(\mathbf{x}^{(l-1)};\, M\right), \qquad
# \mathbf{h}_t = \mathrm{LayerNorm}\!\left(\mathbf{x}^{(L)}_t\right),
# $$
#
# where each block is $\mathbf{x} \leftarrow \mathbf{x} + \mathrm{Attn}(\mathrm{LN}_1(\mathbf{x}); M)$, then
# $\mathbf{x} \leftarrow \mathbf{x} + \mathrm{FFN}(\mathrm{LN}_2(\mathbf{x}))$, with BERT's choices: LayerNorm,
# a GELU feed-forward network of width $4D$, and biases. $\mathbf{h}_t$ is the encoder's output: one vector
# per token that describes it *in the context of the whole sentence*. Everything in it is built from
# tinycore pieces you have met. First by hand, for a batch with padding:

# %%
V_DEMO, CTX_DEMO, D, L, H, F_FF = 20, 16, 32, 2, 4, 128
torch.manual_seed(0)
blocks = nn.ModuleList(
    TransformerBlock(D, H, F_FF, causal=False, norm="layernorm", ffn="gelu", bias=True) for _ in range(L)
)
token_table = torch.randn(V_DEMO, D, generator=gen) * 0.5  # (V, D)
position_table = torch.randn(CTX_DEMO, D, generator=gen) * 0.5  # (context, D)
final_norm = nn.LayerNorm(D)


def encode_by_hand(token_ids, is_real):
    T = token_ids.shape[1]
    x = token_table[token_ids] + position_table[:T]  # (B, T, D) + (T, D) -> (B, T, D)
    mask = is_real[:, None, None, :]  # (B, T) -> (B, 1, 1, T)
    for block in blocks:
        x = block(x, mask=mask)  # (B, T, D)
    return final_norm(x)  # (B, T, D)


ids_demo = torch.randint(0, V_DEMO, (B, T), generator=gen)  # (3, 8), with is_real from above
states = check_shape(encode_by_hand(ids_demo, is_real), (B, T, D), "B T D", "states")
print(blocks[0])

# %% [markdown]
# `tinycore.encoder.TransformerEncoder` is the same computation with BERT's parameter names and
# initialisation (`token_embeddings`, `position_embeddings`, `layers.{i}`, `ln_final`), two heads that we
# will use later (`mlm_head`, `cls_head`) and the checks of its input. Copy the hand-built weights into it
# and it gives the same states:

# %%
encoder = TransformerEncoder(V_DEMO, CTX_DEMO, D, L, H, F_FF)
with torch.no_grad():
    encoder.token_embeddings.weight.copy_(token_table)
    encoder.position_embeddings.weight.copy_(position_table)
    encoder.layers.load_state_dict(blocks.state_dict())
    encoder.ln_final.load_state_dict(final_norm.state_dict())
print("TransformerEncoder == encode_by_hand:", torch.allclose(encoder(ids_demo, is_real), states, atol=1e-6))
print(inspect.getsource(TransformerEncoder.forward))
print(inspect.getsource(TransformerEncoder._embed))

# %% [markdown]
# ### Checked against PyTorch's `nn.TransformerEncoder`
#
# PyTorch ships an encoder too: `nn.TransformerEncoderLayer` with `norm_first=True` (pre-norm),
# `activation="gelu"` and biases is the same block, and `nn.TransformerEncoder` stacks them and applies a
# final norm. Its attention keeps $W_q, W_k, W_v$ in one `in_proj_weight` of shape `(3D, D)`, and its
# padding mask is True for padding. The cell copies tinycore's weights into it, in float64, runs both on a
# padded batch, and compares the outputs and the gradients of every parameter, after backpropagating the
# same random output gradient through both:

# %%
def paired_parameters(ours, theirs):
    """(a list of our parameters, their parameter) pairs: ours concatenated along dim 0 equal theirs."""
    for o, t in zip(ours.layers, theirs.layers):
        attn = o.attn
        yield [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], t.self_attn.in_proj_weight  # (3D, D)
        yield [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias], t.self_attn.in_proj_bias  # (3D,)
        for o_part, t_part in [(attn.output_proj, t.self_attn.out_proj), (o.ffn.w1, t.linear1), (o.ffn.w2, t.linear2),
                               (o.ln1, t.norm1), (o.ln2, t.norm2)]:
            yield [o_part.weight], t_part.weight
            yield [o_part.bias], t_part.bias
    yield [ours.ln_final.weight], theirs.norm.weight
    yield [ours.ln_final.bias], theirs.norm.bias


ours = encoder.double()
with torch.no_grad():  # non-trivial biases and norm gains, so that every parameter matters
    for p in ours.parameters():
        if p.ndim == 1:
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
layer = nn.TransformerEncoderLayer(D, H, F_FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
                                   dtype=torch.float64)
theirs = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(D, dtype=torch.float64), enable_nested_tensor=False)
with torch.no_grad():
    for our_params, their_param in paired_parameters(ours, theirs):
        their_param.copy_(torch.cat(our_params))


def our_stack(x, is_real):
    """tinycore's blocks and final norm, from the embedded input x (B, T, D)."""
    mask = key_padding_mask(is_real, is_real.shape)  # (B, T) -> (B, 1, 1, T)
    for block in ours.layers:
        x = block(x, mask=mask)  # (B, T, D)
    return ours.ln_final(x)


x = torch.randn(B, T, D, generator=gen, dtype=torch.float64)  # an embedded batch, with is_real from above
grad_out = torch.randn(B, T, D, generator=gen, dtype=torch.float64)  # the same output gradient for both
x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
out_ours = our_stack(x_ours, is_real)
out_theirs = theirs.train()(x_theirs, src_key_padding_mask=~is_real)  # True = padding in PyTorch; train(): no fast path
out_ours.backward(grad_out)
out_theirs.backward(grad_out)
pairs = list(paired_parameters(ours, theirs))
param_errors = [(torch.cat([p.grad for p in o]) - t.grad).abs().max().item() for o, t in pairs]
print("outputs equal to 1e-10:", (out_ours - out_theirs).abs().max().item() < 1e-10)
print("input gradients equal to 1e-10:", (x_ours.grad - x_theirs.grad).abs().max().item() < 1e-10)
print(f"gradients of all {len(pairs)} parameter tensors of PyTorch's model equal to 1e-10:", max(param_errors) < 1e-10)
out_unmasked = theirs(x)  # no padding mask: the padded keys are attended to
print("without the padding mask the real tokens' outputs change:",
      (out_unmasked - out_ours).abs()[is_real].max().item() > 1e-3)

# %% [markdown]
# The last line is the reason for the mask: forget it, and the real tokens' outputs change with the padding.
#
# ### What "bidirectional" means for the outputs
#
# In a decoder the output at position $t$ depends on tokens $0..t$ only; in an encoder it depends on the
# whole sentence. Change the token at position 5 of a sentence and see which outputs move, in an encoder
# and in the same model with `causal=True`:

# %%
torch.manual_seed(1)
for causal in (False, True):
    model = TransformerEncoder(V_DEMO, CTX_DEMO, D, L, H, F_FF, causal=causal)
    ids = torch.randint(0, V_DEMO, (1, 10), generator=torch.Generator().manual_seed(3))  # (1, 10)
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1) % V_DEMO  # another token at position 5
    with torch.no_grad():
        moved = (model(changed) - model(ids)).abs().amax(dim=-1)[0]  # (1, 10, D) -> (10,)
    kind = "causal (decoder) " if causal else "bidirectional    "
    print(kind, "outputs that changed:", "".join("x" if m > 1e-6 else "." for m in moved.tolist()), "(positions 0-9)")

# %% [markdown]
# ## Masked language modelling
#
# A decoder learns by predicting the next token; an encoder cannot, because it sees the next token.
# Its output at position $t$ could simply copy the input at $t$. BERT's answer is the **masked language
# model** (MLM): corrupt the input by hiding some tokens, and train the encoder to recover them from the
# context on both sides. {cite:t}`devlin2019bert` choose 15% of the positions at random, and of those
#
# - 80% are replaced by a special `[MASK]` token,
# - 10% by a random token,
# - 10% are left unchanged.
#
# Why not `[MASK]` every time? `[MASK]` never occurs in real text, so a model that only ever had to work
# at `[MASK]` positions could neglect the representation of every other token, which is what later tasks
# use. With 10% of the targets hidden behind a wrong token and 10% behind the right one, the model cannot
# tell which of the visible tokens it will be asked about, and has to keep a good guess for all of them.
# The loss is the cross-entropy at the chosen positions $\mathcal{M}$ only, where $\tilde{\mathbf{x}}$ is
# the corrupted sentence:
#
# $$
# \mathcal{L} = -\frac{1}{|\mathcal{M}|} \sum_{(b,t) \in \mathcal{M}} \log p_\theta\!\left(x_{bt} \mid \tilde{\mathbf{x}}_b\right).
# $$
#
# At the other positions the answer is in the input; counting them would reward copying. tinycore's
# `mask_tokens` draws every random number from a generator you pass in, so a batch can be reproduced:

# %%
print(inspect.getsource(tinycore.encoder.mask_tokens))
print(inspect.getsource(tinycore.encoder.masked_lm_loss))

# %% [markdown]
# For Tiny Shakespeare the characters keep their ids 0-64 and `[MASK]` gets id 65, so the models'
# vocabulary has 66 entries; random replacements are drawn from the 65 characters only. Here is a held-out
# line before and after masking (`_` shows `[MASK]`, and `^` marks the positions the loss is taken at),
# and the proportions over a large batch:

# %%
MASK_ID = V_CHARS  # 65: one id past the characters
V = V_CHARS + 1  # the models' vocabulary: 65 characters and [MASK]


def show(ids):
    """Characters, with [MASK] as '_' (a character Tiny Shakespeare does not contain)."""
    return "".join("_" if i == MASK_ID else tokenizer.decode([i]) for i in ids.tolist())


line = val_ids[None, 1000:1064]  # (1, 64)
inputs, is_masked = tinycore.encoder.mask_tokens(line, MASK_ID, V_CHARS, torch.Generator().manual_seed(4))
print("original :", show(line[0]).replace("\n", "/"))
print("input    :", show(inputs[0]).replace("\n", "/"))
print("loss at  :", "".join("^" if m else " " for m in is_masked[0].tolist()))

big = val_ids[:100_000].view(100, 1000)  # (100, 1000)
inputs, is_masked = tinycore.encoder.mask_tokens(big, MASK_ID, V_CHARS, torch.Generator().manual_seed(5))
chosen_in, chosen_orig = inputs[is_masked], big[is_masked]  # (N,) each
print(f"chosen: {is_masked.float().mean():.3f} of the positions; of those, [MASK] {(chosen_in == MASK_ID).float().mean():.3f}, "
      f"another character {((chosen_in != MASK_ID) & (chosen_in != chosen_orig)).float().mean():.3f}, "
      f"unchanged {(chosen_in == chosen_orig).float().mean():.3f}")

# %% [markdown]
# (A random replacement is the original character one time in 65, which is why "unchanged" is a little
# above 0.10.) BERT masked its data once, while preparing it (ten copies of each sentence, each masked
# differently); RoBERTa {cite:p}`liu2019roberta` draws a new mask every time a sentence is used, as we do here by
# masking each batch as it is drawn.
#
# ## Experiment: both sides against one side
#
# Now the question from the start of the chapter, with trained models instead of counts. Two models of
# exactly the same size and initial weights, trained with the same batches for the same number of steps
# on the masked-character task; the only difference is the causal mask. The causal model sees the
# characters before a gap (and the `[MASK]` in it); the bidirectional one sees both sides.
#
# The models are small enough for a CPU: one block of width $D = 32$ with 2 heads, windows of 16
# characters, 64 windows per step.

# %%
device = torch.device("cpu")  # small models: a CPU is fast enough, and the numbers match the book's exactly
T_MLM, BATCH, D_MLM, LAYERS_MLM, HEADS_MLM = 16, 64, 32, 1, 2
mlm_config = TrainConfig(steps=1000, lr=6e-3, warmup_steps=50, eval_every=100, eval_batches=4)


def mlm_batches(data):
    """A sampler for `train`: generator -> (inputs, targets, is_masked), each (BATCH, T_MLM)."""

    def sample(generator):
        x, _ = get_batch(data, BATCH, T_MLM, generator)  # (B, T) windows; the shifted copy is not needed
        inputs, is_masked = tinycore.encoder.mask_tokens(x, MASK_ID, V_CHARS, generator)  # 15% chosen, 80/10/10
        return inputs.to(device), x.to(device), is_masked.to(device)

    return sample


def mlm_loss(model, batch):
    inputs, targets, is_masked = batch
    logits = model.mlm_logits(inputs)  # (B, T) -> (B, T, V)
    return tinycore.encoder.masked_lm_loss(logits, targets, is_masked)  # () over the masked positions


models, histories = {}, {}
for name, causal in [("bidirectional", False), ("causal", True)]:
    torch.manual_seed(0)  # the same initial weights for both
    models[name] = TransformerEncoder(V, T_MLM, D_MLM, LAYERS_MLM, HEADS_MLM, 4 * D_MLM, causal=causal)
    histories[name] = train(models[name], mlm_loss, mlm_batches(train_ids), mlm_config, device,
                            val_batch=mlm_batches(val_ids))
print("parameters per model:", count_parameters(models["bidirectional"]))
print("same parameter count:", count_parameters(models["bidirectional"]) == count_parameters(models["causal"]))

# %% [markdown]
# Both are evaluated on the same 2048 held-out windows with the same 15% of positions masked, the task
# they were trained on:

# %%
val_windows, _ = get_batch(val_ids, 2048, T_MLM, torch.Generator().manual_seed(6))  # (2048, 16), held out


@torch.no_grad()
def masked_char_scores(model, windows, generator):
    """Loss and accuracy at the masked positions of `windows`, masked with `generator`."""
    inputs, is_masked = tinycore.encoder.mask_tokens(windows, MASK_ID, V_CHARS, generator)  # (N, T) each
    logits = model.eval().mlm_logits(inputs)[is_masked]  # (N, T, V) -> (M, V): the masked positions
    targets = windows[is_masked]  # (M,)
    return F.cross_entropy(logits, targets).item(), (logits.argmax(dim=-1) == targets).float().mean().item()


print(f"{'held-out, 15% masked':22s}{'loss (nats)':>12s}{'accuracy':>10s}")
scores = {}
for name, model in models.items():
    scores[name] = masked_char_scores(model, val_windows, torch.Generator().manual_seed(7))  # the same masks
    print(f"{name:22s}{scores[name][0]:12.2f}{scores[name][1]:10.2f}")

# %% [markdown]
# The training task mixes easy and hard cases: some gaps have a masked neighbour, and the characters at the
# ends of a window have a neighbour on one side only. To see where the bidirectional model gains, hide
# **one** character at a time, at each position of 512 held-out windows, and measure the accuracy at each
# position. The dashed lines are the counting predictors from the start of the chapter, which always saw
# clean neighbours:

# %%
@torch.no_grad()
def accuracy_by_position(model, windows):
    """Hide position t of every window (for each t in turn); return the accuracy at each t. Shapes: (N, T) -> (T,)"""
    N, T = windows.shape
    rows = torch.arange(N * T)
    position = torch.arange(T).repeat_interleave(N)  # (T*N,): copy t of the windows hides position t
    hidden = windows.repeat(T, 1)  # (N, T) -> (T*N, T)
    hidden[rows, position] = MASK_ID
    logits = model.eval().mlm_logits(hidden)[rows, position]  # (T*N, T, V) -> (T*N, V)
    right = logits.argmax(dim=-1) == windows.repeat(T, 1)[rows, position]  # (T*N,)
    return right.view(T, N).float().mean(dim=1)  # (T,)


by_position = {name: accuracy_by_position(model, val_windows[:512]) for name, model in models.items()}
counted = {"counting, t-1 and t+1": counting[(-1, 1)][1], "counting, t-2 and t-1": counting[(-2, -1)][1]}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
plot_curves({name: h.val_loss for name, h in histories.items()}, ax=axes[0], x=histories["causal"].eval_step,
            ylabel="held-out loss at masked positions", title="learning curves (same steps, same batches)")
plot_curves({name: acc for name, acc in by_position.items()}, ax=axes[1], x=range(T_MLM), xlabel="position of the hidden character",
            ylabel="accuracy", hlines=counted, title="one hidden character per window")
axes[1].set_ylim(0, 0.65)
plt.tight_layout()
plt.show()
for name, acc in by_position.items():
    print(f"{name:14s} accuracy, one hidden character: first position {acc[0]:.2f}, middle (5-10) "
          f"{acc[5:11].mean():.2f}, last position {acc[-1]:.2f}")

# %% [markdown]
# What the numbers say, and what you should expect when you run it (other seeds move each number by a few
# hundredths, not the conclusions):
#
# - **Both sides win clearly.** On the training task the bidirectional model's held-out loss is 2.11 nats
#   against 2.48, and it fills 41% of the masked characters correctly against 33%: same parameters
#   (17,570), same data, same steps; the mask is the only difference.
# - **The causal model starts faster.** For the first 300 steps or so it is ahead. Attention starts out nearly
#   uniform: a causal query then averages over its own prefix, which near the start of a window is mostly
#   the characters right before the gap, while a bidirectional query gets the same blur of all 16
#   characters at every position. The bidirectional model must first learn, through its position
#   embeddings, to look at its neighbours; once it has, it pulls away.
# - **The gain comes from the right-hand context.** With one hidden character, in the middle of a window
#   the bidirectional model is right 43% of the time and the causal one 30%. At the last position the
#   bidirectional model has no right-hand context either, and the two are equal (0.28 and 0.29). At the
#   first position the causal model sees nothing but the `[MASK]` and falls to the character
#   frequencies (0.17; always guessing a space gives 0.15), while the bidirectional one still has the
#   right-hand side (0.28).
# - **Neither has caught up with counting.** A model this small, after 1000 steps (64,000 windows, about
#   150,000 masked characters), knows less than tables counted over a million characters. The gaps agree,
#   though: one neighbour on each side beats two on the left by 0.10 in accuracy for counting, and the
#   bidirectional transformer beats the causal one by 0.08 to 0.13.
#
# %% [markdown]
# ## A `[CLS]` classifier
#
# An encoder gives one vector per token. To classify a whole sequence, BERT puts a special `[CLS]` token
# at position 0 of every input and trains a linear classifier on that token's final state
# $\mathbf{h}_0$ {cite:p}`devlin2019bert`. `[CLS]` carries no meaning of its own; attention lets it gather
# whatever the task needs from the rest of the sequence, and training decides what that is. (BERT adds a
# tanh layer, the "pooler", before the classifier; tinycore's `classify` reads $\mathbf{h}_0$ directly.)
#
# ### A task that needs the whole sequence
#
# Strings of 2 to 16 letters from `a`-`h`; the label is 1 when the string has **more `a`s than `b`s**.
# Every letter counts, wherever it is, so the model must look at the whole sequence; and the strings have
# different lengths, so every batch is padded to 16 letters, and the padding must not be counted. The
# vocabulary is the 8 letters, `[CLS]` (id 8) and `[PAD]` (id 9).

# %%
LETTERS = "abcdefgh"
CLS_ID, PAD_ID = len(LETTERS), len(LETTERS) + 1  # 8 and 9
MAX_LEN = 16  # letters per string at most


def majority_batch(generator, batch_size=64):
    """Strings of 2..MAX_LEN letters with [CLS] first, padded; label 1 when there are more a's than b's.

    Shapes: -> ids (B, 1 + MAX_LEN), is_real (B, 1 + MAX_LEN) bool, labels (B,)
    """
    n = torch.randint(2, MAX_LEN + 1, (batch_size,), generator=generator)  # (B,): each string's length
    letters = torch.randint(0, len(LETTERS), (batch_size, MAX_LEN), generator=generator)  # (B, MAX_LEN)
    real = torch.arange(MAX_LEN)[None, :] < n[:, None]  # (1, MAX_LEN) < (B, 1) -> (B, MAX_LEN)
    labels = (((letters == 0) & real).sum(dim=1) > ((letters == 1) & real).sum(dim=1)).long()  # (B,)
    ids = torch.cat([torch.full((batch_size, 1), CLS_ID), letters.masked_fill(~real, PAD_ID)], dim=1)  # (B, 1 + MAX_LEN)
    is_real = torch.cat([torch.ones(batch_size, 1, dtype=torch.bool), real], dim=1)  # [CLS] is real
    return ids.to(device), is_real.to(device), labels.to(device)


def show_string(ids):
    return " ".join({CLS_ID: "[CLS]", PAD_ID: "."}.get(i, LETTERS[i] if i < len(LETTERS) else "?") for i in ids.tolist())


ids, is_real, labels = majority_batch(torch.Generator().manual_seed(8), batch_size=4)
for row, label in zip(ids, labels.tolist()):
    print(f"label {label}: {show_string(row)}")

# %% [markdown]
# The classifier is an encoder of two blocks with a two-way `cls_head`. Its `context_length` is 64,
# although training never uses more than 17 positions: that leaves room to test it on much longer
# padding afterwards. `classify` checks that every input starts with `[CLS]`, runs the encoder with the
# padding mask and applies `cls_head` to $\mathbf{h}_0$:

# %%
print(inspect.getsource(TransformerEncoder.classify))


def classifier_loss(model, batch):
    ids, is_real, labels = batch
    return F.cross_entropy(model.classify(ids, is_real), labels)  # (B, 2) vs (B,)


torch.manual_seed(0)
classifier = TransformerEncoder(len(LETTERS) + 2, 64, 32, 2, 2, 128, num_classes=2, cls_id=CLS_ID)
cls_history = train(classifier, classifier_loss, majority_batch, TrainConfig(steps=200, lr=3e-3, warmup_steps=20, eval_every=50),
                    device)
test_ids, test_real, test_labels = majority_batch(torch.Generator().manual_seed(9), batch_size=4000)  # fresh strings
with torch.no_grad():
    predictions = classifier.eval().classify(test_ids, test_real).argmax(dim=-1)  # (4000,)
print(f"accuracy on 4000 new strings: {(predictions == test_labels).float().mean():.3f}")
print(f"always answering the more frequent label: {max(test_labels.float().mean(), 1 - test_labels.float().mean()):.3f}")

# %% [markdown]
# ### Padding changes nothing
#
# Now the promise of the padding mask, on the trained model. Append 47 more `[PAD]` tokens to every test
# string, so that the batch fills the whole context of 64 positions. Positions 17 to 63 never occurred in
# training: their position embeddings are untouched random vectors. It does not matter, because no real
# token attends to them. The final states of the real tokens, the class probabilities, and each string run
# alone without any padding all agree; only when the mask is left out does the padding leak in:

# %%
ids, real, labels = test_ids[:1000], test_real[:1000], test_labels[:1000]  # (1000, 17) each
extra = 64 - ids.shape[1]  # 47 more positions
long_ids = torch.cat([ids, torch.full((1000, extra), PAD_ID)], dim=1)  # (1000, 17) -> (1000, 64)
long_real = torch.cat([real, torch.zeros(1000, extra, dtype=torch.bool)], dim=1)  # (1000, 64)
with torch.no_grad():
    short_states, long_states = classifier(ids, real), classifier(long_ids, long_real)  # (1000, 17 or 64, D)
    short_probs = classifier.cls_head(short_states[:, 0]).softmax(dim=-1)  # what classify does: (1000, 2)
    long_probs = classifier.cls_head(long_states[:, 0]).softmax(dim=-1)
    alone = torch.cat([classifier.classify(row[None, :n]).softmax(dim=-1)  # each string alone: no padding, no mask
                       for row, n in zip(ids[:200], real[:200].sum(dim=1).tolist())])  # (200, 2)
    unmasked = {T: (classifier.classify(long_ids[:, :T]).argmax(dim=-1) == labels).float().mean().item() for T in (17, 64)}
print("real tokens' final states, padded to 17 or to 64 positions, equal to 1e-5:",
      (long_states[:, :17][real] - short_states[real]).abs().max().item() < 1e-5)
print("class probabilities equal to 1e-5:", (long_probs - short_probs).abs().max().item() < 1e-5)
print("200 strings run alone, without padding, equal to 1e-5:", (alone - short_probs[:200]).abs().max().item() < 1e-5)
print(f"accuracy padded to 64 with the mask: {(long_probs.argmax(dim=-1) == labels).float().mean():.3f}")
torch.manual_seed(0)  # the classifier's initial weights, again
untrained = TransformerEncoder(len(LETTERS) + 2, 64, 32, 2, 2, 128, num_classes=2, cls_id=CLS_ID)
print("position embeddings 17-63 still at their initial values:",
      torch.equal(untrained.position_embeddings.weight[17:], classifier.position_embeddings.weight[17:]))
print(f"accuracy WITHOUT the padding mask: {unmasked[17]:.3f} padded to 17, {unmasked[64]:.3f} padded to 64")

# %% [markdown]
# ### What `[CLS]` attends to
#
# The classifier has to compare two counts. Where does `[CLS]` look? `attention_maps` returns every layer's
# attention weights, `(L, B, H, T, T)`; row 0 of each map is `[CLS]`'s query. For three test strings:

# %%
maps = classifier.attention_maps(test_ids[:3], test_real[:3]).detach()  # (L, 3, H, T, T)
cls_rows = maps[:, :, :, 0, :]  # (L, 3, H, T): [CLS]'s weights over the keys, per layer and head
fig, axes = plt.subplots(3, 1, figsize=(9, 6.2))
for b, ax in enumerate(axes):
    rows = cls_rows[:, b].reshape(-1, cls_rows.shape[-1])  # (L * H, T)
    labels = show_string(test_ids[b]).split()
    heatmap(rows, ax, row_labels=[f"layer {l + 1}, head {h}" for l in range(2) for h in range(2)], col_labels=labels,
            cmap="Blues", vmin=0, colorbar=False, title=f"label {test_labels[b].item()}: "
            f"{labels.count('a')} a's, {labels.count('b')} b's")
plt.tight_layout()
plt.show()
with torch.no_grad():
    cls_weights = classifier.attention_maps(test_ids, test_real)[:, :, :, 0, :]  # (L, 4000, H, T, T) -> (L, 4000, H, T)
is_ab = (test_ids == 0) | (test_ids == 1)  # (4000, T): the a's and b's
share_ab = (cls_weights * is_ab[None, :, None, :]).sum(dim=-1).mean(dim=1)  # (L, 4000, H) -> (L, H)
print("largest weight [CLS] gives a [PAD], over 4000 strings, every layer and head:",
      cls_weights.masked_select(~test_real[None, :, None, :]).max().item())
print("a's and b's are", f"{(is_ab.sum() / test_real[:, 1:].sum()).item():.2f}", "of the letters")
for layer in range(2):
    print(f"layer {layer + 1}: share of [CLS]'s attention on a's and b's, heads 0 and 1:",
          " ".join(f"{share:.2f}" for share in share_ab[layer].tolist()))

# %% [markdown]
# In layer 1 both heads give their largest weights to the `a`s and `b`s, the darkest cells of each
# map: about a third of their attention goes to the quarter of the letters that decide the label. Layer 2
# spreads its attention almost evenly over the real tokens; for a count, an even average can be enough,
# since the vectors it averages already differ for `a`, `b` and the rest. And `[CLS]` gives exactly zero weight to every
# `[PAD]`, in every layer and head, over all 4000 strings: the padding mask at work. The classifier's
# 100% survives any amount of padding; without the mask, the `[PAD]`s enter those averages and the
# accuracy falls to 0.73 with 17 positions and 0.35 with 64, worse than always answering 0.
#
# ## Explore: fill in a character
#
# Hide one character of a held-out line and compare the two masked-character models' five best guesses,
# the correct character in green. The causal model sees only the text up to the gap. First the `o` of
# "`As thou shalt th`": after "`As th`" alone, "e" (*the*) is the natural guess; with "`u shalt`" after the
# gap, only "o" fits.

# %%
SNIPPETS = ["As thou shalt th", "Who hath cause t", "But where is Kat", "That's my office", "My land amounts "]
assert all(len(s) == T_MLM and s in text[len(text) * 9 // 10:] for s in SNIPPETS)  # 16 held-out characters each


@torch.no_grad()
def top_guesses(model, snippet, position, k=5):
    ids = tokenizer.encode(snippet)[None]  # (1, T)
    ids[0, position] = MASK_ID
    probs = model.eval().mlm_logits(ids)[0, position].softmax(dim=-1)  # (1, T, V) -> (V,)
    top = probs.topk(k)
    return [show(torch.tensor([i])) for i in top.indices.tolist()], top.values.tolist()


def draw_guesses(snippet, position, axes):
    for ax, (name, model) in zip(axes, models.items()):
        chars, probs = top_guesses(model, snippet, position)
        colours = ["C2" if c == snippet[position] else "0.6" for c in chars]
        ax.barh(range(len(chars))[::-1], probs, color=colours)
        ax.set_yticks(range(len(chars))[::-1], [repr(c) for c in chars])
        seen = snippet[:position] + "_" + (snippet[position + 1:] if name == "bidirectional" else "")
        ax.set(xlim=(0, 1), xlabel="probability", title=f"{name} sees {seen!r}")


fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
draw_guesses(SNIPPETS[0], 5, axes)
plt.tight_layout()
plt.show()

# %% [markdown]
# Now pick a line and a position. Positions where the characters after the gap decide (the end of a word,
# a letter right before a space) show the largest difference; at position 0 the causal model has nothing
# to go on but the character frequencies.

# %% tags=["nbval-ignore-output"]
def explore_guesses(snippet=SNIPPETS[0], position=5):
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    draw_guesses(snippet, position, axes)
    plt.tight_layout()
    plt.show()


_ = interact(explore_guesses, snippet=Dropdown(options=SNIPPETS, value=SNIPPETS[0], description="line"),
             position=IntSlider(value=5, min=0, max=T_MLM - 1, description="hide"))

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} The padding mask
# :label: ex-encoder-padding-mask
# ```
# Write `padding_mask(lengths, max_len)`: for a batch of sequences with `lengths[b]` real tokens each,
# right-padded to `max_len`, return the key mask attention needs: True where position $t$ of sequence $b$ is
# a real token ($t < n_b$), with two singleton axes so that it broadcasts over heads and queries.
#
# - Shapes: `lengths` is `(B,)` (`torch.long`); return `(B, 1, 1, max_len)`, `torch.bool`. The checker tries
#   `lengths = [3, 5, 1, 4]` with `max_len = 5` and three other batches.
#
# Hint: compare a row of positions `(1, T)` with a column of lengths `(B, 1)`. Hint: `[:, None, None, :]`
# adds the two axes.

# %%
def padding_mask(lengths, max_len):
    raise NotImplementedError("Exercise: implement padding_mask")


# %% tags=["raises-exception"]
checks.padding_mask(padding_mask)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-encoder-padding-mask
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def padding_mask(lengths, max_len):
    positions = torch.arange(max_len)  # (T,)
    is_real = positions[None, :] < lengths[:, None]  # (1, T) < (B, 1) -> (B, T)
    return is_real[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


checks.padding_mask(padding_mask)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} BERT's masking
# :label: ex-encoder-mask-tokens
# ```
# Write `mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob=0.15)`, returning
# `(inputs, is_masked)`: choose each position independently with probability `mask_prob`; of the chosen
# positions, replace 80% by `mask_id`, 10% by a random id drawn uniformly from `range(vocab_size)`, and leave
# 10% unchanged. `is_masked` marks every chosen position (the three kinds), and every other position of
# `inputs` keeps its token. Take all randomness from `generator`, and do not modify `token_ids`.
#
# - Shapes: `token_ids` is `(B, T)` long; `inputs` `(B, T)` long, `is_masked` `(B, T)` bool.
# - The result is random, so the checker tests it statistically: on batches of about 30,000 tokens, the
#   share of chosen positions and of each kind must be close to 15% (or the `mask_prob` it passes) and
#   80/10/10; two calls with generators seeded alike must agree.
#
# Hint: `torch.rand(shape, generator=generator)` twice: one to choose positions, one to decide their fate
# (below 0.8, between 0.8 and 0.9, above 0.9). Hint: `torch.where(condition, a, b)` builds a new tensor.

# %%
def mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    raise NotImplementedError("Exercise: implement mask_tokens")


# %% tags=["raises-exception"]
checks.mask_tokens(mask_tokens)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-encoder-mask-tokens
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    is_masked = torch.rand(token_ids.shape, generator=generator) < mask_prob  # (B, T): the chosen positions
    fate = torch.rand(token_ids.shape, generator=generator)  # (B, T): which of the three things happens
    random_ids = torch.randint(vocab_size, token_ids.shape, generator=generator)  # (B, T)
    inputs = torch.where(is_masked & (fate < 0.8), mask_id, token_ids)  # 80%: [MASK]
    inputs = torch.where(is_masked & (fate >= 0.9), random_ids, inputs)  # 10%: a random token; 10%: unchanged
    return inputs, is_masked


checks.mask_tokens(mask_tokens)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} The masked-LM loss
# :label: ex-encoder-masked-lm-loss
# ```
# Write `masked_lm_loss(logits, targets, is_masked)`: the mean cross-entropy of the `targets` under the
# `logits`, over the positions where `is_masked` is True only, each masked position counting once (so a
# sequence with more masked positions weighs more).
#
# - Shapes: `logits` `(B, T, V)`, `targets` `(B, T)` long, `is_masked` `(B, T)` bool; return a scalar `()`.
#   The checker compares values and gradients on four batches, some with a row that has no masked position.
#
# Hint: boolean indexing `logits[is_masked]` keeps the masked positions as an `(N, V)` matrix. Hint:
# `F.cross_entropy` takes `(N, V)` logits and `(N,)` targets.

# %%
def masked_lm_loss(logits, targets, is_masked):
    raise NotImplementedError("Exercise: implement masked_lm_loss")


# %% tags=["raises-exception"]
checks.masked_lm_loss(masked_lm_loss)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-encoder-masked-lm-loss
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def masked_lm_loss(logits, targets, is_masked):
    log_probs = logits.log_softmax(dim=-1)  # (B, T, V)
    picked = log_probs.gather(-1, targets[..., None])[..., 0]  # (B, T): log p(target) at every position
    return -picked[is_masked].mean()  # the N masked positions -> ()


checks.masked_lm_loss(masked_lm_loss)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - An encoder is a stack of transformer blocks **without** the causal mask: every token attends to every
#   real token on both sides, so each output describes its token in the context of the whole sequence.
#   Counting in Tiny Shakespeare, one neighbour on each side pins a hidden character down better (1.67
#   nats, 48% right) than two neighbours on the left (2.07 nats, 38%).
# - Batches of different lengths are padded; the padding mask is a **key** mask of shape `(B, 1, 1, T)`,
#   True = real token. Padded queries are computed and never read. PyTorch's `src_key_padding_mask` has the
#   opposite polarity (True = padding): pass it `~is_real`.
# - tinycore's `TransformerEncoder` (token and learned position embeddings, `layers.{i}`, `ln_final`)
#   equals `nn.TransformerEncoder` with pre-norm GELU layers and copied weights, outputs and gradients, to
#   $10^{-10}$ in float64.
# - BERT's masked-LM objective chooses 15% of the tokens, replaces 80% of them by `[MASK]`, 10% by a random
#   token and leaves 10%, and takes the cross-entropy at the chosen positions only.
# - Trained from the same weights on the same batches for the same 1000 steps, the bidirectional model
#   filled masked characters far better than the causal one: 2.11 against 2.48 nats, 41% against 33% right
#   on held-out text; with one character hidden mid-window, 43% against 30%. The causal model leads only
#   at the start of training, and the two are equal where the bidirectional one has no right-hand context.
# - A `[CLS]` token at position 0 and a linear head on its final state make a sequence classifier: 100% on
#   "more `a`s than `b`s?" after 200 steps. With the padding mask, 47 extra `[PAD]`s (at positions never
#   trained) change nothing, to $10^{-5}$; without it, the accuracy falls to 35%. `[CLS]` gives padding
#   exactly zero attention.
#
# ## References
#
# - BERT: the encoder-only transformer, masked language modelling and the `[CLS]` token:
#   {cite:t}`devlin2019bert`.
# - The transformer and its encoder stack: {cite:t}`vaswani2017attention`.
# - Left-to-right pre-training, the decoder-only alternative (next chapter): GPT {cite:p}`radford2018improving`.
# - Dynamic masking (a new mask every time a sentence is used): RoBERTa {cite:p}`liu2019roberta`.

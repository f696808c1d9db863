# %% [markdown]
# # Encoder-decoder models
#
# The transformer was invented to translate {cite:p}`vaswani2017attention`: read a sentence in one language,
# write it in another. Its two halves are the two models of the previous chapters. An **encoder** reads the
# whole input at once, every token seeing every other (chapter 10), and a **decoder** writes the output one
# token at a time, each seeing only what came before (chapter 11). One new piece joins them:
# **cross-attention**, through which every position of the output looks up what it needs in the encoder's
# reading of the input. T5 {cite:p}`raffel2020exploring` and many translation and speech-recognition systems
# keep this shape.
#
# In this chapter you will:
#
# - build cross-attention, whose queries and keys come from two different sequences of different lengths,
#   and the decoder block that puts it between self-attention and the feed-forward network;
# - assemble tinycore's `EncoderDecoder` and prove that it computes exactly what `torch.nn.Transformer`
#   computes with the same weights, values and gradients, with the norms before (pre-norm) and after
#   (post-norm) each sub-layer;
# - train it with *teacher forcing*, which scores every position of the output in one forward pass;
# - teach it to rewrite dates as people write them ("March 7, 2024", "Thu 7 Mar 2024") in ISO 8601
#   ("2024-03-07") in about twenty seconds of CPU, and measure its exact-match accuracy on 1,000 dates it has
#   never seen (100%) and on years it has never seen (almost none right);
# - watch cross-attention *align*: every output digit looks at the part of the input it copies, wherever that
#   part stands;
# - decode greedily and with beam search, see a case where greedy decoding's short-sightedness costs
#   probability, and measure what beam search changes on the trained model;
# - meet tinycore's errors for ids out of range, sequences too long, source and target on different devices,
#   and a beam of width 0.

# %%
# Setup: in Colab, install tinycore (this course's package) from the course repository.
try:
    import google.colab  # noqa: F401  (only importable inside Colab)
    %pip install -q "tinycore @ git+https://github.com/transformer-anatomy/transformer-anatomy@main"
except ImportError:
    pass  # elsewhere tinycore is installed with the course: see the README

# %%
import datetime
import inspect
import math
import re
import warnings

import matplotlib.pyplot as plt
import torch
from torch import nn
from ipywidgets import Dropdown, IntSlider, interact

import tinycore
from tinycore import (
    MultiHeadCrossAttention, TrainConfig, check_shape, checks, count_parameters, merge_heads,
    scaled_dot_product_attention, set_seed, split_heads, train,
)
from tinycore.plotting import heatmap, plot_curves, use_style
from tinycore.seq2seq import (
    DecoderBlock, EncoderDecoder, Seq2SeqConfig, beam_search, greedy_decode, seq2seq_loss, sequence_log_prob,
    shift_right,
)
from tinycore.tasks import DATE_FORMATS, MONTHS, TARGET_FORMAT, DateTask, date_batches, format_date

gen = set_seed(0)
use_style()

# %% [markdown]
# ## The task: dates as people write them
#
# Translation needs a corpus we cannot ship, so this chapter translates a small language generated in code:
# dates written the way people write them, in four formats, into the one format computers agree on,
# ISO 8601. `tinycore.tasks.DateTask` draws them from every day of the years 1950 to 2049:

# %%
task = DateTask()
for style in DATE_FORMATS:
    day = datetime.date(2024, 3, 7)
    print(f"{format_date(day, style):>16s}  ->  {format_date(day, TARGET_FORMAT)}")
print()
for source, target in task.pairs("train", 5, torch.Generator().manual_seed(1)):
    print(f"{source:>20s}  ->  {target}")

# %% [markdown]
# It is a small task, but it has what makes translation hard for a model that reads left to right and
# writes left to right:
#
# - **reordering**: the year comes last in three formats and first in the output; the day comes first and
#   goes last;
# - **words to symbols**: "March" and "Mar" become "03";
# - **lengths that do not match**: "September 12, 2032" has 18 characters, its translation 10, and
#   "Thu 7 Mar 2024" has 14 characters of which the first four (the weekday) carry nothing the output needs;
# - **local rewrites**: a one-digit day gains a zero ("7" becomes "07").
#
# The figure shows, for each format, which characters of the source decide which characters of the output,
# read off the task's definition (a regular expression per format finds the year, month and day).
# The bands cross: each output field must be fetched from wherever its format put it. Later we will see
# cross-attention learn these bands on its own.

# %%
FIELD_PATTERNS = {  # where each field sits in each format, as named regular-expression groups
    "7 March 2024": r"(?P<day>\d+) (?P<month>[A-Za-z]+) (?P<year>\d{4})",
    "March 7, 2024": r"(?P<month>[A-Za-z]+) (?P<day>\d+), (?P<year>\d{4})",
    "07.03.2024": r"(?P<day>\d\d)\.(?P<month>\d\d)\.(?P<year>\d{4})",
    "Thu 7 Mar 2024": r"[A-Za-z]+ (?P<day>\d+) (?P<month>[A-Za-z]+) (?P<year>\d{4})",
    TARGET_FORMAT: r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)",
}
FIELDS = ("year", "month", "day")
FIELD_COLOURS = {"year": "C0", "month": "C1", "day": "C2"}


def field_spans(text):
    """{field: (start, end)} character spans of the year, month and day in a date written in any format."""
    for pattern in FIELD_PATTERNS.values():
        match = re.fullmatch(pattern, text)
        if match:
            return {f: match.span(f) for f in FIELDS}
    raise ValueError(f"not a date this task writes: {text!r}")


def draw_alignment(ax, source, target):
    """Source characters on top, target characters below, a band from each target field to its source field."""
    src_spans, tgt_spans = field_spans(source), field_spans(target)
    for field in FIELDS:
        (s0, s1), (t0, t1) = src_spans[field], tgt_spans[field]
        ax.fill([s0 - 0.4, s1 - 0.6, t1 - 0.6, t0 - 0.4], [1, 1, 0, 0], color=FIELD_COLOURS[field], alpha=0.3, lw=0)
    for row, text in [(1, source), (0, target)]:
        for i, ch in enumerate(text):
            ax.text(i, row + (0.12 if row else -0.12), ch, ha="center", va="bottom" if row else "top",
                    fontsize=11, family="monospace")
    ax.set_xlim(-1, 19)
    ax.set_ylim(-0.5, 1.5)
    ax.axis("off")


fig, axes = plt.subplots(2, 2, figsize=(11, 3.6))
for ax, style in zip(axes.flat, DATE_FORMATS):
    draw_alignment(ax, format_date(datetime.date(2032, 9, 12), style), "2032-09-12")
    ax.set_title(f'format "{style}"', fontsize=10)
handles = [plt.Rectangle((0, 0), 1, 1, color=FIELD_COLOURS[f], alpha=0.3) for f in FIELDS]
fig.legend(handles, FIELDS, loc="lower center", ncol=3, frameon=False)
plt.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# A decoder-only model could do this too: feed it the source, a separator and then the output, as one long
# sequence (chapter 11's model with a prompt). The encoder-decoder splits the work instead. The **encoder**
# reads the source once, with bidirectional attention, into a *memory*: one vector per source character that
# can describe its role ("this 7 is the day", which needs the characters on both sides of it). The
# **decoder** writes the output one character at a time; for each one it asks the memory a question, through
# attention: *which source characters do I need now?* The question comes from the decoder (the query), the
# answers from the memory (keys and values). That is cross-attention, and its weights should reproduce the
# bands above.
#
# ## Cross-attention
#
# ### The equations
#
# Let $X \in \mathbb{R}^{T \times D}$ be the decoder's stream at its $T$ target positions and
# $M \in \mathbb{R}^{S \times D}$ the encoder's memory of the $S$ source tokens. Head $h$ of cross-attention is
# chapter 6's attention with queries from $X$ and keys and values from $M$:
#
# $$
# \mathrm{head}_h = \mathrm{softmax}\!\left(\frac{(X W_Q^h)(M W_K^h)^\top}{\sqrt{D_h}} + P\right) M W_V^h
# \;\in \mathbb{R}^{T \times D_h},
# \qquad
# P_{ts} = \begin{cases} 0 & \text{source token } s \text{ is real} \\ -\infty & s \text{ is padding} \end{cases}
# $$
#
# and the heads are concatenated and projected by $W_O$, as in self-attention. Three things differ from
# self-attention:
#
# - the weights form a $T \times S$ matrix, not a square one: one row per target position, one column per
#   source token;
# - there is **no causal mask**: the whole source exists before the first output token is written, so every
#   target position may read all of it;
# - the only mask hides **source padding**: in a batch, shorter sources are filled up with a PAD token, and no
#   query may attend to it. The same mask hides padding from the encoder's own self-attention.
#
# ### In code
#
# With tinycore's pieces from chapter 6 (`split_heads`, `scaled_dot_product_attention`, `merge_heads`) and the
# four projections of a `MultiHeadCrossAttention` layer, in float64 so that "equal" can mean equal to
# $10^{-12}$. A batch of $B = 2$ with $T = 5$ target positions, sources of $S = 7$ tokens of which the
# second has only 4 real ones, $D = 16$ and $H = 4$:

# %%
B, T, S, D, H = 2, 5, 7, 16, 4
f64 = dict(dtype=torch.float64)
cross = MultiHeadCrossAttention(D, H, **f64)  # q_proj, k_proj, v_proj, output_proj: four (D, D) matrices
x = torch.randn(B, T, D, generator=gen, **f64)  # the decoder's stream
memory = torch.randn(B, S, D, generator=gen, **f64)  # the encoder's output
lengths = torch.tensor([7, 4])  # real source tokens per sequence; the rest is padding
real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S): True = a real source token
mask = real[:, None, None, :]  # (B, S) -> (B, 1, 1, S): the same keys for every head and query

q = split_heads(cross.q_proj(x), H)  # (B, T, D) -> (B, H, T, Dh): queries from the decoder
k = split_heads(cross.k_proj(memory), H)  # (B, S, D) -> (B, H, S, Dh): keys from the memory
v = split_heads(cross.v_proj(memory), H)  # (B, H, S, Dh): values from the memory
out = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, Dh)
out = cross.output_proj(merge_heads(out))  # (B, H, T, Dh) -> (B, T, D)
check_shape(out, (B, T, D), "B T D", "cross-attention output")

weights = tinycore.attention_weights(q, k, mask)  # (B, H, T, S): one row per target position
check_shape(weights, (B, H, T, S), "B H T S", "weights")
print("equal to tinycore's module (to 1e-12):", torch.allclose(out, cross(x, memory, mask), rtol=0, atol=1e-12))
print("weight on the padding of sequence 1:", weights[1, :, :, 4:].abs().max().item(),
      "| its rows sum to one:", torch.allclose(weights[1].sum(-1), torch.ones(H, T, **f64)))

# %% [markdown]
# PyTorch's `nn.MultiheadAttention` is cross-attention too when you give it different `query` and `key`/`value`
# tensors. Its `key_padding_mask` has the opposite polarity (True = *ignore* this key), like its `attn_mask`
# in chapter 6:

# %%
torch_cross = nn.MultiheadAttention(D, H, bias=False, batch_first=True, **f64)
with torch.no_grad():
    torch_cross.in_proj_weight.copy_(torch.cat([cross.q_proj.weight, cross.k_proj.weight, cross.v_proj.weight]))
    torch_cross.out_proj.weight.copy_(cross.output_proj.weight)
out_torch, weights_torch = torch_cross(x, memory, memory, key_padding_mask=~real, average_attn_weights=False)
print("nn.MultiheadAttention: output equal (to 1e-12):", torch.allclose(out_torch, out, rtol=0, atol=1e-12),
      "| weights (B, H, T, S) equal:", torch.allclose(weights_torch, weights, rtol=0, atol=1e-12))

# %% [markdown]
# ## The decoder block
#
# A decoder block is a GPT block with cross-attention inserted between its two sub-layers. Each of the three
# sub-layers sits on the residual stream with its own LayerNorm. In the pre-norm arrangement
# (chapter 9), for the decoder's stream $x$ and the memory $M$:
#
# $$
# \begin{aligned}
# x &\leftarrow x + \mathrm{SelfAttention}_{\text{causal}}(\mathrm{LN}_1(x)) \\
# x &\leftarrow x + \mathrm{CrossAttention}(\mathrm{LN}_2(x),\, M) \\
# x &\leftarrow x + \mathrm{FFN}(\mathrm{LN}_3(x))
# \end{aligned}
# $$
#
# and in the original post-norm arrangement each norm comes after its residual addition,
# $x \leftarrow \mathrm{LN}_1(x + \mathrm{SelfAttention}(x))$ and so on. Note what is *not* normalised: the
# memory enters cross-attention as the encoder left it (its last norm has already done that).
# tinycore's `DecoderBlock` has the sub-modules `ln1, self_attn, ln2, cross_attn, ln3, ffn`:

# %%
print(inspect.getsource(DecoderBlock._self_attention))
print(inspect.getsource(DecoderBlock.forward))

# %% [markdown]
# The encoder's blocks are chapter 9's `TransformerBlock` with `causal=False`; its padding mask, `(B, 1, 1, S)`,
# hides padding keys from every source token. The decoder's self-attention needs no padding mask at all: it is
# causal, so a real target token never sees the padding that comes after it, and the predictions *at* padded
# positions are simply left out of the loss.
#
# ## The whole model
#
# `tinycore.seq2seq.EncoderDecoder` stacks `num_layers` encoder blocks and `num_layers` decoder blocks:
#
# 1. embed the source and the decoder's input with **one shared table** and add sinusoidal positions
#    (chapter 7) to both; one table because the two sides share their symbols: the digits the output copies are
#    the very tokens of the input, so a "7" should mean the same on both sides. The original transformer
#    shared its table too, across a joint vocabulary of both languages {cite:p}`vaswani2017attention`;
# 2. run the encoder over the source, with the padding mask, and normalise once at the end (pre-norm);
# 3. run the decoder over the target prefix, each block attending to the memory with the same padding mask,
#    normalise, and score every vocabulary entry with `lm_head`.

# %%
print(inspect.getsource(EncoderDecoder.encode))
print(inspect.getsource(EncoderDecoder.decode))

# %% [markdown]
# The model's configuration is a small dataclass; `pad_id`, `bos_id` and `eos_id` are the special tokens of the
# task's tokenizer (PAD fills a batch, BOS starts the decoder's input, EOS ends an output).

# %%
print(inspect.getsource(Seq2SeqConfig))

# %% [markdown]
# ### Equal to `torch.nn.Transformer`
#
# PyTorch ships the same architecture as `nn.Transformer`: the embeddings and the output head are left to you,
# and its layers store $W_Q, W_K, W_V$ stacked in one `in_proj_weight` (and biases in one `in_proj_bias`).
# With `activation="gelu"`, `dropout=0.0`, `batch_first=True` and `norm_first=True` it is tinycore's pre-norm
# model. With `norm_first=False` it is the post-norm model with one difference: `nn.Transformer` always ends
# both stacks with an extra LayerNorm, which the paper's post-norm model does not have; setting
# `encoder.norm` and `decoder.norm` to `None` removes them. We copy every weight across and compare logits, and
# the gradients of every parameter, in float64:

# %%
def copy_into_nn_transformer(model):
    """nn.Transformer holding model's weights: q, k, v stacked into in_proj, norms and FFN copied by name."""
    c = model.config
    with warnings.catch_warnings():  # its note that norm_first=True has no "nested tensor" fast path
        warnings.simplefilter("ignore", UserWarning)
        tr = nn.Transformer(c.d_model, c.num_heads, c.num_layers, c.num_layers, c.d_ff, dropout=0.0,
                            activation="gelu", batch_first=True, norm_first=c.norm_position == "pre", **f64)

    def copy_attention(theirs, ours):
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.load_state_dict({"weight": ours.output_proj.weight, "bias": ours.output_proj.bias})

    with torch.no_grad():
        for theirs, ours in zip(tr.encoder.layers, model.encoder_layers):
            copy_attention(theirs.self_attn, ours.attn)
            for t, o in [(theirs.linear1, ours.ffn.w1), (theirs.linear2, ours.ffn.w2),
                         (theirs.norm1, ours.ln1), (theirs.norm2, ours.ln2)]:
                t.load_state_dict(o.state_dict())
        for theirs, ours in zip(tr.decoder.layers, model.decoder_layers):
            copy_attention(theirs.self_attn, ours.self_attn)
            copy_attention(theirs.multihead_attn, ours.cross_attn)
            for t, o in [(theirs.linear1, ours.ffn.w1), (theirs.linear2, ours.ffn.w2), (theirs.norm1, ours.ln1),
                         (theirs.norm2, ours.ln2), (theirs.norm3, ours.ln3)]:
                t.load_state_dict(o.state_dict())
        if c.norm_position == "pre":
            tr.encoder.norm.load_state_dict(model.encoder_ln_final.state_dict())
            tr.decoder.norm.load_state_dict(model.decoder_ln_final.state_dict())
        else:
            tr.encoder.norm = tr.decoder.norm = None  # the paper's post-norm stacks have no final norm
    return tr


def run_nn_transformer(model, tr, src, tgt_in):
    """Our embeddings and head around nn.Transformer. Its boolean masks mean True = NOT allowed."""
    padding = src == model.config.pad_id  # (B, S): True = ignore this source token
    causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=torch.float64)  # 0 or -inf
    out = tr(model.embed(src), model.embed(tgt_in), tgt_mask=causal, tgt_is_causal=True,
             src_key_padding_mask=padding, memory_key_padding_mask=padding)  # (B, T, D)
    return model.lm_head(out)  # (B, T, V)


def our_names(name):
    """nn.Transformer's name for a parameter -> tinycore's names (three of ours, q k v, make one in_proj)."""
    name = re.sub(r"^(encoder|decoder)\.layers\.", r"\1_layers.", name)  # layers.0 -> encoder_layers.0
    name = re.sub(r"^(encoder|decoder)\.norm\.", r"\1_ln_final.", name)
    name = re.sub(r"^(encoder_layers\.\d+)\.self_attn", r"\1.attn", name)  # TransformerBlock calls it attn
    for theirs, ours in [("multihead_attn", "cross_attn"), ("out_proj", "output_proj"), ("linear1", "ffn.w1"),
                         ("linear2", "ffn.w2"), ("norm1", "ln1"), ("norm2", "ln2"), ("norm3", "ln3")]:
        name = name.replace(theirs, ours)
    if "in_proj_" in name:
        return [name.replace("in_proj_", f"{p}_proj.") for p in "qkv"]
    return [name]


print("for example:", our_names("decoder.layers.1.multihead_attn.in_proj_weight"))


def parameter_grads(module, logits, grad_out):
    module.zero_grad()
    logits.backward(grad_out)
    return {name: p.grad.clone() for name, p in module.named_parameters()}


src_demo = torch.tensor([[5, 9, 4, 7, 8, 6], [6, 4, 5, 0, 0, 0]])  # (B=2, S=6); PAD = 0 ends the second
tgt_demo = torch.tensor([[1, 7, 3, 9], [1, 8, 8, 4]])  # (B=2, T=4), each starting with BOS = 1
for norm_position in ("pre", "post"):
    torch.manual_seed(0)
    config = Seq2SeqConfig(vocab_size=10, src_context_length=8, tgt_context_length=6, d_model=24, num_layers=2,
                           num_heads=4, d_ff=48, norm_position=norm_position)
    model = EncoderDecoder(config, **f64)
    tr = copy_into_nn_transformer(model)
    grad_out = torch.randn(2, 4, 10, generator=gen, **f64)
    ours = model(src_demo, tgt_demo)  # (B, T, V)
    grads = parameter_grads(model, ours, grad_out)
    theirs = run_nn_transformer(model, tr, src_demo, tgt_demo)  # (B, T, V)
    model.zero_grad()
    theirs_grads = parameter_grads(tr, theirs, grad_out)  # our embeddings and head get their gradients too
    pairs = [(torch.cat([grads[n] for n in our_names(name)]), g) for name, g in theirs_grads.items()]
    shared = ("token_embeddings.weight", "lm_head.weight")  # used by both runs: compare run with run
    pairs += [(grads[n], p.grad) for n, p in model.named_parameters() if n in shared]
    covered = {n for name in theirs_grads for n in our_names(name)} | set(shared)
    print(f"{norm_position}-norm: logits equal (to 1e-12): {torch.allclose(ours, theirs, rtol=0, atol=1e-12)}; "
          f"gradients of all {len(grads)} parameter tensors compared: {covered == set(grads)}, "
          f"equal (to 1e-11): {all(torch.allclose(a, b, rtol=0, atol=1e-11) for a, b in pairs)}")

# %% [markdown]
# The two models agree to rounding error in every logit and every gradient: same architecture, same function.
# From here on we use tinycore's model, and `nn.Transformer` stays the reference the tests hold it to.
#
# ## Teacher forcing
#
# The decoder defines a probability for a whole output $y = (y_1, \dots, y_n)$, ending with EOS, one token at a
# time, each conditioned on the source $x$ and on the tokens before it:
#
# $$
# \log p(y \mid x) = \sum_{t=1}^{n} \log p(y_t \mid y_{<t},\, x).
# $$
#
# Training maximises this for the true outputs. Every term needs the true prefix $y_{<t}$ as the decoder's
# input, so the decoder reads the target itself, **shifted right** by one place behind a BOS token: at position
# $t$ it reads $y_{t-1}$ and must predict $y_t$. Feeding the true previous token rather than the model's own
# guess is called *teacher forcing*. Because the decoder's self-attention is causal, position $t$ cannot peek
# at $y_t$ or anything after it, so **one forward pass** computes all $n$ terms at once. Here is a batch of two
# from the task, as the loss sees it:

# %%
tok = task.tokenizer
src_ids, targets = date_batches(task, "train", 2)(torch.Generator().manual_seed(3))  # (2, S), (2, 11)
decoder_input = shift_right(targets, tok.bos_id)  # (2, 11): BOS + targets[:, :-1]
names = {tok.pad_id: "PAD", tok.bos_id: "BOS", tok.eos_id: "EOS"}


def show(ids):
    return " ".join(f"{names.get(i, tok.itos[i]):>3s}" for i in ids.tolist())


for b in range(2):
    print(f"source ids    {show(src_ids[b])}")
    print(f"decoder input {show(decoder_input[b])}")
    print(f"targets       {show(targets[b])}\n")
print(inspect.getsource(seq2seq_loss))

# %% [markdown]
# The shorter source is padded with PAD, which the masks hide. The targets all have ten characters and an EOS
# here, so the decoder's side needs no padding; in general it would be padded too, and `ignore_index`
# leaves those positions out of the loss.
#
# Why is one forward pass over the whole target the same as feeding the prefixes one at a time? Because of
# causality. A random, untrained model shows it: the logits at positions $0..t-1$ computed from the full
# decoder input equal those computed from the first $t$ tokens alone.

# %%
torch.manual_seed(0)
config = Seq2SeqConfig(tok.vocab_size, src_context_length=20, tgt_context_length=11, d_model=64, num_layers=2,
                       num_heads=4, d_ff=128)
untrained = EncoderDecoder(config)
with torch.no_grad():
    full = untrained(src_ids, decoder_input)  # (2, 11, V): all positions in one pass
    prefixes_agree = all(torch.allclose(untrained(src_ids, decoder_input[:, :t]), full[:, :t], atol=1e-5)
                         for t in range(1, 12))
print("logits of every prefix equal the first t rows of the full pass:", prefixes_agree)
print(f"untrained loss: {seq2seq_loss(untrained, (src_ids, targets)).item():.2f} nats; "
      f"a uniform guess over the {tok.vocab_size} tokens: ln {tok.vocab_size} = {math.log(tok.vocab_size):.2f}")

# %% [markdown]
# (The untrained model does worse than a uniform guess: its random logits are confidently wrong.)
#
# Training is parallel over the output, but generating is not: at test time there is no true prefix, so the
# model must feed its own tokens back, one forward pass per token (the *Decoding* section below). The gap between
# the two, a model that only ever saw perfect prefixes now reading its own, is known as *exposure bias*; on a
# task learnt as well as this one it does no harm.
#
# ## Training on dates
#
# `DateTask` split the 36,525 days of 1950-2049 once, with a fixed generator: 10% of the dates are held out
# and never appear in training in any of the four formats. The model: $D = 64$, $H = 4$ heads, 2 encoder and
# 2 decoder blocks, $F = 128$, sources of up to 20 and decoder inputs of up to 11 tokens (BOS and the ten
# characters of an ISO date), one table of 46 tokens (3 special ones and 43 characters).

# %%
print(f"{len(task.train_dates)} training dates, {len(task.held_out_dates)} held-out dates, "
      f"shared: {len(set(task.train_dates) & set(task.held_out_dates))}")
print(f"vocabulary: {tok.vocab_size} tokens: PAD, BOS, EOS and {''.join(tok.chars)!r}")
torch.manual_seed(0)
model = EncoderDecoder(config)
print(f"{count_parameters(model):,} parameters")

# %% [markdown]
# We train with chapter 11's loop, `tinycore.train`, which needs only a loss function and a batch sampler:
# `seq2seq_loss` from above and `date_batches`, which draws 64 random (date, format) pairs per step. 600 steps
# of AdamW with a peak learning rate of $7 \times 10^{-3}$, 50 steps of warm-up and cosine decay take about
# twenty seconds on a laptop CPU; the held-out loss is evaluated on the same ten batches every 100 steps. No
# weight decay: the model sees about 38,000 pairs out of 131,000 possible ones, so there is little to overfit.

# %%
train_config = TrainConfig(steps=600, lr=7e-3, warmup_steps=50, weight_decay=0.0, eval_every=100, eval_batches=10)
history = train(model, seq2seq_loss, date_batches(task, "train", 64), train_config, device="cpu",
                val_batch=date_batches(task, "held_out", 64))
model.eval()
print(f"loss after {train_config.steps} steps: training {history.eval_train_loss[-1]:.1e}, "
      f"held-out {history.val_loss[-1]:.1e} nats per token")

# %%
smooth = [sum(history.train_loss[max(0, i - 9):i + 1]) / len(history.train_loss[max(0, i - 9):i + 1])
          for i in range(len(history.train_loss))]  # mean of the last 10 steps
ax = plot_curves({"training (mean of 10 steps)": smooth}, hlines={"uniform guess: ln 46": math.log(tok.vocab_size)},
                 ylabel="loss (nats per token)", title="teacher-forced cross-entropy")
ax.plot(history.eval_step, history.val_loss, "o-", label="held-out dates")
ax.set_yscale("log")
ax.legend()
plt.show()

# %% [markdown]
# The loss falls from the uniform guess to almost nothing. But a low loss per token is not the goal; the goal
# is a right answer, all ten characters of it. So we translate held-out dates, 1,000 of them in random formats,
# with greedy decoding (explained below), and count exact matches.

# %%
held_out = task.pairs("held_out", 1000, torch.Generator().manual_seed(2024))
held_src = tok.batch([s for s, _ in held_out])  # (1000, S)
greedy_out = greedy_decode(model, held_src)  # (1000, <= 11): the generated ids, EOS included
predictions = [tok.decode(row) for row in greedy_out]
correct = [p == t for p, (_, t) in zip(predictions, held_out)]
print(f"held-out exact match (greedy): {sum(correct) / len(correct):.1%} of {len(correct)} dates never seen in training")
for style in DATE_FORMATS:
    rows = [c for c, (s, _) in zip(correct, held_out) if re.fullmatch(FIELD_PATTERNS[style], s)]
    print(f"  {style:>16s}: {sum(rows) / len(rows):.1%} of {len(rows)}")
mistakes = [(s, t, p) for p, (s, t), c in zip(predictions, held_out, correct) if not c]
for s, t, p in mistakes[:5]:
    print(f"  wrong: {s!r} -> {p!r}, should be {t!r}")

# %% [markdown]
# Every one of the 1,000 held-out dates comes out right. In our runs with other seeds this training reached 100%
# as well; with 400 or 500 steps, or a lower learning rate, runs ended between 98.6% and 100%, and what they
# missed was nearly always the zero in front of a one-digit day ("1" becoming "11"), the last rule the model
# learns.
#
# Held-out dates are new combinations of familiar parts: every year, month and day in them also occurs in
# training, only never together. What about years the model has never seen at all? The same test on dates
# from 1900-1949 and 2050-2099:

# %%
def exact_match(pairs):
    out = greedy_decode(model, tok.batch([s for s, _ in pairs]))
    return sum(tok.decode(row) == t for row, (_, t) in zip(out, pairs)) / len(pairs), out


outside = {}  # dates from years the model never saw
for first, last_year in [(1900, 1949), (2050, 2099)]:
    other_years = DateTask(first_year=first, last_year=last_year)  # its "train" split: 90% of those years' dates
    pairs = other_years.pairs("train", 200, torch.Generator().manual_seed(7))
    outside[first, last_year] = pairs
    score, out = exact_match(pairs)
    wrong = [f"{s!r} -> {tok.decode(row)!r}" for row, (s, t) in zip(out, pairs) if tok.decode(row) != t]
    print(f"years {first}-{last_year}: exact match {score:.1%};  e.g. " + ",  ".join(wrong[:3]))

# %% [markdown]
# Outside the training years almost nothing is right, and the mistakes say why: 1923 becomes 1993, 1901 becomes
# 1991, 2051 becomes 2015. The model never saw a third digit 0-4 after "19", or 5-9 after "20", so it writes a
# year it has seen, and now and then something that is not a date at all. It has learned its training
# distribution, not the rule "copy the four digits of the year" that a program would state in one line. A
# held-out test set drawn from the training distribution measures the first; only data from outside it tests
# the second.

# %% [markdown]
# ## What cross-attention learned
#
# `EncoderDecoder.cross_attention_weights(src_ids, tgt_in)` returns every decoder layer's cross-attention
# weights, `(L, B, H, T, S)`. Row $t$ is the query at decoder position $t$, which reads $y_{t-1}$ and is about
# to *write* $y_t$, so we label the rows with the character being written. For one held-out date in each format,
# the weights of the first decoder layer, averaged over its four heads (the coloured bars under each map mark
# the source's year, month and day, as in the first figure):

# %%
def translate_with_attention(source):
    """Greedy translation of one source string and the cross-attention of every layer while writing it."""
    src = tok.batch([source])  # (1, S)
    out = greedy_decode(model, src)  # (1, n): ends with EOS
    with torch.no_grad():
        weights = model.cross_attention_weights(src, shift_right(out, tok.bos_id))  # (L, 1, H, n, S)
    written = [tok.itos[i] if i != tok.eos_id else "EOS" for i in out[0].tolist()]
    return tok.decode(out[0]), written, weights[:, 0]  # (L, H, n, S)


def draw_cross_attention(ax, source, layer, head=None, colorbar=False):
    """Heatmap: rows = characters written, columns = source characters; head=None averages the heads."""
    output, written, weights = translate_with_attention(source)
    w = weights[layer].mean(0) if head is None else weights[layer, head]  # (n, S)
    heatmap(w, ax, row_labels=written, col_labels=list(source), cmap="Blues", colorbar=colorbar, vmin=0, vmax=1)
    for field, (start, end) in field_spans(source).items():  # the source field each output field copies
        ax.axvspan(start - 0.5, end - 0.5, ymin=0, ymax=0.02, color=FIELD_COLOURS[field], lw=0)
    ax.set_xlabel("source character")
    return output


# %% tags=["gallery"]
examples = [next(s for s, _ in held_out if re.fullmatch(FIELD_PATTERNS[style], s)) for style in DATE_FORMATS]
fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), gridspec_kw=dict(width_ratios=[len(s) for s in examples]))
for ax, source in zip(axes, examples):
    output = draw_cross_attention(ax, source, layer=0)
    ax.set_title(f"{source!r}\n-> {output!r}", fontsize=10)
axes[0].set_ylabel("character written")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each output field reads its own source field, wherever the format put it: the four rows of the year light up
# the year at the end of the source, the rows of the day the one or two digits of the day, and the rows of the
# month the month's name or its two digits. The hyphens and EOS, which copy nothing, spread their weight thinly.
# Nobody told the model where the fields are: the alignment is a by-product of learning to translate, as
# {cite:t}`bahdanau2015neural` first observed for attention in translation.
#
# We can measure the alignment instead of eyeballing it. For each output field, take the cross-attention of the
# rows that write its characters and add up the weight that falls on the source span of the same field; average
# over 200 held-out dates. If attention ignored the content, a field would receive weight in proportion to its
# length (the "uniform" column).

# %%
def field_attention(sources, layer):
    """Mean share of cross-attention (heads averaged) that each output field puts on its own source field."""
    src = tok.batch(sources)  # (N, S)
    out = greedy_decode(model, src)  # (N, 11)
    with torch.no_grad():
        weights = model.cross_attention_weights(src, shift_right(out, tok.bos_id))[layer].mean(1)  # (N, 11, S)
    share = {f: [] for f in FIELDS}
    uniform = {f: [] for f in FIELDS}
    for n, source in enumerate(sources):
        src_spans, tgt_spans = field_spans(source), field_spans(tok.decode(out[n]))
        for f in FIELDS:
            (s0, s1), (t0, t1) = src_spans[f], tgt_spans[f]
            share[f].append(weights[n, t0:t1, s0:s1].sum(-1).mean().item())
            uniform[f].append((s1 - s0) / len(source))
    return {f: (sum(share[f]) / len(share[f]), sum(uniform[f]) / len(uniform[f])) for f in FIELDS}


sample = [s for s, _ in held_out[:200]]
layer_names = "".join(f"{'layer ' + str(layer + 1):>18s}" for layer in range(config.num_layers))
print(f"{'':8s}{layer_names}{'uniform':>10s}")
results = [field_attention(sample, layer) for layer in range(config.num_layers)]
for f in FIELDS:
    print(f"{f:8s}" + "".join(f"{r[f][0]:18.0%}" for r in results) + f"{results[0][f][1]:10.0%}")

# %% [markdown]
# In the first decoder layer about nine tenths of each field's attention lands on the right source field, where
# a content-blind spread would put a third or less. The second layer is less concentrated on the year and month
# (about three quarters): some of its heads look elsewhere, and the widget below lets you inspect them one by
# one. Averaging over heads also hides how sharp each head is: single heads usually put almost all their weight
# on one source character, and often on exactly the character being copied.
#
# ## Decoding
#
# ### Greedy decoding
#
# At test time there is no target to shift. The decoder starts from BOS alone, picks the most probable next
# token, appends it, and runs again on the longer prefix, until it writes EOS or reaches a maximum length. The
# encoder runs once per source; the decoder once per output token. `greedy_decode` does this for a batch, and a
# row that has finished is filled with PAD while the others go on:

# %%
print(inspect.getsource(greedy_decode))

# %% [markdown]
# Two details. PAD and BOS are never generated (`_next_log_probs` gives them $-\infty$), since no target
# contains them. And each step re-runs the decoder over the whole prefix: with a KV cache (chapter 12) the
# decoder's self-attention would only process the new token, and the cross-attention keys and values, which
# depend only on the source, would be computed once. For outputs of ten characters, re-running costs little.
#
# ### Beam search
#
# Greedy decoding picks the best *next* token, which is not the same as the best *sequence*: a token that looks
# best now can lead into a continuation in which every choice is poor. **Beam search** keeps the $K$ most
# probable prefixes (the *beam*) instead of one. At each step it scores every one-token extension of every prefix,
#
# $$
# \text{score}(y_{1..t}) = \sum_{i=1}^{t} \log p(y_i \mid y_{<i}, x) = \text{score}(y_{1..t-1}) + \log p(y_t \mid y_{<t}, x),
# $$
#
# keeps the $K$ best of the $K \times V$ candidates, and sets aside those that end with EOS as finished
# hypotheses. A score can only fall as a prefix grows, so the search can stop as soon as the best finished
# hypothesis scores at least as high as every prefix still in the beam. With $K = 1$ it is greedy decoding;
# with $K$ larger than the number of possible prefixes it is an exhaustive search (the tests check both).
# {cite:t}`sutskever2014sequence` found that a beam of 2 already gave most of the benefit in translation.
#
# A sum of log-probabilities can only go down as a sequence grows, so plain beam search prefers short outputs.
# A *length penalty* ranks finished hypotheses by $\text{score} / n^{\alpha}$ instead, where $n$ is the
# output's length: $\alpha = 0$ is the plain probability and $\alpha = 1$ the mean log-probability per token.
# (Google's translation system divided by $((5 + n)/6)^\alpha$ with $\alpha$ about 0.6
# {cite:p}`wu2016google`.) tinycore's `beam_search(model, src_ids, beam_width, max_len=None, length_penalty=0.0)`
# decodes one source at a time and returns the finished hypotheses with their log-probabilities, best first.
# Every ISO date has the same length, so in this chapter the length penalty changes nothing.
#
# Here is greedy decoding's short-sightedness in a toy "model" whose next-token probabilities come from a
# table (a class with the same `encode`/`decode` interface as `EncoderDecoder`, so that tinycore's own
# `greedy_decode` and `beam_search` run on it). After BOS, "a" is the most likely token (0.5) and "b" the
# runner-up (0.4); but after "a" the model is unsure (EOS 0.4, "a" or "c" 0.3 each), while after "b" it is
# confident (EOS 0.9).

# %%
class TableModel:
    """Next-token probabilities read from a table {prefix: {token: p}}; the interface of EncoderDecoder."""

    symbols = ["PAD", "BOS", "EOS", "a", "b", "c"]

    def __init__(self, table):
        self.table = table
        self.config = Seq2SeqConfig(vocab_size=6, src_context_length=1, tgt_context_length=4, d_model=2,
                                    num_layers=1, num_heads=1, d_ff=2)

    def encode(self, src_ids):
        return torch.zeros(src_ids.shape[0], 1, 1)  # (B, S=1, D=1): no source to read

    def source_mask(self, src_ids):
        return torch.ones(src_ids.shape[0], 1, 1, 1, dtype=torch.bool)

    def decode(self, prefixes, memory, mask):
        """(k, t) prefixes -> (k, t, V) logits; only the last position is used by decoding."""
        logits = torch.full((*prefixes.shape, 6), -30.0)  # probability ~1e-13 for anything not in the table
        for row, prefix in enumerate(prefixes.tolist()):
            text = "".join(self.symbols[i] for i in prefix[1:])  # the tokens after BOS
            for symbol, p in self.table.get(text, {"EOS": 1.0}).items():
                logits[row, -1, self.symbols.index(symbol)] = math.log(p)
        return logits


toy = TableModel({"": {"a": 0.5, "b": 0.4, "EOS": 0.1},
                  "a": {"EOS": 0.4, "a": 0.3, "c": 0.3},
                  "b": {"EOS": 0.9, "a": 0.1}})
no_source = torch.zeros(1, 1, dtype=torch.long)  # (B=1, S=1): the toy has no source to read


def spell(ids):
    return " ".join(TableModel.symbols[i] for i in ids.tolist())


print(f"greedy_decode:  {spell(greedy_decode(toy, no_source)[0])}")
for width in (1, 2, 3):
    hypotheses = beam_search(toy, no_source, beam_width=width)
    listed = ", ".join(f"{spell(ids)} (p = {math.exp(score):.2f})" for ids, score in hypotheses)
    print(f"beam width {width}: {listed}")

# %% [markdown]
# Greedy decoding commits to "a" and ends with probability $0.5 \times 0.4 = 0.20$. A beam of two keeps "b" alive
# as well and finds "b EOS" with probability $0.4 \times 0.9 = 0.36$: more probable as a whole, although its
# first token was not the most probable one. A beam of width 1 is greedy decoding, as it should be.
#
# ### Greedy against beam search on the trained model
#
# Does the same happen on the date model? We decode 40 held-out dates, where the model is right, and 40 dates
# from 1900-1949, where it is mostly wrong, both ways with a beam of 4, and compare the answers and the
# probability the model gives them.

# %%
def greedy_against_beam(pairs, beam_width=4):
    src = tok.batch([s for s, _ in pairs])  # (N, S)
    greedy_ids = greedy_decode(model, src)  # (N, <= 11)
    greedy_p = sequence_log_prob(model, src, greedy_ids).exp()  # (N,)
    beam = [beam_search(model, row[row != tok.pad_id], beam_width)[0] for row in src]  # best (ids, log p) per source
    beam_p = torch.tensor([score for _, score in beam]).exp()  # (N,)
    greedy_text = [tok.decode(row) for row in greedy_ids]
    beam_text = [tok.decode(ids) for ids, _ in beam]
    truth = [t for _, t in pairs]
    return {"greedy exact": sum(g == t for g, t in zip(greedy_text, truth)) / len(pairs),
            "beam exact": sum(b == t for b, t in zip(beam_text, truth)) / len(pairs),
            "outputs that differ": sum(g != b for g, b in zip(greedy_text, beam_text)),
            "beam more probable": int((beam_p > greedy_p * 1.001).sum()),  # by more than float32 rounding
            "mean p greedy": greedy_p.mean().item(), "mean p beam": beam_p.mean().item()}


for name, pairs in [("held-out dates", held_out[:40]), ("years 1900-1949", outside[1900, 1949][:40])]:
    r = greedy_against_beam(pairs)
    print(f"{name:16s}: exact match greedy {r['greedy exact']:.0%}, beam {r['beam exact']:.0%}; "
          f"{r['outputs that differ']} outputs differ, beam's more probable in {r['beam more probable']}; "
          f"mean p(output) greedy {r['mean p greedy']:.3f}, beam {r['mean p beam']:.3f}")

# %% [markdown]
# Beam search changes nothing here: not one output differs, on the held-out dates or on the years the model gets
# wrong. A beam helps when the model hesitates between continuations whose consequences only show later, as in
# the toy. This model does not hesitate: its held-out answers have probability close to 1, and even its wrong
# answers on the unseen years have probability above 0.9 on average. A more thorough search of a confidently
# wrong distribution finds the same wrong answer. Beam search pays off in real translation, where many outputs are
# plausible; it cannot repair a model that is wrong and sure.
#
# ## Explore: translate a date and watch the alignment
#
# Pick a date, a format, a decoder layer and a head (or the mean of the heads). The cell translates it with
# greedy decoding, says whether the date was one of the training dates or a held-out one, and draws the
# cross-attention. First the figure for the default choice: 12 September 2032 in the "Thu 7 Mar 2024" format,
# seen by head 2 of the first decoder layer alone.

# %%
train_dates = set(task.train_dates)


def explore_date(day=12, month="September", year=2032, style="Thu 7 Mar 2024", layer=1, head="2"):
    m = MONTHS.index(month) + 1
    last_day = (datetime.date(year + m // 12, m % 12 + 1, 1) - datetime.timedelta(days=1)).day
    date = datetime.date(year, m, min(day, last_day))  # 31 September becomes 30 September
    source, truth = format_date(date, style), format_date(date, TARGET_FORMAT)
    fig, ax = plt.subplots(figsize=(7, 4))
    output = draw_cross_attention(ax, source, layer - 1, None if head == "mean" else int(head), colorbar=True)
    seen = "a training date" if date in train_dates else "a held-out date (never seen in training)"
    verdict = "right" if output == truth else f"wrong, should be {truth!r}"
    ax.set_title(f"{source!r} -> {output!r} ({verdict})\n{seen}; layer {layer}, head {head}", fontsize=10)
    ax.set_ylabel("character written")
    plt.tight_layout()
    plt.show()


explore_date()

# %% tags=["nbval-ignore-output"]
_ = interact(
    explore_date,
    day=IntSlider(value=12, min=1, max=31, description="day"),
    month=Dropdown(options=list(MONTHS), value="September", description="month"),
    year=IntSlider(value=2032, min=1950, max=2049, description="year"),
    style=Dropdown(options=list(DATE_FORMATS), value="Thu 7 Mar 2024", description="format"),
    layer=Dropdown(options=list(range(1, config.num_layers + 1)), value=1, description="layer"),
    head=Dropdown(options=["mean"] + [str(h) for h in range(config.num_heads)], value="2", description="head"),
)

# %% [markdown]
# Things to try: the same date in the four formats (the bright cells move, the output does not); a one-digit day
# (which source character does the decoder look at when it writes the leading "0"?); the two layers and the
# single heads, which divide the work differently; a year at the edge of the range, 1950 or 2049.
#
# ## When the input is wrong
#
# tinycore checks what it is given and names the problem. Four mistakes: a token id outside the vocabulary, a
# source longer than the model's context, a batch whose source and target live on different devices (here the
# target is on PyTorch's `meta` device, which holds shapes without data), and a beam of width 0:

# %%
src_ok, tgt_ok = date_batches(task, "train", 3)(torch.Generator().manual_seed(5))  # (3, S), (3, 11)
tgt_in_ok = shift_right(tgt_ok, tok.bos_id)
attempts = {
    "id 46 in a vocabulary of 46": lambda: model(src_ok.masked_fill(src_ok == src_ok.max(), 46), tgt_in_ok),
    "a source of 25 tokens": lambda: model(torch.full((3, 25), 5), tgt_in_ok),
    "target on another device": lambda: model(src_ok, tgt_in_ok.to("meta")),
    "beam_width=0": lambda: beam_search(model, src_ok[0], beam_width=0),
}
for what, attempt in attempts.items():
    try:
        attempt()
    except (IndexError, ValueError) as err:
        print(f"{what}: {type(err).__name__}: {err}")

# %% [markdown]
# ## Exercises
#
# ```{exercise-start} Shift right for teacher forcing
# :label: ex-seq2seq-shift-right
# ```
# Write `shift_right(targets, bos_id)`: given targets of shape `(B, T)` (token ids ending with EOS, possibly
# followed by PAD), return the decoder's input under teacher forcing, also `(B, T)`: `bos_id` at position 0,
# then `targets[:, 0], ..., targets[:, T-2]`. Keep the targets' integer dtype.
#
# - The checker uses batches such as `(2, 5)` and `(3, 8)` with padding, and different values of `bos_id`, and
#   compares with a loop.
#
# Hint: make a `(B, 1)` column of `bos_id` and concatenate it in front of all but the last target column.

# %%
def shift_right(targets, bos_id):
    raise NotImplementedError("Exercise: implement shift_right")


# %% tags=["raises-exception"]
checks.shift_right(shift_right)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-seq2seq-shift-right
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def shift_right(targets, bos_id):
    bos = torch.full_like(targets[:, :1], bos_id)  # (B, 1), the targets' dtype and device
    return torch.cat([bos, targets[:, :-1]], dim=1)  # (B, 1) + (B, T - 1) -> (B, T)


checks.shift_right(shift_right)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Cross-attention from its weights
# :label: ex-seq2seq-cross-attention
# ```
# Write `cross_attention(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask)`: multi-head cross-attention of
# the decoder stream `x` `(B, T, D)` over the encoder's `memory` `(B, S, D)`. The four weights are `(D, D)`
# matrices stored as `nn.Linear` stores them, `(d_out, d_in)`, so a projection is `t @ w.T`; heads are
# head-major (head $h$ owns features $hD_h$ to $(h+1)D_h - 1$); `memory_mask` is `(B, S)` boolean, True at real
# source tokens. Return `(B, T, D)`, without using `MultiHeadCrossAttention` or `scaled_dot_product_attention`.
#
# - The checker compares values and gradients with PyTorch's own multi-head attention on cases such as
#   `x (2, 5, 12)`, `memory (2, 7, 12)`, 3 heads, and sources of different lengths.
#
# Hint: the scores have shape `(B, H, T, S)`: one row per target position, one column per source token. Hint: the
# mask must broadcast over heads and queries, and there is no causal mask here.

# %%
def cross_attention(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask):
    raise NotImplementedError("Exercise: implement cross_attention")


# %% tags=["raises-exception"]
checks.cross_attention(cross_attention)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-seq2seq-cross-attention
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def cross_attention(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask):
    B, T, D = x.shape
    S, Dh = memory.shape[1], D // num_heads
    q = (x @ w_q.T).view(B, T, num_heads, Dh).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)
    k = (memory @ w_k.T).view(B, S, num_heads, Dh).transpose(1, 2)  # (B, S, D) -> (B, H, S, Dh)
    v = (memory @ w_v.T).view(B, S, num_heads, Dh).transpose(1, 2)  # (B, H, S, Dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(Dh)  # (B, H, T, S)
    scores = scores.masked_fill(~memory_mask[:, None, None, :], float("-inf"))  # hide padding keys
    out = scores.softmax(dim=-1) @ v  # (B, H, T, S) @ (B, H, S, Dh) -> (B, H, T, Dh)
    return out.transpose(1, 2).reshape(B, T, D) @ w_o.T  # (B, T, D)


checks.cross_attention(cross_attention)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} Batched greedy decoding
# :label: ex-seq2seq-greedy-decode
# ```
# Write `greedy_decode(next_logits, src, max_len, bos_id, eos_id, pad_id)` for any model given as a function:
# `next_logits(src, prefixes)` takes the sources `(B, S)` and the prefixes so far `(B, t)` (each starting with
# `bos_id`) and returns the next-token logits `(B, V)`. Start every row with `bos_id`; at each step append the
# most probable token to every row. A row that has produced `eos_id` keeps it and gets `pad_id` from then on.
# Stop when every row has produced EOS, or after `max_len` new tokens. Return the generated tokens without BOS,
# `(B, L)` with `L <= max_len`, as a long tensor.
#
# - The checker's `next_logits` is a fixed toy model (no network); its cases include rows that end at
#   different steps, rows that never produce EOS, and a row whose first token is EOS.
#
# Hint: keep a boolean `(B,)` tensor of rows that have finished. Hint: `torch.cat` a `(B, 1)` column per step.

# %%
def greedy_decode(next_logits, src, max_len, bos_id, eos_id, pad_id):
    raise NotImplementedError("Exercise: implement greedy_decode")


# %% tags=["raises-exception"]
checks.greedy_decode(greedy_decode)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-seq2seq-greedy-decode
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def greedy_decode(next_logits, src, max_len, bos_id, eos_id, pad_id):
    B = src.shape[0]
    out = torch.full((B, 1), bos_id, dtype=torch.long)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool)  # (B,)
    for _ in range(max_len):
        token = next_logits(src, out).argmax(dim=-1)  # (B, V) -> (B,)
        token = torch.where(finished, torch.full_like(token, pad_id), token)  # finished rows only get PAD
        finished = finished | (token == eos_id)
        out = torch.cat([out, token[:, None]], dim=1)  # (B, t) -> (B, t + 1)
        if finished.all():
            break
    return out[:, 1:]  # drop BOS


checks.greedy_decode(greedy_decode)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise-start} One step of beam search
# :label: ex-seq2seq-beam-step
# ```
# Write `beam_step(scores, log_probs, beam_width)`, the heart of beam search. `scores` `(K,)` holds the
# log-probabilities of the $K$ prefixes in the beam, `log_probs` `(K, V)` the log-probability of every next token
# after each prefix. Return three tensors of shape `(beam_width,)`, best first: the scores of the `beam_width`
# best one-token extensions among all $K \times V$, the index of the prefix each one extends (long), and the
# token it adds (long).
#
# - The checker compares with a list of every candidate, sorted, on cases such as $K = 1$ (the first step) and
#   $K = 4$ narrowed to a beam of 2.
#
# Hint: broadcasting `scores[:, None] + log_probs` gives every candidate's score. Hint: after flattening, index
# $i$ of a `(K, V)` table is row $i // V$ and column $i \% V$.

# %%
def beam_step(scores, log_probs, beam_width):
    raise NotImplementedError("Exercise: implement beam_step")


# %% tags=["raises-exception"]
checks.beam_step(beam_step)

# %% [markdown]
# ```{exercise-end}
# ```
#
# ```{solution-start} ex-seq2seq-beam-step
# :class: dropdown
# ```

# %% cellView="form"
#@title Solution: run this cell to define and check the reference answer
def beam_step(scores, log_probs, beam_width):
    V = log_probs.shape[1]
    candidates = (scores[:, None] + log_probs).flatten()  # (K, V) -> (K * V,): every one-token extension
    best_scores, flat_index = candidates.topk(beam_width)  # sorted, best first
    return best_scores, flat_index // V, flat_index % V  # which prefix, which token


checks.beam_step(beam_step)

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Summary
#
# - An encoder-decoder reads the source with a bidirectional encoder into a memory of $S$ vectors, and writes
#   the output with a causal decoder whose blocks add **cross-attention**: queries from the target prefix, keys
#   and values from the memory, weights of shape $T \times S$, no causal mask, and the source's padding hidden.
# - A decoder block has three sub-layers, `ln1, self_attn, ln2, cross_attn, ln3, ffn`, pre-norm or post-norm.
#   tinycore's `EncoderDecoder` equals `torch.nn.Transformer` (GELU, dropout 0) with copied weights to $10^{-12}$
#   in every logit and gradient; mind PyTorch's padding masks (True = ignore) and the extra final norms of its
#   post-norm stacks.
# - Teacher forcing trains every output position in one pass: the decoder reads BOS + the target shifted right,
#   and causality makes that equal to feeding each prefix on its own. Generation needs one pass per token.
# - A model of 174k parameters, two encoder and two decoder blocks, learns to rewrite dates from four human formats
#   into ISO 8601 in 600 steps: 100% exact match on 1,000 held-out dates, but 3% and 5% on years outside its
#   training range. It interpolates; it does not extrapolate.
# - Cross-attention learns the alignment by itself: in the first decoder layer about nine tenths of each output
#   field's attention falls on the source field it copies, wherever the format puts it.
# - Greedy decoding takes the best next token; beam search keeps the $K$ best prefixes and can find a more
#   probable sequence (0.36 against 0.20 in the toy). On the trained model it changes no output, because the
#   model is sure of its answers, right or wrong. With a beam of 1 it is greedy decoding; a length penalty
#   $\text{score}/n^\alpha$ counters its preference for short outputs.
#
# ## References
#
# - The transformer, its encoder-decoder and shared embeddings: {cite:t}`vaswani2017attention`.
# - Sequence to sequence learning with an encoder and a decoder, and beam search for it: {cite:t}`sutskever2014sequence`.
# - Attention as soft alignment between source and target, the idea cross-attention inherits:
#   {cite:t}`bahdanau2015neural` and {cite:t}`luong2015effective`.
# - An encoder-decoder transformer trained on many tasks as text-to-text: T5 {cite:p}`raffel2020exploring`.
# - The length penalty of Google's neural translation system: {cite:t}`wu2016google`.
# - Pre-norm and post-norm: {cite:t}`xiong2020layer`. `torch.nn.Transformer` is part of PyTorch {cite:p}`paszke2019pytorch`.

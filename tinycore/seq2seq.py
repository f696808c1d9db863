"""The encoder-decoder transformer of "Attention Is All You Need" (Vaswani et al., 2017).

The encoder reads the whole source with bidirectional self-attention (TransformerBlocks with
causal=False) and hands its output, the *memory*, to every decoder layer. A DecoderBlock adds a
third sub-layer between the two of a GPT block: cross-attention, whose queries come from the
target prefix and whose keys and values come from the memory. Pre-norm (the default):

    x = x + SelfAttention(ln1(x))            causal: position t sees target tokens <= t
    x = x + CrossAttention(ln2(x), memory)   every source token that is not padding
    x = x + FFN(ln3(x))

post-norm (the paper's) puts each norm after its residual addition instead. Training uses teacher
forcing: the decoder reads BOS + target[:-1] and predicts the target (ending with EOS) at every position
at once. Decoding is greedy or beam search (Sutskever et al., 2014), one token per decoder pass.

Choices and deviations:
- One vocabulary and one embedding table for source and target (the paper shares them too): the
  digits copied from a date are the same tokens on both sides. The output head is a separate matrix,
  and the table is initialised with std 1 instead of multiplying it by sqrt(D) (equal at the start).
- Sinusoidal positions, added to both sides; LayerNorm, a GELU FFN (the paper: ReLU) and biases in
  every Linear, as torch.nn.Transformer(activation="gelu"). No dropout, no label smoothing.
- Pre-norm has a final LayerNorm on each stack (as nn.Transformer); post-norm has none (the paper;
  nn.Transformer adds them anyway: the tests set its encoder.norm and decoder.norm to None).
- Decoding re-runs the decoder on the whole prefix at every step (no KV cache, see chapter 12) and
  never emits PAD or BOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadCrossAttention, MultiHeadSelfAttention, attention_weights
from .blocks import NORM_POSITIONS, TransformerBlock, _choose, make_ffn, make_norm
from .layers import Embedding, Linear, check_token_ids
from .positions import sinusoidal_positions

__all__ = ["Seq2SeqConfig", "DecoderBlock", "EncoderDecoder", "shift_right", "seq2seq_loss", "sequence_log_prob",
           "greedy_decode", "beam_search"]


@dataclass
class Seq2SeqConfig:
    vocab_size: int  # one vocabulary for source and target
    src_context_length: int  # the longest source the model accepts
    tgt_context_length: int  # the longest decoder input: BOS + target tokens
    d_model: int
    num_layers: int  # blocks in the encoder, and again in the decoder
    num_heads: int
    d_ff: int  # the FFN's hidden width F
    norm_position: str = "pre"  # or "post", as the paper
    pad_id: int = 0  # source padding is masked out of every attention over the source
    bos_id: int = 1  # the decoder's first input token
    eos_id: int = 2  # ends a target; decoding stops there


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the memory, FFN: `ln1, self_attn, ln2, cross_attn, ln3, ffn`.

    Shapes: x (B, T, D), memory (B, S, D), memory_mask (B, 1, 1, S) bool, True = a real token -> (B, T, D)
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, norm_position: str = "pre", bias: bool = True,
                 fused: bool = True, device=None, dtype=None):
        super().__init__()
        self.norm_position = _choose(norm_position, NORM_POSITIONS, "norm_position")
        factory = dict(device=device, dtype=dtype)
        self.ln1 = make_norm("layernorm", d_model, **factory)
        self.self_attn = MultiHeadSelfAttention(d_model, num_heads, causal=True, bias=bias, fused=fused, **factory)
        self.ln2 = make_norm("layernorm", d_model, **factory)
        self.cross_attn = MultiHeadCrossAttention(d_model, num_heads, bias=bias, fused=fused, **factory)
        self.ln3 = make_norm("layernorm", d_model, **factory)
        self.ffn = make_ffn("gelu", d_model, d_ff, bias=bias, **factory)

    def _self_attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_position == "pre":
            return x + self.self_attn(self.ln1(x))  # (B, T, D)
        return self.ln1(x + self.self_attn(x))  # (B, T, D)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask=None) -> torch.Tensor:
        x = self._self_attention(x)  # (B, T, D)
        if self.norm_position == "pre":
            x = x + self.cross_attn(self.ln2(x), memory, memory_mask)  # queries (B, T, D), keys (B, S, D)
            return x + self.ffn(self.ln3(x))  # (B, T, D)
        x = self.ln2(x + self.cross_attn(x, memory, memory_mask))  # (B, T, D)
        return self.ln3(x + self.ffn(x))  # (B, T, D)

    def cross_attention_weights(self, x: torch.Tensor, memory: torch.Tensor, memory_mask=None) -> torch.Tensor:
        """What each head's queries attend to in the memory. Shapes: -> (B, H, T, S)"""
        x = self._self_attention(x)  # (B, T, D)
        queries = self.ln2(x) if self.norm_position == "pre" else x
        q, k, _ = self.cross_attn.project(queries, memory)  # q (B, H, T, Dh), k (B, H, S, Dh)
        return attention_weights(q, k, memory_mask)  # (B, H, T, S)


class EncoderDecoder(nn.Module):
    """`token_embeddings, encoder_layers.{i}, encoder_ln_final, decoder_layers.{i}, decoder_ln_final, lm_head`.

    Shapes: src_ids (B, S), tgt_in (B, T) -> logits (B, T, V); S <= src_context_length, T <= tgt_context_length
    """

    def __init__(self, config: Seq2SeqConfig, fused: bool = True, device=None, dtype=None):
        super().__init__()
        self.config = c = config
        if c.d_model % c.num_heads:
            raise ValueError(f"d_model={c.d_model} is not divisible by num_heads={c.num_heads}")
        factory = dict(device=device, dtype=dtype)
        self.token_embeddings = Embedding(c.vocab_size, c.d_model, **factory)  # (V, D), source and target
        table = sinusoidal_positions(max(c.src_context_length, c.tgt_context_length), c.d_model)  # (L, D)
        self.register_buffer("positions", table.to(device=device, dtype=dtype), persistent=False)
        self.encoder_layers = nn.ModuleList(
            TransformerBlock(c.d_model, c.num_heads, c.d_ff, causal=False, norm="layernorm", ffn="gelu",
                             norm_position=c.norm_position, bias=True, fused=fused, **factory)
            for _ in range(c.num_layers))
        self.decoder_layers = nn.ModuleList(
            DecoderBlock(c.d_model, c.num_heads, c.d_ff, c.norm_position, fused=fused, **factory)
            for _ in range(c.num_layers))
        pre = c.norm_position == "pre"  # the residual stream of a pre-norm stack is not normalised: do it once
        self.encoder_ln_final = make_norm("layernorm", c.d_model, **factory) if pre else nn.Identity()
        self.decoder_ln_final = make_norm("layernorm", c.d_model, **factory) if pre else nn.Identity()
        self.lm_head = Linear(c.d_model, c.vocab_size, **factory)  # (V, D)

    def _check_ids(self, ids: torch.Tensor, limit: int, what: str) -> None:
        check_token_ids(ids, self.config.vocab_size, what=f"{what} ids")
        if ids.ndim != 2:
            raise ValueError(f"EncoderDecoder expects {what} ids of shape (B, T), got {tuple(ids.shape)}")
        if ids.shape[1] > limit:
            side = "src" if what == "source" else "tgt"
            raise ValueError(f"a {what} of {ids.shape[1]} tokens exceeds {side}_context_length={limit}")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings plus sinusoidal positions, for either side. Shapes: (B, T) -> (B, T, D)"""
        return self.token_embeddings(ids) + self.positions[:ids.shape[1]]  # (B, T, D) + (T, D)

    def source_mask(self, src_ids: torch.Tensor) -> torch.Tensor:
        """True at real source tokens. Shapes: (B, S) -> (B, 1, 1, S), broadcast over heads and queries"""
        return (src_ids != self.config.pad_id)[:, None, None, :]

    def encode(self, src_ids: torch.Tensor) -> torch.Tensor:
        """The memory. Shapes: src_ids (B, S) -> (B, S, D)"""
        self._check_ids(src_ids, self.config.src_context_length, "source")
        mask = self.source_mask(src_ids)  # (B, 1, 1, S): no query attends to padding
        x = self.embed(src_ids)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, mask=mask)  # (B, S, D)
        return self.encoder_ln_final(x)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits at every target position. Shapes: tgt_in (B, T), memory (B, S, D) -> (B, T, V)"""
        self._check_ids(tgt_in, self.config.tgt_context_length, "target")
        x = self.embed(tgt_in)  # (B, T, D)
        for layer in self.decoder_layers:
            x = layer(x, memory, memory_mask)  # (B, T, D)
        return self.lm_head(self.decoder_ln_final(x))  # (B, T, D) -> (B, T, V)

    def _check_pair(self, src_ids: torch.Tensor, tgt: torch.Tensor) -> None:
        if src_ids.device != tgt.device:
            raise ValueError(f"a batch with mismatched source and target devices: source ids on {src_ids.device}, "
                             f"target ids on {tgt.device}; move both to the model's device")
        if src_ids.ndim == tgt.ndim == 2 and src_ids.shape[0] != tgt.shape[0]:
            raise ValueError(f"source and target batch sizes differ: {src_ids.shape[0]} and {tgt.shape[0]}")

    def forward(self, src_ids: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        self._check_pair(src_ids, tgt_in)
        return self.decode(tgt_in, self.encode(src_ids), self.source_mask(src_ids))

    def cross_attention_weights(self, src_ids: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Every decoder layer's cross-attention, for plotting. Shapes: -> (L, B, H, T, S)"""
        self._check_pair(src_ids, tgt_in)
        memory, mask = self.encode(src_ids), self.source_mask(src_ids)
        self._check_ids(tgt_in, self.config.tgt_context_length, "target")
        x, weights = self.embed(tgt_in), []
        for layer in self.decoder_layers:
            weights.append(layer.cross_attention_weights(x, memory, mask))  # (B, H, T, S)
            x = layer(x, memory, mask)  # (B, T, D)
        return torch.stack(weights)  # (L, B, H, T, S)


def shift_right(targets: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Teacher forcing's decoder input: BOS, then the targets without their last token.

    Shapes: targets (B, T) -> (B, T)
    """
    bos = torch.full_like(targets[:, :1], bos_id)  # (B, 1)
    return torch.cat([bos, targets[:, :-1]], dim=1)  # (B, 1) + (B, T - 1) -> (B, T)


def seq2seq_loss(model: EncoderDecoder, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The `loss_fn` for tinycore.train: batch = (src_ids (B, S), targets (B, T) ending in EOS, PAD after).

    Mean cross-entropy over the real target tokens (EOS included, PAD ignored), in nats.
    """
    src_ids, targets = batch
    c = model.config
    logits = model(src_ids, shift_right(targets, c.bos_id))  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=c.pad_id)


@torch.no_grad()
def sequence_log_prob(model: EncoderDecoder, src_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets | source) summed over the non-PAD target tokens. Shapes: (B, S), (B, T) -> (B,)"""
    c = model.config
    logits = model(src_ids, shift_right(targets, c.bos_id))  # (B, T, V)
    log_p = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]  # (B, T, V) -> (B, T)
    return (log_p * (targets != c.pad_id)).sum(-1)  # (B,)


def _max_len(model: EncoderDecoder, max_len: int | None) -> int:
    limit = model.config.tgt_context_length  # the decoder's input at the last step is BOS + max_len - 1 tokens
    if max_len is None:
        return limit
    if not 1 <= max_len <= limit:
        raise ValueError(f"max_len must be between 1 and tgt_context_length={limit}, got {max_len}")
    return max_len


def _next_log_probs(model: EncoderDecoder, prefixes: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
    """log p(next token | prefix, source) under the model; PAD and BOS, which no target contains, get -inf.

    Shapes: prefixes (k, t), memory (1 or k, S, D), mask (1 or k, 1, 1, S) -> (k, V)
    """
    k, c = prefixes.shape[0], model.config
    logits = model.decode(prefixes, memory.expand(k, -1, -1), mask.expand(k, -1, -1, -1))  # (k, t, V)
    log_p = logits[:, -1].log_softmax(-1)  # (k, V): the next token after each prefix
    log_p[:, [c.pad_id, c.bos_id]] = float("-inf")
    return log_p


@torch.no_grad()
def greedy_decode(model: EncoderDecoder, src_ids: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The most likely next token, one step at a time, for a batch of sources.

    A row stops at its EOS (kept) and is padded with PAD after it; decoding ends when every row has
    stopped or after max_len tokens (default tgt_context_length). Shapes: src_ids (B, S) -> (B, <= max_len)
    """
    c, max_len = model.config, _max_len(model, max_len)
    memory, mask = model.encode(src_ids), model.source_mask(src_ids)  # (B, S, D), (B, 1, 1, S)
    out = torch.full((src_ids.shape[0], 1), c.bos_id, dtype=torch.long, device=src_ids.device)  # (B, 1)
    done = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)  # (B,)
    for _ in range(max_len):
        next_id = _next_log_probs(model, out, memory, mask).argmax(-1)  # (B, V) -> (B,)
        next_id = next_id.masked_fill(done, c.pad_id)  # finished rows only grow padding
        out = torch.cat([out, next_id[:, None]], dim=1)  # (B, t) -> (B, t + 1)
        done |= next_id == c.eos_id
        if done.all():
            break
    return out[:, 1:]  # drop BOS


@torch.no_grad()
def beam_search(model: EncoderDecoder, src_ids: torch.Tensor, beam_width: int, max_len: int | None = None,
                length_penalty: float = 0.0) -> list[tuple[torch.Tensor, float]]:
    """The beam_width most likely prefixes kept at every step; returns up to beam_width hypotheses, best first.

    A hypothesis is (ids ending in EOS, or cut at max_len; log p), ranked by log p / length^length_penalty:
    0 ranks by probability (favouring short outputs), 1 by log p per token. Each step scores all k * V
    extensions of the k alive prefixes: an EOS among the best beam_width finishes a hypothesis, the best
    beam_width others stay alive. The search stops when no alive prefix can still beat the best finished
    hypothesis (log p only falls as a prefix grows, and its length is at most max_len), or at max_len.
    beam_width=1 with length_penalty=0 is greedy decoding. Shapes: src_ids (1, S) or (S,): one source
    """
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    src_ids = src_ids[None] if src_ids.ndim == 1 else src_ids  # (S,) -> (1, S)
    if src_ids.shape[0] != 1:
        raise ValueError(f"beam_search decodes one source at a time: src_ids (1, S) or (S,), "
                         f"got {tuple(src_ids.shape)}")
    c, max_len = model.config, _max_len(model, max_len)
    memory, mask = model.encode(src_ids), model.source_mask(src_ids)  # (1, S, D), (1, 1, 1, S)
    beams = torch.full((1, 1), c.bos_id, dtype=torch.long, device=src_ids.device)  # (k, t): alive prefixes
    scores = memory.new_zeros(1)  # (k,): their log-probabilities
    finished: list[tuple[torch.Tensor, float]] = []

    def rank(hypothesis):
        return hypothesis[1] / len(hypothesis[0]) ** length_penalty

    for _ in range(max_len):
        log_p = _next_log_probs(model, beams, memory, mask)  # (k, V)
        candidates = (scores[:, None] + log_p).flatten()  # (k, V) -> (k * V,): every one-token extension
        top_scores, top_index = candidates.topk(min(2 * beam_width, candidates.numel()))  # best first
        keep = []  # (beam, token, score) of the prefixes that stay alive
        for position, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            if score == float("-inf"):  # PAD or BOS: only when fewer than 2 * beam_width tokens remain
                break
            beam, token = divmod(index, c.vocab_size)
            if token == c.eos_id:
                if position < beam_width:  # an EOS ranked among the best beam_width ends a hypothesis
                    finished.append((torch.cat([beams[beam, 1:], beams.new_tensor([token])]), score))
            elif len(keep) < beam_width:
                keep.append((beam, token, score))
        if not keep:
            break
        beam_ids = torch.tensor([b for b, _, _ in keep], device=beams.device)  # (k',)
        tokens = torch.tensor([t for _, t, _ in keep], device=beams.device)  # (k',)
        beams = torch.cat([beams[beam_ids], tokens[:, None]], dim=1)  # (k', t + 1)
        scores = scores.new_tensor([s for _, _, s in keep])  # (k',)
        if finished and max(map(rank, finished)) >= float(scores.max()) / max_len ** length_penalty:
            break  # the best any alive prefix could still reach
    else:  # cut at max_len: the best unfinished prefixes complete the list
        finished += list(zip(beams[:, 1:], scores.tolist()))[:beam_width]  # kept best first
    return sorted(finished, key=rank, reverse=True)[:beam_width]

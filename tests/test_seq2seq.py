"""tinycore.seq2seq against torch.nn.Transformer with copied weights (forward and gradients, pre- and
post-norm), against exhaustive search (beam search), and the properties an encoder-decoder must have;
tinycore.tasks' date task against Python's own date parser."""

import datetime
import itertools
import math

import pytest
import torch
from torch import nn

from tinycore.attention import merge_heads, split_heads
from tinycore.seq2seq import (
    DecoderBlock, EncoderDecoder, Seq2SeqConfig, beam_search, greedy_decode, seq2seq_loss, sequence_log_prob,
    shift_right,
)
from tinycore.tasks import DATE_FORMATS, TARGET_FORMAT, DateTask, Seq2SeqTokenizer, date_batches, format_date

F64 = dict(dtype=torch.float64)
PAD, BOS, EOS = 0, 1, 2
NESTED_TENSOR_WARNING = "ignore:enable_nested_tensor is True"  # nn.Transformer's note that norm_first has no fast path


def make_model(seed=0, norm_position="pre", fused=True, vocab_size=13, d_model=24, num_layers=2, num_heads=4, d_ff=40,
               src_len=9, tgt_len=7, dtype=torch.float64):
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(vocab_size, src_len, tgt_len, d_model, num_layers, num_heads, d_ff, norm_position)
    model = EncoderDecoder(cfg, fused=fused, dtype=dtype)
    with torch.no_grad():  # non-trivial norms and biases, so that a mis-copied one shows
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def random_batch(gen, vocab_size=13, lengths=(7, 4, 6), tgt_len=5):
    """Sources of different lengths padded with PAD (B, S), and decoder inputs (B, T) starting with BOS."""
    src = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(3, vocab_size, (n,), generator=gen)
    tgt_in = torch.randint(3, vocab_size, (len(lengths), tgt_len), generator=gen)
    tgt_in[:, 0] = BOS
    return src, tgt_in


def torch_transformer(model: EncoderDecoder) -> nn.Transformer:
    """nn.Transformer holding a copy of model's weights; q, k, v stacked into in_proj as it stores them."""
    c = model.config
    tr = nn.Transformer(c.d_model, c.num_heads, c.num_layers, c.num_layers, c.d_ff, dropout=0.0, activation="gelu",
                        batch_first=True, norm_first=c.norm_position == "pre", **F64)

    def attention(theirs, ours):
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.load_state_dict({"weight": ours.output_proj.weight, "bias": ours.output_proj.bias})

    with torch.no_grad():
        for theirs, ours in zip(tr.encoder.layers, model.encoder_layers):
            attention(theirs.self_attn, ours.attn)
            for t, o in [(theirs.linear1, ours.ffn.w1), (theirs.linear2, ours.ffn.w2),
                         (theirs.norm1, ours.ln1), (theirs.norm2, ours.ln2)]:
                t.load_state_dict(o.state_dict())
        for theirs, ours in zip(tr.decoder.layers, model.decoder_layers):
            attention(theirs.self_attn, ours.self_attn)
            attention(theirs.multihead_attn, ours.cross_attn)
            for t, o in [(theirs.linear1, ours.ffn.w1), (theirs.linear2, ours.ffn.w2), (theirs.norm1, ours.ln1),
                         (theirs.norm2, ours.ln2), (theirs.norm3, ours.ln3)]:
                t.load_state_dict(o.state_dict())
        if c.norm_position == "pre":
            tr.encoder.norm.load_state_dict(model.encoder_ln_final.state_dict())
            tr.decoder.norm.load_state_dict(model.decoder_ln_final.state_dict())
        else:  # the paper's post-norm stacks end with their last layer's norm; nn.Transformer adds one more
            tr.encoder.norm = tr.decoder.norm = None
    return tr


def torch_logits(model, tr, src, tgt_in):
    """model's embeddings and head around nn.Transformer; its boolean masks mean True = NOT allowed."""
    pad = src == PAD  # (B, S)
    causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=torch.float64)  # 0 / -inf
    out = tr(model.embed(src), model.embed(tgt_in), tgt_mask=causal, src_key_padding_mask=pad,
             memory_key_padding_mask=pad, tgt_is_causal=True)
    return model.lm_head(out)


@pytest.mark.filterwarnings(NESTED_TENSOR_WARNING)
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_matches_nn_transformer_forward_and_gradients(norm_position, fused, gen):
    model = make_model(norm_position=norm_position, fused=fused)
    tr = torch_transformer(model)
    src, tgt_in = random_batch(gen)
    g = torch.randn(3, 5, 13, generator=gen, **F64)

    ours = model(src, tgt_in)
    (ours * g).sum().backward()
    ours_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    theirs = torch_logits(model, tr, src, tgt_in)
    (theirs * g).sum().backward()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)

    # the shared embeddings and head see the same gradient through either stack
    for name in ("token_embeddings.weight", "lm_head.weight"):
        torch.testing.assert_close(ours_grads[name], dict(model.named_parameters())[name].grad, rtol=0, atol=1e-11)
    names = parameter_names(model.config)
    assert set(names) == {n for n, _ in tr.named_parameters()}, "every parameter of nn.Transformer is compared"
    ours_in_map = {n for group in names.values() for n in group}
    assert ours_in_map | {"token_embeddings.weight", "lm_head.weight"} == set(ours_grads), "and every one of ours"
    for theirs_name, theirs_param in tr.named_parameters():
        torch.testing.assert_close(torch.cat([ours_grads[n] for n in names[theirs_name]]), theirs_param.grad,
                                   rtol=0, atol=1e-11, msg=theirs_name)


def parameter_names(c: Seq2SeqConfig) -> dict[str, list[str]]:
    """nn.Transformer's parameter names -> ours (three of ours, q k v, make one in_proj)."""
    names = {}

    def attention(theirs, ours):
        for kind in ("weight", "bias"):
            names[f"{theirs}.in_proj_{kind}"] = [f"{ours}.{p}_proj.{kind}" for p in "qkv"]
            names[f"{theirs}.out_proj.{kind}"] = [f"{ours}.output_proj.{kind}"]

    for i in range(c.num_layers):
        for side, ours, attns, norms in [("encoder", "encoder_layers", [("self_attn", "attn")], 2),
                                         ("decoder", "decoder_layers",
                                          [("self_attn", "self_attn"), ("multihead_attn", "cross_attn")], 3)]:
            for theirs_attn, ours_attn in attns:
                attention(f"{side}.layers.{i}.{theirs_attn}", f"{ours}.{i}.{ours_attn}")
            for kind in ("weight", "bias"):
                names[f"{side}.layers.{i}.linear1.{kind}"] = [f"{ours}.{i}.ffn.w1.{kind}"]
                names[f"{side}.layers.{i}.linear2.{kind}"] = [f"{ours}.{i}.ffn.w2.{kind}"]
                for n in range(1, norms + 1):
                    names[f"{side}.layers.{i}.norm{n}.{kind}"] = [f"{ours}.{i}.ln{n}.{kind}"]
    if c.norm_position == "pre":
        for kind in ("weight", "bias"):
            names[f"encoder.norm.{kind}"] = [f"encoder_ln_final.{kind}"]
            names[f"decoder.norm.{kind}"] = [f"decoder_ln_final.{kind}"]
    return names


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_matches_nn_transformer_decoder_layer(norm_first, gen):
    block = DecoderBlock(16, 2, 28, "pre" if norm_first else "post", **F64)
    layer = nn.TransformerDecoderLayer(16, 2, 28, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first, **F64)
    with torch.no_grad():
        for theirs, ours in [(layer.self_attn, block.self_attn), (layer.multihead_attn, block.cross_attn)]:
            theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
            theirs.in_proj_bias.normal_(generator=gen)
            ours.q_proj.bias.copy_(theirs.in_proj_bias[:16])
            ours.k_proj.bias.copy_(theirs.in_proj_bias[16:32])
            ours.v_proj.bias.copy_(theirs.in_proj_bias[32:])
            theirs.out_proj.load_state_dict({"weight": ours.output_proj.weight, "bias": ours.output_proj.bias})
        for t, o in [(layer.linear1, block.ffn.w1), (layer.linear2, block.ffn.w2), (layer.norm1, block.ln1),
                     (layer.norm2, block.ln2), (layer.norm3, block.ln3)]:
            t.load_state_dict(o.state_dict())
    x = torch.randn(3, 5, 16, generator=gen, **F64, requires_grad=True)
    memory = torch.randn(3, 8, 16, generator=gen, **F64, requires_grad=True)
    keep = torch.rand(3, 8, generator=gen) < 0.7
    keep[:, 0] = True
    ours = block(x, memory, keep[:, None, None, :])
    theirs = layer(x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64),
                   memory_key_padding_mask=~keep, tgt_is_causal=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, [x, memory], g), torch.autograd.grad(theirs, [x, memory], g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_decoder_is_causal_and_reads_the_whole_source(gen):
    model = make_model()
    src, tgt_in = random_batch(gen)
    base = model(src, tgt_in)
    for t in range(1, tgt_in.shape[1]):
        changed = tgt_in.clone()
        changed[:, t] = 3 + (changed[:, t] - 2) % 10  # another real token
        out = model(src, changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"positions before {t} saw the change at {t}"
        assert not torch.allclose(out[:, t], base[:, t])
    src_changed = src.clone()
    src_changed[:, 3] = 3 + (src[:, 3] - 2) % 10  # the last real token of the shortest source (length 4)
    moved = (model(src_changed, tgt_in) - base).abs().amax(dim=-1)  # (B, T)
    assert (moved > 1e-6).all(), "every target position may see every source token"


def test_source_padding_changes_nothing(gen):
    model = make_model()
    src, tgt_in = random_batch(gen)
    base = model(src, tgt_in)
    more_padding = torch.cat([src, torch.full((3, 2), PAD)], dim=1)  # (B, S + 2)
    torch.testing.assert_close(model(more_padding, tgt_in), base, rtol=0, atol=1e-12)
    for i, n in enumerate((7, 4, 6)):  # each source alone, without any padding, gives its row of the batch
        torch.testing.assert_close(model(src[i:i + 1, :n], tgt_in[i:i + 1]), base[i:i + 1], rtol=0, atol=1e-12)
    weights = model.cross_attention_weights(src, tgt_in)  # (L, B, H, T, S)
    assert weights.shape == (2, 3, 4, 5, 7)
    assert (weights[:, 1, :, :, 4:] == 0).all() and (weights[:, 1, :, :, :4] > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4, 5, **F64))


def test_cross_attention_weights_are_the_ones_the_forward_uses(gen):
    model = make_model()
    src, tgt_in = random_batch(gen)
    seen = []
    hooks = [layer.cross_attn.register_forward_hook(lambda m, args, out: seen.append((m, args, out)))
             for layer in model.decoder_layers]
    model(src, tgt_in)
    for h in hooks:
        h.remove()
    weights = model.cross_attention_weights(src, tgt_in)  # (L, B, H, T, S)
    for layer, (module, (x, memory, _), out) in enumerate(seen):
        v = split_heads(module.v_proj(memory), 4)  # (B, H, S, Dh)
        rebuilt = module.output_proj(merge_heads(weights[layer] @ v))  # (B, T, D)
        torch.testing.assert_close(rebuilt, out, rtol=0, atol=1e-12)


def test_teacher_forcing_and_the_loss(gen):
    targets = torch.tensor([[5, 6, 7, EOS], [8, EOS, PAD, PAD]])
    assert torch.equal(shift_right(targets, BOS), torch.tensor([[BOS, 5, 6, 7], [BOS, 8, EOS, PAD]]))
    model = make_model()
    src, _ = random_batch(gen, lengths=(6, 3))
    logits = model(src, shift_right(targets, BOS))  # (2, 4, V)
    real = targets != PAD
    want = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0][real].mean()
    torch.testing.assert_close(seq2seq_loss(model, (src, targets)), want, rtol=0, atol=1e-12)
    log_p = sequence_log_prob(model, src, targets)  # (2,)
    torch.testing.assert_close(log_p.sum() / real.sum(), -want, rtol=0, atol=1e-12)


def small_model(seed):
    """An untrained model over 3 specials + 3 characters: EOS is likely enough to end some outputs early."""
    return make_model(seed, vocab_size=6, d_model=16, num_layers=1, num_heads=2, d_ff=24, src_len=6, tgt_len=5)


def test_greedy_decode_is_argmax_step_by_step_and_stops_at_eos():
    ended, cut = 0, 0
    for seed in range(6):
        model = small_model(seed)
        src, _ = random_batch(torch.Generator().manual_seed(seed), vocab_size=6, lengths=(5, 2, 4, 6))
        out = greedy_decode(model, src)  # (B, <= 5)
        for i in range(src.shape[0]):  # one row at a time, the definition written out
            prefix = [BOS]
            while len(prefix) <= model.config.tgt_context_length:
                logits = model(src[i:i + 1], torch.tensor([prefix]))[0, -1]
                prefix.append(int(logits[EOS:].argmax()) + EOS)  # never PAD (0) or BOS (1)
                if prefix[-1] == EOS:
                    break
            row = out[i].tolist()
            assert row[:len(prefix) - 1] == prefix[1:] and set(row[len(prefix) - 1:]) <= {PAD}
            ended, cut = ended + (prefix[-1] == EOS), cut + (prefix[-1] != EOS)
        assert out.shape[1] == 5 or (out == EOS).any(dim=1).all()  # stops as soon as every row has ended
        assert greedy_decode(model, src, max_len=2).shape[1] <= 2
    assert ended and cut  # both ways of stopping were exercised


def test_beam_of_width_one_is_greedy():
    for seed in range(6):
        model = small_model(seed)
        src, _ = random_batch(torch.Generator().manual_seed(seed), vocab_size=6, lengths=(5, 2, 4, 6))
        greedy = greedy_decode(model, src)
        for i in range(src.shape[0]):
            ((ids, score),) = beam_search(model, src[i], beam_width=1)
            want = greedy[i][greedy[i] != PAD] if EOS in greedy[i] else greedy[i]
            assert torch.equal(ids, want)
            assert abs(score - float(sequence_log_prob(model, src[i:i + 1], want[None]))) < 1e-9


def exhaustive_search(model, src, max_len):
    """Every output (non-EOS tokens then EOS, or max_len non-EOS tokens) scored: the exact best one."""
    others = range(3, model.config.vocab_size)  # decoding never emits PAD or BOS
    outputs = [list(p) + [EOS] for n in range(max_len) for p in itertools.product(others, repeat=n)]
    outputs += [list(p) for p in itertools.product(others, repeat=max_len)]
    scores = [float(sequence_log_prob(model, src[None], torch.tensor([o]))) for o in outputs]
    best = max(range(len(outputs)), key=scores.__getitem__)
    return outputs[best], scores[best]


def test_a_beam_wider_than_every_prefix_is_exhaustive_search():
    for seed in range(3):
        model = small_model(seed)
        src = torch.tensor([3, 4, 5, 3])
        want, want_score = exhaustive_search(model, src, max_len=3)
        hypotheses = beam_search(model, src, beam_width=200, max_len=3)
        assert hypotheses[0][0].tolist() == want and abs(hypotheses[0][1] - want_score) < 1e-9
        for ids, score in hypotheses:  # every score is the hypothesis' own log-probability
            assert abs(score - float(sequence_log_prob(model, src[None], ids[None]))) < 1e-9
        assert [s for _, s in hypotheses] == sorted((s for _, s in hypotheses), reverse=True)


class ConfidentModel:
    """EncoderDecoder's decoding interface, no network: after any prefix of t < 4 tokens, "a" (id 3) has
    probability 0.95 and EOS 0.03; after 4 tokens EOS has 0.99. The best output is a a a a EOS (p ~ 0.81)."""

    config = Seq2SeqConfig(vocab_size=5, src_context_length=2, tgt_context_length=7, d_model=2, num_layers=1,
                           num_heads=1, d_ff=2)

    def encode(self, src_ids):
        return torch.zeros(src_ids.shape[0], 1, 1)

    def source_mask(self, src_ids):
        return torch.ones(src_ids.shape[0], 1, 1, 1, dtype=torch.bool)

    def decode(self, prefixes, memory, mask):
        k, t = prefixes.shape
        probs = [1e-9, 1e-9, 0.03, 0.95, 0.02] if t < 5 else [1e-9, 1e-9, 0.99, 0.005, 0.005]  # PAD BOS EOS a b
        return torch.tensor(probs).log().expand(k, t, 5)


def test_early_unlikely_endings_do_not_stop_the_search():
    """EOS ranks second at every step; those poor hypotheses must not end the search before the good one."""
    model, src = ConfidentModel(), torch.tensor([[3]])
    assert greedy_decode(model, src)[0].tolist() == [3, 3, 3, 3, EOS]
    for width in (2, 3, 4):
        (best, score), *others = beam_search(model, src[0], beam_width=width)
        assert best.tolist() == [3, 3, 3, 3, EOS] and abs(score - math.log(0.95 ** 4 * 0.99)) < 1e-6
        assert len(others) == width - 1 and all(s < score for _, s in others)


def test_length_penalty_ranks_by_log_prob_per_token():
    model = small_model(1)
    hypotheses = beam_search(model, torch.tensor([3, 5, 4]), beam_width=4, length_penalty=1.0)
    per_token = [s / len(ids) for ids, s in hypotheses]
    assert len(hypotheses) == 4 and per_token == sorted(per_token, reverse=True)


def test_bad_input_raises_errors_that_name_the_problem(gen):
    model = make_model()
    src, tgt_in = random_batch(gen)
    with pytest.raises(IndexError, match="source ids contains id 13, outside the vocabulary"):
        model(src.masked_fill(src == src.max(), 13), tgt_in)
    with pytest.raises(IndexError, match="target ids contains id -1"):
        model(src, tgt_in.masked_fill(tgt_in == BOS, -1))
    with pytest.raises(TypeError, match="integer tensor"):
        model(src.double(), tgt_in)
    with pytest.raises(ValueError, match="a source of 10 tokens exceeds src_context_length=9"):
        model(torch.full((3, 10), 4), tgt_in)
    with pytest.raises(ValueError, match="a target of 8 tokens exceeds tgt_context_length=7"):
        model(src, torch.full((3, 8), 4))
    with pytest.raises(ValueError, match="mismatched source and target devices"):
        model(src, tgt_in.to("meta"))
    with pytest.raises(ValueError, match="batch sizes differ: 3 and 2"):
        model(src, tgt_in[:2])
    with pytest.raises(ValueError, match=r"source ids of shape \(B, T\)"):
        model.encode(src[0])
    for width in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="beam_width must be an integer >= 1"):
            beam_search(model, src[0], beam_width=width)
    with pytest.raises(ValueError, match="one source at a time"):
        beam_search(model, src, beam_width=2)
    with pytest.raises(ValueError, match="max_len must be between 1 and tgt_context_length=7"):
        greedy_decode(model, src, max_len=8)
    with pytest.raises(ValueError, match="d_model=30 is not divisible by num_heads=4"):
        EncoderDecoder(Seq2SeqConfig(13, 9, 7, 30, 1, 4, 40))
    with pytest.raises(ValueError, match="norm_position must be one of"):
        EncoderDecoder(Seq2SeqConfig(13, 9, 7, 24, 1, 4, 40, norm_position="middle"))


# ---------- the date task ----------

PARSE = {"7 March 2024": "%d %B %Y", "March 7, 2024": "%B %d, %Y", "07.03.2024": "%d.%m.%Y",
         "Thu 7 Mar 2024": "%a %d %b %Y"}


def test_every_format_parses_back_to_its_iso_target():
    task = DateTask(first_year=2023, last_year=2024)
    assert set(PARSE) == set(DATE_FORMATS)
    for src, tgt in task.pairs("train", 400, torch.Generator().manual_seed(0)):
        parsed = next(datetime.datetime.strptime(src, f).date() for s, f in PARSE.items()
                      if _parses(src, f))
        assert parsed.isoformat() == tgt
        if src[:3] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
            assert parsed.strftime("%a") == src[:3]  # the weekday is the calendar's
    assert format_date(datetime.date(2024, 3, 7), "March 7, 2024") == "March 7, 2024"
    assert format_date(datetime.date(1999, 12, 31), TARGET_FORMAT) == "1999-12-31"
    with pytest.raises(ValueError, match="unknown date format"):
        format_date(datetime.date(2024, 3, 7), "7/3/24")


def _parses(text, fmt):
    try:
        datetime.datetime.strptime(text, fmt)
        return True
    except ValueError:
        return False


def test_held_out_dates_never_appear_in_training():
    task = DateTask()
    train, held_out = set(task.train_dates), set(task.held_out_dates)
    assert not train & held_out and len(train | held_out) == 36525  # 1950-2049: 100 years, 25 of them leap
    assert abs(len(held_out) / 36525 - 0.1) < 1e-3
    gen = torch.Generator().manual_seed(1)
    train_sources = {s for s, _ in task.pairs("train", 5000, gen)}
    held_sources = {s for s, _ in task.pairs("held_out", 5000, gen)}
    assert not train_sources & held_sources
    assert DateTask().held_out_dates == task.held_out_dates  # the split is fixed by its seed


def test_tokenizer_and_batches():
    task = DateTask()
    tok = task.tokenizer
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (PAD, BOS, EOS)
    assert tok.decode(tok.encode("Thu 7 Mar 2024", eos=True) + [PAD, 9]) == "Thu 7 Mar 2024"
    batch = tok.batch(["12.01.2000", "1 May 1999"], eos=True)  # (2, 11)
    assert batch.shape == (2, 11) and batch[1, 10] == EOS and batch[0, 10] == EOS and batch.dtype == torch.long
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("7 März 2024")
    with pytest.raises(IndexError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    src, tgt = date_batches(task, "train", 8)(torch.Generator().manual_seed(0))
    src2, tgt2 = date_batches(task, "train", 8)(torch.Generator().manual_seed(0))
    assert torch.equal(src, src2) and torch.equal(tgt, tgt2)  # the generator fixes the batch
    assert tgt.shape == (8, 11) and (tgt[:, 10] == EOS).all()  # every ISO target has 10 characters + EOS
    assert {tok.decode(t) for t in tgt} <= {d.isoformat() for d in task.train_dates}
    with pytest.raises(ValueError, match="split must be"):
        task.pairs("test", 3, torch.Generator())
    assert isinstance(Seq2SeqTokenizer("ab").vocab_size, int)

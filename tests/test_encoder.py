"""TransformerEncoder: against torch.nn.TransformerEncoder with copied weights (forward and gradients, with
a padding mask, bidirectional and causal), padding invariance, what bidirectional means, the masked-LM
pieces, and errors for bad input."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore.encoder import EncoderConfig, TransformerEncoder, key_padding_mask, mask_tokens, masked_lm_loss

V, CTX, D, L, H, FF = 23, 16, 24, 2, 4, 40
CLS, PAD = 21, 22  # two special ids at the end of the vocabulary


def small_encoder(**kwargs) -> TransformerEncoder:
    torch.manual_seed(0)
    model = TransformerEncoder(V, CTX, D, L, H, FF, **kwargs)
    with torch.no_grad():  # random norm gains and biases make every comparison stricter than the init's 1s and 0s
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.normal_(std=0.1)
            elif name.endswith("embeddings.weight"):
                p.normal_()
            else:
                p.normal_(std=0.3)
    return model


def batch(lengths=(9, 4, 7), T=9, seed=1):
    """Right-padded ids starting with [CLS], and the (B, T) mask of real tokens."""
    ids = torch.randint(0, CLS, (len(lengths), T), generator=torch.Generator().manual_seed(seed))
    real = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    ids = ids.masked_fill(~real, PAD)
    ids[:, 0] = CLS
    return ids, real


def torch_oracle(ours: TransformerEncoder) -> nn.ModuleDict:
    """The same model from PyTorch's own modules: pre-norm nn.TransformerEncoderLayer with GELU and biases."""
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
                                       dtype=torch.float64)
    oracle = nn.ModuleDict({
        "tok": nn.Embedding(V, D, dtype=torch.float64),
        "stack": nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(D, dtype=torch.float64), enable_nested_tensor=False),
        "head": nn.Linear(D, V, dtype=torch.float64),
    })
    oracle.pos = nn.Parameter(ours.position_embeddings.weight.detach().clone())
    with torch.no_grad():
        oracle.tok.weight.copy_(ours.token_embeddings.weight)
        for i, (theirs, mine) in enumerate(zip(oracle.stack.layers, ours.layers)):
            a = mine.attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
            theirs.self_attn.out_proj.weight.copy_(a.output_proj.weight)
            theirs.self_attn.out_proj.bias.copy_(a.output_proj.bias)
            for t, m in [(theirs.linear1, mine.ffn.w1), (theirs.linear2, mine.ffn.w2), (theirs.norm1, mine.ln1),
                         (theirs.norm2, mine.ln2)]:
                t.weight.copy_(m.weight)
                t.bias.copy_(m.bias)
        oracle.stack.norm.weight.copy_(ours.ln_final.weight)
        oracle.stack.norm.bias.copy_(ours.ln_final.bias)
        oracle.head.weight.copy_(ours.mlm_head.weight)
        oracle.head.bias.copy_(ours.mlm_head.bias)
    return oracle.train()  # train mode (dropout 0) keeps PyTorch off its fused inference fast path


def oracle_logits(oracle, ids, real, causal):
    T = ids.shape[1]
    x = oracle.tok(ids) + oracle.pos[:T]  # (B, T, D)
    causal_mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None  # True = may NOT attend
    padding = None if real is None else ~real  # PyTorch's polarity: True = padding, ignore
    return oracle.head(oracle.stack(x, mask=causal_mask, src_key_padding_mask=padding))


def their_grads(oracle) -> dict:
    """The oracle's gradients under tinycore's parameter names."""
    g = {"token_embeddings.weight": oracle.tok.weight.grad, "position_embeddings.weight": oracle.pos.grad,
         "ln_final.weight": oracle.stack.norm.weight.grad, "ln_final.bias": oracle.stack.norm.bias.grad,
         "mlm_head.weight": oracle.head.weight.grad, "mlm_head.bias": oracle.head.bias.grad}
    for i, layer in enumerate(oracle.stack.layers):
        p = f"layers.{i}."
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            g[p + f"attn.{name}.weight"] = layer.self_attn.in_proj_weight.grad[j * D:(j + 1) * D]
            g[p + f"attn.{name}.bias"] = layer.self_attn.in_proj_bias.grad[j * D:(j + 1) * D]
        g[p + "attn.output_proj.weight"] = layer.self_attn.out_proj.weight.grad
        g[p + "attn.output_proj.bias"] = layer.self_attn.out_proj.bias.grad
        pairs = [("ffn.w1", layer.linear1), ("ffn.w2", layer.linear2), ("ln1", layer.norm1), ("ln2", layer.norm2)]
        for ours, theirs in pairs:
            g[p + ours + ".weight"] = theirs.weight.grad
            g[p + ours + ".bias"] = theirs.bias.grad
    return g


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_torch_transformer_encoder_forward_and_gradients(causal, padded):
    ours = small_encoder(causal=causal).double()
    oracle = torch_oracle(ours)
    ids, real = batch()
    real = real if padded else None
    got, expected = ours.mlm_logits(ids, real), oracle_logits(oracle, ids, real, causal)
    assert expected.abs().max() > 1.0  # not a comparison of two near-zero tensors
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    cotangent = torch.randn(got.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got.backward(cotangent)
    expected.backward(cotangent)
    theirs = their_grads(oracle)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name], rtol=0, atol=1e-10, msg=name)
    assert len(theirs) == len(list(ours.named_parameters()))  # every parameter was compared


def test_attention_maps_match_torch_multihead_attention_weights():
    ours = small_encoder().double()
    oracle = torch_oracle(ours)
    ids, real = batch()
    maps = ours.attention_maps(ids, real)  # (L, B, H, T, T)
    assert maps.shape == (L, 3, H, 9, 9)
    layer = oracle.stack.layers[0]
    x = layer.norm1(oracle.tok(ids) + oracle.pos[:9])
    _, weights = layer.self_attn(x, x, x, key_padding_mask=~real, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(maps[0], weights, rtol=0, atol=1e-12)
    ones = torch.ones(L, 3, H, 9, dtype=torch.float64)
    torch.testing.assert_close(maps.sum(-1), ones)  # every query's weights sum to 1
    assert (maps.masked_select(~real[None, :, None, None, :]) == 0).all()  # no query attends to padding


def test_padding_changes_nothing_for_real_tokens_and_the_classifier():
    model = small_encoder(num_classes=3, cls_id=CLS).double()
    ids, real = batch(lengths=(9, 4, 7), T=9)
    more_ids = torch.cat([ids, torch.full((3, 5), PAD)], dim=1)  # 5 more padding positions: (B, 14)
    more_real = torch.cat([real, torch.zeros(3, 5, dtype=torch.bool)], dim=1)
    short, long = model(ids, real), model(more_ids, more_real)  # (B, 9, D), (B, 14, D)
    torch.testing.assert_close(long[:, :9][real], short[real], rtol=0, atol=1e-12)
    torch.testing.assert_close(model.classify(more_ids, more_real), model.classify(ids, real), rtol=0, atol=1e-12)
    row = model(ids[1:2, :4])  # the length-4 row alone, with no padding at all
    torch.testing.assert_close(short[1, :4], row[0], rtol=0, atol=1e-12)
    # without the mask the padding is attended to, and the real tokens' states change
    assert (model(more_ids)[:, :9][real] - short[real]).abs().max() > 1e-3


def test_bidirectional_states_see_later_tokens_and_causal_states_do_not():
    ids, _ = batch(lengths=(9, 9, 9))
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % CLS  # change the token at position 6
    for causal in (False, True):
        model = small_encoder(causal=causal)
        before, after = model(ids), model(changed)
        moved = (before - after).abs().amax(dim=(0, 2))  # (T,): the largest change at each position
        assert (moved[6:] > 1e-3).all()
        assert ((moved[:6] < 1e-6) if causal else (moved[:6] > 1e-3)).all(), (causal, moved)


def test_mask_tokens_follows_berts_recipe():
    ids = torch.randint(0, 50, (200, 100), generator=torch.Generator().manual_seed(0))
    inputs, is_masked = mask_tokens(ids, 50, 50, torch.Generator().manual_seed(1))
    assert inputs.dtype == ids.dtype and is_masked.dtype == torch.bool
    assert torch.equal(inputs[~is_masked], ids[~is_masked])  # only chosen positions change
    n = is_masked.sum().item()  # ~3000 of 20000
    assert abs(n / ids.numel() - 0.15) < 0.01
    chosen_inputs, chosen_ids = inputs[is_masked], ids[is_masked]
    assert abs((chosen_inputs == 50).float().mean().item() - 0.8) < 0.04
    assert abs((chosen_inputs == chosen_ids).float().mean().item() - (0.1 + 0.1 / 50)) < 0.03
    assert chosen_inputs.max() <= 50 and chosen_inputs.min() >= 0
    again = mask_tokens(ids, 50, 50, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], is_masked)  # the generator decides everything
    maskable = torch.zeros_like(is_masked)
    maskable[:, 1:50] = True
    _, only_some = mask_tokens(ids, 50, 50, torch.Generator().manual_seed(1), mask_prob=0.5, maskable=maskable)
    assert not only_some[~maskable].any() and only_some[maskable].float().mean() > 0.4


def test_masked_lm_loss_counts_masked_positions_only():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen, requires_grad=True)
    targets = torch.randint(7, (3, 5), generator=gen)
    is_masked = torch.zeros(3, 5, dtype=torch.bool)
    is_masked[0, 1] = is_masked[2, 3] = is_masked[2, 4] = True
    loss = masked_lm_loss(logits, targets, is_masked)
    expected = torch.stack([F.cross_entropy(logits[b, t], targets[b, t]) for b, t in [(0, 1), (2, 3), (2, 4)]]).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (logits.grad[~is_masked] == 0).all() and (logits.grad[is_masked] != 0).any()
    with pytest.raises(ValueError, match="at least one True"):
        masked_lm_loss(logits, targets, torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"should be \(B, T, V\)"):
        masked_lm_loss(logits, targets[:, :4], is_masked)


def test_names_config_and_classifier_shapes():
    model = TransformerEncoder(V, CTX, D, L, H, FF, num_classes=3, cls_id=CLS)
    names = set(dict(model.named_parameters()))
    assert {"token_embeddings.weight", "position_embeddings.weight", "layers.1.attn.q_proj.weight", "layers.0.ln1.bias",
            "layers.0.ffn.w2.bias", "ln_final.weight", "mlm_head.weight", "cls_head.weight"} <= names
    assert model.config == EncoderConfig(V, CTX, D, L, H, FF, num_classes=3, cls_id=CLS)
    clone = TransformerEncoder.from_config(model.config)
    assert clone.load_state_dict(model.state_dict()) is not None
    ids, real = batch()
    assert model(ids, real).shape == (3, 9, D)
    assert model.mlm_logits(ids, real).shape == (3, 9, V)
    assert model.classify(ids, real).shape == (3, 3)
    assert "cls_head.weight" not in dict(TransformerEncoder(V, CTX, D, L, H, FF).named_parameters())


def test_bad_input_raises_errors_that_name_the_problem():
    model = TransformerEncoder(V, CTX, D, L, H, FF, num_classes=2, cls_id=CLS)
    ids, real = batch()
    with pytest.raises(IndexError, match=f"id {V}, outside the vocabulary"):
        model(torch.full((2, 3), V))
    with pytest.raises(ValueError, match=f"17 tokens exceed context_length={CTX}"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"padding_mask has shape \(3, 8\), expected .* \(3, 9\)"):
        model(ids, real[:, :8])
    with pytest.raises(TypeError, match="bool tensor, True = real token"):
        model(ids, real.long())
    all_padding = real.clone()
    all_padding[1] = False
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] are all padding"):
        model(ids, all_padding)
    with pytest.raises(ValueError, match=r"all padding"):
        key_padding_mask(torch.zeros(2, 4, dtype=torch.bool), (2, 4))
    with pytest.raises(ValueError, match=f"must start with \\[CLS\\] \\(id {CLS}\\)"):
        model.classify(ids[:, 1:], real[:, 1:])
    with pytest.raises(RuntimeError, match="no classifier"):
        TransformerEncoder(V, CTX, D, L, H, FF).classify(ids)
    with pytest.raises(ValueError, match="both num_classes and cls_id"):
        TransformerEncoder(V, CTX, D, L, H, FF, num_classes=2)
    with pytest.raises(ValueError, match="not divisible"):
        TransformerEncoder(V, CTX, 25, L, H, FF)

"""Chapter 17's checkers (causality_test, kv_cache_consistency_test, attention_scale_test) accept correct
tests and reject the stub, tests that always answer the same, and tests that miss a subtle bug."""

import torch
import torch.nn.functional as F

from checker_harness import contract_tests
from tinycore.checks import CheckFailed, debug


# ---------- correct answers, written independently of the checkers ----------

@torch.no_grad()
def causal_by_perturbation(model_fn, vocab_size, T):
    x = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    base = model_fn(x)
    for j in range(1, T):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % vocab_size
        if not torch.allclose(model_fn(x2)[:, :j], base[:, :j], rtol=0, atol=1e-9):
            return False
    return True


@torch.no_grad()
def causal_by_truncation(model_fn, vocab_size, T):
    """Causal iff the logits of a prefix equal the first rows of the logits of the whole sequence."""
    x = torch.randint(0, vocab_size, (1, T), generator=torch.Generator().manual_seed(1))
    full = model_fn(x)
    for t in range(1, T):
        for replacement in (x[:, t:], (x[:, t:] + 3) % vocab_size):
            y = torch.cat((x[:, :t], replacement), dim=1)
            if (model_fn(y)[:, :t] - full[:, :t]).abs().max() > 1e-8:
                return False
    return True


@torch.no_grad()
def cache_step_by_step(model, token_ids):
    full = model(token_ids)  # (B, T, V)
    cache = model.make_cache(token_ids.shape[0])
    pieces = [model(token_ids[:, :3], cache=cache)]
    for t in range(3, token_ids.shape[1]):
        pieces.append(model(token_ids[:, t:t + 1], cache=cache))
    return torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-8)


@torch.no_grad()
def cache_one_token_at_a_time(model, token_ids):
    full = model(token_ids)
    cache = model.make_cache(token_ids.shape[0])
    return all(torch.allclose(model(token_ids[:, t:t + 1], cache=cache)[:, 0], full[:, t], atol=1e-8)
               for t in range(token_ids.shape[1]))


@torch.no_grad()
def oracle_with_sdpa(attn):
    B, T, D, H = 2, 7, attn.d_model, attn.num_heads
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(0), dtype=attn.q_proj.weight.dtype)
    heads = [p(x).view(B, T, H, D // H).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
    out = F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(B, T, D)
    return torch.allclose(attn(x), attn.output_proj(out), atol=1e-8)


@torch.no_grad()
def oracle_with_nn_multihead(attn):
    D, H = attn.d_model, attn.num_heads
    ref = torch.nn.MultiheadAttention(D, H, bias=False, batch_first=True, dtype=attn.q_proj.weight.dtype)
    ref.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    ref.out_proj.weight.copy_(attn.output_proj.weight)
    x = torch.randn(3, 5, D, generator=torch.Generator().manual_seed(2), dtype=attn.q_proj.weight.dtype)
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1)  # True = may NOT attend, nn.MultiheadAttention's convention
    want, _ = ref(x, x, x, attn_mask=mask, need_weights=False)
    return torch.allclose(attn(x), want, atol=1e-8)


# ---------- plausible wrong answers ----------

def always_true(*args):
    return True


def always_false(*args):
    return False


@torch.no_grad()
def causal_changing_only_the_last_token(model_fn, vocab_size, T):
    x = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % vocab_size
    return torch.allclose(model_fn(x)[:, :-1], model_fn(x2)[:, :-1], atol=1e-9)


@torch.no_grad()
def causal_with_loose_tolerance(model_fn, vocab_size, T):
    x = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    base = model_fn(x)
    for j in range(1, T):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % vocab_size
        if not torch.allclose(model_fn(x2)[:, :j], base[:, :j], atol=1e-2):
            return False
    return True


@torch.no_grad()
def causal_checking_position_j_too(model_fn, vocab_size, T):
    """Wrongly demands that the changed position's own logits stay the same."""
    x = torch.randint(0, vocab_size, (2, T), generator=torch.Generator().manual_seed(0))
    base = model_fn(x)
    for j in range(1, T):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % vocab_size
        if not torch.allclose(model_fn(x2)[:, :j + 1], base[:, :j + 1], atol=1e-9):
            return False
    return True


@torch.no_grad()
def cache_prefill_only(model, token_ids):
    cache = model.make_cache(token_ids.shape[0])
    return torch.allclose(model(token_ids, cache=cache), model(token_ids), atol=1e-8)


@torch.no_grad()
def cache_compares_only_the_first_step(model, token_ids):
    cache = model.make_cache(token_ids.shape[0])
    return torch.allclose(model(token_ids[:, :1], cache=cache)[:, 0], model(token_ids)[:, 0], atol=1e-8)


@torch.no_grad()
def scale_compared_with_one_head(attn):
    """An oracle that treats the whole width as one head: it would call sqrt(D) right."""
    B, T, D = 2, 7, attn.d_model
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(0), dtype=attn.q_proj.weight.dtype)
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return torch.allclose(attn(x), attn.output_proj(out), atol=1e-8)


@torch.no_grad()
def scale_checks_only_the_shape(attn):
    x = torch.randn(2, 7, attn.d_model, dtype=attn.q_proj.weight.dtype)
    return attn(x).shape == x.shape


@torch.no_grad()
def scale_with_loose_tolerance(attn):
    B, T, D, H = 2, 7, attn.d_model, attn.num_heads
    x = 0.01 * torch.randn(B, T, D, generator=torch.Generator().manual_seed(0), dtype=attn.q_proj.weight.dtype)
    heads = [p(x).view(B, T, H, D // H).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
    out = F.scaled_dot_product_attention(*heads, is_causal=True).transpose(1, 2).reshape(B, T, D)
    return torch.allclose(attn(x), attn.output_proj(out), atol=1e-3)


RIGHT = {
    "causality_test": [causal_by_perturbation, causal_by_truncation],
    "kv_cache_consistency_test": [cache_step_by_step, cache_one_token_at_a_time],
    "attention_scale_test": [oracle_with_sdpa, oracle_with_nn_multihead],
}
WRONG = {
    "causality_test": [
        (always_true, "returned True (correct) for a model whose every position sees the whole sequence"),
        (always_false, "returned False (broken) for tinycore's TransformerLM (causal)"),
        (causal_changing_only_the_last_token, "only position 0 sees token 1"),
        (causal_with_loose_tolerance, "only faintly"),
        (causal_checking_position_j_too, "which is correct"),
    ],
    "kv_cache_consistency_test": [
        (always_true, "number new tokens from 0"),
        (always_false, "which is correct"),
        (cache_prefill_only, "number new tokens from 0"),
        (cache_compares_only_the_first_step, "which is BROKEN"),
    ],
    "attention_scale_test": [
        (always_true, "sqrt(D) instead of sqrt(Dh)"),
        (always_false, "which is correct"),
        (scale_compared_with_one_head, "which is correct"),
        (scale_checks_only_the_shape, "which is BROKEN"),
        (scale_with_loose_tolerance, "which is BROKEN"),
    ],
}

(test_accepts, test_stub, test_rejects, test_three_wrong, test_tracebacks) = contract_tests(
    RIGHT, WRONG, covers=debug.__all__)


def test_a_test_returning_a_non_bool_is_rejected():
    import pytest
    with pytest.raises(CheckFailed, match="should return True or False"):
        debug.causality_test(lambda model_fn, V, T: "yes")

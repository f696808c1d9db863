"""Chapter 12's checkers (cached_attention_step, top_p_filter, cached_greedy_decode) accept correct answers
and reject the stub and plausible wrong answers, naming the mistake."""

import math

import torch
import torch.nn.functional as F

import tinycore
from checker_harness import assert_messages_hide, assert_non_callables_explained, contract_tests
from tinycore.checks import decoding


# ---------- correct answers, written independently of the checkers' references ----------

def step_by_hand(q, k_cache, v_cache, k_new, v_new):
    k_all = torch.cat((k_cache, k_new), dim=-2)
    v_all = torch.cat((v_cache, v_new), dim=-2)
    S, t = k_cache.shape[-2], q.shape[-2]
    scores = q @ k_all.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, t, S + t)
    allowed = torch.arange(S + t)[None, :] <= S + torch.arange(t)[:, None]  # (t, S + t)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return weights @ v_all, k_all, v_all


def step_with_tinycore(q, k_cache, v_cache, k_new, v_new):
    k_all, v_all = torch.cat((k_cache, k_new), 2), torch.cat((v_cache, v_new), 2)
    mask = tinycore.causal_mask(q.shape[2], k_all.shape[2])
    return tinycore.scaled_dot_product_attention(q, k_all, v_all, mask), k_all, v_all


def nucleus_sorted(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    remove = probs.cumsum(-1) > p
    remove[..., 1:] = remove[..., :-1].clone()  # shift right: keep the token that crosses p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def nucleus_threshold(logits, p):
    """Per row, the smallest probability still kept is a threshold: keep every token at least that likely."""
    probs = logits.softmax(-1)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    n_keep = ((sorted_probs.cumsum(-1) - sorted_probs) < p).sum(-1, keepdim=True)  # (..., 1)
    threshold = sorted_probs.gather(-1, n_keep - 1)
    return torch.where(probs >= threshold, logits, torch.full_like(logits, float("-inf")))


def decode_one_at_a_time(model, token_ids, max_new_tokens):
    cache = model.make_cache(token_ids.shape[0])
    out, step = token_ids, token_ids
    for _ in range(max_new_tokens):
        logits = model(step, cache=cache)  # (B, t, V)
        step = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        out = torch.cat((out, step), dim=1)
    return out


def decode_prompt_token_by_token(model, token_ids, max_new_tokens):
    """The prompt fed one token at a time: slower, equally right."""
    cache = model.make_cache(token_ids.shape[0])
    for t in range(token_ids.shape[1]):
        logits = model(token_ids[:, t:t + 1], cache=cache)
    new = []
    for i in range(max_new_tokens):
        new.append(logits[:, -1].argmax(-1))
        if i + 1 < max_new_tokens:
            logits = model(new[-1][:, None], cache=cache)
    return torch.cat((token_ids, torch.stack(new, dim=1)), dim=1)


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

def step_without_mask(q, kc, vc, kn, vn):
    k, v = torch.cat((kc, kn), 2), torch.cat((vc, vn), 2)
    return F.scaled_dot_product_attention(q, k, v), k, v


def step_is_causal(q, kc, vc, kn, vn):
    k, v = torch.cat((kc, kn), 2), torch.cat((vc, vn), 2)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), k, v


def step_wrong_dim(q, kc, vc, kn, vn):
    k, v = torch.cat((kc, kn), -1), torch.cat((vc, vn), -1)
    return F.scaled_dot_product_attention(q, k, v), k, v


def step_prepended(q, kc, vc, kn, vn):
    out, _, _ = step_by_hand(q, kc, vc, kn, vn)
    return out, torch.cat((kn, kc), 2), torch.cat((vn, vc), 2)


def step_prepended_and_attended(q, kc, vc, kn, vn):
    k, v = torch.cat((kn, kc), 2), torch.cat((vn, vc), 2)
    S, t = kc.shape[2], q.shape[2]
    mask = torch.ones(t, S + t, dtype=torch.bool).tril(S)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), torch.cat((kc, kn), 2), torch.cat((vc, vn), 2)


def step_scaled_by_d_model(q, kc, vc, kn, vn):
    out, k, v = step_by_hand(q * math.sqrt(1 / q.shape[1]), kc, vc, kn, vn)
    return out, k, v


def nucleus_drops_crossing(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    remove = probs.cumsum(-1) > p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def nucleus_forgets_first(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    remove = probs.cumsum(-1) > p
    remove[..., 1:] = remove[..., :-1].clone()  # the shift, without then keeping the top token
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def nucleus_drops_a_dominant_top(logits, p):
    return nucleus_sorted(logits, p).masked_fill(logits.softmax(-1) > p, float("-inf"))


def nucleus_ascending(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def nucleus_unsorted(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    remove = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(remove, float("-inf"))


def nucleus_zeroes(logits, p):
    return torch.where(torch.isfinite(nucleus_sorted(logits, p)), logits, torch.zeros_like(logits))


def nucleus_logit_sums(logits, p):
    values, order = logits.sort(dim=-1, descending=True)
    remove = values.cumsum(-1) - values >= p
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def decode_without_cache(model, token_ids, max_new_tokens):
    out = token_ids
    for _ in range(max_new_tokens):
        out = torch.cat((out, model(out)[:, -1].argmax(-1, keepdim=True)), dim=1)
    return out


def decode_feeding_everything(model, token_ids, max_new_tokens):
    cache = model.make_cache(token_ids.shape[0])
    out = token_ids
    for _ in range(max_new_tokens):
        out = torch.cat((out, model(out, cache=cache)[:, -1].argmax(-1, keepdim=True)), dim=1)
    return out


def decode_new_cache_each_step(model, token_ids, max_new_tokens):
    out, step = token_ids, token_ids
    for _ in range(max_new_tokens):
        step = model(step, cache=model.make_cache(token_ids.shape[0]))[:, -1].argmax(-1, keepdim=True)
        out = torch.cat((out, step), dim=1)
    return out


def decode_first_position(model, token_ids, max_new_tokens):
    cache = model.make_cache(token_ids.shape[0])
    out, step = token_ids, token_ids
    for _ in range(max_new_tokens):
        step = model(step, cache=cache)[:, 0].argmax(-1, keepdim=True)
        out = torch.cat((out, step), dim=1)
    return out


def decode_last_prompt_token_only(model, token_ids, max_new_tokens):
    """Starts the cache from the prompt's last token, so the rest of the prompt is never seen."""
    new = decode_one_at_a_time(model, token_ids[:, -1:], max_new_tokens)[:, 1:]
    return torch.cat((token_ids, new), dim=1)


def decode_only_new(model, token_ids, max_new_tokens):
    return decode_one_at_a_time(model, token_ids, max_new_tokens)[:, token_ids.shape[1]:]


def decode_flat_step(model, token_ids, max_new_tokens):
    cache = model.make_cache(token_ids.shape[0])
    out, step = token_ids, token_ids
    for _ in range(max_new_tokens):
        step = model(step, cache=cache)[:, -1].argmax(-1)  # (B,): no token axis
        out = torch.cat((out, step[:, None]), dim=1)
    return out


WRONG = {
    "cached_attention_step": [
        (step_without_mask, "there is no causal mask"),
        (step_is_causal, "not offset by the cache length"),
        (step_wrong_dim, "raised RuntimeError"),
        (step_prepended, "before the cached ones"),
        (step_prepended_and_attended, "before the cached ones"),
        (lambda q, kc, vc, kn, vn: step_by_hand(q, kc, vc, kn, vn)[0], "three tensors"),
        (lambda q, kc, vc, kn, vn: (F.scaled_dot_product_attention(q, kc, vc), kc, vc), "shape"),
        (step_scaled_by_d_model, "differs from the reference"),
    ],
    "top_p_filter": [
        (nucleus_drops_crossing, "takes the total past p"),
        (nucleus_forgets_first, "must always stay"),
        (nucleus_drops_a_dominant_top, "dropped every token"),
        (nucleus_ascending, "least likely"),
        (nucleus_unsorted, "vocabulary order"),
        (nucleus_zeroes, "without setting them to -inf"),
        (nucleus_logit_sums, "accumulated logits"),
        (lambda logits, p: logits, "nothing was filtered"),
        (lambda logits, p: nucleus_sorted(logits, p * 0.9), "kept a different set"),
        (lambda logits, p: nucleus_sorted(logits.float(), p), "dtype"),
    ],
    "cached_greedy_decode": [
        (decode_without_cache, "without a cache"),
        (decode_feeding_everything, "fed the whole sequence again"),
        (decode_new_cache_each_step, "different cache"),
        (decode_first_position, "*last* position"),
        (decode_last_prompt_token_only, "never reached the cache"),
        (decode_only_new, "only the"),
        (lambda m, ids, n: decode_one_at_a_time(m, ids, n - 1), "expected"),
        (decode_flat_step, "raised ValueError"),
    ],
}

RIGHT = {
    "cached_attention_step": [step_by_hand, step_with_tinycore],
    "top_p_filter": [nucleus_sorted, nucleus_threshold, tinycore.top_p_filter],
    "cached_greedy_decode": [decode_one_at_a_time, decode_prompt_token_by_token,
                             lambda m, ids, n: tinycore.generate(m, ids, n, temperature=0.0)],
}


def test_the_nucleus_reference_agrees_with_tinycore():
    for case in decoding._nucleus_cases():
        assert torch.equal(decoding._nucleus_reference(*case.args), tinycore.top_p_filter(*case.args)), case.label


def test_the_nucleus_cases_have_no_near_ties_at_p():
    """No row's cumulative mass lands within 1e-3 of p, so float32 rounding cannot change the kept set."""
    for case in decoding._nucleus_cases():
        logits, p = case.args
        probs = logits.double().softmax(-1).sort(dim=-1, descending=True).values
        assert ((probs.cumsum(-1) - probs - p).abs() > 1e-3).all(), case.label


def test_the_nucleus_cases_cover_a_top_token_above_p():
    logits, p = decoding._nucleus_cases()[2].args  # the peaked case
    assert (logits.softmax(-1).amax(-1) > p).any() and (logits.softmax(-1).amax(-1) < p).any()


def test_the_greedy_cases_have_well_separated_logits():
    """The greedy reference never faces a near-tie, so cached and uncached float64 runs cannot disagree."""
    for model, prompt, new, label in decoding._decode_cases():
        out = prompt
        with torch.no_grad():
            for _ in range(new):
                logits = model(out)[:, -1]  # (B, V)
                top2 = logits.topk(2, dim=-1).values
                assert ((top2[:, 0] - top2[:, 1]) > 1e-3).all(), label
                out = torch.cat((out, logits.argmax(-1, keepdim=True)), dim=1)


def test_the_attention_cases_give_every_dimension_a_different_size():
    for case in decoding._step_cases():
        q, k_cache = case.args[0], case.args[1]
        B, H, t, Dh = q.shape
        S = k_cache.shape[2]
        assert len({B, H, t, Dh}) == 4 and S not in (t, Dh), case.label


def test_a_decoding_step_equals_the_last_rows_of_full_causal_attention():
    """The reference's definition, checked against attention over the whole sequence."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 4, generator=gen) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out, _, _ = decoding._step_reference(q[:, :, 6:], k[:, :, :6], v[:, :, :6], k[:, :, 6:], v[:, :, 6:])
    torch.testing.assert_close(out, full[:, :, 6:])


def test_messages_do_not_show_the_reference_code():
    assert_messages_hide(WRONG, ("def ", "_reference"))


def test_a_non_callable_is_explained():
    assert_non_callables_explained(decoding.__all__)


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=decoding.__all__)

"""Chapter 10's checkers (padding_mask, mask_tokens, masked_lm_loss) accept correct answers and reject the
stub and plausible wrong answers, naming the mistake."""

import torch
import torch.nn.functional as F

from checker_harness import contract_tests
from tinycore import checks

# ---------- correct answers, written independently of the checkers' references ----------


def padding_mask(lengths, max_len):
    positions = torch.arange(max_len)  # (T,)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]  # (B, T) -> (B, 1, 1, T)


def padding_mask_by_loop(lengths, max_len):
    out = torch.zeros(len(lengths), 1, 1, max_len, dtype=torch.bool)
    for b, n in enumerate(lengths.tolist()):
        out[b, 0, 0, :n] = True
    return out


def mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    is_masked = torch.rand(token_ids.shape, generator=generator) < mask_prob
    fate = torch.rand(token_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, token_ids.shape, generator=generator)
    inputs = token_ids.clone()
    inputs[is_masked & (fate < 0.8)] = mask_id
    swap = is_masked & (fate >= 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, is_masked


def mask_tokens_hugging_face_style(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    """Nested Bernoulli draws as in transformers' DataCollatorForLanguageModeling: 0.8, then half of the rest."""
    shape = token_ids.shape
    is_masked = torch.bernoulli(torch.full(shape, mask_prob), generator=generator).bool()
    to_mask = torch.bernoulli(torch.full(shape, 0.8), generator=generator).bool() & is_masked
    to_random = torch.bernoulli(torch.full(shape, 0.5), generator=generator).bool() & is_masked & ~to_mask
    inputs = token_ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = torch.randint(vocab_size, shape, generator=generator)[to_random]
    return inputs, is_masked


def mask_tokens_exact_count(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    """BERT's original recipe: exactly round(mask_prob * T) positions per row, chosen by a shuffle."""
    B, T = token_ids.shape
    k = round(mask_prob * T)
    order = torch.rand(B, T, generator=generator).argsort(dim=1)
    is_masked = torch.zeros(B, T, dtype=torch.bool).scatter(1, order[:, :k], True)
    fate = torch.rand(B, T, generator=generator)
    inputs = torch.where(is_masked & (fate < 0.8), mask_id, token_ids)
    inputs = torch.where(is_masked & (fate >= 0.9), torch.randint(vocab_size, (B, T), generator=generator), inputs)
    return inputs, is_masked


def masked_lm_loss(logits, targets, is_masked):
    return F.cross_entropy(logits[is_masked], targets[is_masked])


def masked_lm_loss_by_weights(logits, targets, is_masked):
    per_position = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    weights = is_masked.to(logits.dtype)
    return (per_position * weights).sum() / weights.sum()


RIGHT = {
    "padding_mask": [padding_mask, padding_mask_by_loop],
    "mask_tokens": [mask_tokens, mask_tokens_hugging_face_style, mask_tokens_exact_count],
    "masked_lm_loss": [masked_lm_loss, masked_lm_loss_by_weights],
}


# ---------- plausible wrong answers ----------

def _mask_with(token_ids, mask_id, vocab_size, generator, mask_prob=0.15, *, shares=(0.8, 0.9), prob=None,
               random_from=None, use_global=False, reseed=False, report_all=False):
    if reseed:
        generator = torch.Generator().manual_seed(0)
    gen = None if use_global else generator
    p = mask_prob if prob is None else prob
    is_masked = torch.rand(token_ids.shape, generator=gen) < p
    fate = torch.rand(token_ids.shape, generator=gen)
    high = vocab_size if random_from is None else random_from
    random_ids = torch.randint(high, token_ids.shape, generator=gen)
    inputs = torch.where(is_masked & (fate < shares[0]), mask_id, token_ids)
    inputs = torch.where(is_masked & (fate >= shares[1]), random_ids, inputs)
    return inputs, (torch.ones_like(is_masked) if report_all else is_masked)


def _mask_first_positions(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    B, T = token_ids.shape
    is_masked = torch.zeros(B, T, dtype=torch.bool)
    is_masked[:, : round(mask_prob * T)] = True
    inputs, _ = mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob=1.0)
    return torch.where(is_masked, inputs, token_ids), is_masked


def _mask_in_place(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    inputs, is_masked = mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob)
    token_ids.copy_(inputs)
    return token_ids, is_masked


def _mask_only_mask_id(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    is_masked = torch.rand(token_ids.shape, generator=generator) < mask_prob
    return torch.where(is_masked, mask_id, token_ids), is_masked


def _shift_chosen_but_report_none(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
    _, is_masked = mask_tokens(token_ids, mask_id, vocab_size, generator, mask_prob)
    return torch.where(is_masked, (token_ids + 1) % vocab_size, token_ids), torch.zeros_like(is_masked)


def _per_position(logits, targets):
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)


WRONG = {
    "padding_mask": [
        (lambda n, t: ~padding_mask(n, t), "polarity is inverted"),
        (lambda n, t: padding_mask(n + 1, t), "t < n, not t <= n"),
        (lambda n, t: padding_mask(n - 1, t), "one too few"),
        (lambda n, t: padding_mask(n, t).flip(-1), "right padding"),
        (lambda n, t: padding_mask(n, t)[:, 0, 0], "[:, None, None, :]"),
        (lambda n, t: padding_mask(n, t).transpose(-1, -2), "over the *queries*"),
        (lambda n, t: padding_mask(n, t).float(), "torch.bool"),
    ],
    "mask_tokens": [
        (_mask_only_mask_id, "replaced by mask_id"),
        (lambda *a, **k: _mask_with(*a, **k, shares=(0.9, 0.9)), "replaced by mask_id"),
        (lambda *a, **k: _mask_with(*a, **k, shares=(0.8, 0.8)), "replaced by a random token"),
        (lambda *a, **k: _mask_with(*a, **k, prob=0.15), "expected about mask_prob = 0.4"),
        (lambda *a, **k: _mask_with(*a, **k, prob=0.15 * 0.8), "chose"),
        (lambda *a, **k: _mask_with(*a, **k, report_all=True), "chose"),
        (lambda ids, m, v, g, mask_prob=0.15: _mask_with(ids, m, v, g, mask_prob, random_from=m + 1),
         "outside [0, vocab_size)"),
        (lambda *a, **k: _mask_with(*a, **k, use_global=True), "seeded alike"),
        (lambda *a, **k: _mask_with(*a, **k, reseed=True), "different seeds"),
        (_mask_first_positions, "quarter"),
        (_mask_in_place, "in place"),
        (lambda *a, **k: mask_tokens(*a, **k)[0], "pair (inputs, is_masked)"),
        (lambda *a, **k: (mask_tokens(*a, **k)[0], mask_tokens(*a, **k)[1].long()), "dtype"),
        (_shift_chosen_but_report_none, "changed positions"),
        (lambda ids, m, v, g, mask_prob=0.15: _mask_with(ids, m, v, g, mask_prob, random_from=1), "spread evenly"),
    ],
    "masked_lm_loss": [
        (lambda lg, y, m: _per_position(lg, y).mean(), "every position"),
        (lambda lg, y, m: _per_position(lg, y)[~m].mean(), "inverted"),
        (lambda lg, y, m: _per_position(lg, y)[m].sum(), "summed"),
        (lambda lg, y, m: (_per_position(lg, y) * m).sum() / m.numel(), "B * T"),
        (lambda lg, y, m: ((_per_position(lg, y) * m).sum(1) / m.sum(1)).mean(), "within each row"),
        (lambda lg, y, m: -lg.gather(-1, y[..., None])[..., 0][m].mean(), "log_softmax"),
        (lambda lg, y, m: masked_lm_loss(lg, y, m).detach(), "not connected"),
        (lambda lg, y, m: masked_lm_loss(lg, y, m).reshape(1), "shape"),
    ],
}


def test_mask_tokens_checker_accepts_a_correct_answer_with_many_random_streams():
    """The statistical bounds hold for correct answers with many different random streams, not only the checker's."""
    for seed in range(20):
        offset = seed * 1000

        def shifted(token_ids, mask_id, vocab_size, generator, mask_prob=0.15):
            g = torch.Generator().manual_seed(generator.initial_seed() + offset)
            return mask_tokens(token_ids, mask_id, vocab_size, g, mask_prob)

        checks.mask_tokens(shifted)


def test_the_right_answers_agree_with_tinycore():
    from tinycore.encoder import key_padding_mask, mask_tokens as tc_mask_tokens, masked_lm_loss as tc_loss

    lengths = torch.tensor([3, 1, 5])
    real = torch.arange(5)[None, :] < lengths[:, None]  # (B, T)
    assert torch.equal(padding_mask(lengths, 5), key_padding_mask(real, (3, 5)))
    ids = torch.randint(10, (4, 9), generator=torch.Generator().manual_seed(0))
    a = tc_mask_tokens(ids, 10, 10, torch.Generator().manual_seed(1), mask_prob=0.5)
    b = mask_tokens(ids, 10, 10, torch.Generator().manual_seed(1), mask_prob=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the same recipe, the same draws
    logits = torch.randn(4, 9, 11)
    torch.testing.assert_close(tc_loss(logits, ids, a[1]), masked_lm_loss(logits, ids, a[1]))
    checks.mask_tokens(tc_mask_tokens)


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, extra_names=(), covers=checks.encoder.__all__)

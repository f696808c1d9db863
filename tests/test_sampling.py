"""Sampling: the filters against brute-force definitions, reproducibility with a generator, and
cached generation equal to uncached."""

import pytest
import torch

from tinycore import TransformerLM, generate, sample_next, top_k_filter, top_p_filter


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    out = top_k_filter(logits, 5)
    for row, kept in zip(logits, out):
        expected = set(row.topk(5).indices.tolist())
        assert set(torch.nonzero(torch.isfinite(kept)).flatten().tolist()) == expected
        assert torch.equal(kept[list(expected)], row[list(expected)])  # kept logits are unchanged
    assert torch.equal(top_k_filter(logits, 500), logits)  # k past V keeps everything


def test_top_p_keeps_the_smallest_set_reaching_p():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 30, generator=gen) * 3
    for p in (0.1, 0.5, 0.9, 1.0):
        out = top_p_filter(logits, p)
        for row, kept in zip(logits, out):
            probs = row.softmax(-1)
            order = probs.argsort(descending=True)
            n = int((probs[order].cumsum(0) < p).sum()) + 1  # brute force: how many until the mass reaches p
            expected = set(order[:min(n, 30)].tolist())
            assert set(torch.nonzero(torch.isfinite(kept)).flatten().tolist()) == expected, p


def test_sampling_is_reproducible_with_a_generator_and_greedy_at_zero_temperature():
    logits = torch.randn(8, 20, generator=torch.Generator().manual_seed(2))
    a = sample_next(logits, generator=torch.Generator().manual_seed(3))
    b = sample_next(logits, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    top1 = sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(top1, logits.argmax(-1))


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log().expand(20000, 3)
    draws = sample_next(logits, generator=torch.Generator().manual_seed(5))
    freq = torch.bincount(draws, minlength=3).float() / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def test_cached_generation_equals_uncached():
    torch.manual_seed(0)
    model = TransformerLM(23, 32, 32, 2, 4, 48, num_kv_heads=2)
    prompt = torch.randint(0, 23, (2, 5), generator=torch.Generator().manual_seed(6))
    kwargs = dict(max_new_tokens=27, temperature=0.8, top_k=10)
    cached = generate(model, prompt, generator=torch.Generator().manual_seed(7), **kwargs)
    uncached = generate(model, prompt, generator=torch.Generator().manual_seed(7), use_cache=False, **kwargs)
    assert cached.shape == (2, 32) and torch.equal(cached, uncached)
    assert torch.equal(cached[:, :5], prompt)


def test_generation_past_the_context():
    model = TransformerLM(23, 16, 32, 1, 4, 48)
    prompt = torch.zeros(1, 10, dtype=torch.long)
    with pytest.raises(ValueError, match="use_cache=False slides the window"):
        generate(model, prompt, max_new_tokens=7)
    out = generate(model, prompt, max_new_tokens=30, use_cache=False, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 40)  # the window slid: the model never saw more than 16 tokens


def test_bad_arguments():
    logits = torch.randn(2, 5)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(logits, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        sample_next(logits, top_p=0.0)

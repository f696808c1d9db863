import math

import pytest
import torch
import torch.nn.functional as F

from tinycore import BigramLM, CharTokenizer, bigram_counts, count_model_loss, load_tiny_shakespeare, train_val_split


def test_bigram_counts_equals_a_loop(gen):
    ids = torch.randint(5, (300,), generator=gen)
    expected = torch.zeros(5, 5, dtype=torch.long)
    for a, b in zip(ids[:-1].tolist(), ids[1:].tolist()):
        expected[a, b] += 1
    assert torch.equal(bigram_counts(ids, 5), expected)


def test_count_model_loss_is_the_mean_nll_of_the_smoothed_table():
    ids = torch.tensor([0, 1, 0, 1, 1])
    counts = bigram_counts(ids, 2)  # 0->1 twice, 1->0 once, 1->1 once
    assert counts.tolist() == [[0, 2], [1, 1]]
    p = torch.tensor([[1 / 4, 3 / 4], [2 / 4, 2 / 4]])  # add-one smoothing
    expected = -(p[0, 1].log() + p[1, 0].log() + p[0, 1].log() + p[1, 1].log()) / 4
    assert count_model_loss(counts, ids, smoothing=1.0) == pytest.approx(expected.item())


def test_bigram_lm_starts_uniform_and_matches_an_embedding_lookup():
    model = BigramLM(65)
    ids = torch.randint(65, (2, 8))
    logits = model(ids)
    assert logits.shape == (2, 8, 65)
    assert F.cross_entropy(logits.flatten(0, 1), ids.flatten()).item() == pytest.approx(math.log(65))


def test_count_model_baseline_on_tiny_shakespeare():
    """Golden number: the baseline chapter 1 prints and every later model must beat."""
    text = load_tiny_shakespeare()
    tok = CharTokenizer(text)
    train, val = train_val_split(tok.encode(text))
    loss = count_model_loss(bigram_counts(train, tok.vocab_size), val)
    assert loss == pytest.approx(2.4819, abs=5e-4)

import pytest
import torch

from tinycore import CharTokenizer, get_batch, load_tiny_shakespeare, train_val_split
from tinycore import data as data_module


def test_corpus_is_the_verified_tiny_shakespeare():
    text = load_tiny_shakespeare()
    assert len(text) == 1_115_394
    assert len(set(text)) == 65
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


def test_a_modified_corpus_is_refused():
    raw = b"First Citizen: but not the real file"
    with pytest.raises(RuntimeError, match="corrupt or modified: its SHA-256 is"):
        data_module._verified_text(raw, data_module.TINY_SHAKESPEARE_SHA256, "tinyshakespeare.txt")


def test_tokenizer_round_trip_and_errors():
    tok = CharTokenizer("hello world")
    assert tok.vocab_size == 8 and tok.chars[0] == " "
    ids = tok.encode("low hello")
    assert ids.dtype == torch.long and ids.shape == (9,)
    assert tok.decode(ids) == "low hello"
    assert tok.decode(ids.tolist()) == "low hello"
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['!', 'z'\]"):
        tok.encode("zoo!")
    with pytest.raises(IndexError, match=r"contains id 8, outside the vocabulary \[0, 8\)"):
        tok.decode([1, 8])
    with pytest.raises(TypeError, match="integer tensor"):
        tok.decode(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_train_val_split_keeps_order():
    data = torch.arange(100)
    train, val = train_val_split(data, 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(data, 1.5)


def test_get_batch_shapes_shift_and_determinism():
    data = torch.arange(1000)
    x, y = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y, x + 1)  # targets are the inputs shifted by one position
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # each row is a contiguous window
    x2, _ = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)
    assert int(y.max()) <= 999


def test_get_batch_errors():
    with pytest.raises(ValueError, match="needs at least 17 tokens, the data has 16"):
        get_batch(torch.arange(16), 2, 16)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(4, 40, dtype=torch.long), 2, 8)

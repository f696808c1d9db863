"""Same seed, same batch, same gradients, to the last bit: the chapters' committed outputs depend on it.

Indexing a parameter (`table[ids]`) would make the gradient add its rows with CPU atomics, in an
order that changes from run to run; a chapter trained for a thousand steps then prints other
numbers on every run. tinycore gathers rows with `F.embedding`, whose backward adds them in a fixed
order. Each model is run twice on one batch, with two threads (the CI machine's), and the two
sets of gradients must be bitwise equal.
"""

import pytest
import torch
import torch.nn.functional as F

from tinycore import LMConfig, RelativePositionBias, TransformerLM, gpt_config
from tinycore.encoder import TransformerEncoder
from tinycore.seq2seq import EncoderDecoder, Seq2SeqConfig, seq2seq_loss
from tinycore.swin import Swin, SwinConfig
from tinycore.vit import ViT

V, T, B = 65, 32, 64  # B * T * D above the size at which PyTorch splits a backward between threads


def _ids(shape, high=V):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(1))


def _lm_loss(model):
    ids = _ids((B, T + 1))
    return F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())


def _encoder_loss(model):
    ids = _ids((B, T))
    return F.cross_entropy(model.mlm_logits(ids).flatten(0, 1), ids.flatten())


def _seq2seq_loss(model):
    src, tgt = _ids((B, T), high=40), _ids((B, T), high=40)
    return seq2seq_loss(model, (src, tgt))


def _image_loss(model):
    images = torch.randn(B, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = _ids((B,), high=10)
    return F.cross_entropy(model(images), labels)


def _relative_bias_loss(model):
    weights = torch.arange(128 * 128, dtype=torch.float32).view(128, 128)  # another weight for every (i, j)
    return (model(128) * weights).sum()  # each offset repeats along a diagonal: many adds into one entry


MODELS = {
    "GPT (tied table, learned positions)": (lambda: TransformerLM.from_config(gpt_config(V, T, 32, 2, 4)), _lm_loss),
    "LLaMA (RoPE, SwiGLU)": (lambda: TransformerLM.from_config(LMConfig(V, T, 32, 2, 4, 88)), _lm_loss),
    "encoder (masked LM)": (lambda: TransformerEncoder(V, T, 32, 2, 4, 64), _encoder_loss),
    "encoder-decoder": (lambda: EncoderDecoder(Seq2SeqConfig(40, T, T + 1, 32, 1, 4, 64)), _seq2seq_loss),
    "ViT": (lambda: ViT(8, 2, 1, 10, 32, 1, 4, 64), _image_loss),
    "Swin (relative-position table)": (lambda: Swin(SwinConfig(8, 1, 1, 10, 16, (2, 2), (2, 4), 4)), _image_loss),
    "RelativePositionBias": (lambda: RelativePositionBias(4, 5), _relative_bias_loss),
}


def _gradients(build, loss_fn):
    torch.manual_seed(0)
    model = build()
    loss_fn(model).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", MODELS)
def test_two_backward_passes_give_bitwise_equal_gradients(name):
    build, loss_fn = MODELS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [_gradients(build, loss_fn) for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        differ = [n for n in runs[0] if not torch.equal(runs[0][n], other[n])]
        assert not differ, f"{name}: gradients differ between identical runs for {differ}"

"""The training loop: its schedule, what AdamW decays, that it learns, and that it is reproducible."""

import math

import pytest
import torch

from tinycore.muon import Muon
from tinycore import TrainConfig, TransformerLM, evaluate, lm_batches, lr_at, make_optimizer, next_token_loss, train
from tinycore.train import train_step


def test_schedule_warms_up_linearly_then_follows_the_cosine():
    config = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    assert lr_at(0, config) == pytest.approx(1e-5)
    assert lr_at(49, config) == pytest.approx(5e-4)
    assert lr_at(99, config) == pytest.approx(1e-3)
    assert lr_at(100, config) == pytest.approx(1e-3)
    assert lr_at(550, config) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.5)))  # half-way
    assert lr_at(1000, config) == pytest.approx(1e-4)
    constant = TrainConfig(steps=1000, lr=1e-3, warmup_steps=0, decay="constant")
    assert lr_at(0, constant) == lr_at(999, constant) == 1e-3


def test_weight_decay_skips_biases_norms_and_embeddings():
    model = TransformerLM(11, 8, 16, 1, 2, 24, bias=True, norm="layernorm")
    groups = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert "layers.0.attn.q_proj.weight" in decayed and "lm_head.weight" in decayed
    assert not any(n.endswith("bias") or "ln" in n or "embedding" in n for n in decayed)
    assert len(decayed) + len(groups[1]["params"]) == len(names)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = TransformerLM(11, 8, 16, 2, 2, 24, bias=True, norm="layernorm")
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon", lr=1e-3, muon_lr=4e-3, weight_decay=0.1))
    adamw, muon = optimizer.optimizers
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, Muon)
    names = {id(p): n for n, p in model.named_parameters()}
    by_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    by_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    matrices = {n for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("layers.")}
    assert by_muon == matrices and len(matrices) == 2 * 7  # q, k, v, output and SwiGLU's w1, w2, w3, 2 blocks
    assert by_adamw == set(names.values()) - matrices  # embedding table, lm_head, norms, biases
    assert muon.param_groups[0]["lr_scale"] == 4.0 and muon.param_groups[0]["weight_decay"] == 0.1


def test_muon_follows_the_schedule_and_learns():
    torch.manual_seed(0)
    data = torch.arange(2000) % 7
    model = TransformerLM(7, 16, 16, 1, 2, 32)
    config = TrainConfig(steps=60, lr=1e-2, muon_lr=2e-2, warmup_steps=5, eval_every=60, eval_batches=2,
                         optimizer="muon")
    history = train(model, next_token_loss, lm_batches(data, 8, 16, "cpu"), config, "cpu", progress=False)
    assert history.eval_train_loss[-1] < 0.2 * history.train_loss[0]
    optimizer = make_optimizer(model, config)
    batch = lm_batches(data, 8, 16, "cpu")(torch.Generator().manual_seed(0))
    train_step(model, optimizer, next_token_loss, batch, lr=0.5)
    lrs = sorted({g["lr"] for g in optimizer.param_groups})
    assert lrs == [0.5, 1.0]  # AdamW at the scheduled lr, Muon at lr * muon_lr / lr


def test_the_combined_optimizer_state_has_every_parameter_once():
    """Code that sizes optimizer memory (chapter 14) reads `.state` of whatever make_optimizer returns."""
    torch.manual_seed(0)
    model = TransformerLM(7, 16, 16, 1, 2, 32)
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon"))
    assert optimizer.state == {}  # nothing before the first step
    batch = lm_batches(torch.arange(200) % 7, 4, 16, "cpu")(torch.Generator().manual_seed(0))
    train_step(model, optimizer, next_token_loss, batch, lr=1e-3)
    adamw, muon = optimizer.optimizers
    assert set(optimizer.state) == set(model.parameters())  # one entry per parameter, from either optimizer
    for p in (q for g in muon.param_groups for q in g["params"]):
        assert set(optimizer.state[p]) == {"momentum_buffer"} and optimizer.state[p]["momentum_buffer"].shape == p.shape
    for p in (q for g in adamw.param_groups for q in g["params"]):
        assert {"exp_avg", "exp_avg_sq"} <= set(optimizer.state[p])


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="'adamw' or 'muon'"):
        TrainConfig(optimizer="sgd")


def _tiny_run(seed: int):
    torch.manual_seed(0)
    data = torch.arange(2000) % 7  # a sequence that repeats every 7 tokens: perfectly predictable
    model = TransformerLM(7, 16, 16, 1, 2, 32)
    config = TrainConfig(steps=60, lr=1e-2, warmup_steps=5, eval_every=20, eval_batches=2, seed=seed)
    history = train(model, next_token_loss, lm_batches(data, 8, 16, "cpu"), config, "cpu",
                    val_batch=lm_batches(data, 8, 16, "cpu"), progress=False)
    return model, history


def test_training_learns_and_is_reproducible():
    model, history = _tiny_run(seed=0)
    assert history.eval_step == [20, 40, 60] and len(history.train_loss) == 60
    assert history.val_loss[-1] < 0.2 * history.train_loss[0]  # from ~log 7 to near zero
    assert history.first_step_below(history.val_loss[-1]) <= 60
    _, again = _tiny_run(seed=0)
    assert again.train_loss == history.train_loss
    _, other = _tiny_run(seed=1)
    assert other.train_loss != history.train_loss  # the seed drives the batches


def test_a_diverging_run_stops_with_an_explanation():
    torch.manual_seed(0)
    data = torch.arange(500) % 5
    model = TransformerLM(5, 8, 16, 1, 2, 32)
    config = TrainConfig(steps=50, lr=1e6, warmup_steps=0, grad_clip=None, eval_every=50, eval_batches=1)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(model, next_token_loss, lm_batches(data, 4, 8, "cpu"), config, "cpu", progress=False)


def test_evaluate_restores_the_training_mode():
    model = TransformerLM(5, 8, 16, 1, 2, 32)
    batch = (torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))
    assert evaluate(model, next_token_loss, [batch]) > 0 and model.training

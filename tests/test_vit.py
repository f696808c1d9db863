"""tinycore.vit: patchify against a loop, PatchEmbedding against nn.Conv2d, and the whole ViT against
Hugging Face's ViTForImageClassification with copied weights (logits, attention maps and gradients)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinycore.train import TrainConfig, make_optimizer
from tinycore.vit import PatchEmbedding, ViT, ViTConfig, patchify


def _loop_patchify(images, p):
    """The definition: patches row by row, left to right; each flattened channel, then row, then column."""
    B, C, H, W = images.shape
    out = torch.empty(B, (H // p) * (W // p), C * p * p, dtype=images.dtype)
    for b in range(B):
        for i in range(H // p):
            for j in range(W // p):
                values = [images[b, c, i * p + r, j * p + s] for c in range(C) for r in range(p) for s in range(p)]
                out[b, i * (W // p) + j] = torch.stack(values)
    return out


@pytest.mark.parametrize("B, C, H, W, p", [(2, 3, 8, 12, 4), (3, 1, 6, 6, 2), (1, 2, 10, 5, 5), (2, 3, 4, 4, 1)])
def test_patchify_matches_its_definition(B, C, H, W, p):
    images = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(0))
    patches = patchify(images, p)
    assert patches.shape == (B, (H // p) * (W // p), C * p * p)
    assert torch.equal(patches, _loop_patchify(images, p))


def test_a_whole_image_patch_is_the_flattened_image():
    images = torch.randn(2, 3, 4, 4)
    assert torch.equal(patchify(images, 4), images.reshape(2, 1, 48))


@pytest.mark.parametrize("C, H, W, p, D", [(1, 8, 8, 2, 16), (3, 12, 8, 4, 10), (2, 6, 9, 3, 7)])
def test_patch_embedding_equals_a_strided_conv2d_forward_and_gradients(C, H, W, p, D):
    gen = torch.Generator().manual_seed(1)
    embed = PatchEmbedding(p, C, D).double()
    with torch.no_grad():
        embed.proj.bias.normal_(generator=gen)
    conv = nn.Conv2d(C, D, kernel_size=p, stride=p).double()
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.reshape(D, C, p, p))  # (D, C p p) -> (D, C, p, p)
        conv.bias.copy_(embed.proj.bias)
    x = torch.randn(3, C, H, W, dtype=torch.float64, generator=gen, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    ours = embed(x)  # (B, P, D)
    theirs = conv(x_ref).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, P, D)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    cotangent = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
    ours.backward(cotangent)
    theirs.backward(cotangent)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(embed.proj.weight.grad, conv.weight.grad.reshape(D, -1), rtol=0, atol=1e-12)
    torch.testing.assert_close(embed.proj.bias.grad, conv.bias.grad, rtol=0, atol=1e-12)


# ---------- the whole model against Hugging Face's ViT ----------

CONFIG = ViTConfig(image_size=8, patch_size=2, channels=3, num_classes=7, d_model=24, num_layers=2, num_heads=3, d_ff=40)


def _hf_model(config: ViTConfig, dtype=torch.float32, attention="sdpa"):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.ViTConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.channels,
        hidden_size=config.d_model, num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.d_ff, num_labels=config.num_classes, layer_norm_eps=1e-5, hidden_act="gelu",
        qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    # "sdpa" keeps float64 throughout; "eager" returns the attention weights but takes its softmax in float32
    hf_config._attn_implementation = attention
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(hf_config).to(dtype).eval()
    with torch.no_grad():  # every parameter random, so that a swapped bias or gain cannot go unnoticed
        for name, p in model.named_parameters():
            gain = "layernorm" in name and name.endswith("weight")  # norm gains around 1, everything else around 0
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if gain else 0.0))
    return model


def _their_name(name: str) -> str:
    """tinycore parameter name -> Hugging Face parameter name."""
    fixed = {
        "cls_token": "vit.embeddings.cls_token",
        "pos_embedding": "vit.embeddings.position_embeddings",
        "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
        "ln_final.weight": "vit.layernorm.weight", "ln_final.bias": "vit.layernorm.bias",
        "head.weight": "classifier.weight", "head.bias": "classifier.bias",
    }
    if name in fixed:
        return fixed[name]
    _, i, rest = name.split(".", 2)  # layers.{i}.<rest>
    parts = {"ln1": "layernorm_before", "ln2": "layernorm_after", "attn.q_proj": "attention.q_proj",
             "attn.k_proj": "attention.k_proj", "attn.v_proj": "attention.v_proj", "attn.output_proj": "attention.o_proj",
             "ffn.w1": "mlp.fc1", "ffn.w2": "mlp.fc2"}
    module, leaf = rest.rsplit(".", 1)
    return f"vit.layers.{i}.{parts[module]}.{leaf}"


def _copy_into_ours(hf_model, config: ViTConfig, dtype=torch.float32) -> ViT:
    ours = ViT.from_config(config).to(dtype).eval()
    theirs = dict(hf_model.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.copy_(theirs[_their_name(name)].reshape(p.shape))
    assert len(theirs) == len(list(ours.parameters())), "every Hugging Face parameter has a counterpart"
    return ours


def _images(config: ViTConfig, batch=5, dtype=torch.float32):
    size = (batch, config.channels, config.image_size, config.image_size)
    return torch.randn(size, generator=torch.Generator().manual_seed(2), dtype=dtype)


def test_vit_matches_hugging_face_with_copied_weights_float32():
    hf = _hf_model(CONFIG)
    ours = _copy_into_ours(hf, CONFIG)
    x = _images(CONFIG)
    with torch.no_grad():
        want = hf(pixel_values=x).logits
        got = ours(x)
    assert got.shape == (5, CONFIG.num_classes)
    assert (got - want).abs().max() <= 1e-5
    assert want.abs().max() > 0.1  # a real comparison, not two vectors of zeros


@pytest.mark.parametrize("fused", [True, False])
def test_vit_matches_hugging_face_gradients_float64(fused):
    hf = _hf_model(CONFIG, torch.float64)
    ours = _copy_into_ours(hf, CONFIG, torch.float64)
    for layer in ours.layers:
        layer.attn.fused = fused
    x = _images(CONFIG, dtype=torch.float64)
    labels = torch.tensor([0, 3, 6, 2, 1])
    loss_theirs = hf(pixel_values=x, labels=labels).loss
    loss_ours = F.cross_entropy(ours(x), labels)
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=0, atol=1e-12)
    loss_theirs.backward()
    loss_ours.backward()
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        want = theirs[_their_name(name)].grad.reshape(p.shape)
        assert want.abs().max() > 0, name
        torch.testing.assert_close(p.grad, want, rtol=0, atol=1e-10, msg=name)


def test_attention_maps_match_hugging_face():
    hf = _hf_model(CONFIG, attention="eager")
    ours = _copy_into_ours(hf, CONFIG)
    x = _images(CONFIG)
    with torch.no_grad():
        want = torch.stack(hf(pixel_values=x, output_attentions=True).attentions)  # L x (B, H, P + 1, P + 1)
    maps = ours.attention_maps(x)  # (L, B, H, P + 1, P + 1)
    assert maps.shape == (CONFIG.num_layers, 5, CONFIG.num_heads, CONFIG.num_patches + 1, CONFIG.num_patches + 1)
    torch.testing.assert_close(maps, want, rtol=0, atol=1e-6)


def test_attention_maps_are_distributions_over_all_tokens():
    model = ViT.from_config(CONFIG)
    maps = model.attention_maps(_images(CONFIG))
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert (maps[..., 1:, -1] > 0).all()  # not causal: early tokens see the last patch


def _swap_patches(images, p, order):
    """Rearrange the p x p patches of images (B, C, H, W) in `order` (row-major patch indices)."""
    B, C, H, W = images.shape
    patches = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C, p, p)
    patches = patches[:, order]  # (B, P, C, p, p)
    return patches.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def test_without_position_embeddings_shuffling_the_patches_changes_nothing():
    torch.manual_seed(3)
    model = ViT.from_config(CONFIG).eval()
    x = _images(CONFIG)
    order = torch.randperm(CONFIG.num_patches, generator=torch.Generator().manual_seed(4))
    shuffled = _swap_patches(x, CONFIG.patch_size, order)
    assert torch.equal(patchify(shuffled, CONFIG.patch_size), patchify(x, CONFIG.patch_size)[:, order])
    with torch.no_grad():
        assert not torch.allclose(model(shuffled), model(x), atol=1e-4)  # the positions tell patches apart
        model.pos_embedding.zero_()
        torch.testing.assert_close(model(shuffled), model(x), rtol=0, atol=1e-5)  # a bag of patches


def test_config_round_trip_and_sizes():
    model = ViT.from_config(CONFIG)
    assert model.config == CONFIG and CONFIG.num_patches == 16
    assert model.pos_embedding.shape == (17, 24) and model.cls_token.shape == (24,)
    assert model.patch_embed.proj.weight.shape == (24, 3 * 2 * 2)
    n_block = 4 * (24 * 24 + 24) + (24 * 40 + 40) + (40 * 24 + 24) + 4 * 24
    expected = 24 * 12 + 24 + 24 + 17 * 24 + 2 * n_block + 2 * 24 + 24 * 7 + 7
    assert sum(p.numel() for p in model.parameters()) == expected


def test_the_optimizer_does_not_decay_cls_positions_biases_or_norms():
    model = ViT.from_config(CONFIG)
    decay, no_decay = make_optimizer(model, TrainConfig()).param_groups
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.cls_token) in ids and id(model.pos_embedding) in ids
    assert all(p.ndim == 2 for p in decay["params"]) and id(model.head.weight) not in ids


def test_it_trains_a_batch_to_zero_error():
    torch.manual_seed(5)
    model = ViT(8, 4, 1, 3, 16, 1, 2, 32)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (model(x).argmax(-1) == y).all()


# ---------- errors of ours ----------

def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match="image_size=8 is not divisible by patch_size=3"):
        ViT(8, 3, 1, 10, 16, 1, 2, 32)
    with pytest.raises(ValueError, match=r"image size 8x6 is not divisible by the patch size 4"):
        patchify(torch.zeros(1, 1, 8, 6), 4)


def test_wrong_channels_size_or_rank():
    model = ViT(8, 2, 1, 10, 16, 1, 2, 32)
    with pytest.raises(ValueError, match=r"built for 1 channel\(s\), but the images have 3"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="built for 8x8 images, got 16x16"):
        model(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\), got \(2, 8, 8\)"):
        model(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C=3, H, W\)"):
        PatchEmbedding(2, 3, 8)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=4"):
        ViT(8, 2, 1, 10, 10, 1, 4, 32)

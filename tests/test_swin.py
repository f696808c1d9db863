"""Swin: windows and their reverse, the shifted-window mask against a brute-force definition and the
official code, the relative position index against the official formula, window attention against a
per-window loop of PyTorch's attention, patch merging against a loop, and whole blocks and models
against Hugging Face's Swin with copied weights (forward and gradients); plus errors for bad input."""

import pytest
import torch
import torch.nn.functional as F

from tinycore.swin import PatchMerging, Swin, SwinBlock, SwinConfig, WindowAttention, swin_t_config
from tinycore.windows import (
    cyclic_shift, relative_position_index, shifted_window_mask, shifted_window_regions, window_partition,
    window_reverse,
)

F64 = dict(dtype=torch.float64)


# ---------- windows ----------

@pytest.mark.parametrize("B, H, W, C, M", [(2, 8, 12, 3, 4), (1, 6, 6, 5, 3), (3, 7, 14, 2, 7), (2, 4, 4, 1, 1)])
def test_window_partition_cuts_row_major_windows_and_reverse_undoes_it(B, H, W, C, M, gen):
    x = torch.randn(B, H, W, C, generator=gen)
    windows = window_partition(x, M)
    assert windows.shape == (B * (H // M) * (W // M), M, M, C)
    expected = [x[b, r * M:(r + 1) * M, c * M:(c + 1) * M]
                for b in range(B) for r in range(H // M) for c in range(W // M)]
    assert torch.equal(windows, torch.stack(expected))  # image by image, window rows, then window columns
    assert torch.equal(window_reverse(windows, M, H, W), x)


def test_cyclic_shift_rolls_up_and_left_and_back(gen):
    x = torch.randn(2, 6, 9, 3, generator=gen)
    rolled = cyclic_shift(x, 2)
    for i in range(6):
        for j in range(9):
            assert torch.equal(rolled[:, i, j], x[:, (i + 2) % 6, (j + 2) % 9])
    assert torch.equal(cyclic_shift(rolled, -2), x)
    assert cyclic_shift(x, 0) is x


def brute_force_mask(H, W, M, s):
    """From coordinates only: rolled position (i, j) holds image pixel ((i + s) mod H, (j + s) mod W).
    Two tokens of a window may attend iff the roll moved both by the same vector, i.e. their offset in
    the image equals their offset in the rolled map: no wrap-around lies between them."""
    mask = torch.zeros((H // M) * (W // M), M * M, M * M, dtype=torch.bool)
    for w in range(mask.shape[0]):
        top, left = (w // (W // M)) * M, (w % (W // M)) * M
        cells = [(top + a, left + b) for a in range(M) for b in range(M)]  # row-major inside the window
        for p, (i1, j1) in enumerate(cells):
            for q, (i2, j2) in enumerate(cells):
                image_offset = ((i2 + s) % H - (i1 + s) % H, (j2 + s) % W - (j1 + s) % W)
                mask[w, p, q] = image_offset == (i2 - i1, j2 - j1)
    return mask


@pytest.mark.parametrize("H, W, M, s", [(8, 8, 4, 2), (8, 12, 4, 1), (6, 9, 3, 2), (14, 7, 7, 3), (4, 4, 4, 3),
                                        (8, 8, 4, 0), (56, 56, 7, 3)])
def test_shifted_window_mask_equals_the_brute_force_definition(H, W, M, s):
    mask = shifted_window_mask(H, W, M, s)
    assert mask.dtype == torch.bool and mask.shape == ((H // M) * (W // M), M * M, M * M)
    assert torch.equal(mask, brute_force_mask(H, W, M, s))


def official_regions(H, W, M, s):
    """The official code's loop (microsoft/Swin-Transformer, SwinTransformerBlock.__init__), for s > 0."""
    img_mask = torch.zeros((1, H, W, 1))
    h_slices = (slice(0, -M), slice(-M, -s), slice(-s, None))
    w_slices = (slice(0, -M), slice(-M, -s), slice(-s, None))
    cnt = 0
    for h in h_slices:
        for w in w_slices:
            img_mask[:, h, w, :] = cnt
            cnt += 1
    return img_mask[0, :, :, 0].long()


@pytest.mark.parametrize("H, W, M, s", [(8, 8, 4, 2), (8, 12, 4, 3), (56, 56, 7, 3), (7, 7, 7, 3)])
def test_regions_and_mask_match_the_official_code_and_hugging_face(H, W, M, s):
    assert torch.equal(shifted_window_regions(H, W, M, s), official_regions(H, W, M, s))
    pytest.importorskip("transformers")
    from transformers import SwinConfig as HFConfig
    from transformers.models.swin.modeling_swin import SwinLayer

    layer = SwinLayer(HFConfig(window_size=M, embed_dim=8), dim=8, input_resolution=(H, W), num_heads=2, shift_size=s)
    hf_mask = layer.get_attn_mask(H, W, dtype=torch.float32, device="cpu")  # 0 allowed, -100 forbidden
    assert torch.equal(shifted_window_mask(H, W, M, s), hf_mask == 0)


def test_every_token_may_attend_itself_and_an_unshifted_map_is_never_masked():
    mask = shifted_window_mask(12, 8, 4, 2)
    assert mask.diagonal(dim1=1, dim2=2).all() and torch.equal(mask, mask.transpose(1, 2))
    assert shifted_window_mask(12, 8, 4, 0).all()
    # only the windows touching the wrap-around (last row or column of windows) mask anything
    torn = ~mask.view(3, 2, 16, 16).flatten(2).all(dim=-1)  # (3 window rows, 2 window columns)
    assert torn.tolist() == [[False, True], [False, True], [True, True]]


# ---------- relative positions ----------

def official_relative_position_index(M):
    """The official code (WindowAttention.__init__), for a square window."""
    coords_h = torch.arange(M)
    coords_w = torch.arange(M)
    coords = torch.stack(torch.meshgrid([coords_h, coords_w], indexing="ij"))  # 2, Wh, Ww
    coords_flatten = torch.flatten(coords, 1)  # 2, Wh*Ww
    relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]  # 2, Wh*Ww, Wh*Ww
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # Wh*Ww, Wh*Ww, 2
    relative_coords[:, :, 0] += M - 1  # shift to start from 0
    relative_coords[:, :, 1] += M - 1
    relative_coords[:, :, 0] *= 2 * M - 1
    return relative_coords.sum(-1)  # Wh*Ww, Wh*Ww


@pytest.mark.parametrize("M", [1, 2, 3, 4, 7])
def test_relative_position_index_matches_the_official_formula(M):
    index = relative_position_index(M)
    assert index.dtype == torch.long and torch.equal(index, official_relative_position_index(M))
    assert index.min() == 0 and index.max() == (2 * M - 1) ** 2 - 1
    assert len(index.unique()) == (2 * M - 1) ** 2  # every offset (dy, dx) occurs, each with its own row
    # the index depends on the pair only through its offset: tokens (0, 0)->(1, 1) and (2, 1)->(3, 2) share it
    if M >= 4:
        assert index[1 * M + 1, 0] == index[3 * M + 2, 2 * M + 1]


# ---------- window attention ----------

def per_window_loop(attn: WindowAttention, windows, mask):
    """Each window on its own through PyTorch's attention, with the bias looked up entry by entry."""
    M, H, N = attn.window_size, attn.num_heads, attn.window_size ** 2
    table = attn.relative_position_bias_table
    bias = torch.stack([torch.stack([torch.stack([
        table[(i // M - j // M + M - 1) * (2 * M - 1) + (i % M - j % M + M - 1), h] for j in range(N)])
        for i in range(N)]) for h in range(H)])  # (H, N, N)
    outputs = []
    for w, x in enumerate(windows):  # x (N, D)
        q = attn.q_proj(x).view(N, H, -1).transpose(0, 1)  # (H, N, Dh)
        k = attn.k_proj(x).view(N, H, -1).transpose(0, 1)
        v = attn.v_proj(x).view(N, H, -1).transpose(0, 1)
        float_mask = bias if mask is None else bias.masked_fill(~mask[w % len(mask)], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)  # (H, N, Dh)
        outputs.append(attn.output_proj(out.transpose(0, 1).reshape(N, -1)))  # (N, D)
    return torch.stack(outputs)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_equals_a_per_window_loop_forward_and_gradients(fused, shifted, gen):
    torch.manual_seed(0)
    M, D, H, B = 3, 12, 3, 2
    attn = WindowAttention(D, H, M, fused=fused, **F64)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # large enough to matter
    mask = shifted_window_mask(6, 9, M, 1) if shifted else None  # 6 windows per image
    x = torch.randn(B * 6, M * M, D, generator=gen, **F64, requires_grad=True)
    out, ref = attn(x, mask), per_window_loop(attn, x, mask)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn(out.shape, generator=gen, **F64)
    params = [x, attn.relative_position_bias_table, attn.q_proj.weight]
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_shifted_window_block_attends_within_the_papers_shifted_windows(gen):
    """SW-MSA (roll, windows, mask) == global attention in image coordinates where two pixels interact
    iff they share a window of the grid displaced by s, floor((r - s) / M), with the same bias."""
    torch.manual_seed(1)
    Hm, Wm, M, s, D, H = 8, 12, 4, 2, 8, 2
    block = SwinBlock(D, H, M, shift=s, **F64)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    x = torch.randn(2, Hm, Wm, D, generator=gen, **F64)
    rows, cols = torch.meshgrid(torch.arange(Hm), torch.arange(Wm), indexing="ij")
    r, c = rows.flatten(), cols.flatten()  # (T,) image coordinates, T = H W
    group = (r - s).div(M, rounding_mode="floor") * 100 + (c - s).div(M, rounding_mode="floor")  # (T,)
    same_window = group[:, None] == group[None, :]  # (T, T)
    dy, dx = r[:, None] - r[None, :], c[:, None] - c[None, :]  # (T, T): query minus key
    inside = (dy.abs() < M) & (dx.abs() < M)
    index = ((dy + M - 1) * (2 * M - 1) + (dx + M - 1)).where(inside, torch.zeros_like(dy))
    bias = block.attn.relative_position_bias_table[index].permute(2, 0, 1)  # (H, T, T)
    attn = block.attn
    h = block.ln1(x).view(2, Hm * Wm, D)  # (B, T, D)
    q, k, v = attn.project(h, h)  # (B, H, T, Dh)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~same_window, float("-inf")))
    y = x + attn.output_proj(out.transpose(1, 2).reshape(2, Hm * Wm, D)).view(2, Hm, Wm, D)
    y = y + block.ffn(block.ln2(y))
    torch.testing.assert_close(block(x), y, rtol=0, atol=1e-12)


# ---------- patch merging ----------

def test_patch_merging_concatenates_the_four_neighbours_in_the_official_order(gen):
    torch.manual_seed(0)
    merge = PatchMerging(3, **F64)
    x = torch.randn(2, 4, 6, 3, generator=gen, **F64)
    out = merge(x)
    assert out.shape == (2, 2, 3, 6)
    for i in range(2):
        for j in range(3):
            neighbours = [x[:, 2 * i + di, 2 * j + dj] for dj in (0, 1) for di in (0, 1)]  # (0,0) (1,0) (0,1) (1,1)
            h = torch.cat(neighbours, dim=-1)  # (B, 4C)
            expected = F.linear(F.layer_norm(h, (12,), merge.norm.weight, merge.norm.bias), merge.reduction.weight)
            torch.testing.assert_close(out[:, i, j], expected, rtol=0, atol=1e-12)


# ---------- against Hugging Face's Swin ----------

def hf_names(c: SwinConfig, sd: dict) -> dict:
    """tinycore's Swin tensors (weights or their gradients) under Hugging Face's names."""
    new = {}
    new["swin.embeddings.patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"].view(
        c.d_model, c.channels, c.patch_size, c.patch_size)
    new["swin.embeddings.patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    for p in ("weight", "bias"):
        new[f"swin.embeddings.norm.{p}"] = sd[f"patch_norm.{p}"]
        new[f"swin.layernorm.{p}"] = sd[f"ln_final.{p}"]
        new[f"classifier.{p}"] = sd[f"head.{p}"]
    names = {"ln1": "layernorm_before", "ln2": "layernorm_after", "attn.q_proj": "attention.q_proj",
             "attn.k_proj": "attention.k_proj", "attn.v_proj": "attention.v_proj",
             "attn.output_proj": "attention.o_proj",
             "ffn.w1": "mlp.fc1", "ffn.w2": "mlp.fc2"}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "stages":
            i, j, rest = parts[1], parts[2], ".".join(parts[3:])
            if rest == "attn.relative_position_bias_table":
                rest = "attention.relative_position_bias.relative_position_bias_table"
            else:
                module, param = rest.rsplit(".", 1)
                rest = f"{names[module]}.{param}"
            new[f"swin.encoder.layers.{i}.blocks.{j}.{rest}"] = value
        elif parts[0] == "merges":
            new[f"swin.encoder.layers.{parts[1]}.downsample.{'.'.join(parts[2:])}"] = value
    return new


@pytest.mark.parametrize("config", [SwinConfig(8, 1, 1, 10, 16, (2, 2), (2, 4), 4),
                                    SwinConfig(16, 2, 3, 5, 12, (2, 2), (3, 3), 2, mlp_ratio=2),
                                    SwinConfig(12, 1, 2, 4, 8, (2, 2, 2), (1, 2, 4), 3)])
def test_swin_equals_hugging_face_swin_with_copied_weights_forward_and_gradients(config, gen):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ours = Swin(config, **F64)
    with torch.no_grad():  # random norms, biases and tables make the comparison stricter
        for name, p in ours.named_parameters():
            if p.ndim == 1 or "relative_position" in name:
                p.normal_(0.5 if name.endswith("weight") else 0.0, 0.5)
    hf = transformers.SwinForImageClassification(transformers.SwinConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.channels,
        embed_dim=config.d_model, depths=list(config.depths), num_heads=list(config.num_heads),
        window_size=config.window_size, mlp_ratio=config.mlp_ratio, num_labels=config.num_classes,
        qkv_bias=True, hidden_act="gelu", use_absolute_embeddings=False, layer_norm_eps=1e-5,
        drop_path_rate=0.0)).double().eval()
    missing, unexpected = hf.load_state_dict(hf_names(config, ours.state_dict()), strict=False)
    assert not unexpected and all("relative_position_index" in m for m in missing), (missing, unexpected)
    images = torch.randn(3, config.channels, config.image_size, config.image_size, generator=gen, **F64)
    out, ref = ours(images), hf(images).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    g = torch.randn(out.shape, generator=gen, **F64)
    out.backward(g)
    ref.backward(g)
    hf_params = dict(hf.named_parameters())
    our_grads = hf_names(config, {name: p.grad for name, p in ours.named_parameters()})
    assert set(our_grads) == set(hf_params)
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, hf_params[name].grad, rtol=0, atol=1e-10, msg=name)


def test_swin_t_has_the_papers_28_million_parameters():
    model = Swin(swin_t_config(), device="meta")
    assert sum(p.numel() for p in model.parameters()) == 28_288_354  # Hugging Face's swin-tiny-patch4-window7-224
    blocks = [b for stage in model.stages for b in stage]
    assert [b.shift for b in blocks] == [0, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 0]  # the 7 x 7 last stage never shifts
    assert model.config.resolutions() == [56, 28, 14, 7]


# ---------- shapes and errors ----------

def test_model_shapes_and_the_stage_pyramid(gen):
    torch.manual_seed(0)
    model = Swin(SwinConfig(16, 2, 3, 7, 8, (2, 2, 2), (1, 2, 4), 4))
    images = torch.randn(5, 3, 16, 16, generator=gen)
    feats = model.features(images)
    assert feats.shape == (5, 2, 2, 32)  # 8x8 of width 8 -> 4x4 of 16 -> 2x2 of 32
    assert model(images).shape == (5, 7)
    windows = [(b.window_size, b.shift) for stage in model.stages for b in stage]
    assert windows == [(4, 0), (4, 2), (4, 0), (4, 0), (2, 0), (2, 0)]


def test_bad_input_raises_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="does not split into whole 4 x 4 windows"):
        window_partition(torch.zeros(1, 6, 8, 2), 4)
    with pytest.raises(ValueError, match=r"0 <= shift < window_size=4, got shift=4"):
        shifted_window_mask(8, 8, 4, 4)
    with pytest.raises(ValueError, match="shift"):
        SwinBlock(8, 2, 4, shift=5)
    block = SwinBlock(8, 2, 4, shift=2)
    with pytest.raises(ValueError, match="does not split into whole"):
        block(torch.zeros(1, 6, 6, 8))
    with pytest.raises(ValueError, match=r"\(B, H, W, D=8\)"):
        block(torch.zeros(1, 8, 8, 6))  # wrong channel count
    with pytest.raises(ValueError, match="even height and width"):
        PatchMerging(4)(torch.zeros(1, 5, 6, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W, D=4\)"):
        PatchMerging(4)(torch.zeros(1, 6, 6, 3))
    with pytest.raises(ValueError, match="channels-last map"):
        window_partition(torch.zeros(6, 8, 2), 2)
    with pytest.raises(ValueError, match="windows of shape"):
        WindowAttention(8, 2, 4)(torch.zeros(3, 9, 8))
    model = Swin(SwinConfig(8, 1, 1, 10, 8, (2, 2), (2, 2), 4))
    with pytest.raises(ValueError, match=r"images of shape \(B, 1, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="does not split into whole 3 x 3 windows"):
        Swin(SwinConfig(8, 1, 1, 10, 8, (2, 2), (2, 2), 3))  # 8 x 8 tokens in 3 x 3 windows
    with pytest.raises(ValueError, match="2 depths but 3 head counts"):
        Swin(SwinConfig(8, 1, 1, 10, 8, (2, 2), (2, 2, 2), 4))
    with pytest.raises(ValueError, match="odd side that patch merging"):
        Swin(SwinConfig(14, 2, 1, 10, 8, (2, 2), (2, 2), 7))  # 7 x 7 tokens cannot be merged
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        Swin(SwinConfig(9, 2, 1, 10, 8, (2,), (2,), 4))

"""Checkers for chapter 16 (Swin): window partition, the shifted-window mask, the relative position
index and patch merging.

The references are plain loops over windows, tokens and coordinates, independent of
tinycore.windows and tinycore.swin. The mask's reference is the definition itself: after the roll,
two tokens of a window may attend iff their offset in the image equals their offset in the rolled
map (no wrap-around between them). Every case gives the dimensions different sizes, so that a
transposed or column-major answer cannot pass by coincidence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Case, Diagnosis, check_function, fail

__all__ = ["window_partition", "shifted_window_mask", "relative_position_index", "patch_merging"]


def _run(name, fn, reference, cases, dtype_advice: dict, **kwargs) -> None:
    """check_function, with advice for an output of the right shape but the wrong dtype."""
    __tracebackhide__ = True

    def screen(got, want, case):
        __tracebackhide__ = True
        if tuple(got.shape) == tuple(want.shape) and got.dtype != want.dtype:
            advice = dtype_advice.get(got.dtype, dtype_advice.get("other", "keep the input's dtype."))
            raise fail(f"{name} returned a {got.dtype} tensor; it should be {want.dtype}", case, advice)
        return got

    check_function(name, fn, reference, cases, screen=screen, **kwargs)


# ---------- window_partition: (B, H, W, C) -> (B * nW, M, M, C) ----------

def _partition_reference(x, M, window_order="rows", batch_first=True):
    B, H, W, _ = x.shape
    cells = [(r, c) for r in range(H // M) for c in range(W // M)]
    if window_order == "columns":
        cells = [(r, c) for c in range(W // M) for r in range(H // M)]
    if batch_first:
        pairs = [(b, r, c) for b in range(B) for r, c in cells]
    else:
        pairs = [(b, r, c) for r, c in cells for b in range(B)]
    return torch.stack([x[b, r * M:(r + 1) * M, c * M:(c + 1) * M] for b, r, c in pairs])


def window_partition(fn) -> None:
    """fn(x (B, H, W, C), window_size) -> (B * nW, M, M, C): each image's windows, row by row."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(160)
    cases = []
    for B, H, W, C, M in [(2, 8, 12, 3, 4), (3, 6, 9, 2, 3), (1, 14, 7, 5, 7), (2, 4, 6, 1, 2)]:
        x = torch.randn(B, H, W, C, generator=gen)
        cases.append(Case((x, M), f"x (B={B}, H={H}, W={W}, C={C}), window_size={M}"))
    _run(
        "window_partition", fn, _partition_reference, cases, {"other": "keep the input's dtype."},
        grad=True, rtol=0.0, atol=0.0, arg_names=("x",),
        hint="view (B, H, W, C) as (B, H/M, M, W/M, M, C), bring the two window indices next to each other "
             "(B, H/M, W/M, M, M, C), then reshape to (-1, M, M, C).",
        diagnoses=[
            Diagnosis(lambda x, M: x.reshape(-1, M, M, x.shape[-1]),
                      "a plain reshape to (-1, M, M, C) fills a 'window' with M*M consecutive pixels of one row band, "
                      "not an M x M square: split H and W, then permute so the axes read (B, H/M, W/M, M, M, C)."),
            Diagnosis(lambda x, M: x.view(x.shape[0], x.shape[1] // M, M, x.shape[2] // M, M, x.shape[3])
                      .permute(0, 1, 3, 4, 2, 5).reshape(-1, M, M, x.shape[3]),
                      "each window is transposed: inside a window the axes should stay (row, column), i.e. permute "
                      "to (B, H/M, W/M, M_rows, M_cols, C)."),
            Diagnosis(lambda x, M: _partition_reference(x, M, window_order="columns"),
                      "the windows are in column-major order; number them row by row: window (r, c) is number "
                      "r * (W/M) + c."),
            Diagnosis(lambda x, M: _partition_reference(x, M, batch_first=False),
                      "the windows of different images are interleaved; keep the batch axis outermost, so that the "
                      "first nW windows are all from image 0."),
        ],
    )


# ---------- shifted_window_mask: -> (nW, M*M, M*M) bool ----------

def _mask_reference(H, W, M, s, roll=-1, invert=False):
    """The definition. Rolled position (i, j) holds image pixel ((i - roll*s) mod H, ...) for a roll by roll*s."""
    nW = (H // M) * (W // M)
    mask = torch.zeros(nW, M * M, M * M, dtype=torch.bool)
    for w in range(nW):
        top, left = (w // (W // M)) * M, (w % (W // M)) * M
        cells = [(top + a, left + b) for a in range(M) for b in range(M)]
        for p, (i1, j1) in enumerate(cells):
            for q, (i2, j2) in enumerate(cells):
                di = (i2 - roll * s) % H - (i1 - roll * s) % H
                dj = (j2 - roll * s) % W - (j1 - roll * s) % W
                mask[w, p, q] = ((di, dj) == (i2 - i1, j2 - j1)) != invert
    return mask


def shifted_window_mask(fn) -> None:
    """fn(height, width, window_size, shift) -> (nW, M*M, M*M) bool, True where two tokens of a window of
    the map rolled by (-shift, -shift) may attend, i.e. where they come from the same region."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    sizes = [(8, 8, 4, 2), (8, 12, 4, 1), (6, 9, 3, 2), (14, 7, 7, 3), (8, 4, 4, 0)]
    cases = [Case(size, "height={}, width={}, window_size={}, shift={}".format(*size)) for size in sizes]
    _run(
        "shifted_window_mask", fn, _mask_reference, cases,
        {torch.float32: "return booleans, True = may attend. (The official code builds an additive float mask, "
                        "0 for allowed pairs and -100 for forbidden ones: compare the labels with == instead.)",
         "other": "return booleans (a comparison like labels[:, :, None] == labels[:, None, :] gives them)."},
        rtol=0.0, atol=0.0,
        hint="label the nine regions of the rolled map (row bands [0, H-M), [H-M, H-s), [H-s, H), the same for "
             "columns), cut the label map into windows exactly as window_partition does, and compare every pair of "
             "labels within a window.",
        diagnoses=[
            Diagnosis(lambda H, W, M, s: torch.ones((H // M) * (W // M), M * M, M * M, dtype=torch.bool),
                      "everything is allowed: the windows that hold the wrapped-around rows and columns must mask "
                      "the pairs from different regions."),
            Diagnosis(lambda H, W, M, s: _mask_reference(H, W, M, s, invert=True),
                      "the polarity is inverted: True means 'may attend' (as in F.scaled_dot_product_attention)."),
            Diagnosis(lambda H, W, M, s: _mask_reference(H, W, M, s, roll=1),
                      "you placed the wrapped-around tokens at the start of each axis; Swin rolls by -shift (up and "
                      "left), so the tokens that came around sit in the last `shift` rows and columns."),
            Diagnosis(lambda H, W, M, s: _mask_reference(W, H, M, s).view(W // M, H // M, M * M, M * M).transpose(0, 1)
                      .reshape(-1, M * M, M * M) if H == W else None,
                      "the windows are in the wrong order; number them row by row, as window_partition does."),
        ],
    )


# ---------- relative_position_index: -> (M*M, M*M) long ----------

def _index_reference(M, sign=1, multiplier=None, swap=False, offset=True):
    multiplier = 2 * M - 1 if multiplier is None else multiplier
    N = M * M
    index = torch.zeros(N, N, dtype=torch.long)
    for i in range(N):
        for j in range(N):
            dy, dx = sign * (i // M - j // M), sign * (i % M - j % M)
            if swap:
                dy, dx = dx, dy
            shift = M - 1 if offset else 0
            index[i, j] = (dy + shift) * multiplier + (dx + shift)
    return index


def relative_position_index(fn) -> None:
    """fn(window_size) -> (M*M, M*M) long: (dy + M - 1) * (2M - 1) + (dx + M - 1), (dy, dx) = token i minus token j."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    cases = [Case((M,), f"window_size={M}") for M in (2, 3, 4, 7)]
    _run(
        "relative_position_index", fn, _index_reference, cases,
        {"other": "build it from integer aranges; the result indexes a table, so it must be torch.long."},
        rtol=0.0, atol=0.0,
        hint="number the tokens of the window row by row, token t at (t // M, t % M); for each pair (i, j) take "
             "dy, dx = coordinates of i minus those of j, shift both by M - 1 so they start at 0, and combine them "
             "as dy' * (2M - 1) + dx'.",
        diagnoses=[
            Diagnosis(lambda M: _index_reference(M, sign=-1),
                      "the sign is flipped: the offset is query i minus key j (the official code's "
                      "coords[:, :, None] - coords[:, None, :])."),
            Diagnosis(lambda M: _index_reference(M, multiplier=M),
                      "you multiplied dy by M; the shifted dx runs over 2M - 1 values, so dy must be multiplied by "
                      "2M - 1 or different offsets collide on one row of the table."),
            Diagnosis(lambda M: _index_reference(M, swap=True),
                      "rows and columns are swapped: the row offset dy is the one multiplied by 2M - 1."),
            Diagnosis(lambda M: _index_reference(M, offset=False),
                      "the offsets were not shifted to start at 0: add M - 1 to dy and to dx before combining them."),
        ],
    )


# ---------- patch_merging: (B, H, W, C), weight (2C, 4C) -> (B, H/2, W/2, 2C) ----------

def _merge_reference(x, weight, order=((0, 0), (1, 0), (0, 1), (1, 1)), norm=True, norm_after=False):
    B, H, W, C = x.shape
    rows = []
    for i in range(H // 2):
        row = []
        for j in range(W // 2):
            h = torch.cat([x[:, 2 * i + di, 2 * j + dj] for di, dj in order], dim=-1)  # (B, 4C)
            if norm and not norm_after:
                h = F.layer_norm(h, (4 * C,))
            h = h @ weight.T  # (B, 2C)
            if norm_after:
                h = F.layer_norm(h, (2 * C,))
            row.append(h)
        rows.append(torch.stack(row, dim=1))
    return torch.stack(rows, dim=1)  # (B, H/2, W/2, 2C)


def patch_merging(fn) -> None:
    """fn(x (B, H, W, C), weight (2C, 4C)) -> (B, H/2, W/2, 2C): concatenate x[0::2, 0::2], x[1::2, 0::2],
    x[0::2, 1::2], x[1::2, 1::2], LayerNorm over the 4C features (no affine, eps 1e-5), then @ weight.T."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    gen = torch.Generator().manual_seed(161)
    cases = []
    for B, H, W, C in [(2, 4, 6, 3), (3, 8, 4, 5), (1, 2, 10, 2)]:
        x = torch.randn(B, H, W, C, generator=gen) * 3 + 1
        weight = torch.randn(2 * C, 4 * C, generator=gen) / 2
        cases.append(Case((x, weight), f"x (B={B}, H={H}, W={W}, C={C}), weight ({2 * C}, {4 * C})"))
    _run(
        "patch_merging", fn, _merge_reference, cases, {"other": "keep the input's dtype."},
        grad=True, rtol=1e-5, atol=1e-5, arg_names=("x", "weight"),
        hint="take the four strided slices x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2] "
             "(each (B, H/2, W/2, C)), concatenate them on the last axis, normalise, then project.",
        diagnoses=[
            Diagnosis(lambda x, w: _merge_reference(x, w, order=((0, 0), (0, 1), (1, 0), (1, 1))),
                      "the four neighbours are in row-major order (0,0), (0,1), (1,0), (1,1) (what a view and permute "
                      "give); the official order is x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]. "
                      "Either order can be trained, but pretrained weights expect the official one."),
            Diagnosis(lambda x, w: _merge_reference(x, w, norm=False),
                      "the 4C features should be normalised (LayerNorm, no affine) before the projection."),
            Diagnosis(lambda x, w: _merge_reference(x, w, norm_after=True),
                      "the LayerNorm goes before the projection, over the 4C concatenated features, not after it."),
        ],
    )

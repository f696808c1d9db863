"""Checkers for chapter 15 (Vision Transformer): cutting images into patches, the patch embedding as a
strided convolution, and the encoder's input with a [CLS] token and positions.

The references are independent of tinycore.vit: `patchify` slices one patch at a time in a loop,
the patch embedding is compared with `torch.nn.functional.conv2d` itself, and the [CLS] input is
built token by token. Images are never square and channels are more than one in most cases, so
that a swapped height and width or a (p1, p2, c) flattening cannot pass by coincidence.
"""

from __future__ import annotations

import torch
from torch import nn

from .core import Case, Diagnosis, call_learner, check_function, compare, describe, fail, passed, require_callable

__all__ = ["patchify", "patch_embed_from_conv", "prepend_cls"]


def _patchify_reference(images, p):
    B, C, H, W = images.shape
    patches = [images[:, :, i:i + p, j:j + p].reshape(B, C * p * p)  # one patch, flattened (c, p1, p2)
               for i in range(0, H, p) for j in range(0, W, p)]  # row by row, left to right
    return torch.stack(patches, dim=1)  # P x (B, C p p) -> (B, P, C p p)


# ---------- patchify: (B, C, H, W) -> (B, P, C p p) ----------

def _patchify_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(150)
    cases = []
    for B, C, H, W, p in [(2, 3, 8, 12, 4), (3, 1, 6, 10, 2), (1, 2, 9, 6, 3), (4, 3, 10, 15, 5)]:
        x = torch.randn(B, C, H, W, generator=gen)
        cases.append(Case((x, p), f"images (B={B}, C={C}, H={H}, W={W}), patch_size={p} "
                                  f"(so {H // p}x{W // p} = {(H // p) * (W // p)} patches of {C * p * p} values)"))
    return cases


def _grid(x, p):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p1, W/p, p2)


def patchify(fn) -> None:
    """fn(images (B, C, H, W), patch_size) -> (B, P, C p p): patches row by row, each flattened (c, p1, p2)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference

    def screen(got, want, case):
        __tracebackhide__ = True
        x, p = case.args
        B, C, H, W = x.shape
        P, K = (H // p) * (W // p), C * p * p
        if tuple(got.shape) == (B, K, P):
            raise fail(f"patchify's output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       "that is (B, C p p, P), the layout F.unfold returns: swap the last two axes.")
        if tuple(got.shape) == (B, H // p, W // p, K):
            raise fail(f"patchify's output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       "the patches are still on a (H/p, W/p) grid: flatten the two grid axes into one axis of P patches.")
        return got

    check_function(
        "patchify", fn, _patchify_reference, _patchify_cases(), grad=True, rtol=0.0, atol=0.0,
        arg_names=("images",), screen=screen,
        hint=("view (H, W) as (H/p, p, W/p, p), move the two patch-grid axes in front of the channel axis, "
              "and flatten: patches in row-major order, each one's values as (channel, row, column)."),
        diagnoses=[
            Diagnosis(lambda x, p: _grid(x, p).permute(0, 2, 4, 3, 5, 1).reshape(x.shape[0], -1, x.shape[1] * p * p),
                      "each patch is flattened as (p1, p2, c), channels last (einops' '(p1 p2 c)' order). Here the "
                      "channel comes first, (c, p1, p2), the order a Conv2d weight (D, C, p, p) flattens in."),
            Diagnosis(lambda x, p: _grid(x, p).permute(0, 4, 2, 1, 3, 5).reshape(x.shape[0], -1, x.shape[1] * p * p),
                      "your patches come column by column; number them row by row (left to right, then down), "
                      "so the grid axis of the rows goes first."),
            Diagnosis(lambda x, p: _grid(x, p).permute(0, 2, 4, 1, 5, 3).reshape(x.shape[0], -1, x.shape[1] * p * p),
                      "inside a patch you flattened column-major (p2 before p1): keep the pixel rows first."),
            Diagnosis(lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p),
                      "a reshape alone cuts the image into strips of consecutive pixels, not p x p squares: view (H, W) "
                      "as (H/p, p, W/p, p) and permute before you flatten."),
        ],
    )


# ---------- patch_embed_from_conv: nn.Conv2d(C, D, p, stride=p) -> an equal Linear(C p p, D) ----------

def _conv_cases() -> list[tuple[nn.Conv2d, torch.Tensor, str]]:
    gen = torch.Generator().manual_seed(151)
    cases = []
    for C, D, p, B, H, W in [(3, 5, 4, 2, 8, 12), (1, 8, 2, 3, 6, 10), (2, 7, 3, 2, 9, 6)]:
        conv = nn.Conv2d(C, D, kernel_size=p, stride=p)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            conv.bias.copy_(torch.randn(D, generator=gen))
        x = torch.randn(B, C, H, W, generator=gen)
        cases.append((conv, x, f"nn.Conv2d({C}, {D}, kernel_size={p}, stride={p}), images (B={B}, C={C}, H={H}, W={W})"))
    return cases


def _as_linear(weight, bias):
    return lambda patches: patches @ weight.T + (0 if bias is None else bias)


def patch_embed_from_conv(fn) -> None:
    """fn(conv: nn.Conv2d(C, D, p, stride=p)) -> a Linear(C p p, D) with linear(patchify(x)) == conv(x) as tokens."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    name = "patch_embed_from_conv"
    require_callable(fn, name)
    hint = ("a Linear stores its weight as (out, in) = (D, C p p): flatten each filter (D, C, p, p) in the same "
            "(c, p1, p2) order patchify uses, and keep the convolution's bias.")
    cases = _conv_cases()
    for conv, x, label in cases:
        original = {k: v.clone() for k, v in conv.state_dict().items()}
        case = Case((conv,), label)
        linear = call_learner(fn, name, case, hint)
        if not isinstance(linear, nn.Module):
            raise fail(f"{name} returned {describe(linear)}; it should return a Linear layer (an nn.Module)", case,
                       "build nn.Linear(C * p * p, D) (or tinycore's Linear with bias=True) and copy the weights in.")
        if any(not torch.equal(v, conv.state_dict()[k]) for k, v in original.items()):
            raise fail(f"{name} changed the convolution's own weights", case, "read conv.weight; do not modify it.")
        D, C, p, _ = conv.weight.shape
        weight = getattr(linear, "weight", None)
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (D, C * p * p):
            got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else describe(weight)
            raise fail(f"the Linear's weight has shape {got}, expected (D, C p p) = {(D, C * p * p)}", case,
                       "a Linear maps C p p inputs to D outputs and stores its weight as (out, in).")
        patches = _patchify_reference(x, p)  # (B, P, C p p)
        want = conv(x).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, P, D)
        with torch.no_grad():
            got = call_learner(linear, name, Case((patches,), label + ": the Linear applied to the patches"), hint)
            diagnoses = [
                Diagnosis(lambda c: _as_linear(c.weight.permute(0, 2, 3, 1).reshape(D, -1), c.bias)(patches),
                          "you flattened the filters as (p1, p2, c), channels last; patchify flattens each patch as "
                          "(c, p1, p2), the order of the weight's own axes, so a plain reshape is what matches."),
                Diagnosis(lambda c: _as_linear(c.weight.transpose(2, 3).reshape(D, -1), c.bias)(patches),
                          "you swapped the filters' rows and columns (p2, p1): keep the weight's axis order."),
                Diagnosis(lambda c: _as_linear(c.weight.reshape(D, -1), None)(patches),
                          "the weights are right but the bias is missing: copy conv.bias into the Linear's bias."),
            ]
            compare(name, got, want.detach(), Case((conv,), label), rtol=1e-5, atol=1e-5, hint=hint,
                    diagnoses=diagnoses, what="output on the patches")
    passed(name, len(cases))


# ---------- prepend_cls: z_0 = [cls; tokens] + pos ----------

def _prepend_reference(tokens, cls_token, pos_embedding):
    rows = []
    for b in range(tokens.shape[0]):
        sequence = torch.cat([cls_token[None, :], tokens[b]], dim=0)  # (1, D) and (P, D) -> (P + 1, D)
        rows.append(sequence + pos_embedding)  # position 0 is [CLS]
    return torch.stack(rows)  # B x (P + 1, D) -> (B, P + 1, D)


def _prepend_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(152)
    cases = []
    for B, P, D in [(2, 4, 6), (3, 16, 5), (1, 9, 8), (4, 6, 3)]:
        args = (torch.randn(B, P, D, generator=gen), torch.randn(D, generator=gen), torch.randn(P + 1, D, generator=gen))
        cases.append(Case(args, f"tokens (B={B}, P={P}, D={D}), cls_token ({D},), pos_embedding ({P + 1}, {D})"))
    return cases


def prepend_cls(fn) -> None:
    """fn(tokens (B, P, D), cls_token (D,), pos_embedding (P + 1, D)) -> (B, P + 1, D), [CLS] first, positions added."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference

    def screen(got, want, case):
        __tracebackhide__ = True
        tokens = case.args[0]
        B, P, D = tokens.shape
        if tuple(got.shape) == (B, P, D):
            raise fail(f"prepend_cls's output has shape {tuple(got.shape)}, expected {tuple(want.shape)}", case,
                       "the output has one more token than the input: the [CLS] token goes in front of the P patches.")
        return got

    check_function(
        "prepend_cls", fn, _prepend_reference, _prepend_cases(), grad=True, rtol=1e-6, atol=1e-6,
        arg_names=("tokens", "cls_token", "pos_embedding"), screen=screen,
        hint=("expand the (D,) [CLS] vector to (B, 1, D), concatenate it in front of the tokens along the token "
              "axis, then add the (P + 1, D) position table, which broadcasts over the batch."),
        diagnoses=[
            Diagnosis(lambda t, c, pos: torch.cat([t, c.expand(t.shape[0], 1, -1)], dim=1) + pos,
                      "your [CLS] token is at the end; ViT puts it first, at position 0, where the classifier reads it."),
            Diagnosis(lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t + pos[:-1]], dim=1),
                      "the positions are off by one: [CLS] takes row 0 of the table and patch i takes row i + 1."),
            Diagnosis(lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t], dim=1),
                      "you forgot to add the position embeddings."),
            Diagnosis(lambda t, c, pos: torch.cat([c.expand(t.shape[0], 1, -1), t + pos[1:]], dim=1),
                      "the patches got their positions but the [CLS] token did not: add row 0 of the table to it."),
        ],
    )

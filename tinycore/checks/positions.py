"""Checkers for chapter 7 (positional information): the sinusoidal table, relative offsets, ALiBi.

The references are plain loops over the equations (PyTorch has no op for any of the three), so
they share no code with `tinycore.positions`.
"""

from __future__ import annotations

import math

import torch

from .core import Case, Diagnosis, check_function, fail

__all__ = ["sinusoidal_table", "relative_offsets", "alibi"]


def _run(name, fn, reference, cases, dtype, *, hint, diagnoses=(), rtol=1e-4, atol=1e-4) -> None:
    """check_function for functions of sizes (ints), with a dtype message that fits them."""
    __tracebackhide__ = True
    dtype_hint = ("build it with integer arange (torch.long is the default for integers)" if dtype == torch.long else
                  "torch.float32 is the default: avoid float64 (Python floats in torch.tensor(..., dtype=torch.float64), numpy)")

    def screen(got, want, case):
        __tracebackhide__ = True
        if tuple(got.shape) == tuple(want.shape) and got.dtype != dtype:
            raise fail(f"{name} returned a {got.dtype} tensor; it should be {dtype}", case, dtype_hint + ".")
        return got

    check_function(name, fn, reference, cases, rtol=rtol, atol=atol, hint=hint, diagnoses=diagnoses, screen=screen)


# ---------- sinusoidal_table ----------

def _sin_table(num_positions, d_model, *, layout="interleaved", first="sin", exponent=lambda i, j, d: 2 * i / d,
               start=0, all_sin=False):
    """A loop over the equation, with switches that reproduce known mistakes."""
    table = torch.zeros(num_positions, d_model, dtype=torch.float64)
    half = d_model // 2
    for t in range(num_positions):
        pos = t + start
        for i in range(half):
            for j in (2 * i, 2 * i + 1):
                angle = pos / 10000 ** exponent(i, j, d_model)
                use_sin = all_sin or ((j == 2 * i) == (first == "sin"))
                col = j if layout == "interleaved" else (i if j == 2 * i else half + i)
                table[t, col] = math.sin(angle) if use_sin else math.cos(angle)
    return table.float()


def sinusoidal_table(fn) -> None:
    """fn(num_positions, d_model) -> (num_positions, d_model) float32: sin on even, cos on odd features."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    cases = [Case((t, d), f"num_positions={t}, d_model={d}") for t, d in [(12, 6), (50, 16), (7, 64), (130, 10)]]
    _run(
        "sinusoidal_table", fn, _sin_table, cases, torch.float32,
        hint="feature 2i holds sin(t * w_i) and feature 2i + 1 holds cos(t * w_i), with w_i = 10000^(-2i/d_model): "
             "the pair (2i, 2i+1) shares one frequency.",
        diagnoses=[
            Diagnosis(lambda t, d: _sin_table(t, d, first="cos"), "sine and cosine are swapped: sin goes to the even features 0, 2, 4, ..."),
            Diagnosis(lambda t, d: _sin_table(t, d, exponent=lambda i, j, d: i / d),
                      "the exponent should be 2i/d_model with i the pair index (i = 0 .. d_model/2 - 1); you used i/d_model, "
                      "so the wavelengths stop growing halfway."),
            Diagnosis(lambda t, d: _sin_table(t, d, exponent=lambda i, j, d: j / d),
                      "you used the feature index j in the exponent (j/d_model); both features of a pair (2i, 2i + 1) share "
                      "the frequency 10000^(-2i/d_model)."),
            Diagnosis(lambda t, d: _sin_table(t, d, all_sin=True), "every feature is a sine; the odd features are cosines."),
            Diagnosis(lambda t, d: _sin_table(t, d, layout="halves"),
                      "you put all the sines first and all the cosines after (tensor2tensor's layout); here they interleave: "
                      "sin, cos, sin, cos, ..."),
            Diagnosis(lambda t, d: _sin_table(t, d, start=1), "positions start at 0, so row 0 is (0, 1, 0, 1, ...)."),
        ],
    )


# ---------- relative_offsets ----------

def _offsets(t_q, t_k):
    out = torch.zeros(t_q, t_k, dtype=torch.long)
    for i in range(t_q):
        query_position = t_k - t_q + i  # the queries are the last t_q of the t_k positions
        for j in range(t_k):
            out[i, j] = j - query_position
    return out


def relative_offsets(fn) -> None:
    """fn(t_q, t_k) -> (t_q, t_k) long: key position minus query position, queries the last t_q positions."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    cases = [Case((q, k), f"t_q={q}, t_k={k}") for q, k in [(3, 8), (5, 5), (1, 6), (7, 12)]]
    _run(
        "relative_offsets", fn, _offsets, cases, torch.long,
        hint="entry (i, j) is the key's position j minus the query's position; query i sits at position t_k - t_q + i.",
        diagnoses=[
            Diagnosis(lambda q, k: -_offsets(q, k), "the sign is flipped: it is key minus query (j - i), negative for keys in the past."),
            Diagnosis(lambda q, k: torch.arange(k)[None, :] - torch.arange(q)[:, None],
                      "you placed the queries at positions 0 .. t_q - 1; they are the *last* t_q positions, so shift them by t_k - t_q."),
            Diagnosis(lambda q, k: _offsets(q, k).abs(), "you took the absolute value; the sign says whether the key is before or after the query."),
            Diagnosis(lambda q, k: torch.arange(k)[None, :] - torch.arange(q)[:, None] + (k - q),
                      "you shifted in the wrong direction: query i sits at position t_k - t_q + i, later than i, not earlier."),
        ],
    )


# ---------- alibi ----------

def _alibi(num_heads, t, slope=lambda h, n: 2.0 ** (-8.0 * (h + 1) / n), sign=-1.0, distance=abs):
    out = torch.zeros(num_heads, t, t, dtype=torch.float64)
    for h in range(num_heads):
        m = slope(h, num_heads)
        for i in range(t):
            for j in range(t):
                out[h, i, j] = sign * m * distance(i - j)
    return out.float()


def alibi(fn) -> None:
    """fn(num_heads, t) -> (H, T, T) float32: -m_h |i - j| with m_h = 2^(-8(h+1)/H), H a power of two."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: a learner sees their code, not the reference
    cases = [Case((h, t), f"num_heads={h}, t={t}") for h, t in [(4, 7), (8, 5), (2, 9), (16, 3)]]
    _run(
        "alibi", fn, _alibi, cases, torch.float32, rtol=1e-5, atol=1e-6,
        hint="bias[h, i, j] = -m_h * |i - j|, with head h (counting from 0) getting the slope m_h = 2^(-8 (h + 1) / num_heads).",
        diagnoses=[
            Diagnosis(lambda h, t: _alibi(h, t, sign=1.0), "the bias has the wrong sign: ALiBi is a penalty, 0 on the diagonal and more negative with distance."),
            Diagnosis(lambda h, t: _alibi(h, t, slope=lambda k, n: 2.0 ** -(k + 1)),
                      "your slopes are 2^-(h+1), which are right only for 8 heads; the exponent is -8 (h + 1) / num_heads."),
            Diagnosis(lambda h, t: _alibi(h, t, slope=lambda k, n: 2.0 ** -k),
                      "your slopes are 2^-h; the exponent is -8 (h + 1) / num_heads, so the first head gets 2^(-8/num_heads)."),
            Diagnosis(lambda h, t: _alibi(h, t, slope=lambda k, n: 1.0), "every head has slope 1; each head needs its own slope m_h."),
            Diagnosis(lambda h, t: _alibi(h, t, slope=lambda k, n: 2.0 ** (-8.0 * k / n)),
                      "your head index starts the exponent at 0 (slope 1 for the first head); use h + 1, so the slopes run "
                      "from 2^(-8/num_heads) down to 2^-8."),
            Diagnosis(lambda h, t: _alibi(h, t, slope=lambda k, n: 2.0 ** (-8.0 * (n - k) / n)),
                      "your slopes run in the reverse order: the first head has the steepest slope, 2^(-8/num_heads)."),
            Diagnosis(lambda h, t: _alibi(h, t, distance=lambda d: d),
                      "use the distance |i - j|: a key after the query is as far away as one the same number of steps before it."),
        ],
    )

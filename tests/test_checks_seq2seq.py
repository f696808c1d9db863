"""The chapter 13 checkers (shift_right, cross_attention, greedy_decode, beam_step) accept correct answers and
reject the stub and plausible wrong answers, naming the mistake."""

import math

import torch

from tinycore import checks
from checker_harness import assert_accepts, assert_rejects, contract_tests


# ---------- correct answers, written independently of the checkers' references ----------

def shift_right(targets, bos_id):
    out = torch.empty_like(targets)
    out[:, 0] = bos_id
    out[:, 1:] = targets[:, :-1]
    return out


def cross_attention(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask, *, scale=None, polarity=True,
                    causal=False, out_proj=True, interleave=False, dim=-1):
    """einsum-based multi-head cross-attention; the keyword arguments make the wrong answers below."""
    B, T, D = x.shape
    H, Dh = num_heads, D // num_heads
    shape = (B, -1, Dh, H) if interleave else (B, -1, H, Dh)
    q, k, v = ((t @ w.T).reshape(shape) for t, w in ((x, w_q), (memory, w_k), (memory, w_v)))
    pattern = "bthd,bshd->bhts" if not interleave else "btdh,bsdh->bhts"
    scores = torch.einsum(pattern, q, k) / (scale or math.sqrt(Dh))  # (B, H, T, S)
    scores = scores.masked_fill((memory_mask != polarity)[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(~torch.ones(T, memory.shape[1], dtype=torch.bool).tril(), float("-inf"))
    weights = scores.softmax(dim)
    out = torch.einsum("bhts,bshd->bthd" if not interleave else "bhts,bsdh->btdh", weights, v).reshape(B, T, D)
    return out @ w_o.T if out_proj else out


def greedy_decode(next_logits, src, max_len, bos_id, eos_id, pad_id):
    B = src.shape[0]
    out = torch.full((B, 1), bos_id, dtype=torch.long)
    finished = torch.zeros(B, dtype=torch.bool)
    while out.shape[1] <= max_len and not finished.all():
        token = next_logits(src, out).argmax(-1)
        token[finished] = pad_id
        finished = finished | (token == eos_id)
        out = torch.cat([out, token[:, None]], dim=1)
    return out[:, 1:]


def greedy_only_unfinished_rows(next_logits, src, max_len, bos_id, eos_id, pad_id):
    """Also correct: ask the model only about the rows still running."""
    rows = [[bos_id] for _ in range(src.shape[0])]
    for _ in range(max_len):
        running = [b for b, r in enumerate(rows) if r[-1] != eos_id]
        if not running:
            break
        logits = next_logits(src[running], torch.tensor([rows[b] for b in running]))
        for b, token in zip(running, logits.argmax(-1).tolist()):
            rows[b].append(token)
    width = max(len(r) for r in rows) - 1
    return torch.tensor([r[1:] + [pad_id] * (width - len(r) + 1) for r in rows])


def beam_step(scores, log_probs, beam_width):
    V = log_probs.shape[1]
    total = (scores.unsqueeze(1) + log_probs).reshape(-1)
    new_scores, flat = torch.sort(total, descending=True)
    flat = flat[:beam_width]
    return new_scores[:beam_width], torch.div(flat, V, rounding_mode="floor"), torch.remainder(flat, V)


# ---------- plausible wrong answers: (function, a phrase the message must contain) ----------

def greedy_variant(*, pad=True, keep_eos=True, stop_first=False, never_stop=False, with_bos=False):
    def fn(next_logits, src, max_len, bos_id, eos_id, pad_id):
        B = src.shape[0]
        out = torch.full((B, 1), bos_id, dtype=torch.long)
        finished = torch.zeros(B, dtype=torch.bool)
        for _ in range(max_len):
            token = next_logits(src, out).argmax(-1)
            if pad:
                token[finished] = pad_id
            finished = finished | (token == eos_id)
            out = torch.cat([out, token[:, None]], dim=1)
            if (stop_first and finished.any()) or (not never_stop and finished.all()):
                break
        out = out if with_bos else out[:, 1:]
        return out if keep_eos else out.masked_fill(out == eos_id, pad_id)
    return fn


def beam_variant(kind):
    def fn(scores, log_probs, beam_width):
        K, V = log_probs.shape
        total = scores[:, None] + log_probs
        if kind == "no scores":
            total = log_probs
        elif kind == "multiply":
            total = scores[:, None] * log_probs
        elif kind == "own best":
            total = torch.full_like(total, float("-inf")).scatter(1, total.argmax(1, keepdim=True),
                                                                   total.amax(1, keepdim=True))
        top = total.flatten().topk(beam_width, largest=kind != "worst")
        if kind == "modulo K":
            return top.values, top.indices % K, top.indices // K
        if kind == "tuple of lists":
            return top.values.tolist(), (top.indices // V).tolist(), (top.indices % V).tolist()
        if kind == "two outputs":
            return top.values, top.indices
        if kind == "ascending":
            return top.values.flip(0), (top.indices // V).flip(0), (top.indices % V).flip(0)
        return top.values, top.indices // V, top.indices % V
    return fn


WRONG = {
    "shift_right": [
        (lambda y, bos: torch.cat([y[:, 1:], torch.zeros_like(y[:, :1])], dim=1), "shifted left"),
        (lambda y, bos: torch.roll(y, 1, dims=1), "wrapped round"),
        (lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y[:, 1:]], dim=1), "overwrote the first target"),
        (lambda y, bos: torch.cat([torch.full_like(y[:, :1], bos), y], dim=1), "kept the last target token"),
        (lambda y, bos: torch.cat([torch.full((y.shape[0], 1), float(bos)), y[:, :-1].float()], dim=1), "integers"),
        (lambda y, bos: torch.cat([torch.full_like(y[:, :1], 1), y[:, :-1]], dim=1), "differs"),
        (lambda y, bos: torch.roll(y, 1, dims=0), "differs"),
    ],
    "cross_attention": [
        (lambda *a: cross_attention(*a, scale=math.sqrt(a[0].shape[-1])), "sqrt(D), the model width"),
        (lambda *a: cross_attention(*a, polarity=False), "polarity is inverted"),
        (lambda *a: cross_attention(*a[:-1], torch.ones_like(a[-1])), "does not depend on memory_mask"),
        (lambda *a: cross_attention(*a, causal=True), "not causal"),
        (lambda *a: cross_attention(*a, out_proj=False), "output projection"),
        (lambda *a: cross_attention(*a, interleave=True), "interleaved"),
        (lambda *a: cross_attention(*a, dim=-2), "over the queries"),
        (lambda x, m, wq, wk, wv, wo, h, mask: cross_attention(x, m, wq.T, wk.T, wv.T, wo.T, h, mask), "t @ w.T"),
        (lambda x, m, wq, wk, wv, wo, h, mask: cross_attention(x, x, wq, wk, wv, wo, h, mask), "raised"),
        (lambda *a: cross_attention(*a).detach(), "not connected"),
    ],
    "greedy_decode": [
        (greedy_variant(pad=False), "go on after their EOS"),
        (greedy_variant(keep_eos=False), "EOS tokens are missing"),
        (greedy_variant(stop_first=True), "stopped too early"),
        (greedy_variant(never_stop=True), "stop as soon as all rows have finished"),
        (greedy_variant(with_bos=True), "starts with BOS"),
        (lambda f, src, n, b, e, p: greedy_decode(f, src, n, b, e, p).float(), "dtype"),
    ],
    "beam_step": [
        (beam_variant("no scores"), "running total"),
        (beam_variant("multiply"), "log-probabilities add"),
        (beam_variant("worst"), "worst candidates"),
        (beam_variant("own best"), "its own best token"),
        (beam_variant("modulo K"), "beam i // V"),
        (beam_variant("tuple of lists"), "should return a torch.Tensor"),
        (beam_variant("two outputs"), "three tensors"),
        (beam_variant("ascending"), "differs"),
    ],
}

RIGHT = {
    "shift_right": [shift_right, lambda y, bos: torch.nn.functional.pad(y[:, :-1], (1, 0), value=bos)],
    "cross_attention": cross_attention,
    "greedy_decode": [greedy_decode, greedy_only_unfinished_rows],
    "beam_step": beam_step,
}


def test_cross_attention_accepts_tinycore_with_copied_weights(capsys):
    from tinycore import MultiHeadCrossAttention

    def with_module(x, memory, w_q, w_k, w_v, w_o, num_heads, memory_mask):
        layer = MultiHeadCrossAttention(x.shape[-1], num_heads, dtype=x.dtype)
        params = {"q_proj.weight": w_q, "k_proj.weight": w_k, "v_proj.weight": w_v, "output_proj.weight": w_o}
        return torch.func.functional_call(layer, params, (x, memory, memory_mask[:, None, None, :]))

    assert_accepts("cross_attention", with_module, capsys)


def test_failure_messages_do_not_show_the_reference():
    message = assert_rejects("cross_attention", WRONG["cross_attention"][4][0], "Hint:")
    assert "multi_head_attention_forward" not in message and "def " not in message
    message = assert_rejects("beam_step", WRONG["beam_step"][0][0], "Hint:")
    assert "sorted" not in message and "def " not in message


(
    test_checker_accepts_a_correct_answer,
    test_checker_lets_the_stubs_not_implemented_error_through,
    test_checker_rejects_a_plausible_wrong_answer,
    test_every_checker_has_at_least_three_wrong_answers_tested,
    test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
) = contract_tests(RIGHT, WRONG, covers=checks.seq2seq.__all__)

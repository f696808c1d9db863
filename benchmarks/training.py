"""Training speed of the chapter 11 and 12 language models on Tiny Shakespeare, against nanoGPT's
CPU recipe, and cached vs uncached generation.

    .venv/bin/python benchmarks/training.py [--threads 2] [--quick]

Variants train side by side in one process: one step of each in turn, every step timed, so all see
the same machine state. Evaluation (on fixed validation batches, as in the chapters) is not timed.
Reported for each: tokens/s, model-FLOPs utilisation against this machine's measured fp32 matmul
peak, and the training time at which the validation loss first reaches 2.0, 1.89 (nanoGPT's
CPU recipe ends at 1.886) and 1.65 (the aim within nanoGPT's whole training time), then ratios to the
nanoGPT recipe.

"nanoGPT recipe" is tinycore's GPT-style model (gpt_config) with the hyperparameters of nanoGPT's
README CPU example: 4 layers, 4 heads, width 128, context 64, batch 12, 2,000 steps, learning rate
1e-3 decayed to 1e-4 over the run, 100 warm-up steps, AdamW betas (0.9, 0.99), no dropout.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import torch
from timing import interleaved_medians

import tinycore as tc

VAL_TARGETS = (2.0, 1.89, 1.65)


@dataclass
class Variant:
    name: str
    model: tc.TransformerLM
    config: tc.TrainConfig
    batch_size: int


def variants(vocab_size: int) -> list[Variant]:
    """nanoGPT's recipe, then the recipes chapters 11 and 12 train (tinycore.recipes)."""
    from tinycore.recipes import SHAKESPEARE_GPT, SHAKESPEARE_LLAMA

    tc.set_seed(0)
    nano = tc.TransformerLM.from_config(tc.gpt_config(vocab_size, 64, 128, 4, 4))
    out = [Variant("nanoGPT recipe", nano, tc.TrainConfig(steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                                                           betas=(0.9, 0.99), eval_every=50), 12)]
    # the chapters' recipes train the blocks' matrices with Muon; the "AdamW only" rows train every parameter
    # with AdamW for about twice the steps (at the best learning rates found), to measure what Muon buys
    adamw_only = {"chapter 11 GPT": dict(steps=550), "chapter 12 LLaMA-style": dict(steps=450, lr=3e-3)}
    for name, recipe in (("chapter 11 GPT", SHAKESPEARE_GPT), ("chapter 12 LLaMA-style", SHAKESPEARE_LLAMA)):
        tc.set_seed(0)
        out.append(Variant(name + ", AdamW only", recipe.build(), replace(recipe.train, optimizer="adamw",
                                                                        **adamw_only[name]), recipe.batch_size))
    # the LLaMA recipe given about nanoGPT's whole training time instead of 300 steps (the cosine stretched)
    tc.set_seed(0)
    out.append(Variant("chapter 12 LLaMA-style, 700 steps", SHAKESPEARE_LLAMA.build(),
                       replace(SHAKESPEARE_LLAMA.train, steps=700), SHAKESPEARE_LLAMA.batch_size))
    for name, recipe in (("chapter 11 GPT", SHAKESPEARE_GPT), ("chapter 12 LLaMA-style", SHAKESPEARE_LLAMA)):
        tc.set_seed(0)
        out.append(Variant(name, recipe.build(), recipe.train, recipe.batch_size))
    return out  # the chapter 12 recipe last: its trained model is timed generating below


def matmul_peak_gflops(n: int = 1024) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = tc.best_time_ms(lambda: a @ b, repeats=20) / 1e3
    return 2 * n**3 / seconds / 1e9


def train_side_by_side(runs: list[Variant], train, val) -> dict[str, dict]:
    fixed = torch.Generator().manual_seed(1)  # one validation sample for all: 10 x 24 windows of 64 tokens
    val_batches = [tc.get_batch(val, 24, 64, generator=fixed) for _ in range(10)]
    state = {}
    for run in runs:
        state[run.name] = dict(
            optimizer=tc.make_optimizer(run.model, run.config), gen=torch.Generator().manual_seed(0),
            batches=tc.lm_batches(train, run.batch_size, run.model.config.context_length, "cpu"),
            val=val_batches, seconds=0.0, reached={}, final=None, tokens=0)
    for step in range(max(r.config.steps for r in runs)):
        for run in runs:
            if step >= run.config.steps:
                continue
            s = state[run.name]
            batch = s["batches"](s["gen"])
            start = time.perf_counter()
            tc.train_step(run.model, s["optimizer"], tc.next_token_loss, batch, tc.lr_at(step, run.config),
                          run.config.grad_clip)
            s["seconds"] += time.perf_counter() - start
            s["tokens"] += batch[0].numel()
            if (step + 1) % 25 == 0 or step + 1 == run.config.steps:  # often: the time to a loss is the result
                loss = tc.evaluate(run.model, tc.next_token_loss, s["val"])
                s["final"] = loss
                for target in VAL_TARGETS:
                    if loss <= target and target not in s["reached"]:
                        s["reached"][target] = (step + 1, s["seconds"])
    return state


def generation_ratio(model: tc.TransformerLM, repeats: int) -> dict[str, float]:
    prompt = torch.zeros(1, 1, dtype=torch.long)
    new = model.config.context_length - 1

    def run(use_cache):
        return lambda: tc.generate(model, prompt, new, generator=torch.Generator().manual_seed(0), use_cache=use_cache)

    return interleaved_medians({"cached": run(True), "uncached": run(False)}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20 steps each, short generation: a smoke test "
                        "that the script runs (tests/test_benchmarks.py), not a result")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = tc.load_tiny_shakespeare()
    tokenizer = tc.CharTokenizer(text)
    train, val = tc.train_val_split(tokenizer.encode(text))
    runs = variants(tokenizer.vocab_size)
    if args.quick:
        for run in runs:
            run.config = replace(run.config, steps=20)
    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {args.threads} threads; fp32 matmul peak {peak:.0f} GFLOP/s")
    state = train_side_by_side(runs, train, val)
    base = state["nanoGPT recipe"]
    print(f"\n{'variant':<36}{'params':>9}{'steps':>7}{'tok/s':>9}{'MFU':>6}{'final val':>11}"
          + "".join(f"{'to ' + str(t):>16}" for t in VAL_TARGETS))
    for run in runs:
        s = state[run.name]
        n = tc.count_parameters(run.model)
        flops_per_token = 3 * tc.forward_flops_per_token(run.model.config)  # model FLOPs: forward + backward
        tok_s = s["tokens"] / s["seconds"]
        reached = "".join(f"{s['reached'][t][1]:>9.1f} s @{s['reached'][t][0]:>4}" if t in s["reached"]
                          else f"{'not reached':>16}" for t in VAL_TARGETS)
        print(f"{run.name:<36}{n:>9,}{run.config.steps:>7}{tok_s:>9,.0f}{flops_per_token * tok_s / 1e9 / peak:>6.0%}"
              f"{s['final']:>11.3f}{reached}   whole val split: {tc.split_loss(run.model, val):.3f}")
    print("\nratios to the nanoGPT recipe (training time to reach a validation loss; < 1 is faster):")
    for run in runs[1:]:
        s = state[run.name]
        for t in VAL_TARGETS:
            if t in s["reached"] and t in base["reached"]:
                print(f"  {run.name}, to {t}: {s['reached'][t][1] / base['reached'][t][1]:.2f}")
        if base["final"] is not None:
            print(f"  {run.name}: final val {s['final']:.3f} after {s['seconds']:.0f} s "
                  f"(nanoGPT recipe: {base['final']:.3f} after {base['seconds']:.0f} s)")
    tc.set_seed(0)
    context = 64 if args.quick else 512
    long_context = tc.TransformerLM(tokenizer.vocab_size, context, 256, 4, 4, tc.swiglu_hidden_size(256, 8))
    for name, model in (("chapter 12 LLaMA-style, trained", runs[-1].model),
                        (f"untrained, D=256, context {context}", long_context)):
        medians = generation_ratio(model, repeats=1 if args.quick else 5)
        print(f"\ngeneration of {model.config.context_length - 1} tokens, {name}: cached "
              f"{medians['cached'] * 1e3:.0f} ms, uncached {medians['uncached'] * 1e3:.0f} ms, "
              f"uncached / cached = {medians['uncached'] / medians['cached']:.1f}")


if __name__ == "__main__":
    main()

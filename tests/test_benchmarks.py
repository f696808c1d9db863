"""The benchmark scripts still run against today's tinycore (with tiny settings: a smoke test, not a
measurement; their results live in benchmarks/README.md and are never asserted here)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

RUNS = {
    "norms.py": (["--repeats", "2"], ["nn.LayerNorm (fused)", "tinycore.rms_norm", "x (16, 256, 512)"]),
    "attention.py": (["--repeats", "1"], ["from scratch / fused"]),
    "training.py": (["--quick"], ["nanoGPT recipe", "chapter 11 GPT", "chapter 12 LLaMA-style, 700 steps",
                                  "ratios to the nanoGPT recipe", "uncached / cached"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", RUNS)
def test_benchmark_runs_and_prints_every_row(script):
    args, expected = RUNS[script]
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--threads", "2", *args],
                            capture_output=True, text=True, timeout=300, cwd=BENCHMARKS.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = [line for line in expected if line not in result.stdout]
    assert not missing, f"{script} no longer prints {missing}:\n{result.stdout[-2000:]}"

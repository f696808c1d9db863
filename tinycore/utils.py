"""Small helpers every chapter uses: seeding, device choice and shape contracts.

`check_shape` is the course's habit of asserting a tensor's shape right after it is made
(after d2l's `check_shape`), with an error that names the offending dimension.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Sequence

import torch

__all__ = ["set_seed", "get_device", "check_shape", "count_parameters", "device_report", "best_time_ms"]


def set_seed(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy (if present) and PyTorch on every device; return a CPU generator.

    The returned `torch.Generator` is seeded too: pass it to anything a reader may re-run
    (batches, sampling) so that re-running one cell gives the same result.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # NumPy is optional for tinycore itself
        pass
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    `prefer` forces one (e.g. ``"cpu"`` to compare speeds); asking for a device that is not
    available raises rather than silently falling back.
    """
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("get_device: CUDA was requested but torch.cuda.is_available() is False")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("get_device: MPS was requested but torch.backends.mps.is_available() is False")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_shape(
    tensor: torch.Tensor,
    expected: Sequence[int | None],
    names: str | Sequence[str] | None = None,
    what: str = "tensor",
) -> torch.Tensor:
    """Assert that `tensor` has shape `expected`; return it unchanged so calls can be chained.

    `expected` holds ints, or None for "any size". `names` labels the dimensions, as a
    space-separated string ("B T D") or a sequence, so the error can say which one is wrong.

    >>> check_shape(torch.zeros(2, 3), (2, 3), "B D")  # doctest: +ELLIPSIS
    tensor(...)
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what} should be a torch.Tensor, got {type(tensor).__name__}")
    expected = tuple(expected)
    if isinstance(names, str):
        names = names.split()
    names = tuple(names) if names is not None else tuple(f"dim {i}" for i in range(len(expected)))
    if len(names) != len(expected):
        raise ValueError(f"check_shape: {len(names)} names given for {len(expected)} dimensions")
    pretty = "(" + ", ".join(f"{n}={'any' if e is None else e}" for n, e in zip(names, expected)) + ")"
    actual = tuple(tensor.shape)
    if len(actual) != len(expected):
        raise ValueError(
            f"{what} should have {len(expected)} dimensions {pretty}, "
            f"but has {len(actual)}: shape {actual}"
        )
    for i, (name, want, got) in enumerate(zip(names, expected, actual)):
        if want is not None and want != got:
            raise ValueError(
                f"{what}: dimension {i} ({name}) should be {want} but is {got}; "
                f"expected {pretty}, got {actual}"
            )
    return tensor


def count_parameters(module: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; shared tensors are counted once."""
    seen, total = set(), 0
    for p in module.parameters():
        if (p.requires_grad or not trainable_only) and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def device_report() -> dict[str, str]:
    """What this machine offers PyTorch, as a small dict (printed in chapter 0)."""
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "cuda": "yes: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no",
        "mps": "yes" if torch.backends.mps.is_available() else "no",
        "chosen device": str(get_device()),
    }
    return report


def best_time_ms(fn, repeats: int = 10) -> float:
    """The fastest of `repeats` calls of fn(), in milliseconds, after one warm-up call.

    For the rough comparisons chapters show (in cells nbval ignores); claims go to benchmarks/.
    On CUDA, make fn synchronise (torch.cuda.synchronize()) so that the time is the GPU's.
    """
    fn()  # warm up: first calls pay for allocation and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best

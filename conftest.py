"""Loaded by pytest for every test, notebooks included (tests/conftest.py holds the fixtures)."""

import os

# Kernels that nbval starts inherit this: tinycore.train prints no progress lines into the
# notebooks' outputs, which must match the committed ones.
os.environ.setdefault("TINYCORE_QUIET", "1")


def pytest_report_header(config):
    """Which CPU path PyTorch takes: committed outputs were made on an AVX-512 machine, and a run that
    differs from them on another machine shows here first."""
    import platform

    import torch

    return (f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{platform.machine()}, {torch.get_num_threads()} threads")

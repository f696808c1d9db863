import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a screen


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)

import pytest
import torch
from torch import nn

from tinycore import check_shape, count_parameters, device_report, get_device, self_test, set_seed


def test_set_seed_makes_runs_repeatable():
    gen = set_seed(123)
    a, a_gen = torch.rand(3), torch.rand(3, generator=gen)
    gen = set_seed(123)
    assert torch.equal(a, torch.rand(3))
    assert torch.equal(a_gen, torch.rand(3, generator=gen))


def test_get_device_falls_back_to_cpu_without_accelerators():
    device = get_device()
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert device == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_refuses_a_missing_accelerator():
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        get_device("cuda")


def test_check_shape_passes_through_and_names_the_wrong_dimension():
    x = torch.zeros(4, 16, 32)
    assert check_shape(x, (4, 16, 32), "B T D") is x
    assert check_shape(x, (None, 16, None), "B T D") is x
    with pytest.raises(ValueError, match=r"dimension 2 \(D\) should be 64 but is 32"):
        check_shape(x, (4, 16, 64), "B T D", what="x")
    with pytest.raises(ValueError, match=r"should have 2 dimensions \(B=4, D=32\), but has 3"):
        check_shape(x, (4, 32), "B D")
    with pytest.raises(TypeError, match="should be a torch.Tensor"):
        check_shape([1, 2], (2,))


def test_count_parameters_counts_shared_tensors_once():
    a = nn.Linear(3, 4)
    model = nn.Sequential(a, nn.ReLU(), a)  # the same layer twice
    assert count_parameters(model) == 3 * 4 + 4
    a.bias.requires_grad_(False)
    assert count_parameters(model) == 12
    assert count_parameters(model, trainable_only=False) == 16


def test_device_report_and_self_test():
    report = device_report()
    assert report["torch"] == torch.__version__
    assert report["chosen device"] == str(get_device())
    results = self_test(verbose=False)
    assert len(results) >= 6 and all(results.values()), results


def test_best_time_ms_warms_up_then_keeps_the_fastest_call():
    from tinycore import best_time_ms

    calls = []
    ms = best_time_ms(lambda: calls.append(1), repeats=4)
    assert len(calls) == 5 and 0 <= ms < 100

"""Shared assertions for the exercise-checker tests (tests/test_checks*.py).

Every checker must: accept a correct answer with one success line; let a stub's
NotImplementedError through; reject plausible wrong answers with CheckFailed and a message that
names what is wrong; and keep its own frames (the reference!) out of the learner's traceback.
"""

import pytest

from tinycore import checks
from tinycore.checks import CheckFailed


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: implement it")


def assert_accepts(name, answer, capsys):
    getattr(checks, name)(answer)
    out = capsys.readouterr().out
    assert out.startswith(f"✅ {name}: correct on all") and out.count("\n") == 1, out


def assert_stub_passes_through(name):
    with pytest.raises(NotImplementedError, match="Exercise"):
        getattr(checks, name)(stub)


def assert_rejects(name, wrong, phrase):
    with pytest.raises(CheckFailed) as info:
        getattr(checks, name)(wrong)
    message = str(info.value)
    assert phrase in message, message
    return message


def assert_tracebacks_hide_the_checker(name, wrong):
    """IPython skips frames whose locals set __tracebackhide__: the learner sees only their own code."""
    for answer in (stub, wrong):
        with pytest.raises((NotImplementedError, CheckFailed)) as info:
            getattr(checks, name)(answer)
        tb, checker_frames = info.value.__traceback__, 0
        while tb is not None:
            if "tinycore/checks" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
                checker_frames += 1
                assert tb.tb_frame.f_locals.get("__tracebackhide__") is True, tb.tb_frame.f_code.co_name
            tb = tb.tb_next
        assert checker_frames >= 1

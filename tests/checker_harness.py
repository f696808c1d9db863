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


def assert_messages_hide(wrong, forbidden):
    """No wrong answer's message quotes the reference: none of the `forbidden` strings appears."""
    for name, wrongs in wrong.items():
        for wrong_answer, _ in wrongs:
            with pytest.raises(CheckFailed) as info:
                getattr(checks, name)(wrong_answer)
            message = str(info.value)
            assert not [f for f in forbidden if f in message], message


def assert_non_callables_explained(names):
    for name in names:
        with pytest.raises(CheckFailed, match="pass your function itself"):
            getattr(checks, name)(None)


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


def contract_tests(right, wrong, extra_names=(), covers=None):
    """The tests every checker owes, for a module's RIGHT and WRONG tables:

        RIGHT = {"name": correct_answer or [several correct answers]}
        WRONG = {"name": [(wrong_answer, "phrase its message must contain"), ...]}   # at least three each

    Use as `test_a, test_b, test_c, test_d, test_e = contract_tests(RIGHT, WRONG)` at module level.
    `extra_names` are checkers tested by hand elsewhere that still owe the stub and traceback tests;
    `covers` (a checker module's __all__) must then be exactly the checkers named.
    """
    answers = [(n, a) for n, v in right.items() for a in (v if isinstance(v, (list, tuple)) else [v])]
    wrongs = [(n, w, phrase) for n, ws in wrong.items() for w, phrase in ws]
    every_name = sorted(right) + list(extra_names)

    @pytest.mark.parametrize("name, answer", answers, ids=[f"{n}-{i}" for i, (n, _) in enumerate(answers)])
    def test_checker_accepts_a_correct_answer(name, answer, capsys):
        assert_accepts(name, answer, capsys)

    @pytest.mark.parametrize("name", every_name)
    def test_checker_lets_the_stubs_not_implemented_error_through(name):
        assert_stub_passes_through(name)

    @pytest.mark.parametrize("name, wrong_answer, phrase", wrongs, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(wrongs)])
    def test_checker_rejects_a_plausible_wrong_answer(name, wrong_answer, phrase):
        assert_rejects(name, wrong_answer, phrase)

    def test_every_checker_has_at_least_three_wrong_answers_tested():
        assert set(wrong) == set(right)
        if covers is not None:
            assert set(right) | set(extra_names) == set(covers), "every checker of the module is tested"
        assert all(len(ws) >= 3 for ws in wrong.values())

    @pytest.mark.parametrize("name", every_name)
    def test_tracebacks_hide_the_checker_so_the_reference_is_never_shown(name):
        wrong_answer = wrong[name][0][0] if name in wrong else (lambda *args, **kwargs: 1 / 0)
        assert_tracebacks_hide_the_checker(name, wrong_answer)

    return (
        test_checker_accepts_a_correct_answer,
        test_checker_lets_the_stubs_not_implemented_error_through,
        test_checker_rejects_a_plausible_wrong_answer,
        test_every_checker_has_at_least_three_wrong_answers_tested,
        test_tracebacks_hide_the_checker_so_the_reference_is_never_shown,
    )

"""What a maintainer relies on outside the code: CI and publishing run the same commands as the README."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_command():
    run = (ROOT / ".ci" / "run").read_text()
    assert "exec ./scripts/test" in run
    assert "./scripts/test" in (ROOT / "README.md").read_text()


def test_workflows_run_the_same_commands_and_have_badges():
    readme = (ROOT / "README.md").read_text()
    tests = yaml.safe_load((ROOT / ".github/workflows/tests.yml").read_text())
    book = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    assert [s.get("run") for s in tests["jobs"]["test"]["steps"]][-1] == "bash .ci/run"
    build_steps = [s.get("run") for s in book["jobs"]["build"]["steps"]]
    assert "./scripts/build-book" in build_steps
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in book["jobs"]["deploy"]["steps"])
    for name in ("tests", "book"):
        assert f"actions/workflows/{name}.yml/badge.svg" in readme


def test_requirements_pin_torch_and_jupyter_book_1_and_tinycore_declares_floors_only():
    requirements = (ROOT / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "jupyter-book>=1.0.4.post1,<2" in requirements
    pyproject = (ROOT / "pyproject.toml").read_text()
    dependencies = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "==" not in dependencies and "<" not in dependencies, dependencies

"""The README's set-up commands are the ones CI runs (tests/readme_blocks.py reads them)."""

from pathlib import Path

from tests.readme_blocks import blocks

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_marks_both_set_up_commands():
    found = blocks(README.read_text())
    assert found["setup-serve"].strip().endswith("pip install . && ninep serve")
    test_cmd = found["setup-test"]
    assert "pip install '.[test]'" in test_cmd and "-e" not in test_cmd.split()  # what users get, not editable
    assert test_cmd.strip().endswith("python -m pytest")


def test_ci_runs_the_marked_blocks():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "tests/readme_serve.sh" in ci and "readme_blocks.py setup-test" in ci
    assert "tests/smoke_installed.sh" in ci

"""The README's first lines are the contract with users and CI: keep them true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_the_two_commands():
    install_and_apply, run_tests = readme_commands()[:2]
    assert "recolor apply examples/" in install_and_apply
    assert "pytest" in run_tests


def test_ci_runs_the_readmes_test_command_verbatim():
    run_tests = readme_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert run_tests in ci_lines


def test_examples_hold_photos_for_the_first_command():
    photos = [p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    assert len(photos) >= 3

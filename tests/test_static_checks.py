"""The repository's own checks, run as tests so CI enforces them: no dead code, lint clean,
strict types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=540, check=False)


def test_vulture_finds_no_dead_code_in_the_library_or_the_workers() -> None:
    result = run("vulture")  # paths, confidence and framework-called names: pyproject.toml
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", "--no-cache", "sequencer", "workers", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 35 s of CPU from a cold cache (.mypy_cache, gitignored)
def test_mypy_strict_passes_on_the_library_the_workers_and_the_tests() -> None:
    result = run("mypy")  # strict, over sequencer/, workers/ and tests/: pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found"), result.stdout

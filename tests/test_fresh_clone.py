"""The suite needs nothing beside the repository (issue 6, "what it must show" 5).

The corpus tests, the `classify` command tests and `bench/classify_rate.py` once read the
corpus from the team's shared folder beside the checkout. Here they run in a copy of the
repository's tracked files, alone in a temporary folder (nothing beside it), importing the
copy's code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a path out to the team's shared folder looks like (built here, so that this file
#: does not hold it literally).
NEEDLES = (".." + "/shared", "shared" + "/corpus")


def tracked_files() -> list[str]:
    result = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                            check=True, timeout=60)
    return [name for name in result.stdout.decode().split("\0") if name]


def test_no_tracked_file_reaches_outside_the_repository_for_shared_data() -> None:
    for name in tracked_files():
        path = ROOT / name
        if path.suffix not in (".py", ".sh", ".toml", ".cfg", ".yaml", ".yml", "") \
                or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not any(needle in text for needle in NEEDLES), name


@pytest.mark.slow
@pytest.mark.timeout(600)  # a pytest run and a benchmark pass in the copy
def test_the_corpus_tests_and_benchmark_pass_in_a_copy_with_nothing_beside_it(
        tmp_path: Path) -> None:
    copy = tmp_path / "alone" / "sequencer"
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    assert sorted(p.name for p in copy.parent.parent.iterdir()) == ["alone"]
    assert sorted(p.name for p in copy.parent.iterdir()) == ["sequencer"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQUENCER_")}
    env["PYTHONPATH"] = str(copy)  # the copy's code, before the editable install of ROOT

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=540, check=False)

    where = run("-c", "import sequencer, tests; print(sequencer.__file__); print(tests.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(line).is_relative_to(copy) for line in where.stdout.split()), where.stdout
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                str(tmp_path / "base"), "tests/core/classify/test_corpus.py",
                "tests/test_corpus_manifest.py", "tests/core/classify/test_automail.py",
                "tests/core/classify/test_verdict.py",
                "tests/cli/test_commands.py::test_classify_prints_each_verdict_and_json_objects",
                "tests/cli/test_commands.py::test_classify_reads_a_message_as_the_watcher_does")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "skipped" not in tests.stdout, tests.stdout[-2000:]
    bench = run("bench/classify_rate.py", "--runs", "1")
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.startswith("tune: 435 messages, kinds right"), bench.stdout
    assert "holdout: " in bench.stdout and "msg/s" in bench.stdout, bench.stdout

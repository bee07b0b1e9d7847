"""A database that fails under a command is exit 1 with a message, never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.workdir import make_workdir, prospects_csv


@pytest.mark.parametrize("command", [["status"], ["stop", "ann@example.com"]])
def test_a_database_error_under_a_command_is_exit_1_with_the_reason(
        tmp_path: Path, command: list[str]) -> None:
    wd = make_workdir(tmp_path, smtp_port=2525)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    with sqlite3.connect(wd.path / "sequencer.db") as db:  # the schema is current, a table gone
        db.execute("DROP TABLE sends")
    result = wd.cli(*command)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: database error: no such table: sends"), result.stderr

"""`sequencer status` through the real CLI: filters, --summary, --json's fields, streaming."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.bigdb import Shape, build
from sequencer.usecases.importing import control, run_enroll
from tests.fixtures.smtp import SmtpServer
from tests.harness import Engine
from tests.workdir import Workdir, make_workdir, prospects_csv

FIELDS = ["email", "sequence", "mailbox", "state", "steps_sent", "last_step", "next_due",
          "flag", "unknown_steps", "unverified"]


def _engine_with_history(tmp_path: Path, smtp_port: int) -> tuple[Workdir, Engine]:
    wd = make_workdir(tmp_path, smtp_port)
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: only, template: reminder, wait: 1d}\n")
    engine = Engine(wd)
    run_enroll(engine.app, "three", prospects_csv(wd, ["ann@example.com", "bo@example.com",
                                                       "cy@example.com"]), progress=False)
    run_enroll(engine.app, "other", prospects_csv(wd, ["dee@example.com", "eve@example.com"],
                                                  "o.csv"), progress=False)
    engine.step()  # thank-you to ann, bo and cy
    control(engine.app, "stop", "bo@example.com", None)
    return wd, engine


def test_status_filters_by_state_sequence_and_limit(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd, engine = _engine_with_history(tmp_path, smtp_server.port)
    try:
        every = json.loads(wd.cli("status", "--json", check=True).stdout)
        assert [list(r) for r in every] == [FIELDS] * 5
        assert [(r["sequence"], r["email"]) for r in every] == [
            ("other", "dee@example.com"), ("other", "eve@example.com"),
            ("three", "ann@example.com"), ("three", "bo@example.com"),
            ("three", "cy@example.com")]
        stopped = json.loads(wd.cli("status", "--json", "--state", "stopped",
                                    check=True).stdout)
        assert [(r["email"], r["steps_sent"], r["last_step"]) for r in stopped] == [
            ("bo@example.com", 1, "thank-you")]
        other = json.loads(wd.cli("status", "--json", "--sequence", "other", "--limit", "1",
                                  check=True).stdout)
        assert [r["email"] for r in other] == ["dee@example.com"]
        text = wd.cli("status", "--sequence", "three", "--state", "active", check=True).stdout
        lines = text.splitlines()
        assert lines[0].split() == ["email", "sequence", "state", "sent", "last", "step",
                                    "next", "due", "(UTC)", "flag"]
        assert [line.split()[0] for line in lines[1:]] == ["ann@example.com", "cy@example.com"]
        assert wd.cli("status", "--json", "--state", "replied", check=True).stdout == "[]\n"
        bad = wd.cli("status", "--state", "sleeping")
        assert bad.returncode == 2 and "sleeping" in bad.stderr
    finally:
        engine.close()


def test_status_summary_counts_per_sequence_state_and_step(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd, engine = _engine_with_history(tmp_path, smtp_server.port)
    try:
        counts = {c["sequence"]: c for c in json.loads(
            wd.cli("status", "--summary", "--json", check=True).stdout)}
        three, other = counts["three"], counts["other"]
        assert three["total"] == 3 and other["total"] == 2
        assert {k: v for k, v in three["states"].items() if v} == {"active": 2, "stopped": 1}
        assert [(s["step"], s["name"], s["sent"], s["waiting"]) for s in three["steps"]] == [
            (1, "thank-you", 3, 0), (2, "reminder", 0, 2)]
        assert [(s["step"], s["name"], s["sent"], s["waiting"]) for s in other["steps"]] == [
            (1, "only", 0, 2)]
        text = wd.cli("status", "--summary", check=True).stdout
        header, *rows = text.split("\n\n")[0].splitlines()
        assert header.split()[:3] == ["sequence", "total", "active"]
        assert [r.split()[:3] for r in rows] == [["other", "2", "2"], ["three", "3", "2"]]
        assert "thank-you" in text.split("\n\n")[1]
        mixed = wd.cli("status", "--summary", "--limit", "3")
        assert mixed.returncode == 2 and "--summary" in mixed.stderr
    finally:
        engine.close()


def test_status_stops_quietly_when_its_reader_goes_away(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    build(url, Shape(enrollments=20_000, due=10), datetime.now(UTC), quiet=True)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin",
           "SEQUENCER_DATABASE_URL": url}
    proc = subprocess.Popen([sys.executable, "-m", "sequencer", "status"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    header = proc.stdout.readline()
    proc.stdout.close()  # like `status | head -1`
    code = proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert header.startswith(b"email ")
    assert code == 1 and "Traceback" not in stderr, stderr


def test_status_mailboxes_takes_no_enrollment_filter_and_lists_every_mailbox(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, mailbox_extra="    daily_limit: 7\n")
    for extra in (["--email", "ann@example.com"], ["--summary"], ["--state", "active"],
                  ["--sequence", "three"], ["--limit", "1"]):
        mixed = wd.cli("status", "--mailboxes", *extra)
        assert mixed.returncode == 2 and "--mailboxes shows every mailbox" in mixed.stderr
        assert mixed.stdout == ""
    (sales,) = json.loads(wd.cli("status", "--mailboxes", "--json", check=True).stdout)
    assert list(sales) == ["mailbox", "state", "healthy", "detail", "last_answer_at",
                           "last_error", "last_error_at", "cursor_lag", "sends_today",
                           "daily_limit", "reported_at", "reported_state", "since"]
    assert (sales["mailbox"], sales["state"], sales["healthy"]) == ("sales", "not_watched", True)
    assert (sales["sends_today"], sales["daily_limit"], sales["cursor_lag"]) == (0, 7, None)
    text = wd.cli("status", "--mailboxes", check=True).stdout.splitlines()
    assert text[1].split() == ["sales", "not_watched", "-", "unknown", "0/7"]

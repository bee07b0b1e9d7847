"""Kill and restart `sequencer run` (RELIABILITY R1, R2, R7, R8 on SQLite).

A crash hook (``SEQUENCER_TEST_CRASH_AT``, read only in tests) SIGKILLs the process at an
exact point of the send path; SIGTERM and plain SIGKILL mid-batch are real signals.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until

ONE_STEP = """\
name: three
mailbox: sales
steps:
  - {name: hello, template: thank_you, wait: 0s}
"""


def database(wd: Workdir) -> str:
    return f"sqlite:///{wd.path / 'sequencer.db'}"


def test_r1_killed_after_claim_before_smtp_is_reclaimed_after_the_lease_and_sent_once(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE_STEP, lease="2s")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    crashed = wd.start("run", extra_env={"SEQUENCER_TEST_CRASH_AT": "after_claim"})
    assert crashed.wait(timeout=20) == -signal.SIGKILL
    assert smtp_server.deliveries == []
    assert wd.status()[0]["state"] == "active"
    proc = wd.start("run", log="run2.log")
    try:
        smtp_server.wait_for(1, timeout=20)
        wait_until(lambda: wd.status()[0]["state"] == "completed", 10, "completed")
    finally:
        assert terminate(proc) == 0
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, database(wd)) == {"sent": 1}


def test_r2_killed_after_the_250_before_the_commit_is_unknown_flagged_and_never_resent(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, lease="1s")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    crashed = wd.start("run", extra_env={"SEQUENCER_TEST_CRASH_AT": "after_250"})
    assert crashed.wait(timeout=20) == -signal.SIGKILL
    assert len(smtp_server.deliveries) == 1
    proc = wd.start("run", log="run2.log")
    try:
        wait_until(lambda: wd.status()[0]["state"] == "paused", 40, "flagged as unknown")
        time.sleep(2.5)  # longer than the lease and both waits: still nothing resent
    finally:
        assert terminate(proc) == 0
    status = wd.status()[0]
    assert status["unknown_steps"] == 1 and "unknown" in status["flag"]
    assert status["steps_sent"] == 0 and status["next_due"] is None
    assert "unknown" in wd.log("run2.log")
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, database(wd)) == {"unknown": 1}
    # A human checked the Sent folder: `resume` counts the step as delivered, moves on.
    resumed = wd.cli("resume", "ann@example.com", check=True)
    assert "resumed" in resumed.stdout
    proc = wd.start("run", log="run3.log")
    try:
        smtp_server.wait_for(2, timeout=15)
    finally:
        assert terminate(proc) == 0
    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert subjects[0] == "Thanks, Ann" and subjects[1].startswith("Re: Thanks")
    assert subjects.count("Thanks, Ann") == 1


def test_r7_sigterm_with_sends_in_flight_finishes_and_records_them_then_exits_0(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp_server.stall_after_data(1.5)
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE_STEP, lease="30s")
    emails = [f"p{i}@example.com" for i in range(4)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    proc = wd.start("run", "--threads", "4")
    smtp_server.wait_for(1, timeout=20)  # at least one is now waiting for its 250
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, wd.log()
    delivered = {d.rcpt_tos[0] for d in smtp_server.deliveries}
    states = {s["email"]: s["state"] for s in wd.status()}
    assert delivered, "sends were in flight"
    for email in delivered:
        assert states[email] == "completed", f"{email} was delivered but not recorded"
    counts = check_invariants(smtp_server.deliveries, database(wd))
    assert counts.get("unknown", 0) == 0
    # What was not sent is sent by the next run, once.
    proc = wd.start("run", log="run2.log")
    try:
        wait_until(lambda: all(s["state"] == "completed" for s in wd.status()), 30, "all sent")
    finally:
        assert terminate(proc) == 0
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)


def test_sigkill_mid_batch_and_restart_never_sends_twice_and_sends_everything(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, lease="2s", wait2="1s", wait3="1s")
    emails = [f"p{i}@example.com" for i in range(30)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    for round_no in range(3):
        proc = wd.start("run", log=f"run{round_no}.log")
        target = min(90, len(smtp_server.deliveries) + 10)
        # Ten more deliveries, or nothing left to send: a kill inside a burst can leave
        # every 250 of it uncommitted (outcomes are committed in batches), all `unknown`.
        wait_until(lambda: len(smtp_server.deliveries) >= target  # noqa: B023
                   or all(s["state"] != "active" for s in wd.status()), 40, "progress")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    proc = wd.start("run", log="final.log")
    try:
        wait_until(lambda: all(s["state"] in ("completed", "paused") for s in wd.status()),
                   60, "every enrollment done")
    finally:
        assert terminate(proc) == 0
    counts = check_invariants(smtp_server.deliveries, database(wd))
    per_rcpt: dict[str, int] = {}
    for d in smtp_server.deliveries:
        per_rcpt[d.rcpt_tos[0]] = per_rcpt.get(d.rcpt_tos[0], 0) + 1
    for s in wd.status():
        got = per_rcpt.get(s["email"], 0)
        if s["state"] == "completed":
            assert s["steps_sent"] == 3 and got == 3
        else:  # killed between DATA and the commit: flagged, never resent
            assert s["state"] == "paused" and s["unknown_steps"] == 1
            assert got in (s["steps_sent"], s["steps_sent"] + 1)
    assert counts["sent"] + counts.get("unknown", 0) <= 90


def test_r8_two_processes_of_four_threads_on_sqlite_claim_each_step_once(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE_STEP, lease="30s")
    emails = [f"p{i}@example.com" for i in range(200)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    procs = [wd.start("run", "--threads", "4", log=f"run{i}.log") for i in range(2)]
    try:
        smtp_server.wait_for(200, timeout=60)
        wait_until(lambda: all(s["state"] == "completed" for s in wd.status()), 30, "done")
    finally:
        codes = [terminate(p) for p in procs]
    assert codes == [0, 0]
    logs = wd.log("run0.log") + wd.log("run1.log")
    assert "locked" not in logs, logs
    assert "Traceback" not in logs, logs
    assert len(smtp_server.deliveries) == 200
    assert check_invariants(smtp_server.deliveries, database(wd)) == {"sent": 200}
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)


def test_r8_four_processes_of_two_threads_on_postgresql_claim_each_step_once(
        tmp_path: Path, smtp_server: SmtpServer, pg_database_url: str) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE_STEP, lease="30s",
                      database=pg_database_url)
    emails = [f"p{i}@example.com" for i in range(200)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    procs = [wd.start("run", "--threads", "2", log=f"run{i}.log") for i in range(4)]
    try:
        smtp_server.wait_for(200, timeout=60)
        wait_until(lambda: all(s["state"] == "completed" for s in wd.status()), 30, "done")
    finally:
        codes = [terminate(p) for p in procs]
    assert codes == [0, 0, 0, 0]
    logs = "".join(wd.log(f"run{i}.log") for i in range(4))
    assert "Traceback" not in logs, logs
    assert len(smtp_server.deliveries) == 200
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 200}

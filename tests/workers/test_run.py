"""`sequencer run` end to end against a real aiosmtpd server (issue 2, point 1)."""

from __future__ import annotations

import email.utils
import time
from collections import defaultdict
from pathlib import Path

from tests.fixtures.smtp import Delivery, SmtpServer
from tests.workdir import make_workdir, prospects_csv, terminate, wait_until

EMAILS = ["ann@example.com", "bo@example.com", "cy@example.com"]


def test_three_step_sequence_runs_end_to_end_once_each_in_order(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="2s", wait3="2s")
    wd.cli("validate", check=True)
    enrolled = wd.cli("enroll", "three", str(prospects_csv(wd, EMAILS)), check=True)
    assert "enrolled 3, rejected 0" in enrolled.stdout
    enrolled_at = time.time()
    proc = wd.start("run")
    try:
        deliveries = smtp_server.wait_for(3, timeout=10)
        first_wave = time.time()
        assert first_wave - enrolled_at < 8, "the thank-you goes out within seconds"
        deliveries = smtp_server.wait_for(9, timeout=30)
        wait_until(
            lambda: all(s["state"] == "completed" for s in wd.status()),
            15,
            "every enrollment completed",
        )
    finally:
        assert terminate(proc) == 0, wd.log()
    deliveries = smtp_server.deliveries
    assert len(deliveries) == 9, wd.log()
    by_rcpt: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        assert len(d.rcpt_tos) == 1
        by_rcpt[d.rcpt_tos[0]].append(d)
    assert sorted(by_rcpt) == sorted(EMAILS)
    for rcpt, got in by_rcpt.items():
        subjects = [d.message["Subject"] for d in got]
        name = rcpt.split("@")[0].title()
        assert subjects[0] == f"Thanks, {name}"
        assert subjects[1] == f"Re: Thanks, {name}", "threaded step replies in the thread"
        assert subjects[2].startswith("New for Co")
        first_id = got[0].message["Message-ID"]
        assert got[1].message["In-Reply-To"] == first_id
        assert first_id in got[1].message["References"]
        assert got[2].message["In-Reply-To"] is None
        assert len({d.message["Message-ID"] for d in got}) == 3
        dates = [email.utils.parsedate_to_datetime(d.message["Date"]) for d in got]
        assert (dates[1] - dates[0]).total_seconds() >= 2 - 0.01, "no earlier than its wait"
        assert (dates[2] - dates[1]).total_seconds() >= 2 - 0.01
        assert got[0].mail_from == "dana@example.com"
    status = wd.status()
    assert {s["email"] for s in status} == set(EMAILS)
    for s in status:
        assert s["state"] == "completed"
        assert s["steps_sent"] == 3
        assert s["last_step"] == "new-information"
        assert s["next_due"] is None
        assert s["sequence"] == "three"

    # A second run after completion sends nothing.
    proc = wd.start("run", log="run2.log")
    time.sleep(2.0)  # the absence of sends can only be shown by waiting a while
    assert terminate(proc) == 0
    assert len(smtp_server.deliveries) == 9


def test_run_log_names_each_event_with_mailbox_sequence_step_and_message_id(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1s", wait3="1s")
    wd.cli("enroll", "three", str(prospects_csv(wd, EMAILS[:1])), check=True)
    proc = wd.start("run", "--log-format", "json", "--log-file", "events.jsonl")
    try:
        smtp_server.wait_for(3, timeout=20)
        wait_until(lambda: '"completed"' in wd.log("events.jsonl"), 10, "completed event")
    finally:
        assert terminate(proc) == 0
    import json

    events = [
        json.loads(line)
        for line in wd.log("events.jsonl").splitlines()
        if line.startswith("{") and '"event"' in line
    ]
    sent = [e for e in events if e["event"] == "sent"]
    assert [e["step"] for e in sent] == ["thank-you", "reminder", "new-information"]
    ids = {d.message["Message-ID"] for d in smtp_server.deliveries}
    for e in sent:
        assert e["mailbox"] == "sales" and e["sequence"] == "three"
        assert e["email"] == EMAILS[0]
        assert e["message_id"] in ids
    assert events[-1]["event"] == "completed" or any(e["event"] == "completed" for e in events)

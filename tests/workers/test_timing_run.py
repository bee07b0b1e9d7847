"""Pacing, windows, holidays, jitter and `plan` through the real `sequencer run` process,
against the aiosmtpd ledger, with a stepped clock (issue 8, "what it must show" 3 and 6)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import SmtpServer
from tests.timetravel import Driver, SteppedClock
from tests.workdir import Workdir, make_workdir, terminate, wait_for_watcher, wait_until
from tests.workers.test_watch import reply_to

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # Wednesday; Thanksgiving is tomorrow

PACED = """\
name: {name}
mailbox: sales
timezone: UTC
min_gap: 1d
max_per_week: 2
steps:
{steps}"""


def paced(name: str, templates: list[str]) -> str:
    steps = "".join(
        f"  - name: {name}-{i}\n    template: {t}\n    wait: {'0s' if i == 0 else '6h'}\n"
        for i, t in enumerate(templates))
    return PACED.format(name=name, steps=steps)


def start(tmp_path: Path, port: int, sequence: str,
          dovecot: DovecotServer | None = None) -> tuple[Workdir, SteppedClock]:
    # max_active_sequences: one prospect is paced across two sequences at once
    imap = "" if dovecot is None else (
        f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: "
        f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n")
    wd = make_workdir(tmp_path, port, sequence=sequence, lease="1h",
                      extra="max_active_sequences: 2\n"
                      + ("" if dovecot is None else "imap_idle: 30s\nimap_timeout: 5s\n"),
                      mailbox_extra=imap)
    if dovecot is not None:
        wd.env["IMAP_PW"] = dovecot.password
    clock = SteppedClock(tmp_path / "clock.txt", T0)
    wd.env.update(clock.env)
    return wd, clock


def test_pacing_through_run_keeps_min_gap_and_max_per_week_across_two_sequences(
    tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer
) -> None:
    # Each sequence alone would mail every 6 hours; both say min_gap 1d, max_per_week 2.
    # The mailbox is watched over IMAP (Dovecot), as a user's would be.
    wd, clock = start(tmp_path, smtp_server.port,
                      paced("intro", ["thank_you", "reminder", "new_info"]), dovecot)
    wd.write("sequences/webinar.yaml", paced("webinar", ["thank_you", "reminder"]))
    wd.write("both.csv", "email,first_name\nann@example.com,Ann\n")
    wd.write("one.csv",
             "email,first_name\nann@example.com,Ann\nbo@example.com,Bo\ncy@example.com,Cy\n")
    wd.cli("enroll", "intro", "one.csv", check=True)
    wd.cli("enroll", "webinar", "both.csv", check=True)
    proc = wd.start("run")
    driver = Driver(wd, clock, smtp_server)
    try:
        wait_for_watcher(wd)
        driver.settle()  # the first emails, at T0
        # Cy answers the first email through Dovecot: that halts cy, and only cy.
        (cy_first,) = [d for d in smtp_server.deliveries if d.rcpt_tos == ["cy@example.com"]]
        dovecot.append(reply_to(cy_first))
        wait_until(lambda: {s["email"]: s["state"] for s in wd.status()
                            if s["sequence"] == "intro"}["cy@example.com"] == "replied",
                   20, "cy's reply")
        driver.run(until=T0 + timedelta(weeks=5))
    finally:
        driver.close()
        assert terminate(proc) == 0, wd.log()
    by_rcpt: dict[str, list[datetime]] = defaultdict(list)
    for arrival in driver.arrivals:
        by_rcpt[arrival.rcpt].append(arrival.at)
    assert len(by_rcpt["ann@example.com"]) == 5, wd.log()  # nothing starved or lost
    assert len(by_rcpt["bo@example.com"]) == 3
    assert len(by_rcpt["cy@example.com"]) == 1, "nothing after cy's reply"
    for rcpt in ("ann@example.com", "bo@example.com"):
        times = by_rcpt[rcpt]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= timedelta(days=1), (rcpt, times)  # min_gap
        for t in times:  # max_per_week, in every 7 days
            assert sum(1 for u in times if t <= u < t + timedelta(days=7)) <= 2, (rcpt, times)
    # The limits did bind: unpaced, ann's five emails would all be out within 12 hours.
    assert by_rcpt["ann@example.com"][-1] - T0 >= timedelta(days=14)
    assert min(b - a for a, b in zip(by_rcpt["ann@example.com"],
                                     by_rcpt["ann@example.com"][1:], strict=False)) \
        == timedelta(days=1)
    log = wd.log()
    held = [line for line in log.splitlines() if "deferred" in line]
    assert any("held by pacing (min_gap 1d, max_per_week 2; last email" in line
               and "ann@example.com" in line for line in held), log
    assert {(s["sequence"], s["email"]): s["state"] for s in wd.status()} == {
        ("intro", "ann@example.com"): "completed", ("intro", "bo@example.com"): "completed",
        ("intro", "cy@example.com"): "replied", ("webinar", "ann@example.com"): "completed"}


PLANNED = """\
name: launch
mailbox: sales
timezone: America/New_York
send_window: {days: mon-fri, hours: "09:00-17:00", spread: 30m}
holidays: [US]
min_gap: 2d
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
  - name: reminder
    template: reminder
    wait: 1 business day
  - name: new-information
    template: new_info
    wait: 1w
    ahead_of: decision_date
    lead: 2w
"""

ROWS = """\
email,first_name,company,timezone,country,decision_date
ann@example.com,Ann,Acme,America/New_York,,2027-01-15
bo@example.org,Bo,Globex,Australia/Sydney,AU,2026-12-20
cy@example.net,Cy,Initech,Asia/Kolkata,IN,2026-12-03
"""

SUBJECT_STEP = {"Thanks": "thank-you", "Reminder": "reminder", "New": "new-information"}


def test_plan_json_agrees_with_what_run_then_sends_to_the_second(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd, clock = start(tmp_path, smtp_server.port, PLANNED)
    wd.write("prospects.csv", ROWS)
    planned = json.loads(wd.cli("plan", "launch", "--csv", "prospects.csv", "--json",
                                check=True).stdout)
    wd.cli("enroll", "launch", "prospects.csv", check=True)
    stored = [json.loads(wd.cli("plan", "launch", "--email", row["email"], "--json",
                                check=True).stdout)[0] for row in planned]
    assert stored == planned, "an enrolled prospect's stored state plans like the CSV row"
    expected = sorted((step["due_utc"], row["email"], step["step"])
                      for row in planned for step in row["steps"])
    assert len(expected) == 9
    moved = {(row["email"], s["step"]): s["moved_by"] for row in planned for s in row["steps"]}
    ann = {s["step"]: s for s in planned[0]["steps"]}
    assert ann["reminder"]["due_local"].startswith("2026-11-27T15:00")  # not Thanksgiving
    assert ann["new-information"]["due_local"].startswith("2027-01-04T09:")  # 1 Jan: closed
    assert moved[("ann@example.com", "new-information")] == ["ahead_of", "holiday", "weekend"]
    assert "pacing" in moved[("bo@example.org", "reminder")]  # min_gap 2d, then a weekend
    assert "ahead_of" in moved[("cy@example.net", "new-information")]

    proc = wd.start("run")
    driver = Driver(wd, clock, smtp_server)
    try:
        # One second before each planned instant nothing goes out; at it, exactly that step.
        for due_utc, email, step in expected:
            due = datetime.fromisoformat(due_utc)
            if due - timedelta(seconds=1) > clock.now:
                clock.set(due - timedelta(seconds=1))
                driver.settle()
                assert len(driver.arrivals) == expected.index((due_utc, email, step))
            clock.set(max(due, clock.now))
            driver.settle()
        driver.run(until=T0 + timedelta(weeks=8))  # nothing else is left to send
    finally:
        driver.close()
        assert terminate(proc) == 0, wd.log()
    sent = sorted((a.at.isoformat().replace("+00:00", "Z"), a.rcpt,
                   SUBJECT_STEP[a.subject.split()[0].rstrip(",")]) for a in driver.arrivals)
    assert sent == expected, wd.log()
    for row in planned:  # and each local time is inside the window, on a working day
        for step in row["steps"]:
            local = datetime.fromisoformat(step["due_local"])
            assert local.weekday() < 5 and 9 <= local.hour < 17, step

"""Enroll, resume, the out-of-office delay and `plan` schedule with the one computation:
`ahead_of` reads its own column, resume honours it and the out-of-office date, and
`plan --capacity` says what the daily limit lets out."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from sequencer.store.schema import enrollments
from sequencer.usecases import planning
from sequencer.usecases.importing import control, run_enroll
from tests.fixtures.smtp import SmtpServer
from tests.harness import Engine
from tests.workdir import make_workdir, prospects_csv

AHEAD = """\
name: ahead
mailbox: sales
timezone: Europe/Berlin
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
  - name: new-information
    template: new_info
    wait: 1w
    ahead_of: decision_date
    lead: 1w
"""
BERLIN_MIDNIGHT = timedelta(hours=1)  # 00:00 in Berlin in winter is 23:00 UTC the day before


def test_ahead_of_reads_the_column_it_names_and_resume_honours_it_and_the_out_of_office(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=AHEAD)
    wd.write("p.csv", "email,first_name,decision_date,follow_up_by\n"
                      "ann@example.com,Ann,2026-12-21,2027-06-01\n")
    engine = Engine(wd)
    try:
        assert run_enroll(engine.app, "ahead", wd.path / "p.csv", progress=False).enrolled == 1
        engine.step()  # thank-you, now
        with engine.app.store.read() as conn:
            due = conn.scalar(select(enrollments.c.next_due))
        lead_before = datetime(2026, 12, 14, tzinfo=UTC) - BERLIN_MIDNIGHT
        assert due == lead_before, "a week before decision_date, not follow_up_by"

        control(engine.app, "pause", "ann@example.com", None)
        engine.clock.advance(hours=2)
        control(engine.app, "resume", "ann@example.com", None)
        with engine.app.store.read() as conn:
            assert conn.scalar(select(enrollments.c.next_due)) == lead_before

        back = datetime(2026, 12, 19, tzinfo=UTC)  # an out-of-office return, recorded
        with engine.app.store.write() as conn:
            conn.execute(update(enrollments).values(not_before=back))
        control(engine.app, "pause", "ann@example.com", None)
        control(engine.app, "resume", "ann@example.com", None)
        with engine.app.store.read() as conn:
            assert conn.scalar(select(enrollments.c.next_due)) == back
    finally:
        engine.close()


def test_enroll_rejects_a_bad_date_in_the_ahead_of_column_and_an_unknown_country(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=AHEAD)
    wd.write("p.csv", "email,first_name,decision_date,country\n"
                      "ann@example.com,Ann,soon,DE\n"
                      "bo@example.com,Bo,,Germany\n"
                      "cy@example.com,Cy,2027-01-10,gb\n")
    result = wd.cli("enroll", "ahead", "p.csv")
    assert result.returncode == 0
    assert "p.csv:2: rejected ann@example.com: `decision_date` is not an ISO date " \
           "(YYYY-MM-DD): `soon`" in result.stderr
    assert "p.csv:3: rejected bo@example.com: `country`: 'Germany' is not an ISO 3166 " \
           "alpha-2 country code" in result.stderr
    assert "enrolled 1, rejected 2 (3 rows)" in result.stdout
    # With `holidays: none`, `country` is only a template variable.
    wd.write("sequences/three.yaml", AHEAD.replace("steps:", "holidays: none\nsteps:"))
    wd.write("q.csv", "email,first_name,country\ndee@example.com,Dee,Germany\n")
    assert "enrolled 1, rejected 0" in wd.cli("enroll", "ahead", "q.csv", check=True).stdout


def test_plan_capacity_says_what_the_daily_limit_lets_out_and_the_engine_agrees(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence="""\
name: one
mailbox: sales
steps:
  - {name: only, template: reminder, wait: 0s}
""", mailbox_extra="    daily_limit: 2\n")
    engine = Engine(wd)
    try:
        csv = prospects_csv(wd, [f"p{i}@example.com" for i in range(5)])
        assert run_enroll(engine.app, "one", csv, progress=False).enrolled == 5
        (sales,) = planning.capacity(engine.app, days=4)
        start = engine.clock.now.date()
        days = {d: (load.due, load.sent) for d, load in sales.days.items()}
        assert days == {start: (5, 2), start + timedelta(days=1): (0, 2),
                        start + timedelta(days=2): (0, 1), start + timedelta(days=3): (0, 0)}
        sent: Counter[date] = Counter()
        for _ in range(4):
            before = len(smtp_server.deliveries)
            engine.step()
            sent[engine.clock.now.date()] += len(smtp_server.deliveries) - before
            engine.clock.now = datetime.combine(engine.clock.now.date() + timedelta(days=1),
                                                datetime.min.time(), UTC)
        assert {d: n for d, n in sent.items()} == {d: s for d, (_, s) in days.items()}
    finally:
        engine.close()


def test_plan_refuses_a_missing_or_double_source_and_prints_local_and_utc(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=AHEAD)
    wd.env["SEQUENCER_TEST_CLOCK"] = "2026-11-23T15:00:00Z@0x0"
    wd.write("p.csv", "email,first_name,timezone\nann@example.com,Ann,Asia/Kolkata\n")
    assert wd.cli("plan", "ahead").returncode == 2
    assert wd.cli("plan", "ahead", "--csv", "p.csv", "--email", "a@b.c").returncode == 2
    assert wd.cli("plan", "ahead", "--capacity").returncode == 2
    missing = wd.cli("plan", "ahead", "--email", "nobody@example.com")
    assert missing.returncode == 1 and "not enrolled in ahead" in missing.stderr
    text = wd.cli("plan", "ahead", "--csv", "p.csv", check=True).stdout
    assert text.splitlines() == [
        "ann@example.com (Asia/Kolkata)",
        "  thank-you            Mon 2026-11-23 20:30:00 IST  2026-11-23 15:00:00Z",
        "  new-information      Mon 2026-11-30 20:30:00 IST  2026-11-30 15:00:00Z",
    ]
    (plan,) = json.loads(wd.cli("plan", "ahead", "--csv", "p.csv", "--json",
                                check=True).stdout)
    assert plan == {"email": "ann@example.com", "steps": [
        {"step": "thank-you", "due_utc": "2026-11-23T15:00:00Z",
         "due_local": "2026-11-23T20:30:00+05:30", "moved_by": []},
        {"step": "new-information", "due_utc": "2026-11-30T15:00:00Z",
         "due_local": "2026-11-30T20:30:00+05:30", "moved_by": []}]}

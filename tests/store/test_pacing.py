"""Pacing is checked inside the claim's transaction: two claims for one prospect in two
sequences can never both pass, with several schedulers on PostgreSQL or SQLite."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import select

from sequencer.store.schema import enrollments, events, sends
from sequencer.usecases.importing import run_enroll
from tests.fixtures.smtp import SmtpServer
from tests.harness import Clock, Engine
from tests.workdir import Workdir, make_workdir, prospects_csv

PACED = """\
name: {name}
mailbox: sales
timezone: UTC
min_gap: 1d
steps:
  - name: hello
    template: thank_you
    wait: 0s
"""


def two_sequences(tmp_path: Path, port: int, database: str | None = None) -> Workdir:
    wd = make_workdir(tmp_path, port, sequence=PACED.format(name="intro"), database=database,
                      lease="1h", extra="max_active_sequences: 2\n")  # one prospect, both
    wd.write("sequences/webinar.yaml", PACED.format(name="webinar"))
    return wd


def enroll_both(engine: Engine, wd: Workdir, emails: list[str]) -> None:
    csv = prospects_csv(wd, emails)
    for name in ("intro", "webinar"):
        assert run_enroll(engine.app, name, csv, progress=False).enrolled == len(emails)


def claimed_per_prospect(engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    with engine.app.store.read() as conn:
        for row in conn.execute(select(enrollments.c.email).join(
                sends, sends.c.enrollment_id == enrollments.c.id)):
            counts[row.email] = counts.get(row.email, 0) + 1
    return counts


def test_a_prospect_locked_by_another_scheduler_is_skipped_then_held_by_pacing(
    tmp_path: Path, smtp_server: SmtpServer, pg_database_url: str
) -> None:
    wd = two_sequences(tmp_path, smtp_server.port, pg_database_url)
    engine = Engine(wd)
    try:
        enroll_both(engine, wd, ["ann@example.com", "bo@example.com"])
        dsn = pg_database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as other:  # another scheduler, mid-claim on ann
            other.execute("SELECT id FROM prospects WHERE email = 'ann@example.com' FOR UPDATE")
            claims = engine.claim()
            assert claimed_per_prospect(engine) == {"bo@example.com": 1}
            assert len(claims) == 1
            other.rollback()
        claims = engine.claim()
        assert claimed_per_prospect(engine) == {"bo@example.com": 1, "ann@example.com": 1}
        with engine.app.store.read() as conn:
            held = conn.execute(select(events.c.email, events.c.sequence, events.c.detail)
                                .where(events.c.event == "deferred")).all()
            dues = dict(conn.execute(select(enrollments.c.sequence, enrollments.c.next_due)
                                     .where(enrollments.c.email == "ann@example.com")).all())
        assert sorted((h.email, h.sequence) for h in held) == [
            ("ann@example.com", "webinar"), ("bo@example.com", "webinar")]
        assert all(h.detail.startswith("held by pacing (min_gap 1d; last email 2026-11-23 "
                                       "15:00:00Z); due at 2026-11-24 15:00:00Z") for h in held)
        assert dues["webinar"] == engine.clock.now + timedelta(days=1)
    finally:
        engine.close()


def test_eight_schedulers_on_sqlite_claim_one_email_per_paced_prospect(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    wd = two_sequences(tmp_path, smtp_server.port)
    clock = Clock()
    engines = [Engine(wd, clock) for _ in range(8)]
    try:
        emails = [f"p{i}@example.com" for i in range(40)]
        enroll_both(engines[0], wd, emails)
        start = threading.Barrier(len(engines))
        errors: list[BaseException] = []

        def tick(engine: Engine) -> None:
            try:
                start.wait()
                for _ in range(3):
                    engine.scheduler.tick()
            except BaseException as err:  # reported below, with the thread's traceback
                errors.append(err)

        threads = [threading.Thread(target=tick, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert claimed_per_prospect(engines[0]) == {email: 1 for email in emails}
    finally:
        for engine in engines:
            engine.close()

"""Mailbox health in the database (store.health, store.status.mailbox_rows): what a
watcher reported, judged at read time against an injected clock, so a watcher that is gone
never reads as healthy; and sends today against daily_limit on the mailbox's own day,
counted against a real aiosmtpd ledger."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from sequencer.core.machine import Event
from sequencer.eventlog import EventRecord
from sequencer.mail.watching import Health, HealthState
from sequencer.store import health, outcomes
from sequencer.store.db import Store
from sequencer.store.limits import MailboxLimits
from sequencer.store.status import MailboxRow, Watched, mailbox_rows
from sequencer.usecases.sending import mailbox_limits
from tests.fixtures.smtp import SmtpServer
from tests.harness import Clock, Engine
from tests.store.test_limits import ONE, enroll
from tests.workdir import make_workdir

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
IMAP = Watched(MailboxLimits(daily=50), watched=True, silent_after_s=60.0)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"sqlite:///{tmp_path / 'health.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_database_url"))
    made = Store(url)
    made.create()
    yield made
    made.dispose()


def watching(answer_ago_s: float = 1.0) -> Health:
    return Health(HealthState.WATCHING, T0 - timedelta(minutes=5),
                  last_answer_at=T0 - timedelta(seconds=answer_ago_s), cursor_lag=0)


def one(store: Store, box: Watched, now: datetime, name: str = "sales") -> MailboxRow:
    (row,) = mailbox_rows(store, {name: box}, now)
    return row


def test_a_fresh_report_of_watching_is_healthy_with_its_answer_time_and_lag(
        store: Store) -> None:
    health.report(store, "sales", watching(), T0)
    row = one(store, IMAP, T0 + timedelta(seconds=5))
    assert (row.state, row.healthy, row.detail) == ("watching", True, None)
    assert row.last_answer_at == T0 - timedelta(seconds=1)
    assert row.cursor_lag == 0
    assert row.reported_at == T0
    assert (row.sends_today, row.daily_limit) == (0, 50)
    assert row.as_dict()["last_answer_at"] == "2026-11-23T14:59:59Z"


def test_a_report_replaces_the_last_one(store: Store) -> None:
    health.report(store, "sales", watching(), T0)
    failing = Health(HealthState.FAILING, T0, last_answer_at=T0 - timedelta(seconds=1),
                     last_error="ConnectionError: connection lost during IDLE",
                     last_error_at=T0)
    health.report(store, "sales", failing, T0 + timedelta(seconds=1))
    row = one(store, IMAP, T0 + timedelta(seconds=2))
    assert (row.state, row.healthy) == ("failing", False)
    assert row.detail == row.last_error == "ConnectionError: connection lost during IDLE"


def test_a_report_older_than_a_minute_is_stale_whatever_it_says(store: Store) -> None:
    health.report(store, "sales", watching(), T0)
    box = Watched(MailboxLimits(daily=50), watched=True, silent_after_s=300.0)
    assert one(store, box, T0 + timedelta(seconds=health.STALE_AFTER_S)).state == "watching"
    row = one(store, box, T0 + timedelta(minutes=2, seconds=5))
    assert (row.state, row.healthy) == ("stale", False)
    assert row.detail == "no report for 2m: watcher not running?"
    assert row.reported_state == "watching"


def test_watching_without_an_answer_for_longer_than_idle_plus_timeout_is_silent(
        store: Store) -> None:
    health.report(store, "sales", watching(answer_ago_s=61), T0)
    row = one(store, IMAP, T0)
    assert (row.state, row.healthy) == ("silent", False)
    assert row.detail == "no answer from the server for 61s"
    maildir = Watched(MailboxLimits(daily=50), watched=True, silent_after_s=None)
    assert one(store, maildir, T0).state == "watching"  # no server to answer


def test_no_report_and_a_send_only_mailbox(store: Store) -> None:
    row = one(store, IMAP, T0)
    assert (row.state, row.healthy) == ("no_report", False)
    assert row.detail == "no report yet: watcher not running?"
    assert row.cursor_lag is None and row.last_answer_at is None
    send_only = one(store, Watched(MailboxLimits(daily=50), watched=False), T0)
    assert (send_only.state, send_only.healthy) == ("not_watched", True)


def test_a_pause_for_credentials_is_auth_needed_and_any_other_pause_is_paused(
        store: Store) -> None:
    health.report(store, "sales", watching(), T0)
    health.report(store, "other", watching(), T0)
    why = "the OAuth2 grant of mailbox sales was revoked: run `sequencer auth sales` again"
    outcomes.pause_mailbox(store, "sales", why, EventRecord(Event.PAUSED, T0, mailbox="sales"),
                           kind="auth")
    outcomes.pause_mailbox(store, "other", "TLS required", EventRecord(
        Event.PAUSED, T0, mailbox="other"))
    rows = {r.name: r for r in mailbox_rows(store, {"sales": IMAP, "other": IMAP}, T0)}
    assert (rows["sales"].state, rows["sales"].detail) == ("auth_needed", why)
    assert (rows["other"].state, rows["other"].detail) == ("paused", "TLS required")
    assert not rows["sales"].healthy and not rows["other"].healthy
    assert rows["sales"].last_answer_at is not None  # the watcher's own report still shows
    outcomes.unpause_mailboxes(store)
    assert one(store, IMAP, T0).state == "watching"


def test_sends_today_count_the_mailbox_s_own_day_as_the_limit_does(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    # 10:30 UTC is 23:30 in Auckland (NZDT, +13): the mailbox's day ends in 30 minutes.
    clock = Clock(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE,
                      mailbox_extra="    daily_limit: 3\n    timezone: Pacific/Auckland\n")
    engine = Engine(wd, clock)
    try:
        enroll(engine, wd, 5)
        engine.step()
        box = Watched(mailbox_limits(engine.app)["sales"], watched=False)
        before = one(engine.app.store, box, clock.now)
        clock.advance(minutes=31)  # 00:01 in Auckland, the same UTC day as before
        engine.step()
        after = one(engine.app.store, box, clock.now)
    finally:
        engine.close()
    assert len(smtp_server.deliveries) == 5
    assert (before.sends_today, before.daily_limit) == (3, 3)
    assert (after.sends_today, after.daily_limit) == (2, 3)


def test_a_report_that_fails_is_logged_and_never_raises(
        tmp_path: Path, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    from workers.watch import Reporter

    wd = make_workdir(tmp_path, smtp_server.port)
    engine = Engine(wd, Clock(T0))
    try:
        with engine.app.store.write() as conn:
            conn.execute(text("DROP TABLE mailbox_health"))

        class Still:
            def health(self) -> Health:
                return watching()

        reporter = Reporter(engine.app, "sales", Still())  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="workers.watch"):
            asyncio.run(reporter.report())
            asyncio.run(reporter.report())  # within the retry delay: not tried again
    finally:
        engine.close()
    warned = [r for r in caplog.records if "cannot record the watcher's health" in r.message]
    assert len(warned) == 1 and warned[0].getMessage().startswith("mailbox sales:")

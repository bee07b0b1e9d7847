"""Per-mailbox limits in the database (store.limits), driven in-process with an injected
clock against a real aiosmtpd ledger: the mailbox's own day, any 60 minutes, and what does
not count as a send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from sequencer.config import load_settings
from sequencer.store import limits, outcomes
from sequencer.store.schema import sends
from sequencer.store.status import status
from sequencer.usecases.importing import run_enroll
from sequencer.usecases.sending import Senders
from tests.fixtures.smtp import SmtpServer
from tests.harness import Clock, Engine
from tests.workdir import Workdir, make_workdir, prospects_csv

ONE = """\
name: one
mailbox: sales
steps:
  - {name: only, template: reminder, wait: 0s}
"""


def enroll(engine: Engine, wd: Workdir, n: int, name: str = "p.csv") -> None:
    csv = prospects_csv(wd, [f"{name[0]}{i}@example.com" for i in range(n)], name)
    assert run_enroll(engine.app, "one", csv, progress=False).enrolled == n


def test_the_daily_limit_counts_the_mailbox_s_own_day_not_the_utc_day(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    # 10:30 UTC is 23:30 in Auckland (NZDT, +13): the mailbox's day ends in 30 minutes.
    clock = Clock(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE,
                      mailbox_extra="    daily_limit: 2\n    timezone: Pacific/Auckland\n")
    engine = Engine(wd, clock)
    try:
        enroll(engine, wd, 6)
        engine.step()
        engine.step()
        assert len(smtp_server.deliveries) == 2
        clock.advance(minutes=29)  # 23:59 in Auckland: still the same day
        engine.step()
        assert len(smtp_server.deliveries) == 2
        clock.advance(minutes=2)  # 00:01 in Auckland, the same UTC day as before
        engine.step()
        engine.step()
        assert len(smtp_server.deliveries) == 4
    finally:
        engine.close()


def test_a_utc_mailbox_keeps_counting_until_utc_midnight(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    clock = Clock(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE,
                      mailbox_extra="    daily_limit: 2\n")
    engine = Engine(wd, clock)
    try:
        enroll(engine, wd, 4)
        engine.step()
        clock.advance(minutes=31)
        engine.step()
        assert len(smtp_server.deliveries) == 2
        clock.now = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)
        engine.step()
        assert len(smtp_server.deliveries) == 4
    finally:
        engine.close()


def test_the_hourly_limit_holds_over_any_60_minutes(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    clock = Clock(datetime(2026, 11, 23, 15, 40, tzinfo=UTC))
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE,
                      mailbox_extra="    hourly_limit: 2\n")
    engine = Engine(wd, clock)
    try:
        enroll(engine, wd, 5)
        engine.step()  # 15:40: two go out
        assert len(smtp_server.deliveries) == 2
        clock.advance(minutes=30)  # 16:10: a new clock hour, but not 60 minutes since
        engine.step()
        assert len(smtp_server.deliveries) == 2
        clock.advance(minutes=30, seconds=1)  # 16:40:01
        engine.step()
        assert len(smtp_server.deliveries) == 4
    finally:
        engine.close()


def test_deferrals_and_a_paused_mailbox_do_not_count_as_sends(tmp_path: Path,
                                                              smtp_server: SmtpServer) -> None:
    # Monday 07:00 UTC, before the send window: the steps are deferred, not sent.
    clock = Clock(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    smtp_server.require_auth("dana@example.com", "right")
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE.replace(
        "steps:", 'send_window: {days: mon-fri, hours: "09:00-17:00"}\nsteps:'),
        mailbox_extra="    daily_limit: 2\n")
    wd.write("sequencer.yaml", wd.config.read_text().replace(
        "tls: none,", "tls: none, username: dana@example.com, password_env: PW,"))
    wd.env["PW"] = "wrong"
    engine = Engine(wd, clock)
    try:
        enroll(engine, wd, 4)
        assert engine.step() == 0  # held back: deferred
        clock.now = datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC)
        engine.step()  # 535: the mailbox pauses, its claims are given back
        assert smtp_server.deliveries == []
        with engine.app.store.read() as conn:
            assert conn.execute(select(sends)).all() == []
        # The password is fixed and the mailbox resumed: the day's whole limit is left.
        smtp_server.require_auth("dana@example.com", "wrong")
        assert outcomes.unpause_mailboxes(engine.app.store) == ["sales"]
        engine.senders = Senders(engine.app)
        engine.step()
        engine.step()
        assert len(smtp_server.deliveries) == 2
    finally:
        engine.close()


def test_min_spacing_and_its_jitter_are_read_from_the_settings(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525, mailbox_extra="    min_spacing: 2m\n")
    box = load_settings(wd.config, env=wd.env).mailboxes["sales"]
    assert (box.min_spacing_s, box.spacing_jitter_s) == (120.0, 30.0)
    wd.write("sequencer.yaml", wd.config.read_text() + "    spacing_jitter: 5s\n")
    box = load_settings(wd.config, env=wd.env).mailboxes["sales"]
    assert (box.min_spacing_s, box.spacing_jitter_s) == (120.0, 5.0)
    assert timedelta(seconds=box.min_spacing_s) == timedelta(minutes=2)


def test_a_bad_mailbox_timezone_or_a_lone_jitter_is_a_file_line_error(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525, mailbox_extra="    timezone: Mars/Olympus\n")
    result = wd.cli("validate")
    assert result.returncode == 1
    assert "sequencer.yaml:10: timezone: unknown time zone 'Mars/Olympus'" in result.stderr
    wd = make_workdir(tmp_path / "b", 2525, mailbox_extra="    spacing_jitter: 5s\n")
    result = wd.cli("validate")
    assert result.returncode == 1
    assert "spacing_jitter: only used with min_spacing" in result.stderr


def test_a_stale_claim_whose_turn_another_sender_took_sends_nothing_and_is_given_back(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE,
                      mailbox_extra="    min_spacing: 1m\n")  # claim_lease is 3s here
    engine = Engine(wd)
    try:
        enroll(engine, wd, 3)
        (first,) = engine.claim()  # one claim at a time from a spaced mailbox
        assert engine.claim() == []
        engine.clock.advance(seconds=4)  # the claim's lease and turn ran out unused ...
        other = "f" * 32
        with engine.app.store.write() as conn:  # ... and another sender's gate took it
            now = engine.clock()
            won = conn.execute(limits.TAKE_TURN, {"m": "sales", "tok": other, "now": now,
                                                  "until": now + timedelta(minutes=1)})
            assert won.rowcount == 1
        engine.deliver([first])
        assert smtp_server.deliveries == []
        assert "DATA" not in {verb for _, verb in smtp_server.commands}
        with engine.app.store.read() as conn:
            assert conn.execute(select(sends)).all() == []  # given back: nothing counts
        assert [r.state for r in status(engine.app.store)] == ["active"] * 3
        limits.end_turn(engine.app.store, "sales", other, engine.clock())
        assert engine.step() == 1
        assert len(smtp_server.deliveries) == 1
        engine.clock.advance(seconds=59)
        assert engine.claim() == []  # a minute after that send at the earliest
        engine.clock.advance(seconds=17)  # past 1m plus at most 15s of jitter
        assert engine.step() == 1
        assert len(smtp_server.deliveries) == 2
    finally:
        engine.close()


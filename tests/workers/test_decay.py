"""The decay rule (issue 6 item 3, RELIABILITY T3): a soft bounce never suppresses by itself;
N proven soft bounces of distinct sends within M days do; one outside the window does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from sequencer.mail.watching import Inbound
from sequencer.store.schema import enrollments, suppressions
from sequencer.usecases import receiving
from sequencer.usecases.importing import run_enroll
from tests.harness import Engine
from tests.notices import dsn
from tests.workdir import make_workdir, prospects_csv

FOUR_STEPS = """\
name: four
mailbox: sales
timezone: UTC
steps:
  - {name: a, template: thank_you, wait: 0s}
  - {name: b, template: reminder, wait: 1d}
  - {name: c, template: reminder, wait: 1d}
  - {name: d, template: reminder, wait: 20d}
"""


def _engine(tmp_path: Path, smtp_server: Any, extra: str = "") -> Engine:
    wd = make_workdir(tmp_path, smtp_server.port, extra=extra)
    wd.write("sequences/four.yaml", FOUR_STEPS)
    engine = Engine(wd)
    run_enroll(engine.app, "four", prospects_csv(wd, ["Ann@X.com"]), progress=False)
    return engine


def _soft_bounce_of_the_last_send(engine: Engine, smtp_server: Any, uid: int) -> str | None:
    delivery = smtp_server.deliveries[-1]
    raw = dsn("ann@x.com", status="4.4.7", original_id=delivery.message["Message-ID"])
    record = receiving.handle(engine.app, "sales", Inbound(uid=uid, raw=raw))
    return record.detail if record else None


def _suppressed(engine: Engine) -> bool:
    with engine.app.store.read() as conn:
        return conn.scalar(select(suppressions.c.email_key)) is not None


def _state(engine: Engine) -> str:
    with engine.app.store.read() as conn:
        return str(conn.scalar(select(enrollments.c.state)))


def test_two_soft_bounces_do_not_suppress_and_the_third_within_14_days_does(
        tmp_path: Path, smtp_server: Any) -> None:
    engine = _engine(tmp_path, smtp_server)
    try:
        for n in (1, 2):
            assert engine.step() == 1
            detail = _soft_bounce_of_the_last_send(engine, smtp_server, n)
            assert detail is not None and f"{n} of 3 soft bounces within 14 days" in detail
            assert not _suppressed(engine) and _state(engine) == "active"
            engine.clock.advance(days=1)
        again = dsn("ann@x.com", status="4.4.7",
                    original_id=smtp_server.deliveries[-1].message["Message-ID"])
        receiving.handle(engine.app, "sales", Inbound(uid=9, raw=again))  # same send again
        assert not _suppressed(engine), "a second notice about one send counts once"
        assert engine.step() == 1
        detail = _soft_bounce_of_the_last_send(engine, smtp_server, 3)
        assert detail is not None and "address suppressed: 3 of 3" in detail
        assert _suppressed(engine) and _state(engine) == "bounced"
        engine.clock.advance(days=30)
        assert engine.step() == 0 and len(smtp_server.deliveries) == 3
    finally:
        engine.close()


def test_a_soft_bounce_outside_the_window_has_decayed(tmp_path: Path, smtp_server: Any) -> None:
    engine = _engine(tmp_path, smtp_server, extra="soft_bounces: {suppress_after: 2, within: 5d}\n")
    try:
        assert engine.step() == 1
        assert "1 of 2 soft bounces within 5 days" in (
            _soft_bounce_of_the_last_send(engine, smtp_server, 1) or "")
        engine.clock.advance(days=1)
        assert engine.step() == 1
        engine.clock.advance(days=5, hours=1)  # the first bounce is now 6 days old
        assert "1 of 2" in (_soft_bounce_of_the_last_send(engine, smtp_server, 2) or "")
        assert not _suppressed(engine) and _state(engine) == "active"
    finally:
        engine.close()


def test_an_unproven_soft_bounce_counts_for_nothing(tmp_path: Path, smtp_server: Any) -> None:
    engine = _engine(tmp_path, smtp_server, extra="soft_bounces: {suppress_after: 1}\n")
    try:
        assert engine.step() == 1
        record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=dsn(
            "ann@x.com", status="4.4.7")))
        assert record is not None and record.event.value == "unverified"
        assert not _suppressed(engine) and _state(engine) == "active"
    finally:
        engine.close()


def test_a_hard_bounce_with_our_message_id_suppresses_at_once(tmp_path: Path,
                                                              smtp_server: Any) -> None:
    engine = _engine(tmp_path, smtp_server)
    try:
        assert engine.step() == 1
        raw = dsn("ANN@x.com", original_id=smtp_server.deliveries[-1].message["Message-ID"])
        record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=raw))
        assert record is not None and record.event.value == "bounced"
        assert _suppressed(engine) and _state(engine) == "bounced"
    finally:
        engine.close()

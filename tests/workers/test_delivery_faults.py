"""SMTP faults and races through the engine, with an injected clock (RELIABILITY S1, S2, S3,
S5, R6, R9, R10). Each test checks the three invariants against the aiosmtpd ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ColumnElement, Row, Table, select

from sequencer.store.claims import Job
from sequencer.store.schema import enrollments, events, sends, suppressions
from sequencer.usecases.importing import run_enroll
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.redis import RedisServer
from tests.fixtures.smtp import SmtpServer
from tests.harness import Engine
from tests.invariants import check_invariants
from tests.workdir import make_workdir, prospects_csv


@pytest.fixture
def engine(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Engine]:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="2d", wait3="1w")
    eng = Engine(wd)
    yield eng
    eng.close()


def enroll(engine: Engine, emails: list[str]) -> None:
    summary = run_enroll(engine.app, "three", prospects_csv(engine.wd, emails), progress=False)
    assert summary.enrolled == len(emails)


def rows(engine: Engine, table: Table, *where: ColumnElement[bool]) -> Sequence[Row[Any]]:
    with engine.app.store.read() as conn:
        return conn.execute(select(table).where(*where)).all()


def invariants(engine: Engine, smtp_server: SmtpServer) -> dict[str, int]:
    return check_invariants(smtp_server.deliveries, engine.app.settings.database,
                            now=engine.clock.now)


def test_s1_hard_bounce_at_rcpt_bounces_suppresses_and_never_retries(
        engine: Engine, smtp_server: SmtpServer) -> None:
    smtp_server.reject_rcpt("ann@example.com", "550 5.1.1 No such user")
    enroll(engine, ["ann@example.com", "bo@example.com"])
    assert engine.step() == 2
    assert [d.rcpt_tos for d in smtp_server.deliveries] == [["bo@example.com"]]
    (ann,) = rows(engine, enrollments, enrollments.c.email == "ann@example.com")
    assert ann.state == "bounced"
    assert rows(engine, suppressions, suppressions.c.email == "ann@example.com")
    engine.clock.advance(days=30)
    engine.step()
    rcpt_attempts = [c for c in smtp_server.commands if c[1] == "RCPT"]
    assert sum(1 for d in smtp_server.deliveries if d.rcpt_tos == ["ann@example.com"]) == 0
    assert len(rcpt_attempts) == 3  # ann once, bo twice (step 1 and 2): no retry for ann
    invariants(engine, smtp_server)


def test_s2_temporary_failures_retry_with_capped_backoff_then_fail(
        engine: Engine, smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(100, "451 4.3.0 Try again later", stage="RCPT")
    enroll(engine, ["ann@example.com"])
    due_times = []
    for _ in range(5):
        engine.step()
        (row,) = rows(engine, enrollments)
        due_times.append(row.next_due)
        if row.state != "active":
            break
        engine.clock.now = row.next_due
    (row,) = rows(engine, enrollments)
    assert row.state == "failed"
    kinds = [e.event for e in rows(engine, events, events.c.email == "ann@example.com")]
    assert kinds.count("retrying") == 2 and kinds[-1] == "failed"  # attempts: 3
    pairs = zip(due_times, due_times[1:], strict=False)
    gaps = [(b - a).total_seconds() for a, b in pairs if a and b]
    assert gaps and all(g <= 2.0 for g in gaps), "backoff is capped at max_backoff (2s)"
    assert smtp_server.deliveries == []
    (send,) = rows(engine, sends)
    assert send.status == "failed" and send.smtp_code == 451
    invariants(engine, smtp_server)


def test_s2_a_temporary_failure_then_success_delivers_once(
        engine: Engine, smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(1, "452 4.2.2 Mailbox full", stage="DATA")
    enroll(engine, ["ann@example.com"])
    engine.step()
    assert smtp_server.deliveries == []
    (row,) = rows(engine, enrollments)
    engine.clock.now = row.next_due
    engine.step()
    assert len(smtp_server.deliveries) == 1
    assert invariants(engine, smtp_server) == {"sent": 1}


def test_s3_421_before_mail_reconnects_and_sends_once(
        tmp_path: Path, smtp_server: SmtpServer, tcp_proxy: Callable[[str, int], TcpProxy]) -> None:
    proxy = tcp_proxy("127.0.0.1", smtp_server.port)
    wd = make_workdir(tmp_path, proxy.port)
    eng = Engine(wd)
    try:
        enroll(eng, ["ann@example.com"])
        proxy.reply_421(1)
        eng.step()
        assert len(smtp_server.deliveries) == 1
        assert invariants(eng, smtp_server) == {"sent": 1}
    finally:
        eng.close()


def test_s5_idle_timeout_on_a_reused_connection_reconnects_cleanly(
        engine: Engine, smtp_server: SmtpServer) -> None:
    import time

    smtp_server.idle_timeout(0.5)
    enroll(engine, ["ann@example.com", "bo@example.com"])
    engine.step()
    assert len(smtp_server.deliveries) == 2
    smtp_server.wait_for_closed(1, timeout=5)  # the server dropped the idle connection
    time.sleep(0.1)
    engine.clock.advance(days=2)
    engine.step()
    assert len(smtp_server.deliveries) == 4
    assert invariants(engine, smtp_server) == {"sent": 4}


def test_r9_a_reply_committed_between_claim_and_send_means_nothing_is_sent(
        engine: Engine, smtp_server: SmtpServer) -> None:
    from sequencer.mail.watching import Inbound
    from sequencer.usecases import receiving

    enroll(engine, ["ann@example.com"])
    engine.step()
    engine.clock.advance(days=3)
    claims = engine.claim()
    assert len(claims) == 1
    first_id = smtp_server.deliveries[0].message["Message-ID"]
    reply = (f"From: Ann <ann@example.com>\r\nTo: dana@example.com\r\nSubject: Re: hi\r\n"
             f"Message-ID: <r1@example.com>\r\nIn-Reply-To: {first_id}\r\n\r\nYes, let's talk."
             ).encode()
    record = receiving.handle(engine.app, "sales", Inbound(uid=1, raw=reply))
    assert record is not None and record.event.value == "replied"
    engine.deliver(claims)
    assert len(smtp_server.deliveries) == 1, "nothing sent after the reply"
    (row,) = rows(engine, enrollments)
    assert row.state == "replied"
    engine.clock.advance(weeks=2)
    assert engine.step() == 0
    invariants(engine, smtp_server)


def test_r6_the_same_step_dispatched_twice_to_racing_threads_is_sent_once(
        engine: Engine, smtp_server: SmtpServer) -> None:
    import asyncio

    from sequencer.store.hotpath import HotPath
    from sequencer.usecases.sending import Senders, commit_outcomes, deliver

    enroll(engine, ["ann@example.com", "bo@example.com", "cy@example.com"])
    claims = engine.claim()
    barrier = threading.Barrier(12)

    def race(claim: Job) -> None:
        senders = Senders(engine.app)
        path = HotPath(engine.app.store)  # each racer is a sender of its own

        async def go() -> None:
            barrier.wait()
            await deliver(engine.app, claim, senders, path)
            commit_outcomes(engine.app, path)
            await senders.close()
            path.close()

        asyncio.run(go())

    threads = [threading.Thread(target=race, args=(c,)) for c in claims * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(smtp_server.deliveries) == 3
    assert invariants(engine, smtp_server) == {"sent": 3}
    assert engine.claim() == []  # a second claim round finds nothing due


def test_r10_clock_jumps_forward_days_then_back_an_hour(
        engine: Engine, smtp_server: SmtpServer) -> None:
    enroll(engine, ["ann@example.com"])
    engine.step()
    engine.clock.advance(days=20)  # past both remaining waits
    engine.step()
    engine.step()  # the third step is due 1w after the second was sent: not yet
    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert len(subjects) == 2 and subjects[1].startswith("Re: ")
    engine.clock.advance(hours=-1)
    assert engine.step() == 0, "nothing is resent when the clock goes back"
    engine.clock.advance(weeks=1, hours=1)
    engine.step()
    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert len(subjects) == 3 and subjects[2].startswith("New for")
    engine.clock.advance(hours=-1)
    engine.clock.advance(days=60)
    assert engine.step() == 0
    assert invariants(engine, smtp_server) == {"sent": 3}


def test_s4_an_auth_failure_pauses_the_mailbox_with_one_error_and_no_retry_storm(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    smtp_server.require_auth("dana@example.com", "right-password")
    wd = make_workdir(tmp_path, smtp_server.port)
    text = wd.config.read_text().replace(
        "tls: none, timeout: 3s}",
        "tls: none, timeout: 3s, username: dana@example.com, password_env: SALES_PW}")
    wd.config.write_text(text)
    wd.env["SALES_PW"] = "wrong-password"
    eng = Engine(wd)
    try:
        enroll(eng, ["ann@example.com", "bo@example.com", "cy@example.com"])
        eng.step()
        for _ in range(5):
            eng.clock.advance(minutes=10)
            assert eng.step() == 0, "a paused mailbox claims nothing"
        auths = [c for c in smtp_server.commands if c[1] == "AUTH"]
        assert 1 <= len(auths) <= 2  # one failed login (a reconnect-once at most)
        kinds = [e.event for e in rows(eng, events)]
        assert kinds.count("paused") == 1
        (paused,) = [e for e in rows(eng, events) if e.event == "paused"]
        assert "535" in paused.detail
        assert {r.state for r in rows(eng, enrollments)} == {"active"}
        assert smtp_server.deliveries == []
        invariants(eng, smtp_server)
    finally:
        eng.close()


def _deliver_in_background(engine: Engine, claims: list[Job]) -> threading.Thread:
    import asyncio

    from sequencer.store.hotpath import HotPath
    from sequencer.usecases.sending import Senders, commit_outcomes, deliver

    def go() -> None:
        senders = Senders(engine.app)
        path = HotPath(engine.app.store)

        async def run() -> None:
            for claim in claims:
                await deliver(engine.app, claim, senders, path)
                commit_outcomes(engine.app, path)
            await senders.close()
            path.close()

        asyncio.run(run())

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_reply_committed_after_the_gate_is_never_undone_by_recording_the_send(
        engine: Engine, smtp_server: SmtpServer) -> None:
    from sequencer.mail.watching import Inbound
    from sequencer.usecases import receiving

    enroll(engine, ["ann@example.com"])
    smtp_server.stall_after_data(1.0)  # the server has the message; its 250 is on the way
    thread = _deliver_in_background(engine, engine.claim())
    (first,) = smtp_server.wait_for(1, timeout=5)
    reply = (f"From: Ann <ann@example.com>\r\nTo: dana@example.com\r\nSubject: Re: hi\r\n"
             f"Message-ID: <r2@example.com>\r\nIn-Reply-To: {first.message['Message-ID']}"
             "\r\n\r\nYes, call me.").encode()
    assert receiving.handle(engine.app, "sales", Inbound(uid=1, raw=reply)) is not None
    thread.join(10)
    (row,) = rows(engine, enrollments)
    assert row.state == "replied", "the reply stands"
    (send,) = rows(engine, sends)
    assert send.status == "sent", "what went out is recorded"
    engine.clock.advance(weeks=3)
    assert engine.step() == 0
    assert len(smtp_server.deliveries) == 1
    invariants(engine, smtp_server)


def test_a_stop_after_the_gate_still_records_the_send(
        engine: Engine, smtp_server: SmtpServer) -> None:
    from sequencer.store import control

    enroll(engine, ["ann@example.com"])
    smtp_server.stall_after_data(1.0)
    thread = _deliver_in_background(engine, engine.claim())
    smtp_server.wait_for(1, timeout=5)
    control.apply(engine.app.store, "stop", "ann@example.com", engine.clock.now)
    thread.join(10)
    (row,) = rows(engine, enrollments)
    (send,) = rows(engine, sends)
    assert row.state == "stopped" and send.status == "sent"
    assert "sent" in [e.event for e in rows(engine, events)]
    invariants(engine, smtp_server)


def test_a_hard_bounce_halts_the_addresses_other_sequences_and_mail_stops(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="2d", wait3="1w",
                      extra="max_active_sequences: 2\n")
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: a, template: reminder, wait: 1d}\n")
    eng = Engine(wd)
    try:
        smtp_server.reject_rcpt("ann@example.com", "550 5.1.1 No such user")
        enroll(eng, ["ann@example.com"])
        assert run_enroll(eng.app, "other", prospects_csv(wd, ["ann@example.com"], "o.csv"),
                          progress=False).enrolled == 1
        eng.step()
        for _ in range(5):
            eng.clock.advance(days=2)
            eng.step()
        assert {r.state for r in rows(eng, enrollments)} == {"bounced"}
        assert len([c for c in smtp_server.commands if c[1] == "RCPT"]) == 1
    finally:
        eng.close()


def test_an_enrollment_whose_mailbox_left_the_settings_pauses_alone(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    eng = Engine(wd)
    enroll(eng, ["ann@example.com", "bo@example.com"])
    eng.close()
    with eng.app.store.write() as conn:
        conn.execute(enrollments.update().where(enrollments.c.email == "ann@example.com")
                     .values(mailbox="renamed"))
    eng = Engine(wd)
    try:
        eng.step()
        states = {r.email: r.state for r in rows(eng, enrollments)}
        assert states == {"ann@example.com": "paused", "bo@example.com": "active"}
        assert [d.rcpt_tos for d in smtp_server.deliveries] == [["bo@example.com"]]
        (paused,) = [e for e in rows(eng, events) if e.event == "paused"]
        assert "mailbox 'renamed' is not in the settings" in paused.detail
        assert not [e for e in rows(eng, events) if e.event == "failed"]
    finally:
        eng.close()


def test_an_unreachable_smtp_server_is_retried_until_it_is_back_never_failed(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    from tests.fixtures.smtp import free_port

    wd = make_workdir(tmp_path, free_port())  # nothing listens there
    eng = Engine(wd)
    try:
        enroll(eng, ["ann@example.com"])
        for _ in range(8):  # far more than retry.attempts (3)
            eng.step()
            (row,) = rows(eng, enrollments)
            assert row.state == "active"
            eng.clock.now = row.next_due
        kinds = [e.event for e in rows(eng, events)]
        assert kinds.count("retrying") == 8 and "failed" not in kinds
        gaps = {(b.at - a.at).total_seconds() for a, b in zip(
            rows(eng, events)[2:], rows(eng, events)[3:], strict=False)}
        assert max(gaps) <= 2.0, "capped at max_backoff"
    finally:
        eng.close()


def test_a_mailbox_past_its_daily_limit_does_not_starve_another(tmp_path: Path,
                                                                smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.config.write_text(wd.config.read_text().replace(
        "    smtp: {host: 127.0.0.1",
        "    daily_limit: 2\n    smtp: {host: 127.0.0.1") +
        '  support:\n    from: "Sam <sam@example.com>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {smtp_server.port}, tls: none}}\n")
    wd.write("sequences/other.yaml", "name: other\nmailbox: support\nsteps:\n"
             "  - {name: a, template: reminder, wait: 0s}\n")
    eng = Engine(wd)
    try:
        eng.scheduler.batch = 5  # fewer than sales' due steps: they come first in due order
        enroll(eng, [f"s{i}@example.com" for i in range(10)])
        eng.clock.advance(seconds=1)
        assert run_enroll(eng.app, "other", prospects_csv(wd, ["t@example.com"], "o.csv"),
                          progress=False).enrolled == 1
        for _ in range(3):
            eng.step()
        rcpts = [d.rcpt_tos[0] for d in smtp_server.deliveries]
        assert "t@example.com" in rcpts, "support's step went out"
        assert sum(r.startswith("s") for r in rcpts) == 2, "sales stopped at its limit"
    finally:
        eng.close()


def test_the_broker_password_never_reaches_the_log(tmp_path: Path, smtp_server: SmtpServer,
                                                   redis_server: RedisServer) -> None:
    from tests.workdir import terminate

    wd = make_workdir(tmp_path, smtp_server.port)
    url = redis_server.url.replace("redis://", "redis://:hunter2-secret@")
    proc = wd.start("run", extra_env={"SEQUENCER_BROKER_URL": url})
    assert terminate(proc) in (0, 1)
    log = wd.log()
    assert "broker=redis://:***@127.0.0.1" in log
    assert "hunter2-secret" not in log

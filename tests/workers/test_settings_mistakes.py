"""A send that fails because of our settings, not the prospect, pauses the enrollment with a
flag and is never `failed`; `resume` after the fix sends the step once (RELIABILITY X9).
Through the engine with an injected clock, against the aiosmtpd ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, select

from sequencer.store.schema import enrollments, events, sends, suppressions
from sequencer.usecases.importing import control, run_enroll
from tests.fixtures.smtp import SmtpServer
from tests.harness import Clock, Engine
from tests.invariants import check_invariants
from tests.workdir import Workdir, make_workdir, prospects_csv


@pytest.fixture
def wd(tmp_path: Path, smtp_server: SmtpServer) -> Workdir:
    return make_workdir(tmp_path, smtp_server.port, wait2="1d", wait3="1d")


def enroll(engine: Engine, emails: list[str]) -> None:
    csv = prospects_csv(engine.wd, emails)
    assert run_enroll(engine.app, "three", csv, progress=False).enrolled == len(emails)


def start(wd: Workdir, clock: Clock | None = None) -> Engine:
    return Engine(wd, clock)


def state_of(engine: Engine, email: str) -> Row[Any]:
    with engine.app.store.read() as conn:
        return conn.execute(select(enrollments).where(enrollments.c.email == email)).one()


def events_of(engine: Engine, email: str) -> list[str]:
    with engine.app.store.read() as conn:
        return list(conn.scalars(select(events.c.event).where(events.c.email == email)
                                 .order_by(events.c.id)))


def delivered(smtp_server: SmtpServer, email: str) -> list[str]:
    return [str(d.message["Subject"]) for d in smtp_server.deliveries if d.rcpt_tos == [email]]


def resume(engine: Engine, email: str) -> None:
    records, refusals = control(engine.app, "resume", email, None)
    assert [r.event.value for r in records] == ["resumed"] and not refusals


def test_a_template_that_fails_for_one_prospect_at_send_time_pauses_it_and_resume_sends(
        wd: Workdir, smtp_server: SmtpServer) -> None:
    wd.write("templates/reminder.txt.j2", "Subject: Reminder for {{ first_name }}\n\n"
             "{% if first_name == 'Bo' %}{{ 1 // 0 }}{% endif %}Just a reminder.\n")
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com", "bo@example.com"])
        assert engine.step() == 2
        engine.clock.advance(days=1, minutes=1)
        assert engine.step() == 2
        bo = state_of(engine, "bo@example.com")
        assert bo.state == "paused"
        assert bo.flag.startswith("settings: cannot compose step reminder: ")
        assert "templates/reminder.txt.j2:3: cannot render: ZeroDivisionError" in bo.flag
        assert events_of(engine, "bo@example.com") == ["enrolled", "sent", "paused"]
        assert delivered(smtp_server, "bo@example.com") == ["Thanks, Bo"]
        assert state_of(engine, "ann@example.com").step_index == 2  # the others go on
        engine.clock.advance(days=3)
        engine.step()
        assert state_of(engine, "bo@example.com").state == "paused"  # waits for a human
        clock = engine.clock
    finally:
        engine.close()
    wd.write("templates/reminder.txt.j2", "Subject: Reminder for {{ first_name }}\n\nHi.\n")
    engine = start(wd, clock)  # a restart reads the fixed template
    try:
        resume(engine, "bo@example.com")
        assert state_of(engine, "bo@example.com").flag is None
        engine.clock.advance(days=1, minutes=1)
        engine.step()
        engine.clock.advance(days=1, minutes=1)
        engine.step()
        assert delivered(smtp_server, "bo@example.com") == [
            "Thanks, Bo", "Re: Thanks, Bo", "New for Co1"]
        assert state_of(engine, "bo@example.com").state == "completed"
        counts = check_invariants(smtp_server.deliveries, engine.app.settings.database,
                                  now=engine.clock.now)
        assert counts
    finally:
        engine.close()


@pytest.mark.parametrize(("stage", "reply"), [
    ("RCPT", "550 5.7.1 Relaying denied"),
    ("MAIL", "553 5.1.8 Sender address domain does not exist"),
    ("DATA", "554 5.7.1 Message refused: our IP is on a block list"),
    ("MAIL", "530 Authentication required"),
])
def test_a_server_that_refuses_us_not_the_prospect_pauses_never_fails(
        wd: Workdir, smtp_server: SmtpServer, stage: str, reply: str) -> None:
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com"])
        smtp_server.fail_next(1, reply, stage=stage)  # type: ignore[arg-type]
        assert engine.step() == 1
        ann = state_of(engine, "ann@example.com")
        assert (ann.state, ann.step_index) == ("paused", 0)
        assert ann.flag == f"settings: mailbox sales: the server refused our message ({reply})"
        assert events_of(engine, "ann@example.com") == ["enrolled", "paused"]
        with engine.app.store.read() as conn:
            assert conn.execute(select(sends)).all() == []  # nothing went out, nothing kept
            assert conn.execute(select(suppressions)).all() == []
        resume(engine, "ann@example.com")
        assert engine.step() == 1
        assert delivered(smtp_server, "ann@example.com") == ["Thanks, Ann"]
        check_invariants(smtp_server.deliveries, engine.app.settings.database,
                         now=engine.clock.now)
    finally:
        engine.close()


def test_the_prospects_own_refusals_still_bounce_or_fail(
        wd: Workdir, smtp_server: SmtpServer) -> None:
    smtp_server.reject_rcpt("ann@example.com", "550 5.1.1 No such user")
    smtp_server.reject_rcpt("bo@example.com", "552 5.2.2 Mailbox disabled")
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com", "bo@example.com"])
        engine.step()
        assert state_of(engine, "ann@example.com").state == "bounced"
        assert state_of(engine, "bo@example.com").state == "failed"
    finally:
        engine.close()


def test_a_mailbox_gone_from_the_settings_pauses_its_enrollments_until_it_is_back(
        wd: Workdir, smtp_server: SmtpServer) -> None:
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com"])
        clock = engine.clock
    finally:
        engine.close()
    settings = wd.config.read_text()
    wd.config.write_text(settings.replace("  sales:\n", "  marketing:\n"))
    wd.write("sequences/three.yaml", wd.path.joinpath("sequences/three.yaml").read_text()
             .replace("mailbox: sales", "mailbox: marketing"))
    engine = start(wd, clock)
    try:
        assert engine.step() == 0
        ann = state_of(engine, "ann@example.com")
        assert (ann.state, ann.flag) == ("paused", "settings: mailbox 'sales' is not in the "
                                                   "settings")
        assert events_of(engine, "ann@example.com") == ["enrolled", "paused"]
    finally:
        engine.close()
    wd.config.write_text(settings)
    engine = start(wd, clock)
    try:
        resume(engine, "ann@example.com")
        assert engine.step() == 1
        assert delivered(smtp_server, "ann@example.com") == ["Thanks, Ann"]
    finally:
        engine.close()


def test_a_step_removed_under_an_active_enrollment_pauses_it(
        wd: Workdir, smtp_server: SmtpServer) -> None:
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com"])
        assert engine.step() == 1
        clock = engine.clock
    finally:
        engine.close()
    sequence = wd.path / "sequences/three.yaml"
    full = sequence.read_text()
    sequence.write_text(full.split("  - name: reminder")[0])
    engine = start(wd, clock)
    try:
        engine.clock.advance(days=2)
        assert engine.step() == 0
        ann = state_of(engine, "ann@example.com")
        assert (ann.state, ann.step_index) == ("paused", 1)
        assert ann.flag == ("settings: sequence 'three' has no step 2 under sequences/ "
                            "(renamed, removed or shortened?)")
    finally:
        engine.close()
    sequence.write_text(full)
    engine = start(wd, clock)
    try:
        resume(engine, "ann@example.com")
        engine.clock.advance(days=2)
        assert engine.step() == 1
        assert delivered(smtp_server, "ann@example.com") == ["Thanks, Ann", "Re: Thanks, Ann"]
    finally:
        engine.close()


def test_columns_stored_before_names_were_reserved_never_hide_a_template_name(
        wd: Workdir, smtp_server: SmtpServer) -> None:
    wd.write("templates/thank_you.txt.j2", "Subject: Hi {{ first_name }}\n\n"
             "{% for i in range(3) %}{{ i }}{% endfor %} from {{ sender }}\n")
    engine = start(wd)
    try:
        enroll(engine, ["ann@example.com"])
        with engine.app.store.write() as conn:
            conn.execute(enrollments.update().values(vars={
                "email": "ann@example.com", "first_name": "Ann", "range": "oops",
                "sender": "Mallory", "loop": "x"}))
        assert engine.step() == 1
        (delivery,) = smtp_server.deliveries
        plain = delivery.message.get_body(("plain",))
        assert plain is not None and plain.get_content().rstrip() == "012 from Dana Reyes"
        assert state_of(engine, "ann@example.com").state == "active"
    finally:
        engine.close()

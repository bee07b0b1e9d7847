"""No per-tick work that grows with the table: a suppression halts its address when it is
added, the tick reads enrollments only through the due-time index (or by id), and the due
query uses that index on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select, update

from bench.bigdb import Shape, build
from bench.scheduler_scale import write_workdir
from sequencer.config import load_settings
from sequencer.store.claims import Job
from sequencer.store.schema import enrollments, events, suppressions
from sequencer.workspace import Workspace
from tests.fixtures.smtp import SmtpServer
from tests.harness import Clock, Engine
from tests.workdir import make_workdir, prospects_csv
from workers.scheduler import Scheduler

NOW = datetime(2026, 11, 23, 12, 0, 0, 1, tzinfo=UTC)


def _events(engine: Engine, email: str) -> list[tuple[str, str | None]]:
    with engine.app.store.read() as conn:
        return [(r.event, r.detail) for r in conn.execute(
            select(events.c.event, events.c.detail).where(events.c.email == email)
            .order_by(events.c.id))]


def test_suppress_halts_the_addresss_active_enrollments_at_once_and_the_tick_adds_nothing(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    out = wd.cli("suppress", "ANN@example.com", check=True).stdout
    assert "stopped: ann@example.com in three" in out
    # Before any tick: the CLI's own transaction halted her.
    assert {s["email"]: s["state"] for s in wd.status()} == {
        "ann@example.com": "stopped", "bo@example.com": "active"}
    engine = Engine(wd, Clock(datetime.now(UTC) + timedelta(seconds=1)))  # the CLI's clock
    try:
        assert engine.step() == 1
        assert [d.rcpt_tos for d in smtp_server.deliveries] == [["bo@example.com"]]
        assert [e for e, _ in _events(engine, "ann@example.com")] == ["enrolled", "stopped"]
    finally:
        engine.close()


def test_a_suppressed_address_that_escaped_the_halt_is_stopped_when_due_not_swept(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    """An enrollment that raced its suppression (an import on PostgreSQL not seeing the
    suppression's uncommitted row) stays until it is due: the tick does not look for it
    among the active rows. Due, it is stopped in the claim and never sent."""
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1d")
    wd.cli("enroll", "three", str(prospects_csv(
        wd, ["ann@example.com", "bo@example.com", "cy@example.com"])), check=True)
    engine = Engine(wd, Clock(datetime.now(UTC) + timedelta(seconds=1)))
    try:
        assert engine.step() == 3  # thank-you to all three; the reminders are due in a day
        with engine.app.store.write() as conn:  # as a racing writer would leave it
            for email in ("ann@example.com", "cy@example.com"):
                conn.execute(insert(suppressions).values(
                    email_key=email, email=email, reason="unsubscribed: raced",
                    at=engine.clock.now))
            conn.execute(update(enrollments).where(enrollments.c.email == "cy@example.com")
                         .values(next_due=engine.clock.now + timedelta(days=30)))
        assert engine.step() == 0
        states = {s["email"]: s["state"] for s in wd.status()}
        assert states["ann@example.com"] == "active"  # not due: no tick walked to it
        engine.clock.advance(days=1, seconds=5)
        assert engine.step() == 1
        assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == [
            "ann@example.com", "bo@example.com", "bo@example.com", "cy@example.com"]
        assert _events(engine, "ann@example.com")[-1] == (
            "stopped", "address suppressed: unsubscribed: raced")
        states = {s["email"]: s["state"] for s in wd.status()}
        assert states == {"ann@example.com": "stopped", "bo@example.com": "active",
                          "cy@example.com": "active"}
    finally:
        engine.close()


def _big_workspace(tmp_path: Path, url: str, n: int, due: int) -> Workspace:
    shape = Shape(enrollments=n, due=due)
    build(url, shape, NOW, quiet=True)
    config = write_workdir(tmp_path / "wd", url, shape)
    return Workspace.from_settings(load_settings(config, env={}),
                                   clock=Clock(NOW + timedelta(seconds=1)))


def _tick_statements(app: Workspace) -> tuple[int, list[tuple[str, object]]]:
    """One scheduler tick with room for 1,000; (claimed, the statements it ran)."""
    seen: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, parameters: object,
               context: object, executemany: bool) -> None:
        if not executemany:
            seen.append((statement, parameters))

    claimed: list[Job] = []
    event.listen(app.store.writer, "before_cursor_execute", record)
    try:
        Scheduler(app, claimed.append, batch=1000, probe=1000).tick()
    finally:
        event.remove(app.store.writer, "before_cursor_execute", record)
    return len(claimed), seen


def test_an_idle_tick_reads_enrollments_only_by_due_time_or_id(tmp_path: Path) -> None:
    """SQLite's plan for every statement of a tick that finds nothing due: no table is
    scanned, and enrollments are searched only by (state, next_due) or by id — not by
    state alone, as the old sweep over every active row of a suppressed address was."""
    app = _big_workspace(tmp_path, f"sqlite:///{tmp_path / 'big.db'}", 5000, due=0)
    try:
        claimed, statements = _tick_statements(app)
        assert claimed == 0
        selects = [(s, p) for s, p in statements if s.lstrip().upper().startswith("SELECT")]
        assert any("next_due" in s for s, _ in selects)
        plans: list[str] = []
        with app.store.read() as conn:
            for statement, params in selects:
                plans += [row[-1] for row in conn.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {statement}", params)]  # type: ignore[arg-type]
    finally:
        app.close()
    assert not [p for p in plans if p.startswith("SCAN") and "CONSTANT" not in p
                and any(t in p for t in ("enrollments", "sends", "suppressions"))], plans
    on_enrollments = [p for p in plans if " enrollments " in f"{p} "]
    assert on_enrollments, plans
    for plan in on_enrollments:
        assert ("ix_enrollments_due (state=? AND next_due<?)" in plan
                or "INTEGER PRIMARY KEY" in plan), plans


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_due_query_uses_the_due_time_index(tmp_path: Path, kind: str,
                                               request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'big.db'}" if kind == "sqlite"
           else request.getfixturevalue("pg_database_url"))
    app = _big_workspace(tmp_path, url, 20_000, due=50)
    try:
        claimed, statements = _tick_statements(app)
        assert claimed == 50
        due = [(s, p) for s, p in statements if "enrollments.next_due <=" in s]
        assert len(due) == 1, statements
        statement, params = due[0]
        explain = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN "
        with app.store.read() as conn:
            plan = "\n".join(str(row[-1] if kind == "sqlite" else row[0]) for row in
                             conn.exec_driver_sql(explain + statement, params))  # type: ignore[arg-type]
    finally:
        app.close()
    assert "ix_enrollments_due" in plan, plan
    assert "Seq Scan on enrollments" not in plan and "SCAN enrollments" not in plan, plan

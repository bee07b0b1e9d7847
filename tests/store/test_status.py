"""`status` reads: streamed a page at a time, the same answers as a plain grouped query,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, text

from bench.bigdb import Shape, build
from sequencer.store import status
from sequencer.store.db import Store

NOW = datetime(2026, 11, 23, 12, 0, 0, 1, tzinfo=UTC)
N = 2500  # enrollments: more than two pages


def _expected(store: Store) -> list[tuple[object, ...]]:
    """What every row should say, computed the slow way (one grouped query, in SQL)."""
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(text("""
            select e.email, e.sequence, e.mailbox, e.state,
                   (select count(*) from sends s where s.enrollment_id = e.id
                      and s.status = 'sent') as sent,
                   (select s.step_name from sends s where s.enrollment_id = e.id
                      and s.status = 'sent' order by s.step_index desc limit 1) as last,
                   (select count(*) from sends s where s.enrollment_id = e.id
                      and s.status = 'unknown') as unknown
            from enrollments e order by e.sequence, e.id"""))]


@pytest.fixture(params=["sqlite", "postgresql"])
def big_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'big.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
    build(url, Shape(enrollments=N, due=10), NOW, quiet=True)
    store = Store(url)
    with store.write() as conn:  # one unknown step, to be counted apart from the sent ones
        conn.execute(text("update sends set status = 'unknown' where id = 1"))
    request.addfinalizer(store.dispose)
    return store


def test_status_rows_match_a_grouped_query_row_for_row_in_sequence_order(
        big_store: Store) -> None:
    got = [(r.email, r.sequence, r.mailbox, r.state, r.steps_sent, r.last_step,
            r.unknown_steps) for r in status.rows(big_store)]
    assert got == _expected(big_store)
    assert sum(r[6] for r in got) == 1
    assert all(r.next_due is None for r in status.rows(big_store) if r.state != "active")


def test_status_reads_one_page_of_sends_before_its_first_row(big_store: Store) -> None:
    statements: list[tuple[str, int]] = []

    def seen(conn: object, cursor: object, statement: str, parameters: Sequence[object] | None,
             context: object, executemany: bool) -> None:
        statements.append((statement, len(parameters or ())))

    event.listen(big_store.reader, "before_cursor_execute", seen)
    try:
        stream = status.rows(big_store)
        first = next(stream)
        sends_queries = [n for sql, n in statements if "FROM sends" in sql]
        assert first.sequence == "seq0"
        assert len(sends_queries) == 1 and sends_queries[0] <= status.PAGE, statements
        rest = sum(1 for _ in stream)
    finally:
        event.remove(big_store.reader, "before_cursor_execute", seen)
    assert rest == N - 1
    assert len([sql for sql, _ in statements if "FROM sends" in sql]) == -(-N // status.PAGE)


def test_status_filters_by_state_sequence_and_limit(big_store: Store) -> None:
    replied = list(status.rows(big_store, state="replied", sequence="seq1"))
    expected = [r for r in _expected(big_store) if r[3] == "replied" and r[1] == "seq1"]
    assert [r.email for r in replied] == [r[0] for r in expected] and replied
    assert [r.email for r in status.rows(big_store, limit=7)] == [
        r[0] for r in _expected(big_store)[:7]]
    email = _expected(big_store)[42][0]
    assert [r.email for r in status.rows(big_store, email=str(email))] == [email]


def test_summary_counts_states_and_steps_like_the_rows_do(big_store: Store) -> None:
    rows = _expected(big_store)
    counts = {c.sequence: c for c in status.summary(big_store)}
    assert sorted(counts) == ["seq0", "seq1", "seq2", "seq3"]
    for name, seq in counts.items():
        mine = [r for r in rows if r[1] == name]
        assert seq.total == len(mine)
        assert {k: v for k, v in seq.states.items()} == dict(Counter(r[3] for r in mine))
        assert sum(s.sends.get("sent", 0) for s in seq.steps.values()) == sum(
            int(r[4]) for r in mine)  # type: ignore[call-overload]
    with big_store.read() as conn:
        waiting: dict[int, int] = dict(conn.execute(text(
            "select step_index, count(*) from enrollments where sequence = 'seq2' "
            "and state = 'active' group by step_index")).all())
    assert {i: s.waiting for i, s in counts["seq2"].steps.items()} == waiting
    assert sum(s.sends.get("unknown", 0) for c in counts.values()
               for s in c.steps.values()) == 1
    only = status.summary(big_store, sequence="seq3", state="paused")
    assert [c.sequence for c in only] == ["seq3"]
    assert set(only[0].states) == {"paused"}

"""Migration 0004 (issue 6, RELIABILITY I1): a database the first release filled with two
spellings of one person is merged into one identity, and no event is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, insert, select

from sequencer.store import inbound as store_inbound
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, events, merged_sends, prospects, sends, suppressions
from tests.store.test_migrations import _diff, release_database

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _fill_like_the_first_release(url: str) -> dict[str, Any]:
    """Rows as the first release stored them: each spelling its own prospect and enrollment
    (it compared addresses as spelled), sends with their Message-IDs, events, suppressions."""
    engine = create_engine(url)
    old = MetaData()
    old.reflect(engine)
    p, e, s, ev, sup = (old.tables[n] for n in
                        ("prospects", "enrollments", "sends", "events", "suppressions"))

    def at(hours: float) -> datetime:
        # the first release's UTC type stored naive UTC on SQLite, aware on PostgreSQL
        value = T0 + timedelta(hours=hours)
        return value.replace(tzinfo=None) if url.startswith("sqlite") else value

    with engine.begin() as conn:
        for pid, email in ((1, "Ann@X.com"), (2, "ann@x.com"), (3, "bob@bücher.de"),
                           (4, "carl@example.com")):
            conn.execute(insert(p).values(id=pid, email=email, created_at=at(pid)))
        for eid, pid, email, seq, state, step in (
                (1, 1, "Ann@X.com", "three", "active", 1),
                (2, 2, "ann@x.com", "three", "replied", 1),   # the other spelling replied
                (3, 2, "ann@x.com", "other", "active", 0),
                (4, 3, "bob@bücher.de", "three", "active", 0),
                (5, 4, "carl@example.com", "three", "active", 2)):
            conn.execute(insert(e).values(
                id=eid, prospect_id=pid, email=email, sequence=seq, mailbox="sales",
                state=state, step_index=step, attempts=0, timezone="UTC", vars={},
                enrolled_at=at(eid), updated_at=at(eid), next_due=at(48)))
        for sid, eid, step, mid in ((1, 1, 0, "<a1@example.com>"), (2, 2, 0, "<a2@example.com>"),
                                    (3, 5, 0, "<c1@example.com>"), (4, 5, 1, "<c2@example.com>")):
            conn.execute(insert(s).values(
                id=sid, enrollment_id=eid, step_index=step, step_name=f"step{step}",
                mailbox="sales", message_id=mid, status="sent", attempts=1,
                created_at=at(10 + sid), data_at=at(10 + sid), done_at=at(10 + sid),
                smtp_code=250))
        rows: list[tuple[str, int | None, str | None, str | None]] = [
                ("enrolled", 1, "Ann@X.com", None), ("enrolled", 2, "ann@x.com", None),
                ("enrolled", 3, "ann@x.com", None), ("enrolled", 4, "bob@bücher.de", None),
                ("enrolled", 5, "carl@example.com", None),
                ("sent", 1, "Ann@X.com", "<a1@example.com>"),
                ("sent", 2, "ann@x.com", "<a2@example.com>"),
                ("replied", 2, "ann@x.com", "<r@x.com>"),
                ("sent", 5, "carl@example.com", "<c1@example.com>"),
                ("sent", 5, "carl@example.com", "<c2@example.com>"),
                ("paused", None, None, None)]
        for n, (event, event_eid, event_email, event_mid) in enumerate(rows):
            conn.execute(insert(ev).values(at=at(20 + n), event=event, enrollment_id=event_eid,
                                           mailbox="sales", sequence="three", email=event_email,
                                           message_id=event_mid, detail=f"row {n}"))
        for email, reason, hours in (("ANN@X.COM", "by hand", 30),
                                     ("ann@x.com", "unsubscribe: asked", 31),
                                     ("dave@example.com", "hard bounce", 32)):
            conn.execute(insert(sup).values(email=email, reason=reason, at=at(hours)))
        before = [tuple(r) for r in conn.execute(
            select(ev.c.id, ev.c.at, ev.c.event, ev.c.email, ev.c.message_id, ev.c.detail)
            .order_by(ev.c.id)).all()]
    engine.dispose()
    return {"events": before}


def _migrated(url: str) -> tuple[Store, dict[str, Any]]:
    release_database(url)
    before = _fill_like_the_first_release(url)
    store = Store(url)
    store.create()  # what any command does when it starts on an older database
    assert _diff(store) == []
    return store, before


def _check_merge(store: Store, before: dict[str, Any]) -> None:
    with store.read() as conn:
        after = [(r.id, r.at.replace(tzinfo=None), r.event, r.email, r.message_id, r.detail)
                 for r in conn.execute(select(events).order_by(events.c.id)).all()]
        people = conn.execute(select(prospects.c.id, prospects.c.email, prospects.c.email_key)
                              .order_by(prospects.c.id)).all()
        rows = {r.id: r for r in conn.execute(select(enrollments)).all()}
        event_owners = set(conn.scalars(select(events.c.enrollment_id)
                                        .where(events.c.enrollment_id.is_not(None))))
        kept_sends = conn.execute(select(sends.c.enrollment_id, sends.c.message_id)
                                  .order_by(sends.c.id)).all()
        moved = conn.execute(select(merged_sends)).all()
        suppressed = {r.email_key: r for r in conn.execute(select(suppressions)).all()}
        ann_events = conn.scalars(select(events.c.event).where(events.c.enrollment_id == 2)
                                  .order_by(events.c.id)).all()
    assert after == [(i, a.replace(tzinfo=None), *rest) for i, a, *rest in before["events"]], \
        "every event is kept, with its time, address, Message-ID and detail"
    assert [(p.id, p.email, p.email_key) for p in people] == [
        (1, "Ann@X.com", "ann@x.com"), (3, "bob@bücher.de", "bob@xn--bcher-kva.de"),
        (4, "carl@example.com", "carl@example.com")], "the oldest prospect of a key survives"
    assert sorted(rows) == [2, 3, 4, 5], "the two enrollments of ann in `three` are one"
    assert rows[2].state == "replied", "the survivor is the one that sends least"
    assert {rows[2].prospect_id, rows[3].prospect_id} == {1}
    assert rows[4].email == "bob@bücher.de" and rows[4].email_key == "bob@xn--bcher-kva.de"
    assert event_owners <= set(rows), "no event points at a merged-away enrollment"
    assert ann_events == ["enrolled", "enrolled", "sent", "sent", "replied"]
    assert (2, "<a2@example.com>") in kept_sends and all(s.enrollment_id in rows
                                                         for s in kept_sends)
    assert [(m.message_id, m.enrollment_id, m.merged_from, m.status) for m in moved] == [
        ("<a1@example.com>", 2, 1, "sent")], "a send of a step both had sent is kept aside"
    assert sorted(suppressed) == ["ann@x.com", "dave@example.com"]
    assert suppressed["ann@x.com"].email == "ANN@X.COM"
    assert suppressed["ann@x.com"].reason == "by hand; as ann@x.com: unsubscribe: asked"
    for mid in ("<a1@example.com>", "<a2@example.com>"):
        target = store_inbound.match(store, "sales", references=[mid])
        assert target is not None and target.enrollment_id == 2, mid
    by_address = store_inbound.match(store, "sales", address="BOB@XN--BCHER-KVA.DE")
    assert by_address is not None and by_address.enrollment_id == 4


def test_the_identity_migration_merges_spellings_on_sqlite_with_no_event_lost(
        tmp_path: Path) -> None:
    store, before = _migrated(f"sqlite:///{tmp_path / 'release.db'}")
    try:
        _check_merge(store, before)
    finally:
        store.dispose()


def test_the_identity_migration_merges_spellings_on_postgresql_with_no_event_lost(
        pg_database_url: str) -> None:
    store, before = _migrated(pg_database_url)
    try:
        _check_merge(store, before)
    finally:
        store.dispose()


def test_the_merged_database_answers_every_spelling_through_the_cli(
        tmp_path: Path, smtp_server: Any) -> None:
    from tests.workdir import make_workdir

    wd = make_workdir(tmp_path, smtp_server.port)
    wd.write("sequences/other.yaml", "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: a, template: reminder, wait: 1d}\n")
    release_database(f"sqlite:///{wd.path / 'sequencer.db'}")
    _fill_like_the_first_release(f"sqlite:///{wd.path / 'sequencer.db'}")
    status = wd.status()  # the first command after the upgrade migrates the database
    ann = [(row["sequence"], row["state"], row["email"]) for row in status
           if row["email"].lower() == "ann@x.com"]
    assert sorted(ann) == [("other", "active", "ann@x.com"), ("three", "replied", "ann@x.com")]
    stopped = wd.cli("stop", "ANN@X.com")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped: ann@x.com in other" in stopped.stdout
    assert {(r["sequence"], r["state"]) for r in wd.status()
            if r["email"].lower() == "ann@x.com"} == {("other", "stopped"), ("three", "replied")}


@pytest.mark.parametrize("spelling", ["ANN@X.COM", "Ann@x.com"])
def test_the_survivor_keeps_a_suppression_for_every_spelling(tmp_path: Path,
                                                             spelling: str) -> None:
    from sequencer.store.halting import add_suppression

    store, _ = _migrated(f"sqlite:///{tmp_path / 'release.db'}")
    try:
        with store.write() as conn:
            add_suppression(conn, spelling, "again", T0)
        with store.read() as conn:
            assert conn.scalars(select(suppressions.c.reason)
                                .where(suppressions.c.email_key == "ann@x.com")).all() == [
                "by hand; as ann@x.com: unsubscribe: asked"], "one row, the first reason"
    finally:
        store.dispose()

"""The webhook outbox: subscriptions as the settings say, and claiming due deliveries.

Rows are written by ``store.events.add`` in the event's own transaction. A deliverer claims
a row by moving its ``next_at`` a lease ahead (a conditional update: two deliverers do not
both take it), POSTs it, and then marks it delivered or schedules the next try. A process
that dies mid-delivery leaves the lease to run out: the row is tried again (at least once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from sequencer.store.db import Store
from sequencer.store.schema import webhook_outbox, webhook_subscriptions


def subscribe(store: Store, wanted: Iterable[tuple[str, str]]) -> None:
    """Make the stored subscriptions exactly ``wanted`` (url, event) pairs; no write when
    they already are."""
    want = set(wanted)
    with store.read() as conn:
        have = {(r.url, r.event) for r in conn.execute(select(webhook_subscriptions))}
    if have == want:
        return
    with store.write() as conn:
        conn.execute(delete(webhook_subscriptions))
        if want:
            conn.execute(insert(webhook_subscriptions),
                         [{"url": url, "event": event} for url, event in sorted(want)])


@dataclass(frozen=True)
class Delivery:
    id: int
    event_uid: str
    url: str
    event: str
    body: str
    attempts: int


def claim(store: Store, now: datetime, urls: Iterable[str], *, lease_s: float,
          limit: int = 50) -> list[Delivery]:
    """Due, undelivered rows for ``urls``, oldest first, each leased to the caller."""
    urls = list(urls)
    if not urls:
        return []
    t = webhook_outbox
    due = (t.c.delivered_at.is_(None) & t.c.url.in_(urls)
           & or_(t.c.next_at.is_(None), t.c.next_at <= now))
    taken: list[Delivery] = []
    with store.write() as conn:
        rows = conn.execute(select(t).where(due).order_by(t.c.id).limit(limit)).all()
        for row in rows:
            done = conn.execute(
                update(t).where(t.c.id == row.id, due)
                .values(next_at=now + timedelta(seconds=lease_s)))
            if done.rowcount == 1:
                taken.append(Delivery(row.id, row.event_uid, row.url, row.event, row.body,
                                      row.attempts))
    return taken


def delivered(store: Store, delivery_id: int, now: datetime) -> None:
    t = webhook_outbox
    with store.write() as conn:
        conn.execute(update(t).where(t.c.id == delivery_id).values(
            delivered_at=now, attempts=t.c.attempts + 1, last_error=None))


def failed(store: Store, delivery_id: int, next_at: datetime, error: str) -> None:
    t = webhook_outbox
    with store.write() as conn:
        conn.execute(update(t).where(t.c.id == delivery_id).values(
            next_at=next_at, attempts=t.c.attempts + 1, last_error=error[:500]))


def pending(store: Store) -> int:
    t = webhook_outbox
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(t)
                                .where(t.c.delivered_at.is_(None))).scalar_one())

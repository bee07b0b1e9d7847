"""Stored events: the same lines as the worker log, kept for `status` and later tools."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from sequencer.eventlog import EventRecord
from sequencer.store.schema import events


def add(conn: Connection, *records: EventRecord) -> None:
    if not records:
        return
    conn.execute(
        insert(events),
        [
            {
                "at": r.at,
                "event": r.event.value,
                "enrollment_id": r.enrollment_id,
                "mailbox": r.mailbox,
                "sequence": r.sequence,
                "step": r.step,
                "email": r.email,
                "message_id": r.message_id,
                "detail": r.detail,
            }
            for r in records
        ],
    )

"""Manual control: pause, resume, stop and suppress by address."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, select, update

from sequencer.core import machine
from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, Event, SendStatus
from sequencer.errors import InvalidArgument
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store.db import AnyRow, Store
from sequencer.store.halting import add_suppression, drop_unsent
from sequencer.store.schema import enrollments, sends


class Resumed(Protocol):
    """The enrollment row a resumed step is scheduled from."""

    email: str
    sequence: str
    timezone: str
    vars: Mapping[str, str] | None
    not_before: datetime | None


# (enrollment, next step index, now) -> when that step is due, or None when none is left
DueAfter = Callable[[Resumed, int, datetime], datetime | None]


def _targets(conn: Connection, key: str, sequence: str | None) -> list[AnyRow]:
    query = select(enrollments).where(enrollments.c.email_key == key)
    if sequence:
        query = query.where(enrollments.c.sequence == sequence)
    return list(conn.execute(query).all())


def apply(store: Store, action: str, email: str, now: datetime, *,
          sequence: str | None = None, due_after: DueAfter | None = None,
          reason: str = "by hand") -> tuple[list[EventRecord], list[str]]:
    """Apply ``pause``/``resume``/``stop``/``suppress`` to the enrollments of ``email`` in
    any spelling (its ``address_key``); returns (events, refusals)."""
    records: list[EventRecord] = []
    refusals: list[str] = []
    key = address_key(email)
    with store.write() as conn:
        rows = _targets(conn, key, sequence)
        if action == "suppress":
            add_suppression(conn, email, reason, now)
        for row in rows:
            state = EnrollmentState(row.state)
            try:
                new, event, values = _transition(conn, action, state, row, now, due_after)
            except machine.InvalidTransition as err:
                if action != "suppress":
                    refusals.append(f"{row.sequence}: {err}")
                continue
            if new is not EnrollmentState.ACTIVE:
                drop_unsent(conn, row.id)
            conn.execute(update(enrollments).where(
                enrollments.c.id == row.id).values(
                state=new.value, claim_token=None, lease_until=None, updated_at=now, **values))
            records.append(EventRecord(
                event, now, email=row.email, mailbox=row.mailbox,
                sequence=row.sequence, detail=reason,
                enrollment_id=row.id))
        stored_events.add(conn, *records)
    return records, refusals


def _transition(conn: Connection, action: str, state: EnrollmentState, row: AnyRow,
                now: datetime, due_after: DueAfter | None
                ) -> tuple[EnrollmentState, Event, dict[str, object]]:
    if action == "pause":
        return machine.pause(state), Event.PAUSED, {}
    if action in ("stop", "suppress"):
        return machine.stop(state), Event.STOPPED, {"next_due": None}
    if action != "resume":
        raise InvalidArgument(action)
    new = machine.resume(state)
    index = row.step_index
    current = conn.execute(select(sends.c.status).where(
        sends.c.enrollment_id == row.id,
        sends.c.step_index == index)).scalar()
    if current == SendStatus.UNKNOWN.value:
        index += 1  # the human checked: the step counts as delivered, never resent
    due = due_after(row, index, now) if due_after else now
    if due is None:
        return EnrollmentState.COMPLETED, Event.COMPLETED, {
            "step_index": index, "next_due": None, "flag": None}
    return new, Event.RESUMED, {"step_index": index, "next_due": due, "flag": None,
                                "attempts": 0}

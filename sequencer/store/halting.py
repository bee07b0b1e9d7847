"""Halting: suppressing an address, halting its enrollments, forgetting unsent steps."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from sequencer.core.addresses import address_key
from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends, suppressions

ACTIVE = EnrollmentState.ACTIVE.value


def halt_enrollment(conn: Connection, enrollment_id: int, state: EnrollmentState,
                    now: datetime) -> bool:
    """An active or paused enrollment goes to ``state``; its unsent step is forgotten.

    The enrollment row first, then its sends: the same lock order as the send path. The
    update is conditional, so an enrollment that left active/paused meanwhile is untouched.
    """
    done = bool(conn.execute(
        update(enrollments)
        .where(enrollments.c.id == enrollment_id,
               enrollments.c.state.in_([ACTIVE, EnrollmentState.PAUSED.value]))
        .values(state=state.value, next_due=None, updated_at=now)
    ).rowcount)
    if done:
        drop_unsent(conn, enrollment_id)
    return done


def halt_address(conn: Connection, email: str, state: EnrollmentState, now: datetime) -> None:
    """Every active or paused enrollment of ``email``, in any spelling, goes to ``state``
    (a suppression: a paused enrollment would otherwise send again once resumed)."""
    ids = conn.scalars(select(enrollments.c.id).where(
        enrollments.c.email_key == address_key(email),
        enrollments.c.state.in_([ACTIVE, EnrollmentState.PAUSED.value]))).all()
    for enrollment_id in ids:
        halt_enrollment(conn, enrollment_id, state, now)


def suppressed(store: Store, email: str) -> bool:
    """True when ``email``, in any spelling, is on the suppression list."""
    with store.read() as conn:
        return conn.scalar(select(suppressions.c.email_key)
                           .where(suppressions.c.email_key == address_key(email))) is not None


def add_suppression(conn: Connection, email: str, reason: str, now: datetime) -> None:
    """Suppress ``email`` in every spelling (by its key); the first reason is kept."""
    key = address_key(email)
    if conn.scalar(select(suppressions.c.email_key)
                   .where(suppressions.c.email_key == key)) is None:
        conn.execute(insert(suppressions).values(email_key=key, email=email, reason=reason,
                                                 at=now))


def drop_unsent(conn: Connection, enrollment_id: int) -> None:
    """Forget a claimed step that never reached DATA (the enrollment left ``active``).

    Nothing went out for it, so there is nothing to record; a step whose DATA started
    keeps its row and is finished by the lease logic as ``unknown`` or by its sender.
    """
    conn.execute(delete(sends).where(sends.c.enrollment_id == enrollment_id,
                                     sends.c.status == SendStatus.CLAIMED.value,
                                     sends.c.data_at.is_(None)))

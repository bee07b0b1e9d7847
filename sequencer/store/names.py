"""Which sequence names the stored enrollments use (``sequencer.renames``).

An enrollment keeps its sequence by name only, so a file whose ``name:`` changed leaves its
enrollments pointing at a name no file defines. ``used`` is the cheap question every start
asks (one pass over the ``(prospect_id, sequence)`` index); ``live`` and ``sent_steps`` are
asked only about names that no file defines any more.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select

from sequencer.core.machine import EnrollmentState
from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends

#: The states an enrollment can still send from (``resume`` turns paused into active).
LIVE = (EnrollmentState.ACTIVE.value, EnrollmentState.PAUSED.value)


def used(store: Store) -> frozenset[str]:
    """Every sequence name any enrollment has, in any state."""
    with store.read() as conn:
        return frozenset(conn.execute(select(enrollments.c.sequence).distinct()).scalars())


def live(store: Store, names: Collection[str]) -> dict[str, dict[str, int]]:
    """For each of ``names`` with live enrollments: how many, by state (active, paused)."""
    if not names:
        return {}
    query = (select(enrollments.c.sequence, enrollments.c.state, func.count())
             .where(enrollments.c.sequence.in_(list(names)), enrollments.c.state.in_(LIVE))
             .group_by(enrollments.c.sequence, enrollments.c.state))
    found: dict[str, dict[str, int]] = {}
    with store.read() as conn:
        for name, state, count in conn.execute(query):
            found.setdefault(name, {})[state] = count
    return found


def sent_steps(store: Store, names: Collection[str]) -> dict[str, frozenset[str]]:
    """For each of ``names``: the step names its enrollments were sent (or tried)."""
    if not names:
        return {}
    query = (select(enrollments.c.sequence, sends.c.step_name).distinct()
             .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
             .where(enrollments.c.sequence.in_(list(names))))
    found: dict[str, set[str]] = {}
    with store.read() as conn:
        for name, step in conn.execute(query):
            found.setdefault(name, set()).add(step)
    return {name: frozenset(steps) for name, steps in found.items()}

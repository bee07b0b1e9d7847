"""Which mailbox a new prospect gets, when a sequence sends from several (issue 9, item 4).

Chosen once, at enrollment, and kept for the whole sequence: every step goes out from the
same mailbox, so the thread holds together. A mailbox that is paused (its credentials,
TLS or grant failed) or failing (its latest attempts found the server unreachable, and a
retry is pending) gets no new prospects; the prospects it already has wait for it and never
move to another.

``round-robin`` (the default) goes through the usable mailboxes in the order the sequence
lists them, starting after the one that got this sequence's latest prospect, so imports in
several files or several runs continue the turn. ``least-loaded`` gives each prospect to
the usable mailbox with the fewest active enrollments, in every sequence (ties in list
order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import Connection, func, select

from sequencer.core.machine import EnrollmentState, SendStatus
from sequencer.errors import EnrollError
from sequencer.store.schema import enrollments, mailboxes, sends

Policy = Literal["round-robin", "least-loaded"]
#: SMTP codes of an attempt that says the server, not the recipient, is the problem: no
#: reply at all (0: refused, timed out, dropped) or 421 (service not available).
_SERVER_DOWN = (0, 421)


class Assigner:
    """Hands out mailboxes to one import's prospects, in order."""

    def __init__(self, names: Sequence[str], policy: Policy, load: dict[str, int],
                 start: int) -> None:
        self._names = list(names)
        self._policy = policy
        self._load = load
        self._next = start

    def __call__(self) -> str:
        if self._policy == "least-loaded":
            name = min(self._names, key=lambda n: (self._load[n], self._names.index(n)))
            self._load[name] += 1
            return name
        name = self._names[self._next % len(self._names)]
        self._next += 1
        return name


def unusable(conn: Connection, names: Sequence[str]) -> dict[str, str]:
    """The mailboxes among ``names`` that get no new prospects now, and why."""
    why: dict[str, str] = {}
    for row in conn.execute(select(mailboxes.c.name, mailboxes.c.pause_reason)
                            .where(mailboxes.c.name.in_(list(names)), mailboxes.c.paused)):
        why[row.name] = f"paused ({row.pause_reason or 'by hand'})"
    failing = conn.scalars(
        select(sends.c.mailbox).distinct()
        .where(sends.c.mailbox.in_([n for n in names if n not in why]),
               sends.c.status == SendStatus.CLAIMED.value, sends.c.data_at.is_(None),
               sends.c.smtp_code.in_(_SERVER_DOWN)))
    for name in failing:
        why[name] = "failing (its server could not be reached; retries are pending)"
    return why


def assigner(conn: Connection, sequence: str, names: Sequence[str],
             policy: Policy) -> Assigner:
    """An ``Assigner`` over the usable mailboxes among ``names``; ``EnrollError`` when none
    is usable (the import then stores nothing)."""
    if len(names) == 1:
        return Assigner(names, "round-robin", {}, 0)
    why = unusable(conn, names)
    usable = [n for n in names if n not in why]
    if not usable:
        reasons = "; ".join(f"{n}: {why[n]}" for n in names)
        raise EnrollError(f"no mailbox of sequence {sequence} can take new prospects: "
                          f"{reasons}")
    if policy == "least-loaded":
        load = dict.fromkeys(usable, 0)
        load.update({row.mailbox: row.n for row in conn.execute(
            select(enrollments.c.mailbox, func.count().label("n"))
            .where(enrollments.c.mailbox.in_(usable),
                   enrollments.c.state == EnrollmentState.ACTIVE.value)
            .group_by(enrollments.c.mailbox))})
        return Assigner(usable, policy, load, 0)
    last: str | None = conn.scalar(select(enrollments.c.mailbox)
                       .where(enrollments.c.sequence == sequence)
                       .order_by(enrollments.c.id.desc()).limit(1))
    start = 0
    if last is not None and last in names:  # the next usable one after it in the sequence's list
        order = list(names)
        after = order[order.index(last) + 1:] + order[:order.index(last) + 1]
        start = usable.index(next(n for n in after if n in usable))
    return Assigner(usable, policy, {}, start)

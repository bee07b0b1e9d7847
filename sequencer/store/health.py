"""What each inbox watcher reports about itself, for ``status --mailboxes`` (often another
process) to read: one ``mailbox_health`` row per mailbox, replaced on every report.

The watcher reports when its state or last error changes and otherwise every
``REPORT_EVERY_S`` as a heartbeat (``workers.watch``); a row older than ``STALE_AFTER_S``
means nobody is watching that mailbox any more, whatever its state says.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import BindParameter

from sequencer.mail.watching import Health
from sequencer.store.db import Store
from sequencer.store.schema import mailbox_health

#: The heartbeat: a watcher reports at least this often.
REPORT_EVERY_S = 10.0
#: A report older than this is stale: the watcher is gone (or its thread is stuck).
STALE_AFTER_S = 60.0

_FIELDS = ("state", "since", "last_answer_at", "last_error", "last_error_at", "cursor_lag",
           "updated_at")


def _upsert(dialect: str) -> Insert:
    values: dict[str, BindParameter[Any]] = {
        "name": bindparam("name"), **{f: bindparam(f) for f in _FIELDS}}
    if dialect == "postgresql":
        pg = postgresql.insert(mailbox_health).values(values)
        return pg.on_conflict_do_update(index_elements=[mailbox_health.c.name],
                                        set_={f: pg.excluded[f] for f in _FIELDS})
    lite = sqlite.insert(mailbox_health).values(values)
    return lite.on_conflict_do_update(index_elements=[mailbox_health.c.name],
                                      set_={f: lite.excluded[f] for f in _FIELDS})


_UPSERT = {"sqlite": _upsert("sqlite"), "postgresql": _upsert("postgresql")}


def write(conn: Connection, name: str, health: Health, now: datetime) -> None:
    statement = _UPSERT.get(conn.dialect.name)
    params = {"name": name, "state": health.state.value, "since": health.since,
              "last_answer_at": health.last_answer_at, "last_error": health.last_error,
              "last_error_at": health.last_error_at, "cursor_lag": health.cursor_lag,
              "updated_at": now}
    if statement is None:  # another dialect: no upsert, so delete then insert
        conn.execute(mailbox_health.delete().where(mailbox_health.c.name == name))
        conn.execute(insert(mailbox_health).values(params))
        return
    conn.execute(statement, params)


def report(store: Store, name: str, health: Health, now: datetime) -> None:
    """Replace the mailbox's row with ``health`` as of ``now`` (one small transaction)."""
    with store.write() as conn:
        write(conn, name, health, now)


def report_many(store: Store, reports: Iterable[tuple[str, Health]], now: datetime) -> None:
    """Several mailboxes' rows in one transaction (the watcher process's heartbeat)."""
    with store.write() as conn:
        for name, health in reports:
            write(conn, name, health, now)

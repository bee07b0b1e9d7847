"""Stored events: the same lines as the worker log, kept for `status` and later tools."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert, literal_column, select
from sqlalchemy.engine import Dialect

from sequencer.core.webhooks import WEBHOOK_EVENTS
from sequencer.eventlog import EventRecord
from sequencer.store.schema import events, webhook_outbox, webhook_subscriptions


class BulkInsert:
    """An INSERT run with the driver's ``executemany``, compiled once per dialect.

    SQLAlchemy compiles the statement and supplies each column type's bind processing (UTC
    datetimes, JSON, dates, for SQLite and PostgreSQL alike); what it does not do is process
    the values that are the same for every row once per batch instead of once per row, which
    is most of its cost on a large executemany. Bind parameters named in ``per_row`` come from
    each row (a tuple, in that order); the others are constants for the batch.
    """

    def __init__(self, statement: Insert, per_row: Seq[str]) -> None:
        self.statement = statement
        self.per_row = tuple(per_row)
        self._compiled: dict[Dialect, tuple[str, list[str], dict[str, Any]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[str], dict[str, Any]]:
        found = self._compiled.get(dialect)
        if found is None:
            compiled = self.statement.compile(dialect=dialect, for_executemany=True)
            order = list(compiled.positiontup or ()) if dialect.positional else []
            processors = {
                name: processor
                for name, bind in compiled.binds.items()
                if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
            }
            found = self._compiled[dialect] = (compiled.string, order, processors)
        return found

    def execute(self, conn: Connection, constants: Mapping[str, Any],
                rows: Seq[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sql, order, processors = self._compile(conn.dialect)
        # Column by column, so that the per-row work is the type processing alone.
        columns: dict[str, Iterable[Any]] = {}
        for name, values in zip(self.per_row, zip(*rows, strict=True), strict=True):
            processor = processors.get(name)
            columns[name] = list(map(processor, values)) if processor else values
        for name, value in constants.items():
            processor = processors.get(name)
            columns[name] = [processor(value) if processor else value] * len(rows)
        params: list[Any]
        if order:
            params = list(zip(*(columns[name] for name in order), strict=True))
        else:
            names = list(columns)
            params = [dict(zip(names, values, strict=True))
                      for values in zip(*columns.values(), strict=True)]
        conn.exec_driver_sql(sql, params)


_COLUMNS = ("at", "event", "enrollment_id", "mailbox", "sequence", "step", "email",
            "message_id", "detail", "uid")
# Built once (this is on the send path): building and cache-keying an insert each time cost
# several times what running it does.
_INSERT = BulkInsert(
    insert(events).values({name: bindparam(f"e_{name}", type_=events.c[name].type)
                           for name in _COLUMNS}),
    per_row=[f"e_{name}" for name in _COLUMNS])


_HOOKED = frozenset(WEBHOOK_EVENTS)
# One outbox row per webhook subscribed to the event's kind, in the event's transaction.
_OUTBOX = BulkInsert(
    insert(webhook_outbox).from_select(
        ["event_uid", "url", "event", "body", "attempts"],
        select(bindparam("o_uid", type_=webhook_outbox.c.event_uid.type),
               webhook_subscriptions.c.url,
               webhook_subscriptions.c.event,
               bindparam("o_body", type_=webhook_outbox.c.body.type),
               literal_column("0"))
        .where(webhook_subscriptions.c.event == bindparam(
            "o_event", type_=webhook_subscriptions.c.event.type))),
    per_row=["o_uid", "o_body", "o_event"])


def webhook_body(uid: str, record: EventRecord) -> str:
    """The JSON a webhook receives for one event: ``id`` is the event's ``uid``."""
    return json.dumps({"id": uid, **record.as_dict()}, ensure_ascii=False,
                      separators=(",", ":"))


def rows(records: Seq[EventRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The bind parameters of :data:`INSERT_EVENTS` and :data:`INSERT_OUTBOX` for
    ``records``: an event row each, and an outbox row for those of a kind a webhook may
    want (they get a ``uid``)."""
    uids = [uuid.uuid4().hex if r.event.value in _HOOKED else None for r in records]
    event_rows = [dict(zip(_INSERT.per_row, (
        r.at, r.event.value, r.enrollment_id, r.mailbox, r.sequence, r.step, r.email,
        r.message_id, r.detail, uid), strict=True)) for r, uid in zip(records, uids, strict=True)]
    outbox_rows = [{"o_uid": uid, "o_body": webhook_body(uid, r), "o_event": r.event.value}
                   for r, uid in zip(records, uids, strict=True) if uid is not None]
    return event_rows, outbox_rows


#: What :func:`add` runs, for a sender that runs them on its own DB-API connection.
INSERT_EVENTS = _INSERT.statement
INSERT_OUTBOX = _OUTBOX.statement


def add(conn: Connection, *records: EventRecord) -> None:
    """Store events; those of a kind a webhook may want get a ``uid`` and their outbox rows
    (for the webhooks subscribed now) in this same transaction."""
    event_rows, outbox_rows = rows(records)
    _INSERT.execute(conn, {}, [tuple(row.values()) for row in event_rows])
    _OUTBOX.execute(conn, {}, [tuple(row.values()) for row in outbox_rows])

"""Stored events: the same lines as the worker log, kept for `status` and later tools."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert
from sqlalchemy.engine import Dialect

from sequencer.eventlog import EventRecord
from sequencer.store.schema import events


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
            "message_id", "detail")
# Built once (this is on the send path): building and cache-keying an insert each time cost
# several times what running it does.
_INSERT = BulkInsert(
    insert(events).values({name: bindparam(f"e_{name}", type_=events.c[name].type)
                           for name in _COLUMNS}),
    per_row=[f"e_{name}" for name in _COLUMNS])


def add(conn: Connection, *records: EventRecord) -> None:
    _INSERT.execute(conn, {}, [
        (r.at, r.event.value, r.enrollment_id, r.mailbox, r.sequence, r.step, r.email,
         r.message_id, r.detail)
        for r in records
    ])

"""A large, realistic database for the scale benchmarks, written fast (not through the engine).

    from bench.bigdb import build, Shape
    build("sqlite:////tmp/big.db", Shape(enrollments=1_000_000, due=1000), now)

The schema comes from the engine's own migrations (``Store.create()``); the rows are then
written in bulk: ``executemany`` on SQLite (one transaction, ``synchronous=OFF`` while it
runs), ``COPY`` on PostgreSQL, followed by ``ANALYZE``. Columns that a later migration adds
and the generator does not know are filled from the column's meaning where it can
(``email_key``: the address itself, which is already in key form here) — anything else
NOT NULL without a default fails loudly.

What it writes, for ``n`` enrollments (deterministic: the same shape gives the same rows):

* one prospect per enrollment (``p{i}@d{i % 97}.example.com``), spread over ``sequences``
  sequences (3 steps each) and ``mailboxes`` mailboxes;
* states: 60 % active, 15 % completed, 10 % replied, 5 % unsubscribed, 5 % bounced, 3 %
  paused, 2 % stopped. Exactly ``due`` active enrollments are due (``next_due`` before
  ``now``, spread over the last hour); every other active one is due 1 to 30 days later;
* one ``sent`` send row per step already sent (about 1.4 per enrollment), with a unique
  Message-ID; ``created_at`` before today, so no mailbox has used its daily limit;
* a suppression for every unsubscribed and bounced enrollment's address, plus
  ``extra_suppressions`` addresses nobody is enrolled with;
* a mailboxes row per mailbox, and no events (nothing on the paths measured reads them).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sequencer.store.db import Store

STEPS = ("thank-you", "reminder", "new-information")
STATES = (  # (state, share in 1000)
    ("active", 600), ("completed", 150), ("replied", 100), ("unsubscribed", 50),
    ("bounced", 50), ("paused", 30), ("stopped", 20),
)
CHUNK = 20_000


@dataclass(frozen=True)
class Shape:
    enrollments: int
    due: int = 1000
    sequences: int = 4
    mailboxes: int = 10
    extra_suppressions: int = 0
    seed: int = 7

    def sequence_names(self) -> list[str]:
        return [f"seq{i}" for i in range(self.sequences)]

    def mailbox_names(self) -> list[str]:
        return [f"mb{i}" for i in range(self.mailboxes)]


def _state_table() -> list[str]:
    table: list[str] = []
    for state, share in STATES:
        table += [state] * share
    return table


@dataclass(frozen=True)
class Rows:
    prospects: list[tuple[Any, ...]]
    enrollments: list[tuple[Any, ...]]
    sends: list[tuple[Any, ...]]
    suppressions: list[tuple[Any, ...]]


ENROLLMENT_COLUMNS = ("id", "prospect_id", "email", "sequence", "mailbox", "state",
                      "step_index", "next_due", "attempts", "timezone", "vars",
                      "enrolled_at", "updated_at")
# Keyed by address (email_key, the primary key); generated addresses are already in key form.
SUPPRESSION_COLUMNS = ("email_key", "email", "reason", "at")
SEND_COLUMNS = ("id", "enrollment_id", "step_index", "step_name", "mailbox", "message_id",
                "status", "attempts", "created_at", "done_at", "smtp_code")


def generate(shape: Shape, now: datetime) -> Iterator[Rows]:
    """The rows, a chunk at a time (so 1M enrollments never sit in memory at once)."""
    rng = random.Random(shape.seed)
    states = _state_table()
    seqs, boxes = shape.sequence_names(), shape.mailbox_names()
    n = shape.enrollments
    actives = n * 600 // 1000
    due_every = max(1, actives * 9 // 10 // max(1, shape.due))  # spread over the table
    due_left = shape.due
    active_seen = 0
    send_id = 0
    past = now - timedelta(days=40)
    yesterday = now.replace(hour=0, minute=0, second=0, microsecond=1) - timedelta(hours=1)
    for start in range(0, n, CHUNK):
        prospects, enrollments, sends, suppressions = [], [], [], []
        for i in range(start, min(n, start + CHUNK)):
            eid = i + 1
            email = f"p{i}@d{i % 97}.example.com"
            state = states[(i * 7919) % 1000]
            enrolled = past + timedelta(seconds=rng.randrange(86400 * 10))
            next_due: datetime | None = None
            if state == "active":
                active_seen += 1
                step = rng.randrange(3)
                if due_left and active_seen % due_every == 0:
                    next_due = now - timedelta(seconds=1 + rng.randrange(3600))
                    due_left -= 1
                else:
                    next_due = now + timedelta(days=1, seconds=rng.randrange(86400 * 29))
            elif state == "completed":
                step = 3
            elif state in ("paused", "stopped"):
                step = rng.randrange(3)
            else:
                step = 1 + rng.randrange(2)
            seq = seqs[i % len(seqs)]
            box = boxes[i % len(boxes)]
            prospects.append((eid, email, enrolled))
            enrollments.append((eid, eid, email, seq, box, state, step, next_due, 0, "UTC",
                                f'{{"first_name": "Pat{i}", "company": "Co{i % 997}"}}',
                                enrolled, enrolled))
            for k in range(step):
                send_id += 1
                at = min(yesterday, enrolled + timedelta(days=2 * k, minutes=1))
                sends.append((send_id, eid, k, STEPS[k], box, f"<m{send_id}.{eid}@{box}.test>",
                              "sent", 1, at, at, 250))
            if state in ("unsubscribed", "bounced"):
                suppressions.append((email, f"{state}: generated", enrolled))
        if start + CHUNK >= n:
            for j in range(shape.extra_suppressions):
                suppressions.append((f"x{j}@gone.example.net", "by hand: generated", past))
        yield Rows(prospects, enrollments, sends, suppressions)
    if due_left:
        raise RuntimeError(f"could not place {due_left} due steps among {n} enrollments")


def build(url: str, shape: Shape, now: datetime | None = None, *, quiet: bool = False) -> float:
    """Create the schema at ``url`` (an empty database) and fill it; returns seconds taken."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if now.microsecond == 0:
        now = now.replace(microsecond=1)  # every generated time keeps it (see _sqlite_time)
    started = time.perf_counter()
    store = Store(url)
    store.create()
    store.dispose()
    if url.startswith("sqlite"):
        _fill_sqlite(url.split("///", 1)[1], shape, now)
    else:
        _fill_postgres(url, shape, now)
    took = time.perf_counter() - started
    if not quiet:
        print(f"  built {shape.enrollments:,} enrollments in {took:.1f}s ({_kind(url)})",
              flush=True)
    return took


def _kind(url: str) -> str:
    return "SQLite" if url.startswith("sqlite") else "PostgreSQL"


def _sqlite_time(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite storage format for DateTime: naive UTC, microseconds always (the
    # generator's times all carry microseconds, so str() has them: faster than strftime).
    return None if value is None else str(value.replace(tzinfo=None))


def _extra_columns(conn: Any, table: str, known: tuple[str, ...], *, sqlite: bool) -> list[str]:
    """NOT NULL columns without a default that the generator does not write itself."""
    if sqlite:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        return [row[1] for row in info if row[3] and row[4] is None and row[1] not in known
                and not row[5]]
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND is_nullable = 'NO' AND column_default IS NULL", (table,)).fetchall()
    return [r[0] for r in rows if r[0] not in known]


def _filler(table: str, extra: list[str], columns: tuple[str, ...]) -> Any:
    """How to fill columns a later migration added (by name)."""
    for name in extra:
        if name != "email_key":
            raise RuntimeError(f"bench/bigdb.py does not know how to fill {table}.{name}")
    if not extra:
        return lambda row: row
    at = columns.index("email")
    return lambda row: (*row, row[at])  # generated addresses are already in key form


def _fill_sqlite(path: str, shape: Shape, now: datetime) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    p_cols = ("id", "email", "created_at")
    p_extra = _extra_columns(conn, "prospects", p_cols, sqlite=True)
    e_extra = _extra_columns(conn, "enrollments", ENROLLMENT_COLUMNS, sqlite=True)
    p_fill, e_fill = _filler("prospects", p_extra, p_cols), _filler(
        "enrollments", e_extra, ENROLLMENT_COLUMNS)

    def insert(table: str, cols: tuple[str, ...] | list[str]) -> str:
        return (f"INSERT INTO {table} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})")

    conn.execute("BEGIN")
    for rows in generate(shape, now):
        conn.executemany(insert("prospects", [*p_cols, *p_extra]),
                         (p_fill((r[0], r[1], _sqlite_time(r[2]))) for r in rows.prospects))
        conn.executemany(
            insert("enrollments", [*ENROLLMENT_COLUMNS, *e_extra]),
            (e_fill((*r[:7], _sqlite_time(r[7]), *r[8:11], _sqlite_time(r[11]),
                     _sqlite_time(r[12]))) for r in rows.enrollments))
        conn.executemany(insert("sends", SEND_COLUMNS),
                         ((*r[:8], _sqlite_time(r[8]), _sqlite_time(r[9]), r[10])
                          for r in rows.sends))
        conn.executemany(insert("suppressions", SUPPRESSION_COLUMNS),
                         ((r[0], r[0], r[1], _sqlite_time(r[2])) for r in rows.suppressions))
    conn.executemany("INSERT INTO mailboxes (name, last_uid, paused) VALUES (?, 0, 0)",
                     [(m,) for m in shape.mailbox_names()])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _fill_postgres(url: str, shape: Shape, now: datetime) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        p_cols = ("id", "email", "created_at")
        p_extra = _extra_columns(conn, "prospects", p_cols, sqlite=False)
        e_extra = _extra_columns(conn, "enrollments", ENROLLMENT_COLUMNS, sqlite=False)
        p_fill = _filler("prospects", p_extra, p_cols)
        e_fill = _filler("enrollments", e_extra, ENROLLMENT_COLUMNS)
        with conn.cursor() as cur:
            for rows in generate(shape, now):
                for table, cols, data in (
                        ("prospects", [*p_cols, *p_extra], map(p_fill, rows.prospects)),
                        ("enrollments", [*ENROLLMENT_COLUMNS, *e_extra],
                         map(e_fill, rows.enrollments)),
                        ("sends", list(SEND_COLUMNS), rows.sends),
                        ("suppressions", list(SUPPRESSION_COLUMNS),
                         ((r[0], *r) for r in rows.suppressions))):
                    with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row(row)
            cur.executemany("INSERT INTO mailboxes (name, last_uid, paused) "
                            "VALUES (%s, 0, false)", [(m,) for m in shape.mailbox_names()])
            for table in ("prospects", "enrollments", "sends"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")

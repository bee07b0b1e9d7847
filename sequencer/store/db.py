"""Engines and transactions.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so a read-then-write never loses a race (SQLAlchemy's
``with_for_update()`` does nothing on SQLite). PostgreSQL uses ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import Connection, Engine, Row, create_engine, event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sequencer.errors import StoreConflict, StoreError

BUSY_TIMEOUT_MS = 30_000

#: A result row of any shape, its columns read by name (``row.email``).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Two engines over one database: ``write()`` (immediate transactions) and ``read()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.writer = _engine(url, immediate=True)
        self.reader = _engine(url, immediate=False) if self.is_sqlite else self.writer

    def create(self) -> None:
        """Bring the schema to the latest migration (alembic), once, under a write lock.

        SQLite serialises on ``BEGIN IMMEDIATE``; PostgreSQL on an advisory lock, so
        several processes starting at once do not race. On SQLite the migration runs with
        foreign keys off, as SQLite's own procedure for rebuilding a table requires (a table
        that others refer to cannot be dropped and recreated otherwise), and
        ``PRAGMA foreign_key_check`` must come back empty before it commits.
        """
        from alembic.runtime.migration import MigrationContext

        try:
            with self.reader.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            if current == HEAD:
                return
            with self.writer.connect() as conn:
                if self.is_sqlite:
                    _sqlite_foreign_keys(conn, on=False)
                try:
                    with conn.begin():
                        if not self.is_sqlite:
                            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(742031)")
                        upgrade(conn)
                        if self.is_sqlite:
                            _check_foreign_keys(conn)
                finally:
                    if self.is_sqlite:
                        _sqlite_foreign_keys(conn, on=True)
        except SQLAlchemyError as err:
            raise StoreError(f"cannot prepare the database {_redact(self.url)}: "
                             f"{getattr(err, 'orig', None) or err}") from err

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; retried from the top is the caller's job, locks wait.

        Every SQLAlchemy error becomes a ``StoreError`` (a lost unique-key race a
        ``StoreConflict``), after the transaction was rolled back."""
        try:
            with self.writer.begin() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise _store_error(err) from err

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection; SQLAlchemy errors become a ``StoreError``."""
        try:
            with self.reader.connect() as conn:
                yield conn
        except SQLAlchemyError as err:
            raise _store_error(err) from err

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


HEAD = "0008"
MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Run the migrations on ``conn`` up to ``revision`` (tests build older schemas)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    unversioned = MigrationContext.configure(conn).get_current_revision() is None
    if unversioned and inspect(conn).has_table("enrollments"):
        # Made by a build from before migrations existed: that schema is revision 0001.
        command.stamp(config, "0001")
    command.upgrade(config, revision)


def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> None:
    """Outside any transaction (SQLite ignores the pragma inside one)."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise StoreError("the SQLite connection is closed")
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise StoreError(f"the migration would leave rows pointing at nothing: {broken[:5]}")


def _store_error(err: SQLAlchemyError) -> StoreError:
    detail = getattr(err, "orig", None) or err
    if isinstance(err, IntegrityError):
        return StoreConflict(f"database conflict: {detail}")
    return StoreError(f"database error: {detail}")


def _redact(url: str) -> str:
    from sequencer.config import redact_url

    return redact_url(url)


def _engine(url: str, *, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=False, pool_recycle=300, pool_size=10,
                             max_overflow=40)
    connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        _retry_locked(lambda: cur.execute("PRAGMA journal_mode=WAL"))
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _retry_locked(action: Any, attempts: int = 50) -> None:
    for i in range(attempts):
        try:
            action()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or i == attempts - 1:
                raise
            time.sleep(0.05)

"""The alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sequencer.store.db import HEAD, Store
from sequencer.store.schema import metadata


def _diff(store: Store) -> list[object]:
    with store.reader.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == HEAD
        diffs = compare_metadata(context, metadata)
    # The UTC datetime wrapper stores as a plain timezone-aware DateTime.
    return [d for d in diffs if not (isinstance(d, list) and d and d[0][0] == "modify_type")]


def test_migrations_build_the_declared_schema_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    store.create()
    store.create()  # a second start changes nothing
    assert _diff(store) == []
    assert set(inspect(store.reader).get_table_names()) >= {
        "prospects", "enrollments", "sends", "events", "suppressions", "mailboxes", "inbound"}
    store.dispose()


def test_migrations_build_the_declared_schema_on_postgresql(pg_database_url: str) -> None:
    store = Store(pg_database_url)
    stores = [Store(pg_database_url) for _ in range(4)]
    threads = [threading.Thread(target=s.create) for s in stores]  # processes starting at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _diff(store) == []
    for s in [store, *stores]:
        s.dispose()

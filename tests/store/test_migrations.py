"""The alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sequencer.store.db import HEAD, Store, upgrade
from sequencer.store.schema import metadata


def release_database(url: str, revision: str = "0001") -> None:
    """An empty database exactly as the first release's code made it (its migration)."""
    store = Store(url)
    with store.writer.connect() as conn, conn.begin():
        upgrade(conn, revision)
    store.dispose()


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


def test_a_database_made_before_migrations_is_adopted_not_recreated(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    release_database(url)
    old = create_engine(url)
    with old.begin() as conn:
        conn.execute(text("drop table alembic_version"))  # made before migrations existed
        conn.execute(text("insert into suppressions (email, reason, at) "
                          "values ('ann@example.com', 'by hand', '2026-01-01 00:00:00')"))
    old.dispose()
    store = Store(url)
    store.create()
    assert _diff(store) == []
    with store.read() as conn:
        assert conn.execute(text("select email from suppressions")).scalar() == \
            "ann@example.com", "nothing stored is lost"
    store.dispose()


def test_an_unusable_database_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from sequencer.errors import StoreError

    (tmp_path / "not-a-db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot prepare the database"):
        Store(f"sqlite:///{tmp_path / 'not-a-db'}").create()

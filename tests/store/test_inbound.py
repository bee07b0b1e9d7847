"""The inbound side of the store: watcher leases and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sequencer.mail.watching import Cursor
from sequencer.store.db import Store
from sequencer.store.inbound import DbCursorStore, drop_lease, hold_lease

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_one_process_holds_a_mailbox_lease_at_a_time_until_it_expires(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.create()
    assert hold_lease(store, "sales", "a", NOW, 60)
    assert hold_lease(store, "sales", "a", NOW + timedelta(seconds=30), 60), "renewed"
    assert not hold_lease(store, "sales", "b", NOW + timedelta(seconds=60), 60)
    assert hold_lease(store, "sales", "b", NOW + timedelta(seconds=91), 60), "expired"
    assert not hold_lease(store, "sales", "a", NOW + timedelta(seconds=92), 60)
    drop_lease(store, "sales", "b")
    assert hold_lease(store, "sales", "a", NOW + timedelta(seconds=93), 60)
    store.dispose()


def test_the_cursor_survives_a_restart_and_keeps_the_lease_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(url)
    store.create()
    assert DbCursorStore(store).load("sales") == Cursor(None, 0)
    hold_lease(store, "sales", "a", NOW, 60)
    DbCursorStore(store).save("sales", Cursor(77, 1500))
    store.dispose()
    again = Store(url)
    assert DbCursorStore(again).load("sales") == Cursor(77, 1500)
    assert not hold_lease(again, "sales", "b", NOW, 60)
    again.dispose()

"""Grant stores: encrypted in the database (SQLite and PostgreSQL), or a 0600 file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sequencer.config import Secret
from sequencer.oauth.grants import (
    DatabaseGrants,
    FileGrants,
    Grant,
    GrantStoreError,
    new_key,
)
from sequencer.store.db import Store
from sequencer.store.schema import oauth_grants

REFRESH = "rt-the-refresh-token-never-shown-anywhere"


def grant(token: str = REFRESH) -> Grant:
    return Grant(Secret(token), "mail offline_access", "sales@example.test",
                 datetime(2026, 12, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'grants.db'}")
    store.create()
    yield store
    store.dispose()


def test_database_grants_round_trip_and_are_encrypted_at_rest(sqlite_store: Store) -> None:
    grants = DatabaseGrants(sqlite_store, Secret(new_key()), "SEQUENCER_TOKEN_KEY")
    assert grants.load("sales") is None
    grants.save("sales", grant())
    assert grants.load("sales") == grant()
    grants.save("sales", grant("rt-rotated"))
    loaded = grants.load("sales")
    assert loaded is not None and loaded.refresh_token.reveal() == "rt-rotated"
    with sqlite_store.read() as conn:
        sealed = conn.scalar(select(oauth_grants.c.sealed))
    assert sealed is not None and "rt-" not in sealed and "sales@example.test" not in sealed
    grants.delete("sales")
    assert grants.load("sales") is None


def test_database_grants_on_postgres(postgres_url: str) -> None:
    store = Store(postgres_url)
    store.create()
    try:
        grants = DatabaseGrants(store, Secret(new_key()), "K")
        grants.save("sales", grant())
        assert grants.load("sales") == grant()
    finally:
        store.dispose()


def test_a_wrong_key_is_a_clear_error_naming_the_variable(sqlite_store: Store) -> None:
    DatabaseGrants(sqlite_store, Secret(new_key()), "K1").save("sales", grant())
    with pytest.raises(GrantStoreError, match=r"does not decrypt with the key in \$K2.*"
                                              r"sequencer auth sales"):
        DatabaseGrants(sqlite_store, Secret(new_key()), "K2").load("sales")


def test_file_grants_are_0600_and_round_trip(tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "grants.json"
    grants = FileGrants(path)
    grants.save("sales", grant())
    grants.save("support", grant("rt-other"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert grants.load("sales") == grant()
    assert json.loads(path.read_text())["support"]["refresh_token"] == "rt-other"
    grants.delete("support")
    assert grants.load("support") is None
    assert grants.load("sales") == grant()


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grants.json"
    FileGrants(path).save("sales", grant())
    path.chmod(0o644)
    with pytest.raises(GrantStoreError, match=r"mode is 0644: run chmod 600"):
        FileGrants(path).load("sales")


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "grants.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(GrantStoreError, match="not JSON"):
        FileGrants(path).load("sales")


def test_a_grant_never_shows_its_refresh_token() -> None:
    shown = f"{grant()!r} {grant()} {grant().fingerprint}"
    assert REFRESH not in shown

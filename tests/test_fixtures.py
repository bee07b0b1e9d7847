"""The server fixtures themselves: Redis and PostgreSQL on loopback, started and stopped."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from tests.fixtures.postgres import (
    PostgresServer,
    admin_conninfo,
    find_postgres_binaries,
    fresh_database,
)
from tests.fixtures.redis import RedisServer, find_redis_server

SEEN_DATABASES: set[str] = set()


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _database_exists(port: int, name: str) -> bool:
    with psycopg.connect(admin_conninfo(port)) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    return row is not None


# --- Redis -------------------------------------------------------------------------------


def test_redis_server_answers_ping_on_its_loopback_url(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.client() as client:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}


def test_redis_server_restart_comes_back_on_the_same_port_with_an_empty_keyspace(
    redis_server: RedisServer,
) -> None:
    port, pid_before = redis_server.port, redis_server.pid
    with redis_server.client() as client:
        client.set("queued", "work")
        assert client.dbsize() == 1

    redis_server.restart()

    assert redis_server.port == port
    assert redis_server.pid != pid_before
    with redis_server.client() as client:
        assert client.ping() is True
        assert client.dbsize() == 0


def test_redis_server_flushall_empties_every_database(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.set("a", "1")
    redis_server.flushall()
    with redis_server.client() as client:
        assert client.dbsize() == 0


def test_redis_server_stop_ends_its_process_and_frees_the_port(redis_server: RedisServer) -> None:
    pid, port = redis_server.pid, redis_server.port
    assert pid is not None

    redis_server.stop()

    assert redis_server.pid is None
    assert _refuses_connections(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_redis_server_fails_with_the_install_command() -> None:
    with pytest.raises(pytest.fail.Exception, match="scripts/install-servers"):
        find_redis_server(path="/nonexistent")


# --- PostgreSQL --------------------------------------------------------------------------


def test_postgres_url_names_the_loopback_cluster_in_sqlalchemy_form(postgres_url: str) -> None:
    url = sqlalchemy.make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.database) == ("postgres", "127.0.0.1", "postgres")


def test_postgres_listens_on_loopback_only_with_fsync_off(
    postgres_server: PostgresServer,
) -> None:
    with psycopg.connect(admin_conninfo(postgres_server.port)) as conn:
        listen = conn.execute("show listen_addresses").fetchone()
        fsync = conn.execute("show fsync").fetchone()
    assert listen == ("127.0.0.1",)
    assert fsync == ("off",)


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_its_own_empty_database_where_select_1_works(
    pg_database_url: str, turn: str
) -> None:
    name = sqlalchemy.make_url(pg_database_url).database
    assert name is not None and name not in SEEN_DATABASES
    SEEN_DATABASES.add(name)
    engine = sqlalchemy.create_engine(pg_database_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
            # A database shared between tests would already hold the other turn's table.
            tables = conn.execute(
                sqlalchemy.text("select count(*) from pg_tables where tablename = 'marker'")
            ).scalar_one()
            assert tables == 0
            conn.execute(sqlalchemy.text("create table marker (turn text)"))
            conn.execute(sqlalchemy.text("insert into marker values (:t)"), {"t": turn})
    finally:
        engine.dispose()


def test_fresh_database_is_dropped_afterwards_even_with_a_session_left_open(
    postgres_server: PostgresServer,
) -> None:
    with fresh_database(postgres_server.port) as url:
        name = sqlalchemy.make_url(url).database
        assert name is not None and _database_exists(postgres_server.port, name)
        lingering = psycopg.connect(admin_conninfo(postgres_server.port, name))
    try:
        assert not _database_exists(postgres_server.port, name)
    finally:
        lingering.close()


def test_missing_postgres_binaries_fail_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="scripts/install-servers"):
        find_postgres_binaries(debian_root=tmp_path, path="/nonexistent")


def test_postgres_binaries_come_from_the_highest_debian_version(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("initdb", "postgres"):
            (bin_dir / name).touch(mode=0o755)
    found = find_postgres_binaries(debian_root=tmp_path, path="/nonexistent")
    assert found.initdb == tmp_path / "16" / "bin" / "initdb"
    assert found.postgres == tmp_path / "16" / "bin" / "postgres"

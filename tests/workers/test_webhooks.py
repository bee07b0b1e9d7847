"""Webhooks (issue 9, point 7): settings, the outbox written with the event, signed POSTs
into a real receiver on loopback, and at-least-once delivery across a receiver outage and
an engine killed and restarted in the middle."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sequencer.config import load_settings
from sequencer.core.machine import Event
from sequencer.core.webhooks import backoff
from sequencer.errors import ConfigError
from sequencer.eventlog import EventRecord
from sequencer.store import events as stored_events
from sequencer.store import webhooks as outbox
from sequencer.store.db import Store
from sequencer.store.schema import events, webhook_outbox
from tests.fixtures.receiver import Received, Receiver
from tests.fixtures.smtp import SmtpServer
from tests.workdir import make_workdir, prospects_csv, terminate, wait_until

SECRET = "whsec-0123456789abcdef-0123456789"
ONE_STEP = """\
name: one
mailbox: sales
timezone: UTC
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.down()


def verify(got: Received, secret: str = SECRET) -> dict[str, object]:
    """What a receiver does: recompute the HMAC over ``t.body`` and compare."""
    parts = dict(p.split("=", 1) for p in got.headers["sequencer-signature"].split(","))
    signed = parts["t"].encode() + b"." + got.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "the signature verifies"
    wrong = hmac.new(b"not-the-secret", signed, hashlib.sha256).hexdigest()
    assert parts["v1"] != wrong
    data: dict[str, object] = json.loads(got.body)
    assert got.headers["sequencer-event-id"] == data["id"]
    assert got.headers["content-type"] == "application/json"
    return data


# --- settings ------------------------------------------------------------------------------


def settings_error(tmp_path: Path, hooks: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "sequencer.yaml"
    path.write_text("broker: memory\nwebhooks:\n" + textwrap.indent(hooks, "  "),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"HOOK_SECRET": SECRET} if env is None else env)
    assert caught.value.path == str(path)
    return str(caught.value).removeprefix(f"{path}:")


def test_webhook_settings_load_with_the_secret_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "sequencer.yaml"
    path.write_text("webhooks:\n  - url: https://hooks.example.com/x\n"
                    "    events: [replied, bounced]\n    secret_env: HOOK_SECRET\n",
                    encoding="utf-8")
    (hook,) = load_settings(path, env={"HOOK_SECRET": SECRET}).webhooks
    assert hook.url == "https://hooks.example.com/x"
    assert hook.events == {"replied", "bounced"}
    assert hook.secret.reveal() == SECRET
    assert SECRET not in repr(hook)


@pytest.mark.parametrize(("hooks", "env", "line", "reason"), [
    ("- url: https://h.example.com/\n  events: [replied]\n  secret_env: HOOK_SECRET\n"
     "  retries: 3\n", None, 6, "unknown key 'retries'"),
    ("- url: http://h.example.com/\n  events: [replied]\n  secret_env: HOOK_SECRET\n",
     None, 3, "url: must be an https URL (http only to a loopback host)"),
    ("- url: https://h.example.com/\n  events: [sent]\n  secret_env: HOOK_SECRET\n",
     None, 4, "events"),
    ("- url: https://h.example.com/\n  events: [replied]\n  secret_env: HOOK_SECRET\n",
     {}, 5, "secret_env: environment variable HOOK_SECRET is not set"),
    ("- url: https://h.example.com/\n  events: [replied]\n  secret: abc\n",
     None, 5, "secret"),
])
def test_bad_webhook_settings_name_the_line_and_reason(
        tmp_path: Path, hooks: str, env: dict[str, str] | None, line: int, reason: str
) -> None:
    message = settings_error(tmp_path, hooks, env)
    assert message.startswith(f"{line}:"), message
    assert reason in message


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff(10_000, 1.0, 10.0) == 10.0


# --- the outbox is written with the event ---------------------------------------------------


def test_outbox_rows_are_written_in_the_events_transaction_for_subscribed_kinds(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create()
    outbox.subscribe(store, [("http://127.0.0.1:1/a", "replied"),
                             ("http://127.0.0.1:1/b", "replied"),
                             ("http://127.0.0.1:1/b", "completed")])
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    recs = [EventRecord(Event.REPLIED, at, email="ann@x.test"),
            EventRecord(Event.SENT, at, email="ann@x.test"),
            EventRecord(Event.COMPLETED, at, email="bo@x.test")]
    with store.write() as conn:
        stored_events.add(conn, *recs)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.write() as conn:
        stored_events.add(conn, EventRecord(Event.REPLIED, at, email="cy@x.test"))
        raise Boom  # rolled back: neither the event nor its outbox row stays
    with store.read() as conn:
        stored = {r.event: r.uid for r in conn.execute(select(events))}
        rows = conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.id)).all()
    assert set(stored) == {"replied", "sent", "completed"}
    assert stored["sent"] is None, "no id for an event no webhook may want"
    assert sorted((r.url[-1], r.event, r.event_uid) for r in rows) == sorted([
        ("a", "replied", stored["replied"]), ("b", "replied", stored["replied"]),
        ("b", "completed", stored["completed"])])
    body = json.loads(rows[0].body)
    assert body["id"] == rows[0].event_uid
    assert body["email"] in {"ann@x.test", "bo@x.test"}
    store.dispose()


# --- delivery, end to end ------------------------------------------------------------------


def _expected_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {uid for (uid,) in conn.execute(
            "SELECT uid FROM events WHERE event = 'completed'")}


def test_run_delivers_signed_events_at_least_once_across_an_outage_and_a_restart(
        tmp_path: Path, smtp_server: SmtpServer, receiver: Receiver) -> None:
    emails = [f"p{i}@example.com" for i in range(8)]
    wd = make_workdir(
        tmp_path, smtp_server.port, sequence=ONE_STEP,
        extra=("webhook_backoff: 0.2s\nwebhook_max_backoff: 1s\nwebhook_timeout: 2s\n"
               f"webhooks:\n  - url: {receiver.url}\n    events: [completed, replied]\n"
               "    secret_env: HOOK_SECRET\n"))
    wd.env["HOOK_SECRET"] = SECRET
    db = tmp_path / "sequencer.db"
    wd.cli("enroll", "one", str(prospects_csv(wd, emails[:4])), check=True)

    # The receiver is down: the engine sends, completes, and keeps its deliveries.
    proc = wd.start("run")
    try:
        wait_until(lambda: len(_expected_ids(db)) == 4, 30, "four completed")
        wait_until(lambda: "not delivered (ConnectError" in wd.log(), 15,
                   "a failed delivery logged")
    finally:
        proc.kill()  # killed, not stopped: nothing gets a chance to finish
        proc.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        tries = conn.execute("SELECT attempts, delivered_at FROM webhook_outbox").fetchall()
    assert len(tries) == 4 and all(d is None for _, d in tries), tries
    assert any(a >= 1 for a, _ in tries), "tried, and failed, while the receiver was down"

    # More events while the engine is down; it is restarted while the receiver is still
    # down, tries the old and the new deliveries and fails, then the receiver comes back.
    wd.cli("enroll", "one", str(prospects_csv(wd, emails[4:], name="more.csv")), check=True)
    proc = wd.start("run", log="run2.log")
    try:
        wait_until(lambda: len(_expected_ids(db)) == 8, 30, "eight completed")
        expected = _expected_ids(db)
        wait_until(lambda: all(f"event {uid} (completed) not delivered (ConnectError"
                               in wd.log("run2.log") for uid in expected), 15,
                   "the restarted engine failing on old and new deliveries alike")
        assert receiver.snapshot() == []
        receiver.up()
        wait_until(lambda: expected <= {json.loads(r.body)["id"]
                                         for r in receiver.snapshot()},
                   30, "every event delivered")
    finally:
        assert terminate(proc) == 0, wd.log("run2.log")

    got = receiver.snapshot()
    bodies = [verify(r) for r in got]
    assert {b["id"] for b in bodies} == expected, "no id lost, none made up"
    assert {b["event"] for b in bodies} == {"completed"}, "only subscribed kinds"
    assert {b["email"] for b in bodies} == set(emails)
    assert all(r.path == "/hook" for r in got)
    with sqlite3.connect(db) as conn:
        left = conn.execute(
            "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL").fetchone()[0]
    assert left == 0

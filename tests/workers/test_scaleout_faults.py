"""RELIABILITY R1–R10 on the scale-out layout: a real `sequencer scheduler` and real
`sequencer worker` processes over Redis, on PostgreSQL (R8 on SQLite too).

The same rows run embedded (`sequencer run`, SQLite) in test_crash_recovery.py and
test_delivery_faults.py; here every send crosses Redis and a worker process, where the
broker's at-least-once delivery, its restarts and a worker's death are real. Each test
checks the three invariants against the aiosmtpd ledger.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.fixtures.proxy import TcpProxy
from tests.fixtures.redis import RedisServer
from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until

ONE_STEP = """\
name: three
mailbox: sales
steps:
  - {name: hello, template: thank_you, wait: 0s}
"""
BIG = "Subject: Thanks, {{ first_name }}\n\nHi {{ first_name }}!\n" + "padding line\n" * 200


def scaleout(tmp_path: Path, smtp_port: int, redis_url: str, database: str, **kw: str) -> Workdir:
    extra = kw.pop("mailbox_extra", "")
    return make_workdir(
        tmp_path,
        smtp_port,
        database=database,
        broker=redis_url,
        mailbox_extra="    daily_limit: 100000\n" + extra,
        **kw,
    )


def queued(url: str) -> int:
    """Send messages in Redis that no live worker has finished: waiting, or fetched and
    not acknowledged (a killed worker's stay so until its heartbeat times out)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.hlen("dramatiq:send.msgs"))
    finally:
        client.close()


def waiting(url: str) -> int:
    """Send messages in Redis that no worker has fetched yet."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen("dramatiq:send"))
    finally:
        client.close()


def progress(database: str) -> dict[str, tuple[str, int]]:
    """Each enrollment's (state, steps sent), read straight from the database (the
    `status` command costs a process start per look)."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return {
                row.email: (row.state, row.step_index)
                for row in conn.execute(text("select email, state, step_index from enrollments"))
            }
    finally:
        engine.dispose()


def all_in(database: str, state: str) -> bool:
    return all(s == state for s, _ in progress(database).values())


@contextlib.contextmanager
def running(
    wd: Workdir, *args: str, log: str, code: int | None = 0
) -> Iterator[subprocess.Popen[bytes]]:
    """A `sequencer` process for the block; SIGTERM after it, which must exit ``code``."""
    proc = wd.start(*args, log=log)
    try:
        yield proc
    finally:
        exit_code = terminate(proc)
    if code is not None:
        assert exit_code == code, f"{' '.join(args)} exited {exit_code}:\n{wd.log(log)[-3000:]}"


def test_r1_a_worker_killed_after_claiming_is_reclaimed_after_the_lease_and_sent_once(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, pg_database_url, sequence=ONE_STEP, lease="2s"
    )
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    with running(wd, "scheduler", log="scheduler.log"):
        crashed = wd.start(
            "worker", extra_env={"SEQUENCER_TEST_CRASH_AT": "after_claim"}, log="crashed.log"
        )
        assert crashed.wait(timeout=30) == -signal.SIGKILL, wd.log("crashed.log")
        assert smtp_server.deliveries == []
        with running(wd, "worker", log="worker.log"):
            smtp_server.wait_for(1, timeout=30)
            wait_until(lambda: all_in(pg_database_url, "completed"), 20, "completed")
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 1}


def test_r2_a_worker_killed_after_the_250_leaves_the_step_unknown_and_never_resends_it(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, pg_database_url, sequence=ONE_STEP, lease="1s"
    )
    wd.config.write_text(wd.config.read_text().replace("timeout: 3s", "timeout: 1s"))
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    with running(wd, "scheduler", log="scheduler.log"):
        crashed = wd.start(
            "worker", extra_env={"SEQUENCER_TEST_CRASH_AT": "after_250"}, log="crashed.log"
        )
        assert crashed.wait(timeout=30) == -signal.SIGKILL, wd.log("crashed.log")
        assert len(smtp_server.deliveries) == 1
        with running(wd, "worker", log="worker.log"):
            # The gate held the step for 2 × timeout + 5 s; then the sweep calls it unknown.
            wait_until(lambda: all_in(pg_database_url, "paused"), 40, "flagged unknown")
            wait_until(lambda: waiting(redis_server.url) == 0, 10, "the queue drained")
    status = wd.status()[0]
    assert status["unknown_steps"] == 1 and "unknown" in status["flag"]
    assert "unknown" in wd.log("scheduler.log")
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"unknown": 1}


def test_r3_a_connection_cut_in_the_middle_of_data_is_retried_and_delivered_once(
    tmp_path: Path,
    smtp_server: SmtpServer,
    redis_server: RedisServer,
    pg_database_url: str,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    proxy = tcp_proxy(smtp_server.host, smtp_server.port)
    wd = scaleout(tmp_path, proxy.port, redis_server.url, pg_database_url, sequence=ONE_STEP)
    wd.write("templates/thank_you.txt.j2", BIG)
    proxy.cut_after(1500)  # past the commands, inside the 2.7 KB message: no final dot
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    with running(wd, "scheduler", log="scheduler.log"), running(wd, "worker", log="worker.log"):
        smtp_server.wait_for(1, timeout=30)
        wait_until(lambda: all_in(pg_database_url, "completed"), 20, "completed")
    assert proxy.accepted >= 2, "the cut connection, then the retry"
    assert "retrying" in wd.log("worker.log")
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 1}


def test_r4_a_server_that_takes_the_dot_and_never_answers_leaves_one_unknown_delivery(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    smtp_server.stall_after_data(6.0)
    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, pg_database_url, sequence=ONE_STEP, lease="1s"
    )
    wd.config.write_text(wd.config.read_text().replace("timeout: 3s", "timeout: 1s"))
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    with running(wd, "scheduler", log="scheduler.log"), running(wd, "worker", log="worker.log"):
        wait_until(lambda: all_in(pg_database_url, "paused"), 30, "flagged unknown")
        smtp_server.stall_after_data(0)
        wait_until(lambda: waiting(redis_server.url) == 0, 10, "the queue drained")
    status = wd.status()[0]
    assert status["unknown_steps"] == 1 and "unknown" in status["flag"]
    assert len(smtp_server.deliveries) == 1
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"unknown": 1}


def test_r5_redis_restarted_with_work_queued_loses_nothing_on_postgresql(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, pg_database_url, sequence=ONE_STEP, lease="2s"
    )
    emails = [f"p{i}@example.com" for i in range(20)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    with running(wd, "scheduler", log="scheduler.log"):
        wait_until(lambda: queued(redis_server.url) >= 20, 30, "20 sends queued in Redis")
        redis_server.restart()  # everything queued is gone
        assert queued(redis_server.url) == 0
        with running(wd, "worker", log="worker.log"):
            smtp_server.wait_for(20, timeout=40)
            wait_until(lambda: all_in(pg_database_url, "completed"), 20, "all completed")
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 20}


def test_r6_every_message_queued_three_times_to_two_processes_sends_each_step_once(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    import dramatiq

    from workers import actors
    from workers.broker import make_broker

    wd = scaleout(
        tmp_path,
        smtp_server.port,
        redis_server.url,
        pg_database_url,
        sequence=ONE_STEP,
        lease="30s",
    )
    emails = [f"p{i}@example.com" for i in range(10)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    with running(wd, "scheduler", log="scheduler.log"):
        wait_until(lambda: queued(redis_server.url) >= 10, 30, "10 sends queued")
    broker = make_broker(redis_server.url)
    try:
        actor = actors.declare(broker)
        with redis_server.client() as client:
            payloads = [
                dramatiq.Message.decode(raw if isinstance(raw, bytes) else raw.encode()).args[0]
                for raw in client.hgetall("dramatiq:send.msgs").values()
            ]
        for payload in payloads * 2:  # the broker delivers each job three times
            actor.send(payload)
    finally:
        broker.close()
    assert queued(redis_server.url) == 30
    with running(wd, "worker", "--processes", "2", "--threads", "4", log="worker.log"):
        smtp_server.wait_for(10, timeout=40)
        wait_until(lambda: queued(redis_server.url) == 0, 30, "every copy consumed")
    assert len(smtp_server.deliveries) == 10
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 10}


def test_r7_sigterm_to_a_worker_with_sends_in_flight_records_them_and_exits_0(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    smtp_server.stall_after_data(1.5)
    wd = scaleout(
        tmp_path,
        smtp_server.port,
        redis_server.url,
        pg_database_url,
        sequence=ONE_STEP,
        lease="30s",
    )
    emails = [f"p{i}@example.com" for i in range(8)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    with running(wd, "scheduler", log="scheduler.log"):
        worker = wd.start("worker", "--threads", "4", log="worker.log")
        smtp_server.wait_for(1, timeout=30)  # at least one is waiting for its 250 now
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, wd.log("worker.log")
        delivered = {d.rcpt_tos[0] for d in smtp_server.deliveries}
        states = {email: s for email, (s, _) in progress(pg_database_url).items()}
        assert delivered and len(delivered) < len(emails)
        for email in delivered:
            assert states[email] == "completed", f"{email} was delivered but not recorded"
        # What it gave back is sent by the next worker, once.
        smtp_server.stall_after_data(0)
        with running(wd, "worker", log="worker2.log"):
            wait_until(lambda: all_in(pg_database_url, "completed"), 30, "all sent")
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)
    assert check_invariants(smtp_server.deliveries, pg_database_url) == {"sent": 8}


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_r8_two_schedulers_and_two_worker_processes_of_four_threads_claim_each_step_once(
    tmp_path: Path,
    smtp_server: SmtpServer,
    redis_server: RedisServer,
    db: str,
    request: pytest.FixtureRequest,
) -> None:
    database = (
        request.getfixturevalue("pg_database_url")
        if db == "postgresql"
        else f"sqlite:///{tmp_path / 'sequencer.db'}"
    )
    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, database, sequence=ONE_STEP, lease="30s"
    )
    emails = [f"p{i}@example.com" for i in range(200)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    with (
        running(wd, "scheduler", log="scheduler0.log"),
        running(wd, "scheduler", log="scheduler1.log"),
        running(wd, "worker", "--processes", "2", "--threads", "4", log="worker.log"),
    ):
        smtp_server.wait_for(200, timeout=60)
        wait_until(lambda: all_in(database, "completed"), 30, "done")
    logs = wd.log("scheduler0.log") + wd.log("scheduler1.log") + wd.log("worker.log")
    assert "locked" not in logs, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)
    assert check_invariants(smtp_server.deliveries, database) == {"sent": 200}


def test_r9_a_reply_committed_while_the_next_step_waits_in_redis_means_nothing_is_sent(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    from sequencer.mail.watching import Inbound
    from sequencer.usecases import receiving
    from sequencer.workspace import Workspace

    wd = scaleout(
        tmp_path, smtp_server.port, redis_server.url, pg_database_url, wait2="5s", lease="30s"
    )
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    scheduler = wd.start("scheduler", log="scheduler.log")
    with running(wd, "worker", log="worker.log"):
        smtp_server.wait_for(1, timeout=30)
    # No worker now: step 2 is claimed when due and waits in Redis.
    wait_until(lambda: waiting(redis_server.url) >= 1, 30, "step 2 claimed and queued")
    first_id = smtp_server.deliveries[0].message["Message-ID"]
    reply = (
        f"From: Ann <ann@example.com>\r\nTo: dana@example.com\r\nSubject: Re: hi\r\n"
        f"Message-ID: <r9@example.com>\r\nIn-Reply-To: {first_id}\r\n\r\nLet's talk."
    ).encode()
    app = Workspace.load(wd.config)
    try:
        record = receiving.handle(app, "sales", Inbound(uid=1, raw=reply))
    finally:
        app.close()
    assert record is not None and record.event.value == "replied"
    try:
        with running(wd, "worker", log="worker2.log"):
            wait_until(lambda: queued(redis_server.url) == 0, 30, "the claimed step consumed")
    finally:
        assert terminate(scheduler) == 0
    assert "halted before DATA" in wd.log("worker2.log")
    assert len(smtp_server.deliveries) == 1, "nothing sent after the reply"
    assert wd.status()[0]["state"] == "replied"
    check_invariants(smtp_server.deliveries, pg_database_url)


def test_r10_the_clock_jumps_forward_days_then_back_an_hour_and_nothing_is_resent(
    tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer, pg_database_url: str
) -> None:
    wd = scaleout(
        tmp_path,
        smtp_server.port,
        redis_server.url,
        pg_database_url,
        wait2="2d",
        wait3="1w",
        lease="30s",
    )
    clock = tmp_path / "clock"
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def at(instant: datetime) -> None:
        clock.write_text(instant.isoformat())

    at(now)
    wd.env["SEQUENCER_TEST_CLOCK"] = f"file:{clock}"
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)

    def sent() -> int:
        return progress(pg_database_url)["ann@example.com"][1]

    with running(wd, "scheduler", log="scheduler.log"), running(wd, "worker", log="worker.log"):
        wait_until(lambda: sent() == 1, 30, "step 1")
        now += timedelta(days=20)  # past both remaining waits
        at(now)
        wait_until(lambda: sent() == 2, 30, "step 2")
        now -= timedelta(hours=1)
        at(now)
        time.sleep(1.0)  # five ticks
        assert waiting(redis_server.url) == 0
        assert len(smtp_server.deliveries) == 2, "step 3 is due a week after step 2"
        now += timedelta(weeks=1, hours=1)
        at(now)
        wait_until(lambda: sent() == 3, 30, "step 3")
        now -= timedelta(hours=1)
        at(now)
        now += timedelta(days=60)
        at(now)
        time.sleep(1.0)
        assert waiting(redis_server.url) == 0
    subjects = [d.message["Subject"] for d in smtp_server.deliveries]
    assert len(subjects) == 3
    assert subjects[0].startswith("Thanks") and subjects[1].startswith("Re: Thanks")
    assert subjects[2].startswith("New for")
    assert check_invariants(smtp_server.deliveries, pg_database_url, now=now) == {"sent": 3}

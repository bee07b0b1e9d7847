"""Scale-out over Redis: separate scheduler and worker processes (RELIABILITY R5)."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.fixtures.redis import RedisServer
from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import make_workdir, prospects_csv, terminate, wait_until

ONE_STEP = """\
name: three
mailbox: sales
steps:
  - {name: hello, template: thank_you, wait: 0s}
"""


def queued(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.llen(k)) for k in client.keys("dramatiq:send*")
                   if client.type(k) == b"list")
    finally:
        client.close()


def test_r5_redis_restarted_with_work_queued_loses_no_step_and_sends_each_once(
        tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence=ONE_STEP, lease="2s",
                      broker=redis_server.url)
    emails = [f"p{i}@example.com" for i in range(20)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    scheduler = wd.start("scheduler", log="scheduler.log")
    try:
        wait_until(lambda: queued(redis_server.url) >= 20, 20, "20 sends queued in Redis")
        redis_server.restart()  # everything queued is gone
        assert queued(redis_server.url) == 0
        worker = wd.start("worker", "--threads", "4", log="worker.log")
        try:
            smtp_server.wait_for(20, timeout=40)
            wait_until(lambda: all(s["state"] == "completed" for s in wd.status()), 20,
                       "all completed")
        finally:
            assert terminate(worker) == 0, wd.log("worker.log")
    finally:
        assert terminate(scheduler) == 0, wd.log("scheduler.log")
    assert len(smtp_server.deliveries) == 20
    assert sorted(d.rcpt_tos[0] for d in smtp_server.deliveries) == sorted(emails)
    assert check_invariants(smtp_server.deliveries,
                            f"sqlite:///{wd.path / 'sequencer.db'}") == {"sent": 20}


def test_worker_refuses_the_in_process_broker_with_a_clear_error(tmp_path: Path,
                                                                 smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    result = wd.cli("worker")
    assert result.returncode == 1
    assert "shared broker" in result.stderr


def test_the_scheduler_counts_what_waits_in_redis_not_what_a_worker_fetched(
        redis_server: RedisServer) -> None:
    """A fetched message is a worker's (and a killed worker's would hold every claim back
    until its heartbeat times out): the queue depth is what no worker has fetched yet."""
    from workers import actors
    from workers.broker import QUEUE, make_broker, queue_depth

    broker = make_broker(redis_server.url)
    try:
        actor = actors.declare(broker)
        depth = queue_depth(broker)
        assert depth() == 0
        for i in range(3):
            actor.send({"enrollment_id": i})
        assert depth() == 3
        consumer = broker.consume(QUEUE, prefetch=2, timeout=100)
        fetched = [next(consumer) for _ in range(2)]  # fetched, never acknowledged
        assert all(m is not None for m in fetched)
        assert depth() == 1
        consumer.close()
    finally:
        broker.close()

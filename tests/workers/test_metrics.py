"""`--metrics-port`: a running `sequencer run` serves Prometheus metrics over HTTP, and its
counters move when real mail reaches the aiosmtpd ledger (issue 10 item 6)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from tests.fixtures.redis import RedisServer, free_port
from tests.fixtures.smtp import SmtpServer
from tests.workdir import make_workdir, prospects_csv, terminate, wait_until


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        found = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if found:
            values[found.group(1)] = float(found.group(2))
    return values


def test_run_serves_metrics_and_the_sent_counter_follows_the_ledger(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1h", wait3="1h")
    port = free_port()
    proc = wd.start("run", "--metrics-port", str(port))
    try:
        wait_until(lambda: f"metrics on http://127.0.0.1:{port}/metrics" in wd.log(), 30,
                   "the metrics endpoint")
        before = _scrape(port)
        assert before.get('sequencer_events_total{event="sent"}', 0) == 0
        assert before["sequencer_due_now"] == 0
        wd.cli("enroll", "three", str(prospects_csv(
            wd, ["ann@example.com", "bo@example.com", "cy@example.com"])), check=True)
        smtp_server.wait_for(3, timeout=30)
        wait_until(lambda: _scrape(port).get('sequencer_events_total{event="sent"}') == 3,
                   15, "three sent counted")
        after = _scrape(port)
    finally:
        assert terminate(proc) == 0, wd.log()
    assert len(smtp_server.deliveries) == 3
    assert 'sequencer_events_total{event="enrolled"}' not in after  # enroll ran elsewhere
    assert after["sequencer_due_now"] == 0  # the reminders are an hour away
    assert after["sequencer_oldest_due_age_seconds"] == 0



def test_a_worker_over_redis_counts_its_dramatiq_messages_and_sends(
        tmp_path: Path, smtp_server: SmtpServer, redis_server: RedisServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1h", wait3="1h",
                      broker=redis_server.url)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    port = free_port()
    worker = wd.start("worker", "--threads", "2", "--metrics-port", str(port),
                      log="worker.log")
    scheduler = wd.start("scheduler", log="scheduler.log")
    try:
        smtp_server.wait_for(2, timeout=40)
        sent = 'sequencer_events_total{event="sent"}'
        wait_until(lambda: _scrape(port).get(sent) == 2, 15, "two sent counted")
        got = _scrape(port)
    finally:
        assert terminate(scheduler) == 0, wd.log("scheduler.log")
        assert terminate(worker) == 0, wd.log("worker.log")
    messages = {k: v for k, v in got.items() if k.startswith("dramatiq_messages_total{")}
    assert sum(messages.values()) == 2, got
    assert list(messages) == ['dramatiq_messages_total{actor_name="send_step",queue_name="send"}']

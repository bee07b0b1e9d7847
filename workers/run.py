"""``sequencer run``: scheduler, send workers and inbox watchers in one process.

SIGTERM (or SIGINT) stops claiming, lets in-flight sends finish and be recorded, gives
back claims that were dispatched but not started, and returns 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.stub import StubBroker

from sequencer.config import redact_url
from sequencer.store import outcomes
from sequencer.store.claims import Claim
from sequencer.workspace import Workspace
from workers import actors, runtime
from workers.broker import QUEUE, make_broker
from workers.scheduler import Scheduler
from workers.watch import start_watchers
from workers.webhooks import Deliverer

logger = logging.getLogger(__name__)


def start_workers(app: Workspace, threads: int) -> tuple[dramatiq.Broker, dramatiq.Worker,
                                                   dramatiq.Actor]:  # type: ignore[type-arg]
    broker = make_broker(app.settings.broker)
    actor = actors.declare(broker)
    runtime.install(app)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    return broker, worker, actor


def stop_workers(broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    runtime.stopping.set()  # anything not started yet is given back, not sent
    if isinstance(broker, StubBroker):
        try:
            broker.join(QUEUE, timeout=60_000, fail_fast=False)
        except Exception:  # a timeout here only means leases will expire instead
            logger.warning("could not drain the in-process queue", exc_info=True)
    worker.stop(timeout=120_000)
    runtime.close_all()
    broker.close()


def run(app: Workspace, stop: threading.Event, *, threads: int = 8, scheduler: bool = True,
        senders: bool = True, watchers: bool = True,
        until: Callable[[], bool] | None = None) -> int:
    """Run until ``stop`` is set (or ``until()`` turns true); returns the exit code."""
    if senders:
        for name in outcomes.unpause_mailboxes(app.store):
            logger.info("mailbox %s was paused; trying it again", name)
    broker, worker, actor = start_workers(app, threads) if senders else (None, None, None)
    backlog: Callable[[], int] = lambda: 0  # noqa: E731
    if isinstance(broker, StubBroker):
        queue = broker.queues[QUEUE]
        backlog = queue.qsize
    if actor is None and scheduler:
        broker = make_broker(app.settings.broker)
        actor = actors.declare(broker)
    sched = None
    if scheduler and actor is not None:
        send = actor.send

        def enqueue(claim: Claim) -> None:
            send(claim.enrollment_id, claim.token)

        sched = Scheduler(app, enqueue, backlog=backlog)
    watch_threads = start_watchers(app, stop) if watchers else []
    threads_: list[threading.Thread] = []
    if sched is not None:
        t = threading.Thread(target=sched.run, args=(stop,), name="scheduler", daemon=True)
        t.start()
        threads_.append(t)
    deliverer = Deliverer(app) if scheduler and app.settings.webhooks else None
    if deliverer is not None:
        t = threading.Thread(target=deliverer.run, args=(stop,), name="webhooks", daemon=True)
        t.start()
        threads_.append(t)
    logger.info("running: broker=%s database=%s", redact_url(app.settings.broker),
                redact_url(app.settings.database))
    try:
        while not stop.is_set():
            if until is not None and until():
                break
            stop.wait(0.2)
    finally:
        stop.set()
        if sched is not None:
            sched.wake.set()
        if deliverer is not None:
            deliverer.wake.set()
        for t in threads_:
            t.join(timeout=30)
        if worker is not None and broker is not None:
            stop_workers(broker, worker)
        for t in watch_threads:
            t.join(timeout=30)
    return 0

"""``sequencer run``: scheduler, send workers and inbox watchers in one process.

SIGTERM (or SIGINT) stops claiming, lets in-flight sends finish and be recorded, gives
back claims that were dispatched but not started, and returns 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq
from prometheus_client import CollectorRegistry

from sequencer.config import redact_url
from sequencer.store import outcomes
from sequencer.store.claims import Job
from sequencer.workspace import Workspace
from workers import actors, runtime
from workers.broker import make_broker, queue_depth
from workers.runtime import SendLoop
from workers.scheduler import Scheduler
from workers.watch import start_watchers
from workers.webhooks import Deliverer

logger = logging.getLogger(__name__)


def start_workers(app: Workspace, threads: int, metrics: CollectorRegistry | None = None
                  ) -> tuple[dramatiq.Broker, dramatiq.Worker, dramatiq.Actor, SendLoop]:  # type: ignore[type-arg]
    """The broker's worker threads, each handing its message's job to this process's one
    sender (``threads`` concurrent sends on one event loop)."""
    broker = make_broker(app.settings.broker)
    if metrics is not None:
        from workers.metrics import DramatiqMetrics

        broker.add_middleware(DramatiqMetrics(metrics))
    actor = actors.declare(broker)
    sender = SendLoop(app, threads).start()
    runtime.install(sender)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    return broker, worker, actor, sender


def stop_workers(broker: dramatiq.Broker, worker: dramatiq.Worker, sender: SendLoop) -> None:
    runtime.stopping.set()  # anything not started yet is given back, not sent
    worker.stop(timeout=120_000)
    sender.stop()
    broker.close()


def run(app: Workspace, stop: threading.Event, *, threads: int = 8, scheduler: bool = True,
        senders: bool = True, watchers: bool = True,
        until: Callable[[], bool] | None = None,
        metrics: CollectorRegistry | None = None) -> int:
    """Run until ``stop`` is set (or ``until()`` turns true); returns the exit code.

    With ``broker: memory`` the scheduler hands its jobs straight to the in-process sender
    (no broker in between: nothing would survive the process anyway); with Redis they go
    through dramatiq, and the scheduler watches the queue's depth.
    """
    if senders:
        for name in outcomes.unpause_mailboxes(app.store):
            logger.info("mailbox %s was paused; trying it again", name)
    embedded = app.settings.broker == "memory"
    sender: SendLoop | None = None
    broker: dramatiq.Broker | None = None
    worker: dramatiq.Worker | None = None
    enqueue: Callable[[Job], None] | None = None
    backlog: Callable[[], int] = lambda: 0  # noqa: E731
    if senders and embedded:
        sender = SendLoop(app, threads).start()
        enqueue, backlog = sender.submit, sender.backlog
    elif senders:
        broker, worker, actor, sender = start_workers(app, threads, metrics)
    if scheduler and enqueue is None:
        if broker is None:
            broker = make_broker(app.settings.broker)
            actor = actors.declare(broker)
        send = actor.send
        backlog = queue_depth(broker)

        def enqueue(job: Job) -> None:
            send(job.payload())

    sched = Scheduler(app, enqueue, backlog=backlog) if scheduler and enqueue else None
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
        if worker is not None and broker is not None and sender is not None:
            stop_workers(broker, worker, sender)
        elif sender is not None:
            sender.stop()
        for t in watch_threads:
            t.join(timeout=30)
    return 0

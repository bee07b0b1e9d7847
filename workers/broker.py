"""The broker from settings: ``memory`` (dramatiq's StubBroker, in-process) or ``redis://``.

The broker only says "do this now": a message carries the claimed job (its enrollment, its
claim token and what the send needs); the gate trusts nothing in it but the token.
``sequencer run`` with ``memory`` hands its jobs to its own sender without a broker.
Middleware is cut down on purpose: no time limit and no shutdown interrupts (either could
cancel a send after the server's 250), and no broker retries (transient failures are
rescheduled in the database).
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries

from sequencer.config import redact_url
from sequencer.errors import ConfigError

QUEUE = "send"


def make_broker(url: str) -> dramatiq.Broker:
    middleware: list[Middleware] = [Retries(max_retries=0)]
    if url == "memory":
        broker: dramatiq.Broker = StubBroker(middleware=middleware)
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url, middleware=middleware)  # type: ignore[no-untyped-call]
    else:
        raise ConfigError(f"unsupported broker {redact_url(url)!r}: use memory or "
                         "redis://host:port/db")
    dramatiq.set_broker(broker)
    return broker


def queue_depth(broker: dramatiq.Broker) -> Callable[[], int]:
    """How many send messages wait in the broker for a worker to fetch them: the
    scheduler's view of the queue.

    Messages a worker fetched and has not acknowledged are left out: a live worker holds at
    most its prefetch of them and is sending them now; a killed worker's stay in dramatiq's
    hash until its heartbeat times out (a minute), and counting them would hold every claim
    back that long after each crash (their steps come back by their lease, not by them).
    """
    if isinstance(broker, StubBroker):
        queue = broker.queues.get(QUEUE)
        return (lambda: 0) if queue is None else queue.qsize
    client = getattr(broker, "client", None)
    namespace = getattr(broker, "namespace", "dramatiq")
    if client is None:
        return lambda: 0
    key = f"{namespace}:{QUEUE}"  # dramatiq's list of message ids no worker fetched yet

    def depth() -> int:
        return int(client.llen(key))

    return depth

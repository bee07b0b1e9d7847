"""The broker from settings: ``memory`` (dramatiq's StubBroker, in-process) or ``redis://``.

The broker only says "do this now": a message carries an enrollment id and its claim token.
Middleware is cut down on purpose: no time limit and no shutdown interrupts (either could
cancel a send after the server's 250), and no broker retries (transient failures are
rescheduled in the database).
"""

from __future__ import annotations

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

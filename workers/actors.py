"""The send actor: thin, idempotent, never retried by the broker."""

from __future__ import annotations

from typing import Any

import dramatiq

from workers import runtime
from workers.broker import QUEUE

_actor: dramatiq.Actor | None = None  # type: ignore[type-arg]


def send_step_fn(job: dict[str, Any]) -> None:
    """``job`` is a claim's ``Job.payload()``: everything the send needs."""
    runtime.send_job(job)


def declare(broker: dramatiq.Broker) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Declare the actor on ``broker`` (once per process)."""
    global _actor
    decorate = dramatiq.actor(actor_name="send_step", queue_name=QUEUE, broker=broker,
                              max_retries=0)
    _actor = decorate(send_step_fn)
    return _actor

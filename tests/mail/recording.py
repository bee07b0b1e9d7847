"""Test helpers for the inbox watchers: a recording handler and a watcher runner."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from email import message_from_bytes, policy

from sequencer.mail.watching import Inbound, Watcher


def message(n: int, body: bytes = b"Thanks, let's talk next week.\r\n") -> bytes:
    """A small reply from prospect ``n``; its Subject is ``reply n``."""
    header = (
        f"From: Prospect {n} <p{n}@example.test>\r\n"
        "To: Dana <sales@example.test>\r\n"
        f"Subject: reply {n}\r\n"
        f"Message-ID: <reply-{n}@example.test>\r\n"
        "\r\n"
    )
    return header.encode() + body


def subject(inbound: Inbound) -> str:
    return str(message_from_bytes(inbound.raw, policy=policy.default)["Subject"])


class Recorder:
    """A handler that remembers what it was given, and when; raises on chosen subjects."""

    def __init__(self, poison: frozenset[str] = frozenset()) -> None:
        self.inbound: list[Inbound] = []
        self.arrived: list[float] = []
        self._poison = poison
        self._changed = asyncio.Condition()

    async def __call__(self, inbound: Inbound) -> None:
        async with self._changed:
            self.inbound.append(inbound)
            self.arrived.append(time.monotonic())
            self._changed.notify_all()
        if subject(inbound) in self._poison:
            raise ValueError(f"hostile message {subject(inbound)!r}")

    @property
    def subjects(self) -> list[str]:
        return [subject(inbound) for inbound in self.inbound]

    async def wait_for(self, count: int, timeout: float) -> list[Inbound]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.inbound) >= count), timeout
            )
        return self.inbound


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a cheap in-process condition (never used for server readiness)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watching(watcher: Watcher) -> AsyncIterator[asyncio.Task[None]]:
    """Run the watcher as a task; on exit stop it and require it to return promptly."""
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

"""Per-process state shared by the actors: the loaded app and, per worker thread, an event
loop with its own SMTP connections (aiosmtplib connections are never shared between tasks)."""

from __future__ import annotations

import asyncio
import threading

from sequencer.store.claims import Claim
from sequencer.usecases.copying import SentCopies
from sequencer.usecases.sending import Senders, deliver
from sequencer.workspace import Workspace

_app: Workspace | None = None
_local = threading.local()
_all: list[tuple[asyncio.AbstractEventLoop, Senders]] = []
_lock = threading.Lock()
_paused: set[str] = set()  # mailboxes whose credentials or TLS failed, for every send thread
stopping = threading.Event()
_copies: SentCopies | None = None  # this process's Sent copies, for every send thread


def install(app: Workspace) -> None:
    global _app, _copies
    _app = app
    _copies = SentCopies(app)
    _paused.clear()
    stopping.clear()


def app() -> Workspace:
    if _app is None:
        raise RuntimeError("workers.runtime.install(app) was not called in this process")
    return _app


def _thread_state() -> tuple[asyncio.AbstractEventLoop, Senders]:
    state: tuple[asyncio.AbstractEventLoop, Senders] | None = getattr(_local, "state", None)
    if state is None:
        state = (asyncio.new_event_loop(), Senders(app(), _paused, _copies))
        _local.state = state
        with _lock:
            _all.append(state)
    return state


def send_claim(enrollment_id: int, token: str) -> None:
    """What the send actor does: deliver under this thread's loop and connections."""
    loop, senders = _thread_state()
    claim = Claim(enrollment_id, token)
    if stopping.is_set():
        from sequencer.store import claims

        job = claims.load_job(app().store, claim)
        if job is not None:
            claims.release(app().store, job, app().clock())
        return
    loop.run_until_complete(deliver(app(), claim, senders))


def close_all() -> None:
    """Close every thread's SMTP connections (after the worker threads stopped)."""
    with _lock:
        states = list(_all)
        _all.clear()
    for loop, senders in states:
        if not loop.is_closed():
            try:
                loop.run_until_complete(senders.close())
            finally:
                loop.close()
    if _copies is not None:
        _copies.close()



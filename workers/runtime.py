"""A process's sender: one event loop, in its own thread, for the sender's whole life.

``concurrency`` tasks on that loop take jobs off one queue; each task has its own SMTP
connections (an aiosmtplib connection is never shared between tasks). The database work of
the send path (the gate, the batched outcome commits) runs on the loop's thread, on one
DB-API connection the sender keeps (``store.hotpath``): no connection churn per message.

Jobs come from the in-process scheduler (``sequencer run``) or from the broker's worker
threads (``sequencer worker``), which wait for their job's send to finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque

from sequencer.store import claims
from sequencer.store.claims import Job
from sequencer.store.hotpath import HotPath
from sequencer.usecases.copying import SentCopies
from sequencer.usecases.sending import Senders, commit_outcomes, deliver
from sequencer.workspace import Workspace

logger = logging.getLogger(__name__)

#: Outcomes committed together at most; and the longest a 250 waits for its commit.
BATCH = 64
FLUSH_S = 0.05

Done = concurrent.futures.Future[None]


class SendLoop:
    """Send jobs on one event loop with ``concurrency`` concurrent sends."""

    def __init__(self, app: Workspace, concurrency: int = 8, *, batch: int = BATCH,
                 flush_s: float = FLUSH_S) -> None:
        self.app = app
        self.concurrency = max(1, concurrency)
        self.batch = batch
        self.flush_s = flush_s
        self.paused: set[str] = set()  # mailboxes whose credentials or TLS failed here
        self.copies = SentCopies(app)  # the Sent copies of this sender (``save_sent``)
        self._inbox: deque[tuple[Job, Done | None]] = deque()
        self._submitted = 0  # written by submitters only
        self._finished = 0  # written by the loop's thread only
        self._running = 0
        self._wake_pending = False
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._ready = asyncio.Event()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._path = HotPath(app.store)
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._started = False

    def start(self) -> SendLoop:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    # -- any thread ------------------------------------------------------------------------

    def submit(self, job: Job, done: Done | None = None) -> None:
        """Queue ``job``; ``done`` (if given) completes when its send is over."""
        self._inbox.append((job, done))
        self._submitted += 1
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed: the sender stopped
                self._wake_pending = False

    def send(self, job: Job) -> None:
        """Queue ``job`` and wait until its send is over (a broker worker thread)."""
        done: Done = concurrent.futures.Future()
        self.submit(job, done)
        done.result()

    def backlog(self) -> int:
        """Jobs handed over and not finished yet (queued or being sent)."""
        return self._submitted - self._finished

    def stop(self, timeout_s: float = 120.0) -> None:
        """Finish the sends in flight and commit their outcomes; give back the claims of
        jobs not started; close the SMTP and database connections."""
        if not self._started:
            self._path.close()
            self.copies.close()
            return
        try:
            self._loop.call_soon_threadsafe(self._begin_closing)
        except RuntimeError:
            return
        self._thread.join(timeout_s)

    # -- the loop's thread -----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._path.close()
            self._loop.close()
            self.copies.close()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._worker(Senders(self.app, self.paused, self.copies)))
                 for _ in range(self.concurrency)]
        await asyncio.gather(*tasks)
        self._flush()
        while self._path.pending:  # the database is down: keep trying until stopped hard
            await asyncio.sleep(1)
            self._flush()
        self._release_queued()

    def _wake(self) -> None:
        self._wake_pending = False
        self._ready.set()

    def _begin_closing(self) -> None:
        self._closing = True
        self._release_queued()
        self._ready.set()

    def _release_queued(self) -> None:
        while self._inbox:
            job, done = self._inbox.popleft()
            try:
                claims.release(self.app.store, job, self.app.clock())
            except Exception:  # its lease runs out instead
                logger.warning("could not give back the claim of %s", job.email, exc_info=True)
            self._finish(done)

    async def _worker(self, senders: Senders) -> None:
        try:
            while True:
                try:
                    job, done = self._inbox.popleft()
                except IndexError:
                    if self._closing:
                        return
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                self._running += 1
                try:
                    await deliver(self.app, job, senders, self._path)
                except Exception:
                    logger.exception("sending %s (%s) failed; its lease will bring it back",
                                     job.email, job.sequence)
                finally:
                    self._running -= 1
                    self._finish(done)
                self._after_send()
        finally:
            await senders.close()

    def _finish(self, done: Done | None) -> None:
        self._finished += 1
        if done is not None and not done.done():
            done.set_result(None)

    def _after_send(self) -> None:
        pending = len(self._path.pending)
        if not pending:
            return
        if pending >= self.batch or (not self._inbox and not self._running):
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self._loop.call_later(self.flush_s, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        try:
            commit_outcomes(self.app, self._path, self.copies)
        except Exception:
            logger.warning("committing %d outcomes failed; trying again",
                           len(self._path.pending), exc_info=True)
            if not self._closing:
                self._flush_timer = self._loop.call_later(1.0, self._flush)


# -- the process's sender, for the broker's actor --------------------------------------------

_sender: SendLoop | None = None
stopping = threading.Event()


def install(sender: SendLoop) -> None:
    global _sender
    _sender = sender
    stopping.clear()


def sender() -> SendLoop:
    if _sender is None:
        raise RuntimeError("workers.runtime.install(sender) was not called in this process")
    return _sender


def send_job(payload: dict[str, object]) -> None:
    """What the send actor does: hand the job to this process's sender and wait for it."""
    loop = sender()
    job = Job.from_payload(payload)
    if stopping.is_set():
        claims.release(loop.app.store, job, loop.app.clock())
        return
    loop.send(job)

"""The IMAP inbox watcher: IDLE on one folder, hand every new message to a handler.

How it stays correct with aioimaplib 2.0.3 and real servers:

* After every (re)connect it SELECTs the folder, compares UIDVALIDITY with the stored
  cursor (a change resets ``last_uid`` to 0: nothing is skipped, the caller dedupes by
  Message-ID) and catches up with ``UID SEARCH UID last+1:*``. ``N:*`` always matches the
  highest UID even when it is <= N, so results are filtered. The search repeats until it
  finds nothing new, so the last command before IDLE saw the mailbox as IDLE will.
  A server may announce a message in the response to that last SEARCH (Dovecot runs the
  search, then syncs the view and sends ``* N EXISTS`` before the tagged OK) without it
  being in the result, and then never announces it again in IDLE. aioimaplib drops such an
  untagged EXISTS ("ignored untagged response"), so the connection follows every untagged
  EXISTS/EXPUNGE itself (``protocol.Client``); when the count grew during an empty SEARCH,
  the search runs again instead of going to IDLE (without this a reply landing in that
  ~1 ms window waited for the next message or the ``idle_s`` refresh).
* New messages are fetched in chunks of ``chunk`` UIDs (at most ``protocol.MAX_CHUNK``:
  aioimaplib parses responses recursively), sizes first (``RFC822.SIZE``), then the bodies
  in batches of at most ``max_bytes`` in all.
  A message over ``max_bytes`` is handed over as its header plus the first 64 KiB of its
  body, ``truncated=True``. Everything is fetched with ``BODY.PEEK`` so nothing gets \\Seen.
* The cursor is saved after each handled message. A handler that raises is logged and the
  message skipped: one hostile message never stops the watcher.
* Then IDLE until the server pushes ``EXISTS``, re-IDLE every ``idle_s``; every wait is
  bounded (``connection.Connection``).
* On any error the connection is aborted and re-opened with capped exponential backoff
  and jitter; the catch-up by UID then finds whatever arrived meanwhile.
* ``health()`` tells how it is doing (``mail.watching.Health``): when the server last
  answered anything, the last error, how far the cursor is behind. A server that stops
  answering (a half-open connection) is ``silent`` once a wait on it times out: at the
  latest ``idle_s + timeout_s`` after its last answer, at the end of an IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
import ssl
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from aioimaplib import aioimaplib

from sequencer.errors import AuthenticationError, InvalidArgument, RetryLater, WatcherError
from sequencer.mail.imap.connection import Connection, ImapAccount, Stopped
from sequencer.mail.imap.protocol import MAX_CHUNK, uid_set
from sequencer.mail.watching import (
    DEFAULT_MAX_BYTES,
    TRUNCATED_BODY_BYTES,
    Cursor,
    CursorStore,
    Handler,
    Health,
    HealthState,
    Inbound,
)

logger = logging.getLogger(__name__)


class WatcherState(enum.Enum):
    """What an ``ImapWatcher`` is doing right now (for health checks and tests)."""

    STARTING = "starting"
    CONNECTING = "connecting"
    CATCHING_UP = "catching_up"
    IDLE = "idle"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


def plan_batches(
    uids: Sequence[int], sizes: dict[int, int], max_bytes: int
) -> Iterator[tuple[list[int], bool]]:
    """Split UIDs (in order) into fetch batches: ``(uids, truncated)``.

    Consecutive messages up to ``max_bytes`` share a batch while their sizes add up to at
    most ``max_bytes``; a message over ``max_bytes`` is a batch of its own, truncated.
    UIDs without a size (expunged meanwhile) are left out.
    """
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid)
        if size is None:
            continue
        if size > max_bytes:
            if batch:
                yield batch, False
                batch, total = [], 0
            yield [uid], True
            continue
        if batch and total + size > max_bytes:
            yield batch, False
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch, False


class ImapWatcher:
    """Watches one IMAP folder and hands each new message to ``handler``, in UID order.

    The cursor is stored under ``name`` (the configured mailbox name).
    """

    def __init__(
        self,
        name: str,
        account: ImapAccount,
        cursors: CursorStore,
        handler: Handler,
        *,
        idle_s: float = 240.0,
        timeout_s: float = 10.0,
        backoff_max_s: float = 30.0,
        chunk: int = 100,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backoff_base_s: float = 0.5,
        poll_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        on_auth_failure: Callable[[str], object] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if chunk < 1 or max_bytes < 1 or idle_s <= 0 or timeout_s <= 0:
            raise InvalidArgument("chunk, max_bytes, idle_s and timeout_s must be positive")
        if chunk > MAX_CHUNK:
            raise InvalidArgument(
                f"chunk must be at most {MAX_CHUNK}: aioimaplib parses a response "
                "recursively and fails beyond ~1000 lines"
            )
        self._name = name
        self._account = account
        self._cursors = cursors
        self._handler = handler
        self._idle_s = idle_s
        self._timeout_s = timeout_s
        self._backoff_max_s = backoff_max_s
        self._backoff_base_s = backoff_base_s
        self._chunk = chunk
        self._max_bytes = max_bytes
        self._poll_s = poll_s
        self._ssl_context = ssl_context
        self._failures = 0
        self._state = WatcherState.STARTING
        self._on_auth_failure = on_auth_failure
        self._auth_failure: str | None = None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._health = Health(HealthState.CONNECTING, self._clock())
        self._top_uid: int | None = None  # the highest UID known on the server
        self._last_uid: int | None = None  # the cursor's

    @property
    def state(self) -> WatcherState:
        return self._state

    def _entered_idle(self) -> None:
        self._state = WatcherState.IDLE

    def health(self) -> Health:
        """How the watcher is doing now (cheap: no I/O)."""
        lag = None
        if self._top_uid is not None and self._last_uid is not None:
            lag = max(0, self._top_uid - self._last_uid)
        return dataclasses.replace(self._health, cursor_lag=lag)

    def _become(self, state: HealthState, error: str | None = None) -> None:
        now = self._clock()
        health = self._health
        if state is not health.state:
            health = dataclasses.replace(health, state=state, since=now)
        if error is not None:
            health = dataclasses.replace(health, last_error=error, last_error_at=now)
        self._health = health

    def _answered(self) -> None:
        self._health = dataclasses.replace(self._health, last_answer_at=self._clock())

    async def _save(self, cursor: Cursor) -> None:
        # The store may block (a database): off the event loop, which other watchers share.
        await asyncio.to_thread(self._cursors.save, self._name, cursor)
        self._last_uid = cursor.last_uid

    def __repr__(self) -> str:
        return f"ImapWatcher(name={self._name!r}, account={self._account!r})"

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; reconnects on every failure, never raises for one."""
        while not stop.is_set():
            connection = Connection(self._account, self._timeout_s, self._ssl_context, stop,
                                    on_answer=self._answered)
            delay = 0.0
            self._state = WatcherState.CONNECTING
            try:
                await self._session(connection, stop)
            except Stopped:
                pass
            except AuthenticationError as err:  # a person must act: slow, quiet retries
                self._failures += 1
                delay = self._backoff_max_s
                self._become(HealthState.AUTH_NEEDED, self._reason(err))
                self._refused(err, delay)
            except Exception as err:  # every failure means: drop the connection, retry
                self._failures += 1
                delay = self._backoff()
                self._become(HealthState.SILENT if isinstance(err, TimeoutError)
                             else HealthState.FAILING, self._reason(err))
                self._log_failure(err, delay)
            finally:
                await connection.close(polite=stop.is_set())
            if delay and not stop.is_set():
                self._state = WatcherState.BACKING_OFF
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        self._state = WatcherState.STOPPED
        self._become(HealthState.STOPPED)
        logger.info("imap %s: watcher stopped", self._name)

    def _backoff(self) -> float:
        ceiling = min(self._backoff_max_s, self._backoff_base_s * 2 ** (self._failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _refused(self, err: AuthenticationError, delay: float) -> None:
        """Report a refused login once (log line and ``on_auth_failure``); the same
        refusal again is only a debug line."""
        reason = str(err)
        if reason == self._auth_failure:
            logger.debug("imap %s: still refused: %s; next try in %.0fs", self._name, reason,
                         delay)
            return
        self._auth_failure = reason
        self._log_failure(err, delay)
        if self._on_auth_failure is not None:
            self._on_auth_failure(reason)

    def _reason(self, err: Exception) -> str:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        for secret in {self._account.password, aioimaplib.quoted(self._account.password)}:
            reason = reason.replace(secret, "***") if secret else reason
        return reason

    def _log_failure(self, err: Exception, delay: float) -> None:
        reason = self._reason(err)
        if isinstance(err, TimeoutError):
            reason += " (the server went silent)"
        level = (logging.ERROR if isinstance(err, WatcherError | AuthenticationError)
                 else logging.WARNING)
        logger.log(level, "imap %s: %s; reconnecting in %.1fs", self._name, reason, delay)

    async def _session(self, connection: Connection, stop: asyncio.Event) -> None:
        account = self._account
        await connection.open()
        uidvalidity = await connection.select(account.folder)
        logger.info(
            "imap %s: connected to %s:%d as %s, watching %s (UIDVALIDITY %d)",
            self._name,
            account.host,
            account.port,
            account.username,
            account.folder,
            uidvalidity,
        )
        cursor = await self._reconcile(uidvalidity)
        self._top_uid = None if connection.uidnext is None else connection.uidnext - 1
        self._become(HealthState.WATCHING)
        while not stop.is_set():
            self._state = WatcherState.CATCHING_UP
            cursor = await self._catch_up(connection, cursor, stop)
            if stop.is_set():
                return
            if connection.idle_supported:
                outcome = await connection.idle(self._idle_s, self._entered_idle)
                logger.debug("imap %s: IDLE ended: %s", self._name, outcome.value)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)
            self._failures = 0
            self._auth_failure = None

    async def _reconcile(self, uidvalidity: int) -> Cursor:
        cursor = await asyncio.to_thread(self._cursors.load, self._name)
        self._last_uid = cursor.last_uid
        if cursor.uidvalidity == uidvalidity:
            return cursor
        if cursor.uidvalidity is not None:
            logger.warning(
                "imap %s: UIDVALIDITY changed from %d to %d; reading %s again from the start",
                self._name,
                cursor.uidvalidity,
                uidvalidity,
                self._account.folder,
            )
            cursor = Cursor(uidvalidity=uidvalidity, last_uid=0)
        else:
            cursor = Cursor(uidvalidity=uidvalidity, last_uid=cursor.last_uid)
        await self._save(cursor)
        return cursor

    async def _catch_up(
        self, connection: Connection, cursor: Cursor, stop: asyncio.Event
    ) -> Cursor:
        while not stop.is_set():
            known = connection.exists
            uids = await connection.search_after(cursor.last_uid)
            self._top_uid = uids[-1] if uids else cursor.last_uid
            if not uids:
                if connection.exists > known >= 0:
                    logger.debug("imap %s: new mail announced during SEARCH; searching again",
                                 self._name)
                    continue
                return cursor
            logger.debug("imap %s: %d new message(s)", self._name, len(uids))
            for start in range(0, len(uids), self._chunk):
                cursor = await self._deliver_chunk(
                    connection, uids[start : start + self._chunk], cursor, stop
                )
                if stop.is_set():
                    return cursor
        return cursor

    async def _deliver_chunk(
        self, connection: Connection, uids: list[int], cursor: Cursor, stop: asyncio.Event
    ) -> Cursor:
        sized = await connection.fetch(uids, "(UID RFC822.SIZE)")
        sizes = {uid: message.size for uid, message in sized.items() if message.size is not None}
        for batch, truncated in plan_batches(uids, sizes, self._max_bytes):
            if stop.is_set():
                return cursor
            raws = await self._fetch_batch(connection, batch, truncated)
            for uid in batch:
                if stop.is_set():
                    return cursor
                raw = raws.get(uid)
                if raw is None:
                    logger.warning("imap %s: UID %d vanished before its fetch", self._name, uid)
                else:
                    await self._hand_over(Inbound(uid=uid, raw=raw, truncated=truncated))
                cursor = Cursor(uidvalidity=cursor.uidvalidity, last_uid=uid)
                await self._save(cursor)
        last = uids[-1]
        if last > cursor.last_uid:  # the tail of the chunk was expunged meanwhile
            cursor = Cursor(uidvalidity=cursor.uidvalidity, last_uid=last)
            await self._save(cursor)
        return cursor

    async def _fetch_batch(
        self, connection: Connection, uids: list[int], truncated: bool
    ) -> dict[int, bytes]:
        if not truncated:
            fetched = await connection.fetch(uids, "(UID BODY.PEEK[])")
            return {
                uid: message.sections[b"BODY[]"]
                for uid, message in fetched.items()
                if b"BODY[]" in message.sections
            }
        items = (
            f"(UID BODY.PEEK[HEADER]<0.{self._max_bytes}> "
            f"BODY.PEEK[TEXT]<0.{TRUNCATED_BODY_BYTES}>)"
        )
        fetched = await connection.fetch(uids, items)
        logger.info(
            "imap %s: UID %s is over %d bytes; handing over its header and first %d body bytes",
            self._name,
            uid_set(uids),
            self._max_bytes,
            TRUNCATED_BODY_BYTES,
        )
        return {
            uid: message.sections.get(b"BODY[HEADER]", b"")
            + message.sections.get(b"BODY[TEXT]", b"")
            for uid, message in fetched.items()
        }

    async def _hand_over(self, inbound: Inbound) -> None:
        try:
            await self._handler(inbound)
        except RetryLater:
            raise  # not handled: reconnect and catch up from the unchanged cursor
        except Exception:
            logger.exception(
                "imap %s: handler failed on UID %d; message skipped", self._name, inbound.uid
            )

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
  untagged EXISTS ("ignored untagged response"), so the connection watches every untagged
  EXISTS/EXPUNGE itself; when the message count grew during an empty SEARCH, the search
  runs again instead of going to IDLE (without this a reply landing in that ~1 ms window
  waited for the next message or the ``idle_s`` refresh).
* New messages are fetched in chunks of ``chunk`` UIDs (aioimaplib parses responses
  recursively and hits RecursionError beyond ~1000 lines, issue #118), sizes first
  (``RFC822.SIZE``), then the bodies in batches of at most ``max_bytes`` in all.
  A message over ``max_bytes`` is handed over as its header plus the first 64 KiB of its
  body, ``truncated=True``. Everything is fetched with ``BODY.PEEK`` so nothing gets \\Seen.
* The cursor is saved after each handled message. A handler that raises is logged and the
  message skipped: one hostile message never stops the watcher.
* Then IDLE until the server pushes ``EXISTS``, re-IDLE every ``idle_s``. Every network
  wait is bounded by ``timeout_s`` (``idle_start`` can hang when the server closes, issue
  #110) and cut short when the connection drops (aioimaplib wakes nothing on its own).
  A half-open connection shows up as a timeout at the latest at the next re-IDLE.
* On any error the connection is aborted and re-opened with capped exponential backoff
  and jitter; the catch-up by UID then finds whatever arrived meanwhile.

aioimaplib has no STARTTLS: ``tls`` is ``"ssl"`` (implicit TLS) or ``"none"`` (the caller
has already checked the host is loopback or plaintext is explicitly allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aioimaplib import aioimaplib

from sequencer.errors import AuthenticationError, RetryLater, WatcherError
from sequencer.mail import sasl
from sequencer.mail.watching import (
    DEFAULT_MAX_BYTES,
    TRUNCATED_BODY_BYTES,
    Cursor,
    CursorStore,
    Handler,
    Inbound,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest ``chunk``: a FETCH of N bodies is ~3N response lines, parsed one recursion
#: level per line by aioimaplib (RecursionError near 1000, issue #118).
MAX_CHUNK = 250

_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LITERAL_ITEM = re.compile(rb"(BODY\[[^\]]*\])(?:<\d+>)? \{\d+\}$")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS\b", re.IGNORECASE)
_EXPUNGE = re.compile(rb"^\* \d+ EXPUNGE\b", re.IGNORECASE)


class _DropLoginLines(logging.Filter):
    """aioimaplib logs every command at DEBUG and masks the password only when quoting
    left it unchanged: its LOGIN lines never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return " LOGIN " not in record.getMessage()


logging.getLogger("aioimaplib.aioimaplib").addFilter(_DropLoginLines())


@dataclass(frozen=True)
class ImapAccount:
    """Where and as whom to watch. The password never appears in a repr or a log line."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    tls: Literal["ssl", "none"] = "ssl"
    folder: str = "INBOX"
    #: ``auth: oauth2``: AUTHENTICATE OAUTHBEARER/XOAUTH2 with these access tokens.
    tokens: sasl.BearerTokens | None = field(default=None, repr=False, compare=False)


class WatcherState(enum.Enum):
    """What an ``ImapWatcher`` is doing right now (for health checks and tests)."""

    STARTING = "starting"
    CONNECTING = "connecting"
    CATCHING_UP = "catching_up"
    IDLE = "idle"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


class IdleOutcome(enum.Enum):
    """Why an IDLE ended."""

    NEW_MAIL = "new_mail"
    REFRESH = "refresh"
    STOP = "stop"


@dataclass(frozen=True)
class FetchedMessage:
    """One message of a FETCH response: its UID, size and the body sections by name."""

    uid: int
    size: int | None
    sections: dict[bytes, bytes]


def parse_fetch(lines: Sequence[bytes | bytearray]) -> dict[int, FetchedMessage]:
    """Group an aioimaplib FETCH response into messages keyed by UID.

    aioimaplib hands literals over as ``bytearray`` items right after the line that
    announced them (``... BODY[HEADER]<0> {123}``); every other item is a ``bytes`` line.
    Messages without a UID (unsolicited flag updates) are left out.
    """
    found: dict[int, FetchedMessage] = {}
    meta = bytearray()
    sections: dict[bytes, bytes] = {}
    pending: bytes | None = None

    def flush() -> None:
        uid = _UID.search(meta)
        if uid is not None:
            size = _SIZE.search(meta)
            found[int(uid.group(1))] = FetchedMessage(
                uid=int(uid.group(1)),
                size=int(size.group(1)) if size else None,
                sections=dict(sections),
            )

    for line in lines:
        if isinstance(line, bytearray):
            if pending is not None:
                sections[pending] = bytes(line)
            pending = None
            continue
        if _FETCH_START.match(line):
            flush()
            meta.clear()
            sections.clear()
        meta += b" " + line
        item = _LITERAL_ITEM.search(line)
        pending = item.group(1).upper() if item else None
    flush()
    return found


def parse_search(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a SEARCH response (the last line is the tagged completion text)."""
    uids: list[int] = []
    for line in lines[:-1]:
        uids.extend(int(token) for token in bytes(line).split() if token.isdigit())
    return uids


def parse_uidvalidity(lines: Sequence[bytes | bytearray]) -> int:
    """The UIDVALIDITY a SELECT response announced."""
    for line in lines:
        found = _UIDVALIDITY.search(bytes(line))
        if found:
            return int(found.group(1))
    raise WatcherError("the server sent no UIDVALIDITY in its SELECT response")


def uid_set(uids: Sequence[int]) -> str:
    """An IMAP sequence set for sorted UIDs, runs compressed: ``1:3,7,9:10``."""
    runs: list[str] = []
    start = prev = uids[0]
    for uid in list(uids[1:]) + [-1]:
        if uid == prev + 1:
            prev = uid
            continue
        runs.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    return ",".join(runs)


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


def _expect_ok(response: Any, what: str) -> list[bytes | bytearray]:
    lines: list[bytes | bytearray] = list(response.lines)
    if response.result != "OK":
        text = bytes(lines[-1]).decode("ascii", "replace") if lines else ""
        raise WatcherError(f"{what} failed: {response.result} {text}".strip())
    return lines


class Stopped(Exception):
    """A network wait was abandoned because the watcher was asked to stop."""


async def _forever() -> None:
    await asyncio.Event().wait()


def _raise_on_server_error(lines: Sequence[bytes]) -> None:
    """An untagged NO/BAD/BYE while idling means the session went bad (Dovecot says
    ``* NO Internal error`` once the selected folder was deleted): start afresh."""
    for line in lines:
        if bytes(line).startswith((b"NO ", b"BAD ", b"BYE ")):
            text = bytes(line).decode("ascii", "replace")
            raise WatcherError(f"server reported during IDLE: {text}")


class _Connection:
    """One aioimaplib connection whose every wait is bounded and cut short on a drop."""

    def __init__(
        self,
        account: ImapAccount,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None,
        stop: asyncio.Event,
    ) -> None:
        self._account = account
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._stop = stop
        self._lost = asyncio.Event()
        self._client: Any = None  # aioimaplib is untyped
        self.idle_supported = False
        self.interrupted = False
        #: The message count as last announced by the server (``* N EXISTS``, less one per
        #: ``* N EXPUNGE``); -1 before the first announcement.
        self.exists = -1

    def _observe_untagged(self, protocol: Any) -> None:
        """See every untagged EXISTS/EXPUNGE, whichever command aioimaplib routes it to
        (or drops it for)."""
        untagged = getattr(protocol, "_untagged_response", None)
        if untagged is None:  # not the aioimaplib we know: fall back to IDLE pushes only
            return

        def observe(line: bytes) -> Any:
            found = _EXISTS.match(line)
            if found:
                self.exists = int(found.group(1))
            elif self.exists > 0 and _EXPUNGE.match(line):
                self.exists -= 1
            return untagged(line)

        protocol._untagged_response = observe

    def _on_lost(self, exc: Exception | None) -> None:
        logger.debug("imap connection to %s lost: %s", self._account.host, exc)
        self._lost.set()

    async def bounded(self, aw: Awaitable[T], what: str, *, interruptible: bool = True) -> T:
        """Await ``aw`` for at most ``timeout_s``; fail early when the connection drops,
        and give up at once when the watcher is asked to stop (``Stopped``)."""
        if self._lost.is_set():
            raise ConnectionError(f"connection lost before {what}")
        task = asyncio.ensure_future(aw)
        lost = asyncio.ensure_future(self._lost.wait())
        stopped = asyncio.ensure_future(self._stop.wait() if interruptible else _forever())
        try:
            done, _ = await asyncio.wait(
                {task, lost, stopped},
                timeout=self._timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            task.cancel()
            raise
        finally:
            lost.cancel()
            stopped.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if lost in done:
            raise ConnectionError(f"connection lost during {what}")
        if stopped in done:
            self.interrupted = True
            raise Stopped(what)
        raise TimeoutError(f"no answer to {what} within {self._timeout_s:g}s")

    async def open(self) -> None:
        """Connect, read the greeting and log in."""
        account = self._account
        first = None
        if account.tokens is not None:  # before connecting: a dead grant costs no connection
            first = await asyncio.to_thread(account.tokens.token)
        context = self._ssl_context
        if account.tls == "ssl" and context is None:
            context = ssl.create_default_context()
        self._client = aioimaplib.IMAP4(
            host=account.host,
            port=account.port,
            timeout=self._timeout_s,
            conn_lost_cb=self._on_lost,
            ssl_context=context if account.tls == "ssl" else None,
        )
        self._observe_untagged(self._client.protocol)
        await self.bounded(self._client.wait_hello_from_server(), "connect")
        if account.tokens is not None:
            await self._authenticate(account.tokens, first)
        else:
            response = await self.bounded(
                self._client.login(aioimaplib.quoted(account.username), account.password),
                "LOGIN",
            )
            if response.result != "OK":
                raise WatcherError(f"login refused for {account.username}")
        self.idle_supported = bool(self._client.has_capability("IDLE"))

    async def _authenticate(self, tokens: sasl.BearerTokens, first: str | None) -> None:
        offered = sasl.offered_by_imap(list(self._client.protocol.capabilities))
        mechanism = sasl.choose(offered, tokens.sasl)
        if mechanism is None:
            raise AuthenticationError(
                f"{self._account.host} offers neither OAUTHBEARER nor XOAUTH2 "
                f"(AUTH={' AUTH='.join(offered) or 'nothing'})"
            )
        username, client, timeout_s = self._account.username, self._client, self._timeout_s

        async def login(token: str) -> None:
            await self.bounded(
                sasl.imap_authenticate(client, mechanism, username, token, timeout=timeout_s),
                f"AUTHENTICATE {mechanism}",
            )

        await sasl.with_fresh_token(tokens, login, first)

    async def select(self, folder: str) -> int:
        """SELECT the folder and return its UIDVALIDITY."""
        response = await self.bounded(self._client.select(aioimaplib.quoted(folder)), "SELECT")
        return parse_uidvalidity(_expect_ok(response, f"SELECT {folder}"))

    async def search_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending."""
        response = await self.bounded(
            self._client.uid_search(f"UID {last_uid + 1}:*", charset=None), "UID SEARCH"
        )
        uids = parse_search(_expect_ok(response, "UID SEARCH"))
        return sorted({uid for uid in uids if uid > last_uid})

    async def fetch(self, uids: Sequence[int], items: str) -> dict[int, FetchedMessage]:
        response = await self.bounded(
            self._client.uid("fetch", uid_set(uids), items), f"UID FETCH {items}"
        )
        return parse_fetch(_expect_ok(response, "UID FETCH"))

    async def idle(self, idle_s: float, on_idle: Callable[[], None]) -> IdleOutcome:
        """IDLE until new mail, ``idle_s`` or ``stop``; always leaves IDLE before returning."""
        queue: asyncio.Queue[list[bytes]] = self._client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle_task = await self.bounded(
            self._client.idle_start(timeout=idle_s + self._timeout_s), "IDLE"
        )
        on_idle()
        outcome = await self._wait_push(queue, idle_s)
        self._client.idle_done()
        response = await self.bounded(idle_task, "IDLE DONE")
        _expect_ok(response, "IDLE")
        return outcome

    async def _wait_push(self, queue: asyncio.Queue[list[bytes]], idle_s: float) -> IdleOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + idle_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return IdleOutcome.REFRESH
            push = asyncio.ensure_future(queue.get())
            stopped = asyncio.ensure_future(self._stop.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                done, _ = await asyncio.wait(
                    {push, stopped, lost}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in (push, stopped, lost):
                    waiter.cancel()
            if lost in done:
                raise ConnectionError("connection lost during IDLE")
            if push in done:
                lines = push.result()
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    return IdleOutcome.REFRESH
                _raise_on_server_error(lines)
                if any(b"EXISTS" in line for line in lines):
                    return IdleOutcome.NEW_MAIL
            if stopped in done:
                return IdleOutcome.STOP

    async def close(self, polite: bool) -> None:
        """Log out if asked and possible, then drop the connection and its tasks."""
        client = self._client
        if client is None:
            return
        if polite and not self._lost.is_set() and not self.interrupted:
            with contextlib.suppress(Exception):
                await self.bounded(client.logout(), "LOGOUT", interruptible=False)
        transport = client.protocol.transport
        if transport is not None:
            transport.abort()
        connecting = client._client_task  # aioimaplib keeps the connect task private
        if not connecting.done():
            connecting.cancel()
        elif not connecting.cancelled():
            connecting.exception()  # retrieved, so asyncio does not log it again
        waiter = client._idle_waiter
        if waiter is not None:
            waiter.cancel()
        for task in [*client.tasks, *client.protocol.tasks]:
            task.cancel()


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
    ) -> None:
        if chunk < 1 or max_bytes < 1 or idle_s <= 0 or timeout_s <= 0:
            raise ValueError("chunk, max_bytes, idle_s and timeout_s must be positive")
        if chunk > MAX_CHUNK:
            raise ValueError(
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

    @property
    def state(self) -> WatcherState:
        return self._state

    def _entered_idle(self) -> None:
        self._state = WatcherState.IDLE

    def __repr__(self) -> str:
        return f"ImapWatcher(name={self._name!r}, account={self._account!r})"

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; reconnects on every failure, never raises for one."""
        while not stop.is_set():
            connection = _Connection(self._account, self._timeout_s, self._ssl_context, stop)
            delay = 0.0
            self._state = WatcherState.CONNECTING
            try:
                await self._session(connection, stop)
            except Stopped:
                pass
            except AuthenticationError as err:  # a person must act: slow, quiet retries
                self._failures += 1
                delay = self._backoff_max_s
                self._refused(err, delay)
            except Exception as err:  # every failure means: drop the connection, retry
                self._failures += 1
                delay = self._backoff()
                self._log_failure(err, delay)
            finally:
                await connection.close(polite=stop.is_set())
            if delay and not stop.is_set():
                self._state = WatcherState.BACKING_OFF
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        self._state = WatcherState.STOPPED
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

    def _log_failure(self, err: Exception, delay: float) -> None:
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        for secret in {self._account.password, aioimaplib.quoted(self._account.password)}:
            reason = reason.replace(secret, "***") if secret else reason
        level = (logging.ERROR if isinstance(err, WatcherError | AuthenticationError)
                 else logging.WARNING)
        logger.log(level, "imap %s: %s; reconnecting in %.1fs", self._name, reason, delay)

    async def _session(self, connection: _Connection, stop: asyncio.Event) -> None:
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
        cursor = self._reconcile(uidvalidity)
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

    def _reconcile(self, uidvalidity: int) -> Cursor:
        cursor = self._cursors.load(self._name)
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
        self._cursors.save(self._name, cursor)
        return cursor

    async def _catch_up(
        self, connection: _Connection, cursor: Cursor, stop: asyncio.Event
    ) -> Cursor:
        while not stop.is_set():
            known = connection.exists
            uids = await connection.search_after(cursor.last_uid)
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
        self, connection: _Connection, uids: list[int], cursor: Cursor, stop: asyncio.Event
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
                self._cursors.save(self._name, cursor)
        last = uids[-1]
        if last > cursor.last_uid:  # the tail of the chunk was expunged meanwhile
            cursor = Cursor(uidvalidity=cursor.uidvalidity, last_uid=last)
            self._cursors.save(self._name, cursor)
        return cursor

    async def _fetch_batch(
        self, connection: _Connection, uids: list[int], truncated: bool
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

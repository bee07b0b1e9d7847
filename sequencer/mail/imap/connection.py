"""One IMAP connection whose every wait is bounded and cut short when it drops.

Every network wait is bounded by ``timeout_s`` (``idle_start`` can hang when the server
closes, https://github.com/iroco-co/aioimaplib/issues/110) and cut short when the connection
drops (aioimaplib wakes nothing on its own). A half-open connection shows up as a timeout at
the latest at the next re-IDLE. The server's message count is followed from every untagged
``EXISTS``/``EXPUNGE``, so the watcher sees mail announced during a SEARCH.

aioimaplib has no STARTTLS: ``tls`` is ``"ssl"`` (implicit TLS) or ``"none"`` (the caller
has already checked the host is loopback or plaintext is explicitly allowed).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from aioimaplib import aioimaplib

from sequencer.errors import AuthenticationError, SequencerError, WatcherError
from sequencer.mail import sasl
from sequencer.mail.imap.protocol import (
    Client,
    FetchedMessage,
    expect_ok,
    parse_fetch,
    parse_search,
    parse_uidnext,
    parse_uidvalidity,
    uid_set,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS\b", re.IGNORECASE)
_EXPUNGE = re.compile(rb"^\* \d+ EXPUNGE\b", re.IGNORECASE)


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


class IdleOutcome(enum.Enum):
    """Why an IDLE ended."""

    NEW_MAIL = "new_mail"
    REFRESH = "refresh"
    STOP = "stop"


class Stopped(SequencerError):
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


class Connection:
    """One aioimaplib connection whose every wait is bounded and cut short on a drop."""

    def __init__(
        self,
        account: ImapAccount,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None,
        stop: asyncio.Event,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        self._account = account
        #: Called each time the server answered (a command's response, an IDLE push).
        self._on_answer = on_answer
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._stop = stop
        self._lost = asyncio.Event()
        self._client: Client | None = None
        self.idle_supported = False
        self.interrupted = False
        #: The message count as last announced by the server (``* N EXISTS``, less one per
        #: ``* N EXPUNGE``); -1 before the first announcement.
        self.exists = -1
        #: The UIDNEXT the last SELECT announced (None: not announced).
        self.uidnext: int | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectionError("not connected yet")
        return self._client

    def _observe(self, line: bytes) -> None:
        """Every untagged line, whichever command aioimaplib routes it to (or drops it for)."""
        found = _EXISTS.match(line)
        if found:
            self.exists = int(found.group(1))
        elif self.exists > 0 and _EXPUNGE.match(line):
            self.exists -= 1

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
            result = task.result()
            self._answered()
            return result
        task.cancel()
        if lost in done:
            raise ConnectionError(f"connection lost during {what}")
        if stopped in done:
            self.interrupted = True
            raise Stopped(what)
        raise TimeoutError(f"no answer to {what} within {self._timeout_s:g}s")

    def _answered(self) -> None:
        if self._on_answer is not None:
            self._on_answer()

    async def open(self) -> None:
        """Connect, read the greeting and log in."""
        account = self._account
        first = None
        if account.tokens is not None:  # before connecting: a dead grant costs no connection
            first = await asyncio.to_thread(account.tokens.token)
        context = self._ssl_context
        if account.tls == "ssl" and context is None:
            context = ssl.create_default_context()
        self._client = Client(
            host=account.host,
            port=account.port,
            timeout=self._timeout_s,
            conn_lost_cb=self._on_lost,
            ssl_context=context if account.tls == "ssl" else None,
            on_untagged=self._observe,
        )
        await self.bounded(self.client.wait_hello_from_server(), "connect")
        if account.tokens is not None:
            await self._authenticate(account.tokens, first)
        else:
            response = await self.bounded(
                self.client.login(aioimaplib.quoted(account.username), account.password),
                "LOGIN",
            )
            if response.result != "OK":
                raise WatcherError(f"login refused for {account.username}")
        self.idle_supported = bool(self.client.has_capability("IDLE"))

    async def _authenticate(self, tokens: sasl.BearerTokens, first: str | None) -> None:
        offered = sasl.offered_by_imap(list(self.client.protocol.capabilities))
        mechanism = sasl.choose(offered, tokens.sasl)
        if mechanism is None:
            raise AuthenticationError(
                f"{self._account.host} offers neither OAUTHBEARER nor XOAUTH2 "
                f"(AUTH={' AUTH='.join(offered) or 'nothing'})"
            )
        username, client, timeout_s = self._account.username, self.client, self._timeout_s

        async def login(token: str) -> None:
            await self.bounded(
                sasl.imap_authenticate(client, mechanism, username, token, timeout=timeout_s),
                f"AUTHENTICATE {mechanism}",
            )

        await sasl.with_fresh_token(tokens, login, first)

    async def select(self, folder: str) -> int:
        """SELECT the folder and return its UIDVALIDITY."""
        response = await self.bounded(self.client.select(aioimaplib.quoted(folder)), "SELECT")
        lines = expect_ok(response, f"SELECT {folder}")
        self.uidnext = parse_uidnext(lines)
        return parse_uidvalidity(lines)

    async def search_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending."""
        response = await self.bounded(
            self.client.uid_search(f"UID {last_uid + 1}:*", charset=None), "UID SEARCH"
        )
        uids = parse_search(expect_ok(response, "UID SEARCH"))
        return sorted({uid for uid in uids if uid > last_uid})

    async def fetch(self, uids: Sequence[int], items: str) -> dict[int, FetchedMessage]:
        response = await self.bounded(
            self.client.uid("fetch", uid_set(uids), items), f"UID FETCH {items}"
        )
        return parse_fetch(expect_ok(response, "UID FETCH"))

    async def idle(self, idle_s: float, on_idle: Callable[[], None]) -> IdleOutcome:
        """IDLE until new mail, ``idle_s`` or ``stop``; always leaves IDLE before returning."""
        queue: asyncio.Queue[list[bytes]] = self.client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle_task = await self.bounded(
            self.client.idle_start(timeout=idle_s + self._timeout_s), "IDLE"
        )
        on_idle()
        outcome = await self._wait_push(queue, idle_s)
        self.client.idle_done()
        response = await self.bounded(idle_task, "IDLE DONE")
        expect_ok(response, "IDLE")
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
                self._answered()
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
        client.abort()

"""SASL XOAUTH2 and OAUTHBEARER (RFC 7628) for IMAP and SMTP, at our edge.

Both mechanisms send the access token in the client's initial response. When the server
refuses the token it does not say NO at once: it sends a base64 JSON *error challenge*
(``{"status":"401","schemes":"Bearer","scope":"..."}``) and waits for the client to end
the exchange. The client answers with an empty response for XOAUTH2 and with a single
``%x01`` for OAUTHBEARER (RFC 7628 §3.2.3); the server then sends its final failure.

What the libraries do (checked in tests/mail/test_sasl.py, pinned to the versions):

* aioimaplib 2.0.3 has ``xoauth2()`` but no OAUTHBEARER, and on an error challenge it
  appends the ``+`` line to the command and never answers it, so the login hangs until
  its timeout and the server's reason is lost. ``imap_authenticate`` here runs
  AUTHENTICATE over aioimaplib's public ``Command``/``execute`` API with a command that
  answers continuations itself: the initial response (when the server has no SASL-IR),
  then the error acknowledgement.
* aiosmtplib 5.1 has ``auth_xoauth2`` (it answers the error challenge) but no OAUTHBEARER
  and drops the challenge's JSON. ``smtp_authenticate`` uses its public
  ``execute_command`` for both mechanisms and keeps the server's reason.

No token ever reaches a log line, a repr or an exception message from here: aioimaplib
logs every command it sends at DEBUG, so the base64 initial response is its ``scrub``
value; the continuation answers are written to the transport directly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aioimaplib import aioimaplib

from sequencer.errors import AuthenticationError, InvalidArgument

Mechanism = Literal["XOAUTH2", "OAUTHBEARER"]
MECHANISMS: tuple[Mechanism, ...] = ("OAUTHBEARER", "XOAUTH2")

#: What the client answers to an error challenge, before base64.
ERROR_ACK: dict[Mechanism, bytes] = {"XOAUTH2": b"", "OAUTHBEARER": b"\x01"}

# RFC 6750 §2.1 b64token: what a bearer token may contain.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CAPABILITY = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


class OAuthRejected(AuthenticationError):
    """The server refused the bearer token. ``status`` is the error challenge's status:
    XOAUTH2 servers send HTTP-like codes ("401": invalid or expired; "400"/"403": wrong
    scope), OAUTHBEARER ones RFC 6750 codes ("invalid_token", "insufficient_scope")."""

    def __init__(self, message: str, code: int = 0, status: str | None = None,
                 scope: str | None = None) -> None:
        super().__init__(message, code)
        self.status = status
        self.scope = scope

    @property
    def token_expired(self) -> bool:
        """True when a fresh access token may well succeed."""
        return self.status in (None, "401", "invalid_token")


@dataclass(frozen=True)
class ErrorChallenge:
    """The JSON a server sends when it refuses a token (RFC 7628 §3.2.2)."""

    status: str | None
    scope: str | None
    schemes: str | None

    @classmethod
    def parse(cls, encoded: bytes | str) -> ErrorChallenge:
        """Decode a base64 JSON challenge; anything unreadable gives all-None fields."""
        raw = encoded.encode("ascii", "replace") if isinstance(encoded, str) else encoded
        try:
            data: Any = json.loads(base64.b64decode(raw.strip(), validate=True) or b"{}")
        except (binascii.Error, ValueError):
            return cls(None, None, None)
        if not isinstance(data, dict):
            return cls(None, None, None)

        def text(key: str) -> str | None:
            value = data.get(key)
            return str(value)[:200] if value is not None else None

        return cls(text("status"), text("scope"), text("schemes"))

    def describe(self) -> str:
        parts = [f"status {self.status}" if self.status else "no status"]
        if self.scope:
            parts.append(f"scope {self.scope}")
        return ", ".join(parts)


def _check(user: str, token: str) -> None:
    if not user or any(ch in user for ch in "\x00\x01\r\n"):
        raise InvalidArgument("the SASL user name is empty or contains a control character")
    if not _B64TOKEN.fullmatch(token):
        raise InvalidArgument("the access token is not an RFC 6750 bearer token")


def xoauth2(user: str, token: str) -> bytes:
    """The XOAUTH2 initial response (before base64): ``user=U^Aauth=Bearer T^A^A``."""
    _check(user, token)
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str | None = None, port: int | None = None
                ) -> bytes:
    """The OAUTHBEARER initial response (RFC 7628 §3.1), before base64."""
    _check(user, token)
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    fields = []
    if host:
        fields.append(f"host={host}")
    if port:
        fields.append(f"port={port}")
    fields.append(f"auth=Bearer {token}")
    return (f"n,a={authzid},\x01" + "".join(f + "\x01" for f in fields) + "\x01").encode()


def initial_response(mechanism: Mechanism, user: str, token: str,
                     host: str | None = None, port: int | None = None) -> bytes:
    if mechanism == "XOAUTH2":
        return xoauth2(user, token)
    return oauthbearer(user, token, host, port)


def choose(offered: Sequence[str], wanted: str = "auto") -> Mechanism | None:
    """The mechanism to use among those a server offers.

    ``auto`` prefers OAUTHBEARER, the standard one, and falls back to XOAUTH2; ``XOAUTH2``
    or ``OAUTHBEARER`` (any case) insists on that one."""
    names = {name.upper() for name in offered}
    candidates = [m for m in MECHANISMS if wanted.upper() in ("AUTO", m)]
    return next((m for m in candidates if m in names), None)


class BearerTokens(Protocol):
    """Where a login gets its access token (``sequencer.oauth.tokens.TokenSource``)."""

    @property
    def sasl(self) -> str:
        """``auto``, ``XOAUTH2`` or ``OAUTHBEARER``."""
        ...

    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


async def with_fresh_token(tokens: BearerTokens, login: Callable[[str], Awaitable[None]],
                           first: str | None = None) -> None:
    """Log in with the current token; when the server calls it invalid or expired, drop
    it, take a fresh one (a refresh) and try exactly once more."""
    token = first if first is not None else await asyncio.to_thread(tokens.token)
    try:
        await login(token)
        return
    except OAuthRejected as err:
        if not err.token_expired:
            raise
        tokens.invalidate(token)
    retry = await asyncio.to_thread(tokens.token)
    await login(retry)


def offered_by_imap(capabilities: Sequence[str]) -> list[str]:
    """The SASL mechanisms in an IMAP capability list (``AUTH=XOAUTH2`` …)."""
    return [c[5:].upper() for c in capabilities if c.upper().startswith("AUTH=")]


# --- IMAP (aioimaplib) ---------------------------------------------------------------------


class _SaslCommand(aioimaplib.Command):  # type: ignore[misc]  # aioimaplib is untyped
    """AUTHENTICATE that answers the server's continuations itself.

    aioimaplib appends a ``+ ...`` line to the pending command and calls ``flush()``;
    ``flush()`` is also called at the end of every received chunk, so answers are
    counted against the continuation lines seen. Its ``str()`` is the command line on
    the wire (aioimaplib sends ``str(command)``), so it stays inside this module: a
    ``CommandTimeout`` carrying it is replaced by a plain ``TimeoutError``.
    """

    def __init__(self, tag: str, mechanism: Mechanism, encoded: bytes, sasl_ir: bool,
                 protocol: Any, timeout: float | None) -> None:
        args = (mechanism, encoded.decode("ascii")) if sasl_ir else (mechanism,)
        super().__init__("AUTHENTICATE", tag, *args, loop=protocol.loop, timeout=timeout)
        self._mechanism = mechanism
        self._protocol = protocol
        self._answers: list[bytes] = [] if sasl_ir else [encoded]
        self._answered = 0
        self.challenges: list[bytes] = []

    def flush(self) -> None:
        continuations = [bytes(line) for line in self.response.lines
                         if isinstance(line, bytes) and line.startswith(b"+")]
        while self._answered < len(continuations):
            line = continuations[self._answered]
            self._answered += 1
            if self._answers:
                reply = self._answers.pop(0)
            else:
                self.challenges.append(line[1:].strip())
                reply = base64.b64encode(ERROR_ACK[self._mechanism])
            transport = self._protocol.transport
            if transport is not None:
                transport.write(reply + b"\r\n")


def _capabilities(lines: Sequence[Any]) -> set[str] | None:
    for line in lines:
        if not isinstance(line, bytes):
            continue
        if line.upper().startswith(b"CAPABILITY "):
            return set(line.decode("ascii", "replace").split()[1:])
        found = _CAPABILITY.search(line)
        if found:
            return set(found.group(1).decode("ascii", "replace").split())
    return None


async def imap_authenticate(client: Any, mechanism: Mechanism, user: str, token: str,
                            *, timeout: float | None = None) -> None:
    """AUTHENTICATE ``client`` (an ``aioimaplib.IMAP4`` that has seen the greeting) with
    a bearer token. Raises ``OAuthRejected`` when the server refuses it."""
    protocol = client.protocol
    host, port = client.host, client.port
    encoded = base64.b64encode(initial_response(mechanism, user, token, host, port))
    sasl_ir = "SASL-IR" in protocol.capabilities
    async with protocol.state_condition:
        command = _SaslCommand(protocol.new_tag(), mechanism, encoded, sasl_ir, protocol,
                               timeout)
        try:
            response = await protocol.execute(command, scrub=encoded.decode("ascii"))
        except aioimaplib.CommandTimeout:
            raise TimeoutError(f"no answer to AUTHENTICATE {mechanism}") from None
        if response.result == "OK":
            protocol.state = aioimaplib.AUTH
            protocol.state_condition.notify_all()
    if response.result != "OK":
        challenge = ErrorChallenge.parse(command.challenges[0] if command.challenges else b"")
        last = response.lines[-1] if response.lines else b""
        text = bytes(last).decode("ascii", "replace").strip()
        raise OAuthRejected(
            f"AUTHENTICATE {mechanism} refused for {user}: {response.result} {text} "
            f"({challenge.describe()})",
            status=challenge.status, scope=challenge.scope,
        )
    capabilities = _capabilities(response.lines)
    if capabilities is None:
        await protocol.capability()
    else:
        protocol.capabilities = capabilities


# --- SMTP (aiosmtplib) ---------------------------------------------------------------------

_AUTH_CONTINUE = 334
_AUTH_OK = 235


async def smtp_authenticate(smtp: Any, mechanism: Mechanism, user: str, token: str,
                            *, host: str | None = None, port: int | None = None) -> None:
    """AUTH ``mechanism`` on a connected ``aiosmtplib.SMTP`` after EHLO (RFC 4954 with the
    initial response). Raises ``OAuthRejected`` when the server refuses the token; other
    failures come as aiosmtplib's exceptions."""
    encoded = base64.b64encode(initial_response(mechanism, user, token, host, port))
    response = await smtp.execute_command(b"AUTH", mechanism.encode("ascii"), encoded)
    challenge = ErrorChallenge(None, None, None)
    if response.code == _AUTH_CONTINUE:
        challenge = ErrorChallenge.parse(response.message)
        response = await smtp.execute_command(base64.b64encode(ERROR_ACK[mechanism]))
    if response.code != _AUTH_OK:
        raise OAuthRejected(
            f"AUTH {mechanism} refused for {user}: {response.code} {response.message} "
            f"({challenge.describe()})",
            response.code, status=challenge.status, scope=challenge.scope,
        )

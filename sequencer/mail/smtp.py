"""Send one message to one recipient over a reused SMTP connection.

The sender knows nothing about the database. It reports exactly what happened, and the
difference between the outcomes is what keeps a step at most once:

- ``Accepted``: the server answered 250 to the final dot.
- ``TransientDeliveryError``: nothing was delivered (4xx, or the link failed before the
  server could reply to the final dot): safe to retry later.
- ``PermanentDeliveryError`` (``RecipientRefusedError`` at RCPT, ``AuthenticationError``):
  a 5xx: never retry.
- ``TLSRequiredError``: TLS was asked for and could not be had; nothing was sent.
- ``DeliveryAborted``: ``before_data`` said no; the transaction was reset, nothing was sent.
- ``OutcomeUnknownError``: the message went out and no reply came within ``timeout_s``; it
  may have been delivered: never resend it automatically.

A clean disconnect before the reply to the final dot is transient: TCP is ordered, so a
server that had written its 250 would have delivered it before its FIN, and RFC 5321 §3.8
cancels a transaction closed before its reply. A *timeout* there is not: the server may
have taken the message and be slow, or the reply may be lost on a half-open link.

Cancelling ``send`` once ``before_data`` has returned True leaves the outcome unknown, as a
crash would: the caller records what it needs inside ``before_data``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from sequencer.core.text import has_control
from sequencer.errors import (
    AuthenticationError,
    DeliveryAborted,
    DeliveryError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    RecipientRefusedError,
    TLSRequiredError,
    TransientDeliveryError,
)
from sequencer.mail import sasl

log = logging.getLogger(__name__)

TlsMode = Literal["ssl", "starttls", "none"]
BeforeData = Callable[[], Awaitable[bool]]

_SERVICE_CLOSING = 421
_START_MAIL_INPUT = 354
_COMPLETED = 250
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class SmtpAccount:
    """Where and how to submit mail. ``tls="none"`` is refused upstream for non-loopback."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsMode = "starttls"
    timeout_s: float = 30.0
    local_hostname: str | None = None
    #: ``auth: oauth2``: access tokens for SASL OAUTHBEARER/XOAUTH2 as ``username``.
    tokens: sasl.BearerTokens | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Accepted:
    """The server's reply to the final dot (250 …)."""

    code: int
    message: str


class SmtpSender:
    """One lazily opened, reused SMTP connection; one transaction at a time."""

    def __init__(self, account: SmtpAccount, *, tls_context: ssl.SSLContext | None = None) -> None:
        self._account = account
        self._tls_context = tls_context
        self._smtp: SMTP | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        account = self._account
        return f"SmtpSender({account.host}:{account.port}, tls={account.tls})"

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(
        self,
        mail_from: str,
        rcpt: str,
        data: bytes,
        before_data: BeforeData | None = None,
    ) -> Accepted:
        """Deliver ``data`` to the single envelope recipient ``rcpt`` (headers are ignored)."""
        _check_address(mail_from, rcpt)
        _check_address(rcpt, rcpt)
        async with self._lock:
            try:
                return await self._transaction(mail_from, rcpt, data, before_data)
            except BaseException:
                self._discard()
                raise

    async def close(self) -> None:
        """Say QUIT if the connection is still up, then drop it."""
        async with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            if smtp.is_connected:
                try:
                    await smtp.quit(timeout=min(self._account.timeout_s, 5.0))
                except (SMTPException, OSError) as err:
                    log.debug("QUIT to %s failed: %s", self._account.host, err)
            smtp.close()

    async def _transaction(
        self, mail_from: str, rcpt: str, data: bytes, before_data: BeforeData | None
    ) -> Accepted:
        smtp = await self._envelope(mail_from, rcpt)
        if before_data is not None and not await before_data():
            await _reset_quietly(smtp)
            raise DeliveryAborted("the last check before DATA declined; nothing was sent", 0, rcpt)
        return await self._data(smtp, rcpt, data)

    async def _envelope(self, mail_from: str, rcpt: str) -> SMTP:
        """MAIL and RCPT, reconnecting once if the link fails before anything was sent."""
        try:
            return await self._try_envelope(mail_from, rcpt)
        except (SMTPException, OSError) as err:
            if not _is_link_failure(err):
                raise _delivery_error(err, rcpt) from err
            log.debug("SMTP link to %s failed before DATA (%s); reconnecting", self._host(), err)
            self._discard()
        try:
            return await self._try_envelope(mail_from, rcpt)
        except (SMTPException, OSError) as err:
            raise _delivery_error(err, rcpt) from err

    async def _try_envelope(self, mail_from: str, rcpt: str) -> SMTP:
        smtp = await self._connection()
        utf8 = not (mail_from.isascii() and rcpt.isascii())
        if utf8 and not smtp.supports_extension("smtputf8"):
            raise PermanentDeliveryError(
                "a non-ASCII envelope address needs SMTPUTF8, which the server does not offer",
                0,
                rcpt,
            )
        encoding = "utf-8" if utf8 else "ascii"
        await smtp.mail(mail_from, options=["SMTPUTF8"] if utf8 else None, encoding=encoding)
        await smtp.rcpt(rcpt, encoding=encoding)
        return smtp

    async def _connection(self) -> SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._discard()
        self._smtp = await self._open()
        return self._smtp

    async def _open(self) -> SMTP:
        account = self._account
        smtp = SMTP(
            hostname=account.host,
            port=account.port,
            local_hostname=account.local_hostname,
            timeout=account.timeout_s,
            use_tls=account.tls == "ssl",
            start_tls=False,  # never None: that silently falls back to plaintext
            tls_context=self._tls_context,
        )
        try:
            await _connect(smtp)
            await smtp.ehlo()
            if account.tls == "starttls":
                await self._start_tls(smtp)
            if account.tokens is not None:
                await self._oauth_login(smtp, account.tokens, account.username or "")
            elif account.username is not None:
                await self._login(smtp, account.username, account.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def _start_tls(self, smtp: SMTP) -> None:
        if not smtp.supports_extension("starttls"):
            raise TLSRequiredError(
                f"{self._host()} does not offer STARTTLS; refusing to send in plaintext"
            )
        try:
            await smtp.starttls()
        except ssl.SSLError as err:
            raise TLSRequiredError(f"TLS handshake with {self._host()} failed: {err}") from err
        except SMTPResponseException as err:
            raise TLSRequiredError(
                f"{self._host()} refused STARTTLS: {err.message}", err.code
            ) from err
        await smtp.ehlo()

    async def _login(self, smtp: SMTP, username: str, password: str) -> None:
        if not smtp.supports_extension("auth"):
            raise AuthenticationError(f"{self._host()} does not offer AUTH")
        try:
            await smtp.login(username, password)
        except SMTPResponseException:
            raise  # mapped by code: 535 permanent, 454 transient, 421 a link failure
        except SMTPException as err:
            raise AuthenticationError(f"{self._host()}: {err.message}") from err

    async def _oauth_login(self, smtp: SMTP, tokens: sasl.BearerTokens, username: str) -> None:
        if not smtp.supports_extension("auth"):
            raise AuthenticationError(f"{self._host()} does not offer AUTH")
        offered = [name.upper() for name in smtp.server_auth_methods]
        mechanism = sasl.choose(offered, tokens.sasl)
        if mechanism is None:
            raise AuthenticationError(
                f"{self._host()} offers neither OAUTHBEARER nor XOAUTH2 "
                f"(AUTH {' '.join(offered) or 'nothing'})"
            )
        account = self._account

        async def login(token: str) -> None:
            await sasl.smtp_authenticate(smtp, mechanism, username, token,
                                         host=account.host, port=account.port)

        await sasl.with_fresh_token(tokens, login)

    async def _data(self, smtp: SMTP, rcpt: str, data: bytes) -> Accepted:
        try:
            start = await smtp.execute_command(b"DATA")
        except (SMTPServerDisconnected, SMTPTimeoutError) as err:
            raise TransientDeliveryError(f"DATA not accepted: {err}", 0, rcpt) from err
        if start.code != _START_MAIL_INPUT:
            raise _reply_error(start.code, start.message, rcpt)
        reply = await self._send_content(smtp, rcpt, data)
        if reply.code != _COMPLETED:
            raise _reply_error(reply.code, reply.message, rcpt)
        return reply

    async def _send_content(self, smtp: SMTP, rcpt: str, data: bytes) -> Accepted:
        """Write the message and the final dot; wait for the one reply that matters."""
        protocol = smtp.protocol
        if protocol is None:
            raise TransientDeliveryError("connection lost after DATA, before the message", 0, rcpt)
        timeout_s = self._account.timeout_s
        try:
            protocol.write(_dot_terminated(data))
            reply = await protocol.read_response(timeout=timeout_s)
        except SMTPTimeoutError as err:
            raise OutcomeUnknownError(
                f"no reply from {self._host()} to the end of DATA within {timeout_s:g} s;"
                " the message may have been delivered",
                0,
                rcpt,
            ) from err
        except SMTPServerDisconnected as err:
            raise TransientDeliveryError(
                "connection closed before the reply to the end of DATA;"
                " the transaction was cancelled (RFC 5321 §3.8)",
                0,
                rcpt,
            ) from err
        return Accepted(reply.code, reply.message)

    def _discard(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _host(self) -> str:
        return f"{self._account.host}:{self._account.port}"


async def _connect(smtp: SMTP) -> None:
    try:
        await smtp.connect()
    except SMTPConnectError as err:
        if isinstance(err.__cause__, ssl.SSLError):
            raise TLSRequiredError(f"TLS handshake failed: {err.__cause__}") from err
        raise


async def _reset_quietly(smtp: SMTP) -> None:
    try:
        await smtp.rset()
    except (SMTPException, OSError) as err:
        log.debug("RSET failed: %s", err)


def _is_link_failure(err: BaseException) -> bool:
    """The connection (not the server's judgement of this message) failed: retry once."""
    if isinstance(err, SMTPResponseException):
        return err.code == _SERVICE_CLOSING
    return isinstance(err, SMTPServerDisconnected | SMTPConnectError | SMTPTimeoutError | OSError)


def _delivery_error(err: SMTPException | OSError, rcpt: str) -> DeliveryError:
    permanent = isinstance(err, SMTPResponseException) and 500 <= err.code < 600
    if isinstance(err, SMTPAuthenticationError) and permanent:
        return AuthenticationError(f"authentication refused: {err.message}", err.code)
    if isinstance(err, SMTPRecipientRefused) and permanent:
        return RecipientRefusedError(err.message, err.code, rcpt)
    if isinstance(err, SMTPResponseException):
        return _reply_error(err.code, err.message, rcpt)
    return TransientDeliveryError(f"SMTP link failed before DATA: {err}", 0, rcpt)


def _reply_error(code: int, message: str, rcpt: str) -> DeliveryError:
    if 500 <= code < 600:
        return PermanentDeliveryError(message, code, rcpt)
    return TransientDeliveryError(message, code, rcpt)


def _check_address(address: str, rcpt: str) -> None:
    if has_control(address):
        raise PermanentDeliveryError(
            f"envelope address {address!r} contains a control character",
            0,
            rcpt,
        )


def _dot_terminated(data: bytes) -> bytes:
    """CRLF line endings, dot-stuffing (RFC 5321 §4.5.2) and the final ``.``."""
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") == data.count(b"\r") and not data.startswith(b".") \
            and b"\n." not in data:  # already CRLF, nothing to stuff (what compose writes)
        return data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n")
    wire = _LINE_ENDINGS.sub(b"\r\n", data)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    return _LEADING_DOT.sub(b"..", wire) + b".\r\n"

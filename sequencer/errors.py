"""One exception root for everything sequencer raises on purpose.

Input errors carry where they came from (``path``, ``line``) and why (``reason``);
``str()`` of one reads ``file:line: reason`` so the CLI can print it as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

# RFC 2034: the enhanced status code leads the reply text ("5.1.1 No such user"); some
# callers keep the reply code in front of it ("550 5.1.1 …").
_ENHANCED_STATUS = re.compile(r"^\s*(?:\d{3}[ -])?([245])\.(\d{1,3})\.(\d{1,3})\b")
_SENDER_ADDRESS_DETAILS = frozenset({"7", "8"})
_OUR_SUBJECTS = frozenset({"3", "5", "6", "7"})
_OUR_BARE_CODES = frozenset({530, 534, 538})


class SequencerError(Exception):
    """Root of every error sequencer raises on purpose."""


class InvalidArgument(SequencerError, ValueError):
    """A caller passed a value the function does not take (a programming mistake)."""


class StoreError(SequencerError):
    """The database cannot be reached or used (the SQLAlchemy error is the ``__cause__``)."""


class StoreConflict(StoreError):
    """A write lost a race on a unique key: someone else stored the same thing first."""


class InputError(SequencerError):
    """Bad input from a user file: names the file, the line and the reason."""

    def __init__(self, reason: str, path: str | Path | None = None, line: int | None = None):
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return f"{where}: {self.reason}" if where else self.reason


class ConfigError(InputError):
    """The settings file or the environment is wrong."""


class DurationError(ConfigError, ValueError):
    """Not a duration such as ``90s``, ``15m``, ``2h``, ``2d`` or ``1w``."""


class SpecError(InputError):
    """A sequence file is wrong."""


class TemplateError(InputError):
    """A template is wrong, or cannot be rendered for a prospect."""


class EnrollError(InputError):
    """A CSV row (or the whole file) cannot be enrolled."""


class HeaderInjectionError(SequencerError, ValueError):
    """A header value carries a control character (CR, LF, NUL …) or smuggles one."""


class DeliveryError(SequencerError):
    """SMTP delivery did not succeed. ``code`` is the SMTP reply code (0 when none)."""

    def __init__(self, message: str, code: int = 0, recipient: str | None = None):
        self.code = code
        self.message = message
        self.recipient = recipient
        super().__init__(f"{code} {message}" if code else message)


class TransientDeliveryError(DeliveryError):
    """Try again later: 4xx, a dropped connection before the message was accepted."""


class PermanentDeliveryError(DeliveryError):
    """Never retry: 5xx. ``recipient_rejected`` is true for 5.1.x (bad mailbox)."""

    @property
    def recipient_rejected(self) -> bool:
        """True when the enhanced status is 5.1.x about the destination address.

        5.1.7 and 5.1.8 are about the *sender's* address (RFC 3463), so they are not.
        """
        status = _ENHANCED_STATUS.match(self.message)
        if status is None:
            return False
        klass, subject, detail = status.groups()
        return klass == "5" and subject == "1" and detail not in _SENDER_ADDRESS_DETAILS

    @property
    def ours(self) -> bool:
        """True when the refusal is about us, not the prospect (RFC 3463): our sender address
        (5.1.7, 5.1.8), the mail system (5.3), the protocol (5.5), the content (5.6), policy
        and security (5.7: relaying denied, authentication required, our IP or domain
        blocked); without an enhanced status code, 530/534/538 (authentication)."""
        status = _ENHANCED_STATUS.match(self.message)
        if status is None:
            return self.code in _OUR_BARE_CODES
        _, subject, detail = status.groups()
        return subject in _OUR_SUBJECTS or (subject == "1" and detail in _SENDER_ADDRESS_DETAILS)


class AuthenticationError(PermanentDeliveryError):
    """The mailbox's credentials were refused (535): pause the mailbox, do not retry."""


class OutcomeUnknownError(DeliveryError):
    """The message's DATA went out but no reply was seen: it may or may not be delivered."""


class TLSRequiredError(DeliveryError):
    """TLS was asked for and the server cannot do it: nothing is sent in plaintext."""


class WatcherError(SequencerError):
    """The inbox watcher cannot reach or read its mailbox."""


class DeliveryAborted(DeliveryError):
    """The caller's last check before DATA said no: the transaction was reset, nothing sent."""


class RecipientRefusedError(PermanentDeliveryError):
    """The server refused the envelope recipient at RCPT with a 5xx reply.

    At RCPT a bare 550/551/553 without an enhanced status code also means the mailbox is
    bad; an enhanced status code, when present, decides.
    """

    @property
    def recipient_rejected(self) -> bool:
        if _ENHANCED_STATUS.match(self.message) is None:
            return self.code in (550, 551, 553)
        return super().recipient_rejected


class RetryLater(SequencerError):
    """An inbound message could not be handled for a passing reason (the database is
    unreachable, a deadlock): the watcher must hand it over again, not skip it."""

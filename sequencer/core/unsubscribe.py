"""One-click unsubscribe (RFC 8058): signed link tokens, the link itself, the header policy.

Pure: no I/O and no clock. A token names one sent message (its Message-ID, base64url) and
carries an HMAC-SHA256 signature (``itsdangerous.Signer``) over that Message-ID *and* the
enrollment and address the message went to, so a token only works for the message it was
minted for: another prospect's Message-ID with this signature, or this Message-ID with
another's, is refused. Tokens do not expire: an unsubscribe link in an old email must keep
working (Gmail and Yahoo ask that unsubscribes are honoured; CAN-SPAM wants a working opt-out
for at least 30 days after sending). Rotating the key (several keys, newest last) keeps old
links valid while new ones are signed with the newest key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from itsdangerous import Signer

from sequencer.errors import InvalidArgument, SequencerError

PLACEHOLDER = "{token}"
ONE_CLICK = "List-Unsubscribe=One-Click"  # the RFC 8058 POST body and header value
# Gmail: "a bulk sender is any email sender that sends close to 5,000 messages or more to
# personal Gmail accounts within a 24-hour period" (docs/unsubscribe.md).
BULK_SENDER_DAILY = 5000
MIN_KEY_LENGTH = 32

_SALT = b"sequencer.unsubscribe.v1"
_B64 = re.compile(r"[A-Za-z0-9_-]{4,600}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes of HMAC-SHA256, base64url
_MESSAGE_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")


class ListUnsubscribe(StrEnum):
    """Per sequence: whether emails carry ``List-Unsubscribe`` (and ``-Post``) headers."""

    ALWAYS = "always"
    NEVER = "never"
    AUTO = "auto"  # only when this installation can send like a bulk sender


DEFAULT_POLICY = ListUnsubscribe.AUTO


def wants_headers(policy: ListUnsubscribe, daily_capacity: int) -> bool:
    """Whether to write the List-* headers; ``daily_capacity`` is what every configured
    mailbox together may send in a day (the sum of their ``daily_limit``)."""
    if policy is ListUnsubscribe.ALWAYS:
        return True
    if policy is ListUnsubscribe.NEVER:
        return False
    return daily_capacity >= BULK_SENDER_DAILY


class InvalidToken(SequencerError, ValueError):
    """Not a token this installation could have minted (malformed, forged, altered, swapped)."""


@dataclass(frozen=True)
class TokenRef:
    """What a token says before it is checked: the Message-ID it names, and its signature."""

    message_id: str  # with the angle brackets, as stored
    encoded: str
    signature: str


class Tokens:
    """Mint and check unsubscribe tokens with the secret key(s), newest key last."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys or any(len(key) < MIN_KEY_LENGTH for key in keys):
            raise InvalidArgument(
                f"each unsubscribe key must be at least {MIN_KEY_LENGTH} characters")
        self._signer = Signer(list(keys), salt=_SALT, digest_method=hashlib.sha256)

    def __repr__(self) -> str:
        return "Tokens(***)"

    def issue(self, *, message_id: str, enrollment_id: int, email: str) -> str:
        """The token for the message ``message_id`` sent to ``email`` in that enrollment."""
        inner = message_id.strip("<>")
        if not _MESSAGE_ID.fullmatch(inner):
            raise InvalidArgument(f"not a Message-ID: {message_id!r}")
        encoded = base64.urlsafe_b64encode(inner.encode("ascii")).decode("ascii").rstrip("=")
        signature = self._signer.get_signature(_bound(encoded, enrollment_id, email))
        return f"{encoded}.{signature.decode('ascii')}"

    @staticmethod
    def read(token: str) -> TokenRef:
        """Split a token into the Message-ID it names and its signature (nothing checked)."""
        encoded, dot, signature = token.partition(".")
        if not dot or not _B64.fullmatch(encoded) or not _SIGNATURE.fullmatch(signature):
            raise InvalidToken("malformed unsubscribe token")
        try:
            inner = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidToken("malformed unsubscribe token") from None
        if not _MESSAGE_ID.fullmatch(inner):
            raise InvalidToken("malformed unsubscribe token")
        return TokenRef(f"<{inner}>", encoded, signature)

    def valid(self, ref: TokenRef, *, enrollment_id: int, email: str) -> bool:
        """True when ``ref`` was minted here for exactly this enrollment and address."""
        return self._signer.verify_signature(_bound(ref.encoded, enrollment_id, email),
                                             ref.signature)


def _bound(encoded: str, enrollment_id: int, email: str) -> bytes:
    return f"{encoded}\x00{enrollment_id}\x00{email.lower()}".encode()


def link(template: str, token: str) -> str:
    """The unsubscribe URL: ``template`` (validated at load) with its placeholder filled."""
    return template.replace(PLACEHOLDER, token)


def mailto(address: str) -> str:
    """The ``mailto:`` unsubscribe URI: the sender, subject "unsubscribe"."""
    return f"mailto:{address}?subject=unsubscribe"


@dataclass(frozen=True)
class LinkPattern:
    """Where the links of a template land on our server: ``regex`` must match the request's
    path, plus ``?`` and the raw query when ``with_query``; its group ``token`` is the token."""

    regex: re.Pattern[str]
    with_query: bool

    def token(self, path: str, query: str) -> str | None:
        target = f"{path}?{query}" if self.with_query else path
        match = self.regex.fullmatch(target)
        return None if match is None else match.group("token")


def link_pattern(template: str) -> LinkPattern:
    """The request paths that ``template``'s links (``scheme://host[:port]/path?query``) reach."""
    rest = template.split("://", 1)[1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    local = rest[cut:]
    if not local.startswith("/"):
        local = "/" + local
    before, _, after = local.partition(PLACEHOLDER)
    regex = re.compile(re.escape(before) + r"(?P<token>[A-Za-z0-9_.-]{1,700})" + re.escape(after))
    return LinkPattern(regex, "?" in local)

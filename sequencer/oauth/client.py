"""The OAuth2 errors, and the Authlib client built from a mailbox's ``OAuthSettings``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from authlib.integrations.httpx_client import OAuth2Client

from sequencer.config import OAuthSettings, Secret
from sequencer.errors import AuthenticationError, SequencerError, TransientDeliveryError
from sequencer.oauth.grants import Grant

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Anything that looks like a token in a provider's error text is cut out before it is shown.
_TOKENISH = re.compile(r"[A-Za-z0-9\-._~+/]{24,}=*")


class GrantNeeded(AuthenticationError):
    """The mailbox has no usable grant (none stored, revoked, expired, or the client was
    refused): a person must run ``sequencer auth MAILBOX`` again. Never retried."""

    def __init__(self, mailbox: str, why: str) -> None:
        self.mailbox = mailbox
        super().__init__(f"{why}: run `sequencer auth {mailbox}` again")


class TokenEndpointUnavailable(TransientDeliveryError):
    """The token endpoint could not be reached or failed (5xx, not JSON): try later."""


class AuthorizationFailed(SequencerError):
    """``sequencer auth`` did not get a grant: denied, timed out, or the exchange failed."""


@dataclass(frozen=True)
class TokenAnswer:
    """A token endpoint's answer: the access token (kept in memory only) and the grant."""

    access_token: Secret
    expires_at: float  # epoch seconds
    lifetime_s: float
    refresh_token: str | None = field(repr=False)
    scope: str

    def grant(self, account: str | None, previous: Grant | None = None) -> Grant:
        token = self.refresh_token or (previous.refresh_token.reveal() if previous else None)
        if not token:
            raise AuthorizationFailed(
                "the provider returned no refresh token: ask for offline access (Microsoft: "
                "the offline_access scope; Google: access_type=offline and prompt=consent)"
            )
        return Grant(Secret(token), self.scope or (previous.scope if previous else ""),
                     account, datetime.now(UTC))


def make_client(settings: OAuthSettings, redirect_uri: str | None = None) -> OAuth2Client:
    secret = settings.client_secret.reveal() if settings.client_secret else None
    return OAuth2Client(
        client_id=settings.client_id,
        client_secret=secret,
        scope=" ".join(settings.scopes) or None,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        timeout=settings.http_timeout_s,
        trust_env=False,
    )


def answer_from(token: Mapping[str, Any], now: float) -> TokenAnswer:
    """A ``TokenAnswer`` from Authlib's token dict; ``TokenEndpointUnavailable`` if odd."""
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenEndpointUnavailable("the token endpoint answered without an access token")
    try:
        lifetime = max(1.0, float(token.get("expires_in", 3600)))
    except (TypeError, ValueError):
        lifetime = 3600.0  # RFC 6749 makes expires_in only RECOMMENDED
    refresh = token.get("refresh_token")
    return TokenAnswer(
        access_token=Secret(access), expires_at=now + lifetime, lifetime_s=lifetime,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=str(token.get("scope") or ""),
    )


def safe_text(text: object, *secrets: str | None) -> str:
    """A provider's error text fit for a log line: known secrets and token-like runs cut."""
    shown = str(text)
    for secret in secrets:
        if secret:
            shown = shown.replace(secret, "***")
    return _TOKENISH.sub("***", shown)[:300]

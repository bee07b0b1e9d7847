"""Access tokens for one mailbox: cached in memory, refreshed before they expire.

``TokenSource.token()`` is thread-safe and single-flight: the watcher's thread and every
delivery thread of a process share one source per mailbox, so one refresh serves them all.

No retry storm, whatever happens at the provider:

* ``invalid_grant`` (revoked, expired, or a rotated refresh token): the grant is read
  again (another process may have rotated it: then that one is tried, once); otherwise
  its fingerprint is remembered and ``GrantNeeded`` is raised. From then on every call
  raises ``GrantNeeded`` at once, without any network call, until a different grant is
  stored (``sequencer auth``).
* ``invalid_client``/``unauthorized_client``: the same (the client settings are wrong).
* Anything else (unreachable, 5xx, garbage): ``TokenEndpointUnavailable``, and no new
  attempt before a capped, doubling backoff has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
from authlib.integrations.base_client import OAuthError

from sequencer.config import OAuthSettings, Secret
from sequencer.oauth.client import (
    GrantNeeded,
    TokenAnswer,
    TokenEndpointUnavailable,
    answer_from,
    make_client,
    safe_text,
)
from sequencer.oauth.grants import Grant, GrantStore

logger = logging.getLogger(__name__)

_DEAD_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
_BACKOFF_FIRST_S = 5.0
_BACKOFF_MAX_S = 300.0


@dataclass
class _Cached:
    token: Secret
    refresh_at: float
    expires_at: float


class TokenSource:
    """Hands out a valid access token for ``mailbox``; see the module docstring."""

    def __init__(self, mailbox: str, settings: OAuthSettings, grants: GrantStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.mailbox = mailbox
        self._settings = settings
        self._grants = grants
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._dead: tuple[str, str] | None = None  # (fingerprint, why)
        self._unavailable_until = 0.0
        self._backoff_s = 0.0
        self._last_failure = ""

    def __repr__(self) -> str:
        return f"TokenSource(mailbox={self.mailbox!r})"

    @property
    def settings(self) -> OAuthSettings:
        return self._settings

    @property
    def sasl(self) -> str:
        return self._settings.sasl

    def token(self) -> str:
        """A valid access token; ``GrantNeeded`` or ``TokenEndpointUnavailable`` if none."""
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.token.reveal()
            return self._refresh().reveal()

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next ``token()`` refreshes."""
        with self._lock:
            if self._cached is not None and self._cached.token.reveal() == token:
                self._cached = None

    def _remember(self, answer: TokenAnswer) -> None:
        margin = min(self._settings.refresh_margin_s, answer.lifetime_s / 2)
        self._cached = _Cached(answer.access_token, answer.expires_at - margin,
                               answer.expires_at)

    def _refresh(self) -> Secret:
        grant = self._grants.load(self.mailbox)
        if grant is None:
            raise GrantNeeded(self.mailbox, f"mailbox {self.mailbox} has no OAuth2 grant yet")
        if self._dead is not None and self._dead[0] == grant.fingerprint:
            raise GrantNeeded(self.mailbox, self._dead[1])
        now = self._clock()
        if now < self._unavailable_until:
            raise TokenEndpointUnavailable(
                f"the token endpoint failed ({self._last_failure}); next try in "
                f"{self._unavailable_until - now:.0f} s"
            )
        try:
            answer = self._ask(grant)
        except OAuthError as err:
            if err.error != "invalid_grant":
                raise self._died(grant, err) from None
            latest = self._grants.load(self.mailbox)
            if latest is None or latest.fingerprint == grant.fingerprint:
                raise self._died(grant, err) from None
            logger.info("oauth %s: the grant was renewed elsewhere; using the new one",
                        self.mailbox)
            grant = latest
            try:
                answer = self._ask(grant)
            except OAuthError as again:
                raise self._died(grant, again) from None
        self._backoff_s = 0.0
        if answer.refresh_token and answer.refresh_token != grant.refresh_token.reveal():
            self._grants.save(self.mailbox, grant.with_refresh_token(answer.refresh_token))
            logger.info("oauth %s: the provider rotated the refresh token; stored the new one",
                        self.mailbox)
        self._remember(answer)
        logger.debug("oauth %s: new access token, valid for %.0f s", self.mailbox,
                     answer.lifetime_s)
        return answer.access_token

    def _ask(self, grant: Grant) -> TokenAnswer:
        settings = self._settings
        refresh = grant.refresh_token.reveal()
        try:
            with make_client(settings) as client:
                token = client.refresh_token(settings.token_url, refresh_token=refresh)
        except OAuthError as err:
            if err.error in _DEAD_ERRORS:
                raise
            raise self._unavailable(f"{err.error}: {safe_text(err.description, refresh)}"
                                    ) from None
        except (httpx2.HTTPError, ValueError) as err:
            raise self._unavailable(safe_text(f"{type(err).__name__}: {err}", refresh)
                                    ) from None
        return answer_from(token, self._clock())

    def _unavailable(self, why: str) -> TokenEndpointUnavailable:
        self._backoff_s = min(_BACKOFF_MAX_S, max(_BACKOFF_FIRST_S, self._backoff_s * 2))
        self._unavailable_until = self._clock() + self._backoff_s
        self._last_failure = why
        logger.warning("oauth %s: token endpoint failed (%s); next try in %.0f s",
                       self.mailbox, why, self._backoff_s)
        return TokenEndpointUnavailable(f"the token endpoint failed ({why})")

    def _died(self, grant: Grant, err: OAuthError) -> GrantNeeded:
        what = {
            "invalid_grant": "was revoked or has expired",
            "invalid_client": "was refused because the client is unknown or its secret wrong",
            "unauthorized_client": "was refused: the client may not use this grant",
        }.get(str(err.error), "was refused")
        why = (f"the OAuth2 grant of mailbox {self.mailbox} {what} "
               f"({err.error}: {safe_text(err.description, grant.refresh_token.reveal())})")
        self._dead = (grant.fingerprint, why)
        self._cached = None
        logger.error("oauth %s: %s; run `sequencer auth %s` again", self.mailbox, why,
                     self.mailbox)
        return GrantNeeded(self.mailbox, why)

"""TokenSource against the loopback provider: refresh before expiry, rotation, and a
revoked grant that costs exactly one token-endpoint call however often it is asked."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sequencer.config import OAuthSettings, Secret
from sequencer.oauth.client import GrantNeeded, TokenEndpointUnavailable
from sequencer.oauth.grants import FileGrants, Grant
from sequencer.oauth.tokens import TokenSource
from tests.fixtures.oauth_provider import PUBLIC_CLIENT, OAuthProvider, TokenPair

MAILBOX = "sales"


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def settings_for(provider: OAuthProvider, **kw: object) -> OAuthSettings:
    return OAuthSettings(client_id=PUBLIC_CLIENT, authorize_url=provider.authorize_url,
                         token_url=provider.token_url, **kw)  # type: ignore[arg-type]


def stored(tmp_path: Path, pair: TokenPair) -> FileGrants:
    grants = FileGrants(tmp_path / "grants.json")
    grants.save(MAILBOX, Grant(Secret(pair.refresh_token), "mail", "sales@example.test",
                               datetime.now(UTC)))
    return grants


def test_a_token_is_reused_until_the_margin_then_refreshed_while_still_valid(
    make_oauth_provider: object, tmp_path: Path
) -> None:
    provider: OAuthProvider = make_oauth_provider(access_ttl_s=600)  # type: ignore[operator]
    clock = Clock()
    source = TokenSource(MAILBOX, settings_for(provider, refresh_margin_s=60),
                         stored(tmp_path, provider.issue_grant()), clock=clock)
    first = source.token()
    assert source.token() == first
    clock.now += 600 - 61  # just before the margin
    assert source.token() == first
    assert provider.token_hits("refresh_token") == 1
    clock.now += 2  # inside the margin: refreshed, though the old one is still valid
    second = source.token()
    assert second != first
    assert provider.token_hits("refresh_token") == 2
    assert first in provider.active_access_tokens(), "refreshed before it expired"


def test_the_margin_is_at_most_half_a_short_lifetime(
    make_oauth_provider: object, tmp_path: Path
) -> None:
    provider: OAuthProvider = make_oauth_provider(access_ttl_s=20)  # type: ignore[operator]
    clock = Clock()
    source = TokenSource(MAILBOX, settings_for(provider, refresh_margin_s=300),
                         stored(tmp_path, provider.issue_grant()), clock=clock)
    first = source.token()
    clock.now += 9
    assert source.token() == first, "a 300 s margin must not refresh a 20 s token each time"
    clock.now += 2
    assert source.token() != first


def test_threads_share_one_refresh(oauth_provider: OAuthProvider, tmp_path: Path) -> None:
    source = TokenSource(MAILBOX, settings_for(oauth_provider),
                         stored(tmp_path, oauth_provider.issue_grant()))
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def take() -> None:
        barrier.wait()
        seen.append(source.token())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(seen)) == 1 and len(seen) == 8
    assert oauth_provider.token_hits("refresh_token") == 1


def test_a_rotated_refresh_token_is_stored(make_oauth_provider: object, tmp_path: Path) -> None:
    provider: OAuthProvider = make_oauth_provider(rotate_refresh_tokens=True)  # type: ignore[operator]
    pair = provider.issue_grant()
    grants = stored(tmp_path, pair)
    TokenSource(MAILBOX, settings_for(provider), grants).token()
    rotated = grants.load(MAILBOX)
    assert rotated is not None and rotated.refresh_token.reveal() != pair.refresh_token
    # another process starting from the file uses the rotated one successfully
    assert TokenSource(MAILBOX, settings_for(provider), grants).token()


class StaleOnce:
    """A store whose first read returns an older grant: another process rotated the
    refresh token between our read and our refresh."""

    def __init__(self, inner: FileGrants, stale: Grant) -> None:
        self.inner, self.stale = inner, stale

    def load(self, mailbox: str) -> Grant | None:
        stale, self.stale = self.stale, None  # type: ignore[assignment]
        return stale or self.inner.load(mailbox)

    def save(self, mailbox: str, grant: Grant) -> None:
        self.inner.save(mailbox, grant)

    def delete(self, mailbox: str) -> None:
        self.inner.delete(mailbox)

    def describe(self) -> str:
        return "stale once"


def test_a_grant_rotated_by_another_process_is_picked_up_not_declared_dead(
    make_oauth_provider: object, tmp_path: Path
) -> None:
    provider: OAuthProvider = make_oauth_provider(rotate_refresh_tokens=True)  # type: ignore[operator]
    grants = stored(tmp_path, provider.issue_grant())
    old = grants.load(MAILBOX)
    assert old is not None
    TokenSource(MAILBOX, settings_for(provider), grants).token()  # "them": rotates it
    ours = TokenSource(MAILBOX, settings_for(provider), StaleOnce(grants, old))
    assert ours.token()
    assert provider.hits["token:refresh_token"] == 3  # theirs, our stale one, our retry


def test_a_revoked_grant_raises_grant_needed_once_and_never_calls_again(
    oauth_provider: OAuthProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = oauth_provider.issue_grant()
    oauth_provider.revoke_grant(pair.refresh_token)
    source = TokenSource(MAILBOX, settings_for(oauth_provider), stored(tmp_path, pair))
    for _ in range(50):
        with pytest.raises(GrantNeeded) as needed:
            source.token()
        assert "sequencer auth sales" in str(needed.value)
        assert "revoked or has expired" in str(needed.value)
    assert oauth_provider.token_hits() == 1, "one call, then no storm"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1


def test_a_new_grant_after_revocation_is_used(oauth_provider: OAuthProvider,
                                              tmp_path: Path) -> None:
    pair = oauth_provider.issue_grant()
    oauth_provider.revoke_grant(pair.refresh_token)
    grants = stored(tmp_path, pair)
    source = TokenSource(MAILBOX, settings_for(oauth_provider), grants)
    with pytest.raises(GrantNeeded):
        source.token()
    fresh = oauth_provider.issue_grant()
    grants.save(MAILBOX, Grant(Secret(fresh.refresh_token), "mail", None, datetime.now(UTC)))
    assert source.token()


def test_no_grant_at_all_says_to_run_auth(oauth_provider: OAuthProvider, tmp_path: Path) -> None:
    source = TokenSource(MAILBOX, settings_for(oauth_provider), FileGrants(tmp_path / "g.json"))
    with pytest.raises(GrantNeeded, match="has no OAuth2 grant yet: run `sequencer auth sales`"):
        source.token()
    assert oauth_provider.token_hits() == 0


def test_an_unreachable_token_endpoint_backs_off_instead_of_hammering(
    oauth_provider: OAuthProvider, tmp_path: Path
) -> None:
    grants = stored(tmp_path, oauth_provider.issue_grant())
    clock = Clock()
    dead = OAuthSettings(client_id=PUBLIC_CLIENT, authorize_url=oauth_provider.authorize_url,
                         token_url=oauth_provider.url("/no-such-endpoint"))
    source = TokenSource(MAILBOX, dead, grants, clock=clock)
    for _ in range(20):
        with pytest.raises(TokenEndpointUnavailable):
            source.token()
    assert oauth_provider.hits["no-such-endpoint"] == 1
    clock.now += 6
    with pytest.raises(TokenEndpointUnavailable):
        source.token()
    assert oauth_provider.hits["no-such-endpoint"] == 2


def test_tokens_never_reach_a_log_line_or_a_repr(
    oauth_provider: OAuthProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pair = oauth_provider.issue_grant()
    grants = stored(tmp_path, pair)
    source = TokenSource(MAILBOX, settings_for(oauth_provider), grants)
    access = source.token()
    grant = grants.load(MAILBOX)
    shown = [r.getMessage() for r in caplog.records] + [repr(source), repr(grant), str(grant)]
    assert caplog.records, "httpx and the source did log"
    for text in shown:
        assert access not in text and pair.refresh_token not in text

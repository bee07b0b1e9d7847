"""The authorization flows against the loopback provider, the browser step driven by a
real HTTP GET of the authorization URL."""

from __future__ import annotations

import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sequencer.config import OAuthSettings, Secret
from sequencer.oauth.client import AuthorizationFailed, TokenAnswer
from sequencer.oauth.flows import authorize_in_browser, authorize_on_device
from tests.fixtures.oauth_provider import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    OAuthProvider,
)


def settings_for(provider: OAuthProvider, **kw: Any) -> OAuthSettings:
    base: dict[str, Any] = dict(client_id=PUBLIC_CLIENT, authorize_url=provider.authorize_url,
                                token_url=provider.token_url, device_url=provider.device_url,
                                scopes=("mail", "offline_access"))
    return OAuthSettings(**{**base, **kw})


def run_in_thread(target: Callable[[], TokenAnswer]) -> tuple[threading.Thread, queue.Queue[Any]]:
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            out.put(target())
        except BaseException as err:  # handed to the test
            out.put(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def browser_flow(settings: OAuthSettings, **kw: Any) -> tuple[str, queue.Queue[Any]]:
    shown: queue.Queue[str] = queue.Queue()
    _, out = run_in_thread(lambda: authorize_in_browser(settings, show=shown.put, **kw))
    return shown.get(timeout=10), out


def visit(url: str) -> tuple[int, bytes]:
    """What a browser does: GET the authorization URL and follow its redirect home."""
    try:
        with urllib.request.urlopen(url, timeout=10) as page:
            return page.status, page.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_browser_flow_exchanges_a_pkce_code_for_a_grant(oauth_provider: OAuthProvider) -> None:
    url, out = browser_flow(settings_for(oauth_provider), login_hint="sales@example.test")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["login_hint"] == "sales@example.test"
    redirect = urlsplit(query["redirect_uri"])
    assert redirect.hostname == "127.0.0.1" and redirect.port
    status, page = visit(url)
    assert status == 200 and b"close this tab" in page
    answer = out.get(timeout=10)
    assert isinstance(answer, TokenAnswer)
    assert answer.refresh_token and answer.access_token.reveal() in \
        oauth_provider.active_access_tokens()
    assert oauth_provider.token_hits("authorization_code") == 1
    assert answer.grant("sales@example.test").scope == "mail offline_access"


def test_browser_flow_with_a_confidential_client_sends_its_secret(
    oauth_provider: OAuthProvider,
) -> None:
    settings = settings_for(oauth_provider, client_id=CONFIDENTIAL_CLIENT,
                            client_secret=Secret(CONFIDENTIAL_SECRET))
    url, out = browser_flow(settings)
    visit(url)
    assert isinstance(out.get(timeout=10), TokenAnswer)


def test_a_wrong_client_secret_fails_the_exchange_with_a_clear_reason(
    oauth_provider: OAuthProvider,
) -> None:
    settings = settings_for(oauth_provider, client_id=CONFIDENTIAL_CLIENT,
                            client_secret=Secret("not-the-secret"))
    url, out = browser_flow(settings)
    visit(url)
    failure = out.get(timeout=10)
    assert isinstance(failure, AuthorizationFailed)
    assert "invalid_client" in str(failure)


def test_a_redirect_with_another_state_is_not_accepted(oauth_provider: OAuthProvider) -> None:
    url, out = browser_flow(settings_for(oauth_provider))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    forged = f"{query['redirect_uri']}?code=stolen&state=forged"
    status, _ = visit(forged)
    failure = out.get(timeout=10)
    assert isinstance(failure, AuthorizationFailed) and "state" in str(failure)
    assert oauth_provider.token_hits() == 0, "nothing was exchanged"


def test_a_refused_authorization_is_reported(oauth_provider: OAuthProvider) -> None:
    url, out = browser_flow(settings_for(oauth_provider))
    status, _ = visit(url.replace("code_challenge_method=S256", "code_challenge_method=plain"))
    assert status == 400
    failure = out.get(timeout=10)
    assert isinstance(failure, AuthorizationFailed) and "PKCE" in str(failure)


def test_the_browser_flow_gives_up_after_its_timeout(oauth_provider: OAuthProvider) -> None:
    url, out = browser_flow(settings_for(oauth_provider), timeout_s=0.3)
    failure = out.get(timeout=10)
    assert isinstance(failure, AuthorizationFailed) and "no answer" in str(failure)


def test_device_flow_polls_until_approved(oauth_provider: OAuthProvider) -> None:
    shown: queue.Queue[str] = queue.Queue()
    naps: list[float] = []
    approved = threading.Event()

    def nap(seconds: float) -> None:  # the poll interval, cut short once approved
        naps.append(seconds)
        approved.wait(seconds)

    _, out = run_in_thread(lambda: authorize_on_device(
        settings_for(oauth_provider), show=shown.put, sleep=nap))
    message = shown.get(timeout=10)
    assert "/device/verify" in message
    user_code = message.rsplit(" ", 1)[1]
    oauth_provider.approve_device(user_code)
    approved.set()
    answer = out.get(timeout=10)
    assert isinstance(answer, TokenAnswer) and answer.refresh_token
    assert oauth_provider.token_hits("urn:ietf:params:oauth:grant-type:device_code") >= 1
    assert all(nap == 1.0 for nap in naps), "the provider's interval is honoured"


def test_device_flow_reports_a_denial(oauth_provider: OAuthProvider) -> None:
    shown: queue.Queue[str] = queue.Queue()
    _, out = run_in_thread(lambda: authorize_on_device(
        settings_for(oauth_provider), show=shown.put, sleep=lambda s: None))
    oauth_provider.deny_device(shown.get(timeout=10).rsplit(" ", 1)[1])
    failure = out.get(timeout=10)
    assert isinstance(failure, AuthorizationFailed) and "access_denied" in str(failure)


def test_device_flow_needs_a_device_url(oauth_provider: OAuthProvider) -> None:
    with pytest.raises(AuthorizationFailed, match="no device_url"):
        authorize_on_device(settings_for(oauth_provider, device_url=None), show=print)

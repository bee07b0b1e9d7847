"""The two ways ``sequencer auth MAILBOX`` obtains a grant.

``authorize_in_browser``: the authorization-code flow with PKCE (RFC 7636, S256) on a
loopback redirect (RFC 8252 §7.3), as desktop mail clients do. It binds 127.0.0.1 on a free
port, shows the authorization URL, waits for the browser to come back with the code (or an
error), checks ``state`` and exchanges the code with the verifier.

``authorize_on_device``: the device authorization grant (RFC 8628) for a headless server:
it shows a URL and a short code to enter on any other device, then polls the token
endpoint at the interval the provider asks for. Microsoft allows it for the IMAP and SMTP
scopes; Google does not allow the mail scopes in its device flow (docs/oauth2.md).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from authlib.integrations.base_client import OAuthError

from sequencer.config import OAuthSettings
from sequencer.oauth.client import (
    DEVICE_GRANT,
    AuthorizationFailed,
    TokenAnswer,
    answer_from,
    make_client,
    safe_text,
)

Show = Callable[[str], None]

_DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>sequencer</title>"
    b"<p>sequencer has the authorization. You can close this tab.</p>"
)
_FAILED_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>sequencer</title>"
    b"<p>The authorization did not succeed; the terminal says why.</p>"
)


@dataclass
class _Callback:
    query: dict[str, str] | None = None


def _endpoint_failed(err: Exception) -> AuthorizationFailed:
    return AuthorizationFailed(
        f"the token endpoint failed: {safe_text(f'{type(err).__name__}: {err}')}")


def _callback_server(expected_path: str, result: _Callback) -> HTTPServer:
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the request line carries the authorization code

        def do_GET(self) -> None:  # noqa: N802 - http.server hook name
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path != expected_path or not ({"code", "error"} & query.keys()):
                self.send_error(404)
                return
            ok = "code" in query
            page = _DONE_PAGE if ok else _FAILED_PAGE
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(page)
            if not done.is_set():
                result.query = query
                done.set()

    return HTTPServer(("127.0.0.1", 0), Handler)


def authorize_in_browser(settings: OAuthSettings, *, show: Show, login_hint: str | None = None,
                         timeout_s: float = 300.0, clock: Callable[[], float] = time.monotonic
                         ) -> TokenAnswer:
    """Run the authorization-code flow with PKCE; return the token endpoint's answer."""
    result = _Callback()
    path = "/"
    server = _callback_server(path, result)
    try:
        port = server.server_address[1]
        redirect_uri = f"http://{settings.redirect_host}:{port}{path}"
        verifier = secrets.token_urlsafe(64)  # 86 characters, RFC 7636 allows 43-128
        with make_client(settings, redirect_uri) as client:
            extra = dict(settings.authorize_params)
            if login_hint:
                extra.setdefault("login_hint", login_hint)
            url, state = client.create_authorization_url(
                settings.authorize_url, code_verifier=verifier, **extra
            )
            show(url)
            deadline = clock() + timeout_s
            while result.query is None:
                remaining = deadline - clock()
                if remaining <= 0:
                    raise AuthorizationFailed(
                        f"no answer from the browser within {timeout_s:.0f} s; run it again"
                    )
                server.timeout = min(remaining, 1.0)
                server.handle_request()
            query = result.query
            if query.get("state") != state:
                raise AuthorizationFailed("the redirect's state does not match: not ours")
            if "error" in query:
                raise AuthorizationFailed(
                    f"the provider refused: {safe_text(query['error'])}"
                    + (f": {safe_text(query['error_description'])}"
                       if query.get("error_description") else "")
                )
            try:
                token = client.fetch_token(
                    settings.token_url, grant_type="authorization_code", code=query["code"],
                    code_verifier=verifier, redirect_uri=redirect_uri,
                )
            except OAuthError as err:
                raise AuthorizationFailed(
                    f"the code exchange failed: {err.error}: {safe_text(err.description)}"
                ) from None
            except (httpx2.HTTPError, ValueError) as err:
                raise _endpoint_failed(err) from None
        return answer_from(token, time.time())
    finally:
        server.server_close()


def authorize_on_device(settings: OAuthSettings, *, show: Show, timeout_s: float = 900.0,
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> TokenAnswer:
    """Run the device authorization grant; return the token endpoint's answer."""
    if not settings.device_url:
        raise AuthorizationFailed(
            "this mailbox has no device_url: its provider offers no device flow for mail "
            "(Google does not allow the mail scopes there); use the browser flow"
        )
    with make_client(settings) as client:
        form = {"client_id": settings.client_id, "scope": " ".join(settings.scopes)}
        if settings.client_secret is not None:
            form["client_secret"] = settings.client_secret.reveal()
        try:
            answer = client.request("POST", settings.device_url, data=form,
                                    withhold_token=True, headers={"Accept": "application/json"})
            start: Any = answer.json()
        except (httpx2.HTTPError, ValueError) as err:
            raise AuthorizationFailed(
                f"the device endpoint failed: {safe_text(f'{type(err).__name__}: {err}')}"
            ) from None
        if answer.status_code != 200 or not isinstance(start, dict) or "device_code" not in start:
            error = start.get("error", answer.status_code) if isinstance(start, dict) else ""
            raise AuthorizationFailed(f"the device endpoint refused: {safe_text(error)}")
        uri = start.get("verification_uri") or start.get("verification_url")
        show(f"open {uri} and enter the code {start.get('user_code')}")
        interval = float(start.get("interval") or 5)
        deadline = clock() + min(timeout_s, float(start.get("expires_in") or timeout_s))
        while True:
            try:
                token = client.fetch_token(settings.token_url, grant_type=DEVICE_GRANT,
                                           device_code=start["device_code"])
                return answer_from(token, time.time())
            except OAuthError as err:
                if err.error == "slow_down":
                    interval += 5  # RFC 8628 §3.5
                elif err.error != "authorization_pending":
                    raise AuthorizationFailed(
                        f"the device authorization ended: {err.error}: "
                        f"{safe_text(err.description)}"
                    ) from None
            except (httpx2.HTTPError, ValueError) as err:
                raise _endpoint_failed(err) from None
            if clock() + interval > deadline:
                raise AuthorizationFailed("the device code expired before it was entered")
            sleep(interval)

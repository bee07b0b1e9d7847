"""The real IMAP watcher and the real SMTP sender logging in with OAuth2 access tokens from
a TokenSource, against Dovecot's oauth2 passdb and the aiosmtpd XOAUTH2/OAUTHBEARER
handler, all checking tokens at the loopback provider."""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sequencer.config import OAuthSettings, Secret
from sequencer.mail import sasl as sasl_mod
from sequencer.mail.imap.connection import ImapAccount
from sequencer.mail.imap.watcher import ImapWatcher, WatcherState
from sequencer.mail.smtp import SmtpAccount, SmtpSender
from sequencer.oauth.client import GrantNeeded
from sequencer.oauth.grants import FileGrants, Grant
from sequencer.oauth.tokens import TokenSource
from tests.cursors import MemoryCursorStore
from tests.fixtures.oauth_mail import OAuthDovecotServer, OAuthSmtpServer
from tests.fixtures.oauth_provider import PUBLIC_CLIENT, OAuthProvider
from tests.mail.recording import Recorder, message, until, watching

USER = "sales@example.test"
FAST: dict[str, Any] = {"timeout_s": 3.0, "backoff_base_s": 0.1, "backoff_max_s": 0.5}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def source_for(provider: OAuthProvider, tmp_path: Path, sasl: str = "auto",
               clock: Clock | None = None, user: str = USER) -> TokenSource:
    pair = provider.issue_grant(user)
    grants = FileGrants(tmp_path / "grants.json")
    grants.save("sales", Grant(Secret(pair.refresh_token), "mail", user, datetime.now(UTC)))
    settings = OAuthSettings(client_id=PUBLIC_CLIENT, authorize_url=provider.authorize_url,
                             token_url=provider.token_url, sasl=sasl,  # type: ignore[arg-type]
                             refresh_margin_s=60)
    return TokenSource("sales", settings, grants, clock=clock or time.time)


def imap_account(server: OAuthDovecotServer, tokens: TokenSource) -> ImapAccount:
    return ImapAccount(host=server.host, port=server.port, username=server.username,
                       password="", tls="none", tokens=tokens)


# --- IMAP --------------------------------------------------------------------------------


@pytest.mark.parametrize("sasl", ["xoauth2", "oauthbearer"])
async def test_the_watcher_logs_in_with_a_token_idles_and_gets_a_reply(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider, tmp_path: Path,
    sasl: str,
) -> None:
    tokens = source_for(oauth_provider, tmp_path, sasl.upper())
    recorder = Recorder()
    watcher = ImapWatcher("sales", imap_account(oauth_dovecot, tokens), MemoryCursorStore(),
                          recorder, **FAST)
    async with watching(watcher):
        await until(lambda: watcher.state is WatcherState.IDLE, 10, "IDLE")
        oauth_dovecot.append(message(1))
        await recorder.wait_for(1, timeout=5)
    assert recorder.subjects == ["reply 1"]
    assert any(f"method={sasl.upper()}" in line for line in oauth_dovecot.connections())
    assert oauth_provider.token_hits("refresh_token") == 1


async def test_a_token_expired_at_reconnect_is_refreshed_once_and_the_watch_goes_on(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider, tmp_path: Path,
) -> None:
    tokens = source_for(oauth_provider, tmp_path)
    recorder = Recorder()
    watcher = ImapWatcher("sales", imap_account(oauth_dovecot, tokens), MemoryCursorStore(),
                          recorder, **FAST)
    async with watching(watcher):
        await until(lambda: watcher.state is WatcherState.IDLE, 10, "IDLE")
        oauth_provider.expire_access_tokens()  # the cached one is dead at the provider
        oauth_dovecot.restart()
        oauth_dovecot.append(message(2))
        await recorder.wait_for(1, timeout=15)
    assert oauth_provider.token_hits("refresh_token") == 2  # start, and after the 401
    introspected = oauth_provider.introspections
    assert len(introspected) == 3 and introspected[1] == introspected[0] != introspected[2]


async def test_a_revoked_grant_is_reported_once_and_costs_one_token_call(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokens = source_for(oauth_provider, tmp_path)
    oauth_provider.revoke_all()
    reports: list[str] = []
    watcher = ImapWatcher("sales", imap_account(oauth_dovecot, tokens), MemoryCursorStore(),
                          Recorder(), on_auth_failure=reports.append,
                          **{**FAST, "backoff_max_s": 0.05})
    async with watching(watcher):
        await until(lambda: watcher._failures >= 20, 10, "twenty failed attempts")
    assert len(reports) == 1 and "sequencer auth sales" in reports[0]
    assert oauth_provider.token_hits() == 1, "no retry storm at the provider"
    assert not [line for line in oauth_dovecot.connections() if "Login" in line]
    refused = [r for r in caplog.records if "revoked" in r.getMessage()
               and r.levelno >= logging.ERROR]
    assert len(refused) == 2  # the token source's line and the watcher's, once each


# --- SMTP ---------------------------------------------------------------------------------


def smtp_account(server: OAuthSmtpServer, tokens: TokenSource) -> SmtpAccount:
    return SmtpAccount(host=server.host, port=server.port, username=USER, tls="none",
                       timeout_s=5, tokens=tokens)


RAW = b"From: sales@example.test\r\nTo: p@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.mark.parametrize("sasl", ["xoauth2", "oauthbearer"])
async def test_the_sender_submits_over_oauth(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider, tmp_path: Path,
    sasl: str,
) -> None:
    tokens = source_for(oauth_provider, tmp_path, sasl.upper())
    async with SmtpSender(smtp_account(oauth_smtp_server, tokens)) as sender:
        accepted = await sender.send(USER, "p@example.test", RAW)
        await sender.send(USER, "q@example.test", RAW)
    assert accepted.code == 250
    assert [(a.mechanism, a.accepted) for a in oauth_smtp_server.auth_attempts] == [
        (sasl.upper(), True)
    ], "one AUTH for two messages on the reused connection"
    assert len(oauth_smtp_server.deliveries) == 2


async def test_the_sender_refreshes_before_expiry_for_a_new_connection(
    oauth_smtp_server: OAuthSmtpServer, make_oauth_provider: Any, tmp_path: Path,
) -> None:
    provider: OAuthProvider = make_oauth_provider(access_ttl_s=600)
    oauth_smtp_server.ledger.provider = provider  # type: ignore[attr-defined]
    clock = Clock()
    tokens = source_for(provider, tmp_path, clock=clock)
    sender = SmtpSender(smtp_account(oauth_smtp_server, tokens))
    await sender.send(USER, "p@example.test", RAW)
    await sender.close()
    clock.now += 600 - 30  # inside the 60 s margin, still valid at the provider
    await sender.send(USER, "q@example.test", RAW)
    await sender.close()
    first, second = oauth_smtp_server.auth_attempts
    assert first.accepted and second.accepted and first.token != second.token
    assert first.token in provider.active_access_tokens(), "refreshed before it expired"
    assert provider.token_hits("refresh_token") == 2


async def test_a_stale_token_refused_by_the_server_is_refreshed_once(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider, tmp_path: Path,
) -> None:
    tokens = source_for(oauth_provider, tmp_path)
    tokens.token()
    oauth_provider.expire_access_tokens()
    async with SmtpSender(smtp_account(oauth_smtp_server, tokens)) as sender:
        await sender.send(USER, "p@example.test", RAW)
    assert [a.accepted for a in oauth_smtp_server.auth_attempts] == [False, True]
    assert oauth_provider.token_hits("refresh_token") == 2


@pytest.mark.parametrize("sasl", ["xoauth2", "oauthbearer"])
async def test_no_token_reaches_a_log_line_when_the_server_refuses_one_and_takes_the_next(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, sasl: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = source_for(oauth_provider, tmp_path, sasl=sasl)
    tokens.token()
    oauth_provider.expire_access_tokens()
    async with SmtpSender(smtp_account(oauth_smtp_server, tokens)) as sender:
        await sender.send(USER, "p@example.test", RAW)
    refused, taken = oauth_smtp_server.auth_attempts
    assert not refused.accepted and taken.accepted and refused.token != taken.token
    assert caplog.records, "the send and the token source did log"
    mechanism: sasl_mod.Mechanism = "XOAUTH2" if sasl == "xoauth2" else "OAUTHBEARER"
    host, port = oauth_smtp_server.host, oauth_smtp_server.port
    secret = set(oauth_provider.issued_tokens())
    for attempt in (refused, taken):
        assert attempt.token is not None
        secret.add(base64.b64encode(sasl_mod.initial_response(
            mechanism, USER, attempt.token, host, port)).decode())  # what AUTH carried
    assert {refused.token, taken.token} <= secret
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.exc_info or "")
        for token in secret:
            assert token not in text, record.getMessage()


async def test_a_revoked_grant_fails_the_send_with_grant_needed_and_no_smtp_connection(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider, tmp_path: Path,
) -> None:
    tokens = source_for(oauth_provider, tmp_path)
    oauth_provider.revoke_all()
    async with SmtpSender(smtp_account(oauth_smtp_server, tokens)) as sender:
        for _ in range(5):
            with pytest.raises(GrantNeeded, match="run `sequencer auth sales` again"):
                await sender.send(USER, "p@example.test", RAW)
    assert oauth_provider.token_hits() == 1
    assert oauth_smtp_server.auth_attempts == []

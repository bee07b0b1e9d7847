"""SASL XOAUTH2 and OAUTHBEARER against Dovecot's oauth2 passdb and the aiosmtpd handler,
both checking tokens at the loopback provider's introspection endpoint."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

import aiosmtplib
import pytest
from aioimaplib import aioimaplib

from sequencer.mail import sasl
from sequencer.mail.sasl import ErrorChallenge, OAuthRejected
from tests.fixtures.oauth_mail import OAuthDovecotServer, OAuthSmtpServer
from tests.fixtures.oauth_provider import OAuthProvider

MECHANISMS: list[sasl.Mechanism] = ["XOAUTH2", "OAUTHBEARER"]


@contextlib.asynccontextmanager
async def imap_client(server: OAuthDovecotServer) -> AsyncIterator[Any]:
    client = aioimaplib.IMAP4(host=server.host, port=server.port, timeout=5)
    await client.wait_hello_from_server()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.logout()


# --- the initial responses -----------------------------------------------------------------


def test_xoauth2_initial_response_is_the_documented_format() -> None:
    assert sasl.xoauth2("dana@example.com", "ya29.tok-en") == (
        b"user=dana@example.com\x01auth=Bearer ya29.tok-en\x01\x01"
    )


def test_oauthbearer_initial_response_follows_rfc_7628_and_escapes_the_authzid() -> None:
    assert sasl.oauthbearer("a,b=c@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                            "server.example.com", 143) == (
        b"n,a=a=2Cb=3Dc@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


@pytest.mark.parametrize("token", ["has space", "line\r\nbreak", "", "tab\t"])
def test_a_token_that_could_smuggle_fields_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="bearer token"):
        sasl.xoauth2("dana@example.com", token)


def test_a_user_with_a_control_character_is_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        sasl.oauthbearer("dana\x01@example.com", "tok")


def test_error_challenge_is_decoded_and_garbage_is_harmless() -> None:
    raw = base64.b64encode(b'{"status":"401","schemes":"Bearer","scope":"https://mail/"}')
    assert ErrorChallenge.parse(raw) == ErrorChallenge("401", "https://mail/", "Bearer")
    assert ErrorChallenge.parse(b"not base64!") == ErrorChallenge(None, None, None)
    assert ErrorChallenge.parse(base64.b64encode(b"[1]")) == ErrorChallenge(None, None, None)


def test_choose_prefers_oauthbearer_and_respects_an_explicit_choice() -> None:
    assert sasl.choose(["PLAIN", "XOAUTH2", "OAUTHBEARER"]) == "OAUTHBEARER"
    assert sasl.choose(["XOAUTH2"]) == "XOAUTH2"
    assert sasl.choose(["XOAUTH2", "OAUTHBEARER"], "XOAUTH2") == "XOAUTH2"
    assert sasl.choose(["PLAIN"]) is None


# --- IMAP: Dovecot's oauth2 passdb ---------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_imap_login_with_a_valid_token_is_introspected_and_accepted(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider, mechanism: sasl.Mechanism
) -> None:
    pair = oauth_provider.issue_grant(oauth_dovecot.username)
    async with imap_client(oauth_dovecot) as client:
        await sasl.imap_authenticate(client, mechanism, oauth_dovecot.username,
                                     pair.access_token, timeout=5)
        assert client.protocol.state == aioimaplib.AUTH
        assert "IDLE" in client.protocol.capabilities
        selected = await client.select("INBOX")
        assert selected.result == "OK"
    assert oauth_provider.introspections == [pair.access_token]
    assert any(f"method={mechanism}" in line for line in oauth_dovecot.connections())


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_imap_refused_token_answers_the_error_challenge_and_raises(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider, mechanism: sasl.Mechanism
) -> None:
    pair = oauth_provider.issue_grant(oauth_dovecot.username)
    oauth_provider.expire_access_tokens()
    async with imap_client(oauth_dovecot) as client:
        with pytest.raises(OAuthRejected) as refused:
            await sasl.imap_authenticate(client, mechanism, oauth_dovecot.username,
                                         pair.access_token, timeout=5)
        assert refused.value.token_expired
        assert pair.access_token not in str(refused.value)
        assert client.protocol.state == aioimaplib.NONAUTH
        # the session is still usable: the exchange was ended, not abandoned
        capability = await asyncio.wait_for(client.protocol.capability(), 5)
        assert capability is None
    assert oauth_provider.introspections == [pair.access_token]


async def test_imap_token_of_another_user_is_refused(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider
) -> None:
    pair = oauth_provider.issue_grant("someone.else@example.test")
    async with imap_client(oauth_dovecot) as client:
        with pytest.raises(OAuthRejected):
            await sasl.imap_authenticate(client, "XOAUTH2", oauth_dovecot.username,
                                         pair.access_token, timeout=5)


async def test_imap_without_sasl_ir_sends_the_response_after_the_continuation(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider
) -> None:
    pair = oauth_provider.issue_grant(oauth_dovecot.username)
    async with imap_client(oauth_dovecot) as client:
        client.protocol.capabilities.discard("SASL-IR")
        await sasl.imap_authenticate(client, "OAUTHBEARER", oauth_dovecot.username,
                                     pair.access_token, timeout=5)
        assert client.protocol.state == aioimaplib.AUTH


async def test_imap_token_never_reaches_the_log(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pair = oauth_provider.issue_grant(oauth_dovecot.username)
    encoded = base64.b64encode(sasl.xoauth2(oauth_dovecot.username, pair.access_token))
    async with imap_client(oauth_dovecot) as client:
        await sasl.imap_authenticate(client, "XOAUTH2", oauth_dovecot.username,
                                     pair.access_token, timeout=5)
    assert any("AUTHENTICATE" in r.getMessage() for r in caplog.records)  # it did log
    for record in caplog.records:
        assert pair.access_token not in record.getMessage()
        assert encoded.decode() not in record.getMessage()


def test_pinned_aioimaplib_still_lacks_oauthbearer_and_sends_xoauth2_inline() -> None:
    """Our AUTHENTICATE exists because of aioimaplib 2.0.3 (upstream: iroco-co/aioimaplib
    issue #2, "AUTHENTICATE command"). When this fails, look again at what the new
    version does on an error challenge before dropping sasl.imap_authenticate."""
    assert version("aioimaplib") == "2.0.3"
    assert not hasattr(aioimaplib.IMAP4, "oauthbearer")
    assert hasattr(aioimaplib.IMAP4, "xoauth2")


async def test_pinned_aioimaplib_xoauth2_hangs_on_an_error_challenge(
    oauth_dovecot: OAuthDovecotServer, oauth_provider: OAuthProvider
) -> None:
    """What our AUTHENTICATE fixes: aioimaplib's own xoauth2() never answers the error
    challenge, so a refused token is a timeout, not a refusal."""
    pair = oauth_provider.issue_grant(oauth_dovecot.username)
    oauth_provider.expire_access_tokens()
    client = aioimaplib.IMAP4(host=oauth_dovecot.host, port=oauth_dovecot.port, timeout=5)
    await client.wait_hello_from_server()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.xoauth2(oauth_dovecot.username, pair.access_token),
                                   1.0)
    finally:
        client.protocol.transport.abort()  # LOGOUT would wait behind the stuck command


# --- SMTP: the aiosmtpd handler -------------------------------------------------------------


async def smtp_connected(server: OAuthSmtpServer) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False,
                           use_tls=False, timeout=5)
    await smtp.connect()
    await smtp.ehlo()
    return smtp


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_smtp_auth_with_a_valid_token_then_mail_goes_through(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider,
    mechanism: sasl.Mechanism,
) -> None:
    user = "sales@example.test"
    pair = oauth_provider.issue_grant(user)
    smtp = await smtp_connected(oauth_smtp_server)
    try:
        assert {"xoauth2", "oauthbearer"} <= set(smtp.server_auth_methods)
        await sasl.smtp_authenticate(smtp, mechanism, user, pair.access_token,
                                     host=oauth_smtp_server.host, port=oauth_smtp_server.port)
        await smtp.sendmail(user, ["p@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
    finally:
        await smtp.quit()
    assert [(a.mechanism, a.user, a.accepted) for a in oauth_smtp_server.auth_attempts] == [
        (mechanism, user, True)
    ]
    assert len(oauth_smtp_server.deliveries) == 1


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_smtp_refused_token_is_acknowledged_and_reported_with_its_status(
    oauth_smtp_server: OAuthSmtpServer, oauth_provider: OAuthProvider,
    mechanism: sasl.Mechanism,
) -> None:
    user = "sales@example.test"
    pair = oauth_provider.issue_grant(user)
    oauth_provider.revoke_grant(pair.refresh_token)
    smtp = await smtp_connected(oauth_smtp_server)
    try:
        with pytest.raises(OAuthRejected) as refused:
            await sasl.smtp_authenticate(smtp, mechanism, user, pair.access_token)
        assert refused.value.code == 535
        assert refused.value.status == "401"
        assert pair.access_token not in str(refused.value)
        noop = await smtp.noop()  # the exchange ended cleanly: the session goes on
        assert noop.code == 250
    finally:
        await smtp.quit()
    (attempt,) = oauth_smtp_server.auth_attempts
    assert not attempt.accepted
    assert attempt.ack == sasl.ERROR_ACK[mechanism]


async def test_smtp_mail_without_auth_is_refused(oauth_smtp_server: OAuthSmtpServer) -> None:
    smtp = await smtp_connected(oauth_smtp_server)
    try:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.sendmail("sales@example.test", ["p@example.test"], b"\r\nx\r\n")
        assert refused.value.code == 530
    finally:
        await smtp.quit()

"""An `auth: oauth2` mailbox end to end, every step through the real `sequencer` command:
`sequencer auth` (PKCE code flow, the browser step a real GET of the printed URL), then
`sequencer run` sending over SMTP OAUTHBEARER/XOAUTH2 and watching over IMAP IDLE with
Dovecot's oauth2 passdb, a reply halting the sequence; a revoked grant pausing the
mailbox with one event and one token-endpoint call; no token in any output."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from sequencer.oauth.grants import new_key
from sequencer.store.schema import events, oauth_grants
from tests.fixtures.oauth_mail import OAuthDovecotServer, OAuthSmtpServer
from tests.fixtures.oauth_provider import PUBLIC_CLIENT, OAuthProvider
from tests.workdir import (
    Workdir,
    make_workdir,
    prospects_csv,
    terminate,
    wait_for_watcher,
    wait_until,
)
from tests.workers.test_watch import reply_to

USER = "sales@example.test"


def oauth_workdir(tmp_path: Path, provider: OAuthProvider, smtp: OAuthSmtpServer,
                  dovecot: OAuthDovecotServer, sasl: str = "auto") -> Workdir:
    wd = make_workdir(tmp_path, smtp.port, wait2="10s", wait3="1h")  # room for a slow start
    wd.write(
        "sequencer.yaml",
        "database: sqlite:///sequencer.db\n"
        "broker: memory\n"
        "tick: 0.2s\n"
        "claim_lease: 3s\n"
        "retry: {attempts: 3, backoff: 1s, max_backoff: 2s}\n"
        "imap_idle: 30s\n"
        "imap_timeout: 5s\n"
        "mailboxes:\n"
        "  sales:\n"
        f'    from: "Dana Reyes <{USER}>"\n'
        "    auth: oauth2\n"
        "    oauth2:\n"
        f"      client_id: {PUBLIC_CLIENT}\n"
        f"      authorize_url: {provider.authorize_url}\n"
        f"      token_url: {provider.token_url}\n"
        "      scopes: [mail, offline_access]\n"
        f"      sasl: {sasl}\n"
        f"    smtp: {{host: 127.0.0.1, port: {smtp.port}, tls: none, timeout: 3s}}\n"
        f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: {USER}, tls: none}}\n",
    )
    wd.env["SEQUENCER_TOKEN_KEY"] = new_key()
    provider.user = USER
    return wd


def authorize(wd: Workdir) -> str:
    """`sequencer auth sales`, with the browser played by a GET of the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "sequencer", "auth", "sales"], cwd=wd.path,
                            env=wd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    printed = []
    try:
        for line in proc.stdout:
            printed.append(line)
            if line.strip().startswith("http://"):
                with urllib.request.urlopen(line.strip(), timeout=10) as page:
                    assert page.status == 200
                break
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(printed) + out + err
    assert proc.returncode == 0, output
    return output


def assert_no_token(provider: OAuthProvider, *texts: str) -> None:
    issued = provider.issued_tokens()
    assert issued
    for text in texts:
        for token in issued:
            assert token not in text


@pytest.mark.parametrize("sasl", ["oauthbearer", "xoauth2"])
def test_auth_then_run_sends_over_oauth_and_a_reply_seen_in_idle_halts(
    tmp_path: Path, oauth_provider: OAuthProvider, oauth_smtp_server: OAuthSmtpServer,
    oauth_dovecot: OAuthDovecotServer, sasl: str,
) -> None:
    wd = oauth_workdir(tmp_path, oauth_provider, oauth_smtp_server, oauth_dovecot, sasl)
    auth_output = authorize(wd)
    assert "authorized mailbox sales" in auth_output
    assert "encrypted with the key in $SEQUENCER_TOKEN_KEY" in auth_output
    assert oauth_provider.token_hits("authorization_code") == 1
    engine = create_engine(f"sqlite:///{wd.path / 'sequencer.db'}")
    with engine.connect() as conn:
        (sealed,) = conn.execute(select(oauth_grants.c.sealed)).one()
    assert_no_token(oauth_provider, sealed)

    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    proc = wd.start("run")
    try:
        first = oauth_smtp_server.wait_for(2, timeout=15)
        wait_for_watcher(wd)
        wait_until(lambda: any("Login" in line for line in oauth_dovecot.connections()), 10,
                   "the IMAP login")
        ann = next(d for d in first if d.rcpt_tos == ["ann@example.com"])
        oauth_dovecot.append(reply_to(ann))
        wait_until(lambda: {s["email"]: s["state"] for s in wd.status()}["ann@example.com"]
                   == "replied", 10, "ann replied")
        oauth_smtp_server.wait_for(3, timeout=40)  # bo gets the next step
        status = wd.cli("status", check=True)
        status_json = wd.cli("status", "--json", check=True)
    finally:
        assert terminate(proc) == 0
    assert [d.rcpt_tos for d in oauth_smtp_server.deliveries].count(["ann@example.com"]) == 1
    attempts = oauth_smtp_server.auth_attempts
    assert attempts and all(a.accepted and a.mechanism == sasl.upper() for a in attempts)
    assert any(f"method={sasl.upper()}" in line for line in oauth_dovecot.connections())
    assert oauth_provider.token_hits("refresh_token") == 1, \
        "the watcher and the send threads share one token source"
    assert_no_token(oauth_provider, auth_output, wd.log(), status.stdout, status.stderr,
                    status_json.stdout)


def test_a_revoked_grant_pauses_the_mailbox_with_one_event_and_no_storm(
    tmp_path: Path, oauth_provider: OAuthProvider, oauth_smtp_server: OAuthSmtpServer,
    oauth_dovecot: OAuthDovecotServer,
) -> None:
    wd = oauth_workdir(tmp_path, oauth_provider, oauth_smtp_server, oauth_dovecot)
    authorize(wd)
    oauth_provider.revoke_all()
    before = oauth_provider.token_hits()
    emails = [f"p{i}@example.com" for i in range(6)]
    wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
    proc = wd.start("run", "--threads", "4")
    try:
        wait_until(lambda: "mailbox paused" in wd.log(), 15, "the pause")
        time.sleep(3)  # fifteen scheduler ticks: time for a storm to show, if there were one
        status = wd.cli("status", check=True)
        health = wd.cli("status", "--mailboxes", "--json", check=True)
    finally:
        assert terminate(proc) == 0
    (sales,) = json.loads(health.stdout)
    assert (sales["mailbox"], sales["state"], sales["healthy"]) == ("sales", "auth_needed", False)
    assert "revoked or has expired" in sales["detail"]
    assert sales["detail"].endswith("run `sequencer auth sales` again")
    engine = create_engine(f"sqlite:///{wd.path / 'sequencer.db'}")
    with engine.connect() as conn:
        paused = conn.execute(select(events.c.detail).where(events.c.event == "paused")).all()
    assert len(paused) == 1, paused
    assert "run `sequencer auth sales` again" in paused[0].detail
    assert "revoked or has expired" in paused[0].detail
    assert oauth_provider.token_hits() - before == 1, "one refresh attempt, then silence"
    assert oauth_smtp_server.deliveries == [] and oauth_smtp_server.auth_attempts == []
    assert not [line for line in oauth_dovecot.connections() if "Login" in line]
    assert_no_token(oauth_provider, wd.log(), status.stdout, status.stderr, health.stdout)

    # `sequencer auth` again lifts the pause, and the next run sends
    again = authorize(wd)
    assert "was paused" in again
    proc = wd.start("run", log="run2.log")
    try:
        oauth_smtp_server.wait_for(len(emails), timeout=20)
    finally:
        assert terminate(proc) == 0

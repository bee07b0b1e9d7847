"""Provider presets: the settings each one produces, and explicit keys winning."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer.config import MailboxConfig, load_settings
from sequencer.errors import ConfigError
from sequencer.oauth.grants import new_key

ENV = {"SEQUENCER_TOKEN_KEY": new_key(), "PW": "app-password"}

# provider: (smtp host, port, tls), (imap host, port, tls), sent folder, saves sent, daily,
# seconds between two sends (a published per-minute limit: Exchange Online's 30 a minute)
TABLE = {
    "gmail": (("smtp.gmail.com", 465, "ssl"), ("imap.gmail.com", 993, "ssl"),
              "[Gmail]/Sent Mail", True, 500, 0.0),
    "google-workspace": (("smtp.gmail.com", 465, "ssl"), ("imap.gmail.com", 993, "ssl"),
                         "[Gmail]/Sent Mail", True, 2000, 0.0),
    "microsoft365": (("smtp.office365.com", 587, "starttls"),
                     ("outlook.office365.com", 993, "ssl"), "Sent Items", True, 10000, 2.0),
    "outlook": (("smtp-mail.outlook.com", 587, "starttls"),
                ("outlook.office365.com", 993, "ssl"), "Sent", True, 300, 2.0),
    "fastmail": (("smtp.fastmail.com", 465, "ssl"), ("imap.fastmail.com", 993, "ssl"),
                 "Sent", False, 200, 0.0),
    "icloud": (("smtp.mail.me.com", 587, "starttls"), ("imap.mail.me.com", 993, "ssl"),
               "Sent Messages", False, 1000, 0.0),
    "zoho": (("smtp.zoho.com", 465, "ssl"), ("imap.zoho.com", 993, "ssl"), "Sent", False,
             1200, 0.0),
    "yahoo": (("smtp.mail.yahoo.com", 465, "ssl"), ("imap.mail.yahoo.com", 993, "ssl"),
              "Sent", False, 500, 0.0),
}

# provider: (authorize_url, token_url, device_url, first scope, redirect host)
OAUTH = {
    "gmail": ("https://accounts.google.com/o/oauth2/v2/auth",
              "https://oauth2.googleapis.com/token", None, "https://mail.google.com/",
              "127.0.0.1"),
    "google-workspace": ("https://accounts.google.com/o/oauth2/v2/auth",
                         "https://oauth2.googleapis.com/token", None,
                         "https://mail.google.com/", "127.0.0.1"),
    "microsoft365": (
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
        "https://outlook.office.com/IMAP.AccessAsUser.All", "localhost"),
    "outlook": (
        "https://login.microsoftonline.com/consumers/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/consumers/oauth2/v2.0/token",
        "https://login.microsoftonline.com/consumers/oauth2/v2.0/devicecode",
        "https://outlook.office.com/IMAP.AccessAsUser.All", "localhost"),
}


def mailbox(tmp_path: Path, body: str) -> MailboxConfig:
    path = tmp_path / "sequencer.yaml"
    path.write_text("mailboxes:\n  dana:\n    from: \"Dana <dana@example.com>\"\n" + body)
    return load_settings(path, env=ENV).mailboxes["dana"]


@pytest.mark.parametrize("provider", sorted(TABLE))
def test_a_password_preset_fills_servers_folders_and_limits(tmp_path: Path,
                                                           provider: str) -> None:
    (smtp, imap, sent, saves, daily, spacing) = TABLE[provider]
    box = mailbox(tmp_path, f"    provider: {provider}\n    smtp: {{password_env: PW}}\n")
    assert (box.smtp.host, box.smtp.port, box.smtp.tls) == smtp
    assert box.imap is not None
    assert (box.imap.host, box.imap.port, box.imap.tls) == imap
    assert box.imap.sent_folder == sent and box.saves_sent is saves
    assert box.daily_limit == daily and box.hourly_limit is None
    assert box.min_spacing_s == spacing
    assert box.smtp.username == box.imap.username == "dana@example.com"
    assert box.provider == provider and box.oauth is None


@pytest.mark.parametrize("provider", sorted(OAUTH))
def test_an_oauth2_preset_fills_the_endpoints(tmp_path: Path, provider: str) -> None:
    authorize, token, device, scope, redirect = OAUTH[provider]
    box = mailbox(tmp_path, f"    provider: {provider}\n    auth: oauth2\n"
                            "    oauth2: {client_id: abc}\n")
    assert box.oauth is not None
    client = box.oauth.client
    assert (client.authorize_url, client.token_url, client.device_url) == (
        authorize, token, device)
    assert client.scopes[0] == scope and client.redirect_host == redirect
    assert box.oauth.username == "dana@example.com"
    if provider.startswith("g"):
        assert dict(client.authorize_params) == {"access_type": "offline",
                                                 "prompt": "consent"}
    else:
        assert "offline_access" in client.scopes


def test_explicit_keys_win_key_by_key(tmp_path: Path) -> None:
    box = mailbox(tmp_path, (
        "    provider: microsoft365\n"
        "    daily_limit: 1500\n"
        "    min_spacing: 10s\n"
        "    saves_sent: false\n"
        "    auth: oauth2\n"
        "    oauth2: {client_id: abc, scopes: [custom], sasl: xoauth2}\n"
        "    smtp: {port: 25, tls: ssl, username: sender@example.com}\n"
        "    imap: {host: imap.example.com, sent_folder: Gesendet}\n"))
    assert (box.smtp.host, box.smtp.port, box.smtp.tls) == ("smtp.office365.com", 25, "ssl")
    assert box.oauth is not None and box.oauth.username == "sender@example.com"
    assert box.imap is not None
    assert (box.imap.host, box.imap.port, box.imap.sent_folder) == (
        "imap.example.com", 993, "Gesendet")
    assert box.daily_limit == 1500 and box.saves_sent is False
    assert box.min_spacing_s == 10.0
    assert box.oauth.client.scopes == ("custom",) and box.oauth.client.sasl == "XOAUTH2"
    assert box.oauth.client.token_url.endswith("/organizations/oauth2/v2.0/token")


def test_an_unknown_provider_is_an_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failed:
        mailbox(tmp_path, "    provider: hotmale\n    smtp: {host: x.example.com}\n")
    assert "sequencer.yaml:4" in str(failed.value) and "gmail" in str(failed.value)


def test_a_preset_oauth2_part_needs_auth_oauth2_to_apply(tmp_path: Path) -> None:
    box = mailbox(tmp_path, "    provider: gmail\n    smtp: {password_env: PW}\n")
    assert box.oauth is None and box.smtp.password is not None


@pytest.mark.parametrize("provider", sorted(set(TABLE) - set(OAUTH)))
def test_a_provider_without_public_oauth2_endpoints_leaves_them_to_the_mailbox(
        tmp_path: Path, provider: str) -> None:
    with pytest.raises(ConfigError) as failed:
        mailbox(tmp_path, f"    provider: {provider}\n    auth: oauth2\n"
                          "    oauth2: {client_id: abc}\n")
    assert "sequencer.yaml:6: missing key 'authorize_url' in mailboxes.dana.oauth2" in str(
        failed.value)

"""`auth: oauth2` in the settings: what it produces, and every mistake as file:line: reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer.config import Settings, load_settings
from sequencer.errors import ConfigError
from sequencer.oauth.grants import new_key

KEY = new_key()
ENV = {"SEQUENCER_TOKEN_KEY": KEY, "GOOGLE_SECRET": "client-secret-value"}

BASE = """\
mailboxes:
  sales:
    from: "Dana <dana@example.com>"
    auth: oauth2
    oauth2:
      client_id: my-client
      client_secret_env: GOOGLE_SECRET
      authorize_url: https://accounts.example.com/o/oauth2/auth
      token_url: https://oauth2.example.com/token
      scopes: [https://mail.example.com/]
      authorize_params: {{access_type: offline, prompt: consent}}
{extra}    smtp: {{host: smtp.example.com, tls: ssl}}
    imap: {{host: imap.example.com, username: dana@example.com}}
"""


def load(tmp_path: Path, extra: str = "", env: dict[str, str] | None = None,
         text: str | None = None) -> Settings:
    path = tmp_path / "sequencer.yaml"
    path.write_text(text if text is not None else BASE.format(extra=extra))
    return load_settings(path, env=ENV if env is None else env)


def error(tmp_path: Path, **kw: object) -> str:
    with pytest.raises(ConfigError) as failed:
        load(tmp_path, **kw)  # type: ignore[arg-type]
    return str(failed.value)


def test_an_oauth2_mailbox_is_loaded_with_its_client_and_key(tmp_path: Path) -> None:
    box = load(tmp_path).mailboxes["sales"]
    assert box.oauth is not None
    client = box.oauth.client
    assert client.client_id == "my-client"
    assert client.client_secret is not None
    assert client.client_secret.reveal() == "client-secret-value"
    assert client.scopes == ("https://mail.example.com/",)
    assert dict(client.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert client.sasl == "auto" and client.refresh_margin_s == 300
    assert box.oauth.username == "dana@example.com"
    assert box.oauth.token_key is not None and box.oauth.token_key.reveal() == KEY
    assert box.oauth.token_file is None
    assert box.smtp.password is None
    shown = repr(load(tmp_path))
    assert "client-secret-value" not in shown and KEY not in shown


def test_a_token_file_needs_no_key(tmp_path: Path) -> None:
    box = load(tmp_path, extra="", env={"GOOGLE_SECRET": "x"},
               text=BASE.format(extra="").replace(
                   "      scopes:", "      token_file: secrets/grants.json\n      scopes:"))
    oauth = box.mailboxes["sales"].oauth
    assert oauth is not None and oauth.token_file == tmp_path / "secrets/grants.json"


def test_the_missing_key_is_named_with_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, env={"GOOGLE_SECRET": "x"})
    assert message.endswith("sequencer.yaml:5: token_key_env: environment variable "
                            "SEQUENCER_TOKEN_KEY is not set"), message


def test_a_key_that_is_not_fernet_is_refused(tmp_path: Path) -> None:
    assert "is not a Fernet key" in error(tmp_path, env={**ENV, "SEQUENCER_TOKEN_KEY": "abc"})


@pytest.mark.parametrize(("replace", "expected"), [
    ("      client_secret_env: GOOGLE_SECRET\n", "      client_secret: hunter2\n"),
    ("      scopes:", "      refresh_token: rt-123\n      scopes:"),
])
def test_secrets_in_yaml_are_refused(tmp_path: Path, replace: str, expected: str) -> None:
    text = BASE.format(extra="").replace(replace, expected)
    assert "secrets never live in YAML" in error(tmp_path, text=text)


def test_an_unknown_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = BASE.format(extra="").replace("      scopes:", "      scope: x\n      scopes:")
    message = error(tmp_path, text=text)
    assert "sequencer.yaml:10: unknown key 'scope'" in message


def test_oauth2_needs_auth_oauth2_and_the_other_way_round(tmp_path: Path) -> None:
    assert "oauth2: only used with auth: oauth2" in error(
        tmp_path, text=BASE.format(extra="").replace("auth: oauth2", "auth: password"))
    lines = BASE.format(extra="").splitlines(keepends=True)
    without = "".join(lines[:4] + lines[11:])
    assert "auth: oauth2 needs an oauth2: section" in error(tmp_path, text=without)


def test_password_env_is_refused_with_oauth2(tmp_path: Path) -> None:
    text = BASE.format(extra="").replace("tls: ssl}", "tls: ssl, username: d, "
                                                      "password_env: GOOGLE_SECRET}")
    assert "password_env: not used with auth: oauth2" in error(tmp_path, text=text)


def test_a_plain_http_endpoint_is_refused_unless_loopback(tmp_path: Path) -> None:
    text = BASE.format(extra="").replace("https://oauth2.example.com/token",
                                         "http://oauth2.example.com/token")
    assert "token_url: must be an https URL" in error(tmp_path, text=text)
    loopback = text.replace("http://oauth2.example.com/token", "http://127.0.0.1:9/token")
    oauth = load(tmp_path, text=loopback).mailboxes["sales"].oauth
    assert oauth is not None and oauth.client.token_url.startswith("http://127.0.0.1")

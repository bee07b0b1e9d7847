"""Settings: the file, the environment, secrets, and YAML errors as ``path:line: reason``."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from sequencer.config import (
    SECRET_IN_YAML,
    ImapConfig,
    RetryConfig,
    Secret,
    Settings,
    SmtpConfig,
    load_settings,
    redact_url,
)
from sequencer.core.yamlfile import MAX_BYTES, YamlDocument, read_yaml
from sequencer.errors import ConfigError

SECRET = "s3cr3t-Pa55word!"
ENV = {"SALES_PASSWORD": SECRET}

DESIGN = """\
database: sqlite:///sequencer.db
broker: memory
templates: templates
mailboxes:
  sales:
    from: "Dana Reyes <Dana@Example.com>"
    smtp: {host: smtp.example.com, port: 587, username: dana@example.com,
           password_env: SALES_PASSWORD, tls: starttls}
    imap: {host: imap.example.com, port: 993, username: dana@example.com,
           password_env: SALES_PASSWORD, tls: ssl, folder: INBOX}
    daily_limit: 200
"""

BOX = """\
mailboxes:
  sales:
    from: dana@example.com
    smtp:
      host: smtp.example.com
"""


def write(tmp_path: Path, text: str, name: str = "sequencer.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), env=ENV if env is None else env)


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=ENV if env is None else env)
    assert caught.value.path == str(path)
    return str(caught.value).removeprefix(f"{path}:")


def smtp(tmp_path: Path, extra: str, env: dict[str, str] | None = None) -> SmtpConfig:
    return load(tmp_path, BOX + textwrap.indent(extra, "      "), env).mailboxes["sales"].smtp


def imap_box(extra: str) -> str:
    return BOX + "    imap:\n      username: dana\n" + textwrap.indent(extra, "      ")


# --- the happy path ---------------------------------------------------------------------


def test_the_design_example_loads_with_its_secret_from_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, DESIGN)

    box = settings.mailboxes["sales"]
    assert settings.path == tmp_path / "sequencer.yaml"
    assert settings.database == f"sqlite:///{tmp_path}/sequencer.db"
    assert settings.broker == "memory"
    assert settings.templates_dir == tmp_path / "templates"
    assert settings.sequences_dir == tmp_path / "sequences"
    assert box.name == "sales"
    assert box.sender == "Dana Reyes <Dana@Example.com>"
    assert box.sender_address == "dana@example.com"
    assert box.sender_domain == "example.com"
    assert box.daily_limit == 200
    assert box.inbox is None
    assert box.smtp == SmtpConfig(
        host="smtp.example.com",
        port=587,
        username="dana@example.com",
        password=Secret(SECRET),
        tls="starttls",
        allow_plaintext=False,
        timeout_s=30.0,
    )
    assert box.imap == ImapConfig(
        host="imap.example.com",
        port=993,
        username="dana@example.com",
        password=Secret(SECRET),
        tls="ssl",
        allow_plaintext=False,
        folder="INBOX",
    )
    assert box.smtp.password is not None
    assert box.smtp.password.reveal() == SECRET


def test_an_empty_settings_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")

    assert settings.path == tmp_path / "sequencer.yaml"
    assert settings.database == f"sqlite:///{tmp_path}/sequencer.db"
    assert settings.broker == "memory"
    assert dict(settings.mailboxes) == {}
    assert settings.claim_lease_s == 300.0
    assert settings.tick_s == 1.0
    assert settings.unsubscribe_url is None
    assert settings.retry == RetryConfig(attempts=5, backoff_s=60.0, max_backoff_s=3600.0)
    assert (settings.idle_s, settings.imap_timeout_s) == (240.0, 30.0)
    assert settings.watch_lease_s == 60.0
    assert settings.test_crash_at is None


def test_retry_and_imap_timing_are_read_from_the_file(tmp_path: Path) -> None:
    text = ("retry: {attempts: 3, backoff: 1s, max_backoff: 2s}\nimap_idle: 1m\n"
            "imap_timeout: 5s\nwatch_lease: 3s\n")

    settings = load(tmp_path, text)

    assert settings.retry == RetryConfig(attempts=3, backoff_s=1.0, max_backoff_s=2.0)
    assert (settings.idle_s, settings.imap_timeout_s) == (60.0, 5.0)
    assert settings.watch_lease_s == 3.0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("retry: {attempts: 0}\n", "1: retry.attempts: must be at least 1"),
        ("retry: {backoff: 0s}\n", "1: backoff: must be longer than 0s"),
        (
            "retry:\n  backoff: 5m\n  max_backoff: 1m\n",
            "3: max_backoff: must not be shorter than backoff",
        ),
        ("retry: {tries: 3}\n", "1: unknown key 'tries' in retry"),
        ("imap_idle: 0s\n", "1: imap_idle: must be longer than 0s"),
        ("tick: 1s\nwatch_lease: 0s\n", "2: watch_lease: must be longer than 0s"),
    ],
)
def test_bad_retry_and_imap_timing_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    assert error_of(tmp_path, text) == reason


def test_the_crash_hook_comes_only_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"SEQUENCER_TEST_CRASH_AT": "after_250"}
    monkeypatch.chdir(tmp_path)

    assert load(tmp_path, "", env).test_crash_at == "after_250"
    assert load_settings(env=env).test_crash_at == "after_250"
    assert error_of(tmp_path, "test_crash_at: after_claim\n") == "1: unknown key 'test_crash_at'"


def test_the_test_clock_runs_from_its_instant_or_reads_its_file(tmp_path: Path) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    assert load(tmp_path, "", {}).test_clock is None
    stopped = load(tmp_path, "", {"SEQUENCER_TEST_CLOCK": "2026-11-25T12:00:00Z@0x0"})
    assert stopped.test_clock is not None
    assert stopped.test_clock() == datetime(2026, 11, 25, 12, tzinfo=UTC)
    since = time.time()
    fast = load(tmp_path, "", {"SEQUENCER_TEST_CLOCK": f"2026-11-25T12:00:00Z@{since}x3600"})
    assert fast.test_clock is not None
    ahead = fast.test_clock() - datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert timedelta(0) <= ahead <= timedelta(seconds=(time.time() - since) * 3600 + 1)
    path = tmp_path / "clock.txt"
    path.write_text("2027-01-01T00:00:00+00:00")
    stepped = load(tmp_path, "", {"SEQUENCER_TEST_CLOCK": f"file:{path}"})
    assert stepped.test_clock is not None
    assert stepped.test_clock() == datetime(2027, 1, 1, tzinfo=UTC)
    path.write_text("2027-02-01T00:00:00+00:00")
    assert stepped.test_clock() == datetime(2027, 2, 1, tzinfo=UTC)
    for bad in ("tomorrow", "2026-11-25T12:00:00@0x0", f"file:{tmp_path / 'none'}"):
        with pytest.raises(ConfigError, match=r"\$SEQUENCER_TEST_CLOCK: must be file:PATH"):
            load(tmp_path, "", {"SEQUENCER_TEST_CLOCK": bad})


def test_smtp_without_username_has_no_auth_and_mailbox_defaults_apply(tmp_path: Path) -> None:
    settings = load(tmp_path, BOX)

    box = settings.mailboxes["sales"]
    assert box.smtp.username is None
    assert box.smtp.password is None
    assert box.smtp.tls == "starttls"
    assert box.imap is None
    assert box.daily_limit == 200


def test_extensions_read_durations_and_the_unsubscribe_url(tmp_path: Path) -> None:
    text = ("claim_lease: 2m\ntick: 0.5s\nunsubscribe_url: https://x.example/u/{token}\n"
            "secret_env: UNSUB_KEY\n")

    settings = load(tmp_path, text + "sequences: flows\n", {**ENV, "UNSUB_KEY": KEY})

    assert settings.claim_lease_s == 120.0
    assert settings.tick_s == 0.5
    assert settings.unsubscribe_url == "https://x.example/u/{token}"
    assert settings.sequences_dir == tmp_path / "flows"


# --- where the settings file comes from -------------------------------------------------


def test_without_a_file_the_defaults_live_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings(env={})

    assert settings.path is None
    assert settings.database == f"sqlite:///{tmp_path}/sequencer.db"
    assert settings.broker == "memory"
    assert settings.templates_dir == tmp_path / "templates"
    assert dict(settings.mailboxes) == {}


def test_sequencer_yaml_in_the_current_folder_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "broker: redis://localhost:6379/0\n")
    monkeypatch.chdir(tmp_path)

    assert load_settings(env={}).broker == "redis://localhost:6379/0"


def test_sequencer_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "templates: mail\n", "other.yaml")

    settings = load_settings(env={"SEQUENCER_CONFIG": str(path)})

    assert settings.templates_dir == tmp_path / "mail"


def test_the_process_environment_is_used_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQUENCER_CONFIG", str(write(tmp_path, DESIGN)))
    monkeypatch.setenv("SALES_PASSWORD", "from-os-environ")

    settings = load_settings()

    password = settings.mailboxes["sales"].smtp.password
    assert password is not None
    assert password.reveal() == "from-os-environ"


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_settings(missing, env={})
    assert str(caught.value) == f"{missing}: no such settings file"


def test_a_required_settings_file_that_is_missing_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, required=True)
    assert str(caught.value) == (
        f"{tmp_path}/sequencer.yaml: no settings file (run sequencer in your working folder, "
        "or pass --config or set SEQUENCER_CONFIG)")
    url = f"sqlite:///{tmp_path}/named.db"  # a database named outright is not invented
    assert load_settings(env={"SEQUENCER_DATABASE_URL": url}, required=True).database == url


def test_a_sequencer_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError, match="no such settings file"):
        load_settings(env={"SEQUENCER_CONFIG": str(missing)})


def test_a_folder_is_not_a_settings_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, env={})
    assert str(caught.value) == f"{tmp_path}: not a file"


# --- paths and URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/seq.db", "sqlite:///{base}/data/seq.db"),
        ("sqlite+pysqlite:///seq.db?timeout=5", "sqlite+pysqlite:///{base}/seq.db?timeout=5"),
        ("sqlite:////var/lib/seq.db", "sqlite:////var/lib/seq.db"),
        (
            "postgresql+psycopg://app@db.example.com/seq",
            "postgresql+psycopg://app@db.example.com/seq",
        ),
    ],
)
def test_relative_sqlite_files_live_beside_the_settings_file(
    tmp_path: Path, url: str, expected: str
) -> None:
    settings = load(tmp_path, f"database: {url}\n")

    assert settings.database == expected.format(base=tmp_path)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite://", "an in-memory database is gone when the command ends: use sqlite:///PATH"),
        ("'sqlite:///:memory:'", "an in-memory database is gone when the command ends"),
        ("'sqlite:///file:x?mode=memory&uri=true'", "an in-memory database is gone"),
        ("mysql+pymysql://app@db/seq", "unsupported database 'mysql': use sqlite:///PATH or "
         "postgresql+psycopg://USER@HOST/NAME"),
        ("postgresql+psycopg2://app@db/seq", "the driver 'psycopg2' is not installed (No "
         "module named 'psycopg2'): use postgresql+psycopg://"),
    ],
)
def test_a_database_we_cannot_use_is_refused_on_its_line(
    tmp_path: Path, url: str, reason: str
) -> None:
    error = error_of(tmp_path, f"broker: memory\ndatabase: {url}\n")
    assert error.startswith(f"2: database: {reason}"), error
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"SEQUENCER_DATABASE_URL": url.strip("'")})
    assert str(caught.value).startswith(f"$SEQUENCER_DATABASE_URL: {reason}")


def test_relative_folders_and_maildirs_live_beside_the_settings_file(tmp_path: Path) -> None:
    text = BOX + "    inbox: maildir:mail/Maildir\ntemplates: /srv/templates\n"

    settings = load(tmp_path, text)

    assert settings.mailboxes["sales"].inbox == tmp_path / "mail" / "Maildir"
    assert settings.templates_dir == Path("/srv/templates")


def test_the_environment_overrides_database_and_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "SEQUENCER_DATABASE_URL": "sqlite:///env.db",
        "SEQUENCER_BROKER_URL": "redis://:pw@localhost:6379/1",
    }

    settings = load(tmp_path, "database: sqlite:///file.db\n", env)

    assert settings.database == f"sqlite:///{tmp_path}/env.db"
    assert settings.broker == "redis://:pw@localhost:6379/1"


def test_the_environment_overrides_the_defaults_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"SEQUENCER_DATABASE_URL": "postgresql+psycopg://u:pw@db/seq", "SEQUENCER_CONFIG": ""}

    settings = load_settings(env={**env, "SEQUENCER_BROKER_URL": "redis://r.example/0"})

    assert settings.path is None
    assert settings.database == "postgresql+psycopg://u:pw@db/seq"
    assert settings.broker == "redis://r.example/0"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("SEQUENCER_DATABASE_URL", "not a url", "not a database URL"),
        ("SEQUENCER_BROKER_URL", "rabbit://x", "must be memory or a redis:// URL"),
    ],
)
def test_bad_urls_in_the_environment_are_named(
    tmp_path: Path, name: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, ""), env={name: value})
    assert str(caught.value) == f"${name}: {reason}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("database: not a url\n", "1: database: not a database URL"),
        ("broker: rabbit://x\n", "1: broker: must be memory or a redis:// URL"),
        ("broker: 'redis://[::1'\n", "1: broker: must be memory or a redis:// URL"),
        (
            "database: postgresql://u:hunter2@db/seq\n",
            "1: database: secrets never live in YAML: use SEQUENCER_DATABASE_URL",
        ),
        (
            "broker: redis://:hunter2@localhost/0\n",
            "1: broker: secrets never live in YAML: use SEQUENCER_BROKER_URL",
        ),
    ],
)
def test_bad_urls_in_the_file_are_refused_on_their_line(
    tmp_path: Path, text: str, reason: str
) -> None:
    assert error_of(tmp_path, "templates: t\n" + text) == "2" + reason[1:]


# --- SMTP and IMAP ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "port"),
    [("tls: starttls\n", 587), ("tls: ssl\n", 465), ("tls: ssl\nport: 2465\n", 2465)],
)
def test_smtp_ports_default_by_tls_mode(tmp_path: Path, extra: str, port: int) -> None:
    assert smtp(tmp_path, extra).port == port


def test_plaintext_smtp_to_loopback_defaults_to_port_25(tmp_path: Path) -> None:
    text = BOX.replace("smtp.example.com", "127.0.0.1") + "      tls: none\n"

    assert load(tmp_path, text).mailboxes["sales"].smtp.port == 25


@pytest.mark.parametrize(("tls", "port"), [("ssl", 993), ("none", 143)])
def test_imap_ports_default_by_tls_mode(tmp_path: Path, tls: str, port: int) -> None:
    text = imap_box(f"host: localhost\ntls: {tls}\n")

    imap = load(tmp_path, text).mailboxes["sales"].imap
    assert imap is not None
    assert imap.port == port
    assert imap.folder == "INBOX"
    assert imap.password is None


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1"])
def test_plaintext_to_loopback_hosts_is_allowed(tmp_path: Path, host: str) -> None:
    text = BOX.replace("smtp.example.com", f"'{host}'") + "      tls: none\n"

    assert load(tmp_path, text).mailboxes["sales"].smtp.tls == "none"


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.1", "128.0.0.1", "::2"])
def test_plaintext_to_other_hosts_is_refused_on_the_tls_line(tmp_path: Path, host: str) -> None:
    text = BOX.replace("smtp.example.com", f"'{host}'") + "      tls: none\n"

    assert error_of(tmp_path, text) == (
        f"6: tls: none would send in plaintext to {host}: "
        "use tls, a loopback host, or allow_plaintext: true"
    )


def test_plaintext_to_other_hosts_is_allowed_when_asked_for(tmp_path: Path) -> None:
    config = smtp(tmp_path, "tls: none\nallow_plaintext: true\n")

    assert (config.tls, config.allow_plaintext, config.port) == ("none", True, 25)


def test_plaintext_imap_to_other_hosts_is_refused(tmp_path: Path) -> None:
    text = imap_box("host: imap.example.com\ntls: none\n")

    assert error_of(tmp_path, text) == (
        "9: tls: none would send in plaintext to imap.example.com: "
        "use tls, a loopback host, or allow_plaintext: true"
    )


def test_a_missing_password_variable_is_named_with_its_line(tmp_path: Path) -> None:
    text = BOX + "      username: dana\n      password_env: NOT_SET_ANYWHERE\n"

    assert error_of(tmp_path, text) == (
        "7: password_env: environment variable NOT_SET_ANYWHERE is not set"
    )


def test_an_empty_password_variable_counts_as_not_set(tmp_path: Path) -> None:
    text = BOX + "      username: dana\n      password_env: EMPTY\n"

    assert error_of(tmp_path, text, {"EMPTY": ""}) == (
        "7: password_env: environment variable EMPTY is not set"
    )


def test_an_imap_password_comes_from_the_environment_too(tmp_path: Path) -> None:
    text = imap_box("host: imap.example.com\npassword_env: SALES_PASSWORD\n")

    imap = load(tmp_path, text).mailboxes["sales"].imap
    assert imap is not None
    assert imap.password == Secret(SECRET)


def test_password_env_must_name_a_variable(tmp_path: Path) -> None:
    text = BOX + "      username: dana\n      password_env: 'my password'\n"

    assert error_of(tmp_path, text) == (
        "7: password_env: 'my password' is not an environment variable name"
    )


def test_password_env_without_username_is_refused(tmp_path: Path) -> None:
    text = BOX + "      password_env: SALES_PASSWORD\n"

    assert error_of(tmp_path, text) == "6: password_env needs a username"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("port: 0", "mailboxes.sales.smtp.port: must be at least 1"),
        ("port: 70000", "mailboxes.sales.smtp.port: must be at most 65535"),
        ("port: '587'", "mailboxes.sales.smtp.port: must be a whole number"),
        ("tls: tls", "mailboxes.sales.smtp.tls: must be one of 'ssl', 'starttls' or 'none'"),
        ("allow_plaintext: maybe", "mailboxes.sales.smtp.allow_plaintext: must be true or false"),
        ("username: 5", "mailboxes.sales.smtp.username: must be text"),
        ("timeout: 0s", "timeout: must be longer than 0s"),
        ("timeout: [1]", "mailboxes.sales.smtp.timeout: must be a duration such as 30s, 5m or 2h"),
    ],
)
def test_bad_smtp_values_are_refused_on_their_line(tmp_path: Path, extra: str, reason: str) -> None:
    assert error_of(tmp_path, BOX + f"      {extra}\n") == f"6: {reason}"


def test_an_empty_smtp_host_is_refused(tmp_path: Path) -> None:
    text = BOX.replace("host: smtp.example.com", "host: '  '")

    assert error_of(tmp_path, text) == "5: mailboxes.sales.smtp.host: must not be empty"


def test_smtp_timeout_is_a_duration(tmp_path: Path) -> None:
    assert smtp(tmp_path, "timeout: 2m\n").timeout_s == 120.0


# --- mailboxes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "address", "domain"),
    [
        ("dana@example.com", "dana@example.com", "example.com"),
        ("'Dana Reyes <DANA@EXAMPLE.COM>'", "dana@example.com", "example.com"),
        (
            "'\"Reyes, Dana\" <dana@sales.example.com>'",
            "dana@sales.example.com",
            "sales.example.com",
        ),
        ("'Dána <dana@bücher.example>'", "dana@bücher.example", "xn--bcher-kva.example"),
        ("demo@sequencer.test", "demo@sequencer.test", "sequencer.test"),
    ],
)
def test_from_gives_the_address_and_the_domain(
    tmp_path: Path, sender: str, address: str, domain: str
) -> None:
    box = load(tmp_path, BOX.replace("from: dana@example.com", f"from: {sender}")).mailboxes[
        "sales"
    ]

    assert (box.sender_address, box.sender_domain) == (address, domain)


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        (
            '"Dana\\r\\nBcc: x@evil.example <dana@example.com>"',
            "control characters are not allowed",
        ),
        ('"Dana\\u0000 <dana@example.com>"', "control characters are not allowed"),
        ("'a@example.com, b@example.com'", "'a@example.com, b@example.com' is not one address"),
        ("'Dana Reyes'", "is not a valid address: An email address must have an @-sign"),
        ("a@b@c.example", "is not"),
        ("dana@", "'dana@' is not one address such as 'Dana <dana@example.com>'"),
    ],
)
def test_a_bad_from_is_refused_on_its_line(tmp_path: Path, sender: str, reason: str) -> None:
    message = error_of(tmp_path, BOX.replace("from: dana@example.com", f"from: {sender}"))

    assert message.startswith("3: from: ")
    assert reason in message


def test_a_mailbox_needs_smtp(tmp_path: Path) -> None:
    text = "mailboxes:\n  sales:\n    from: dana@example.com\n"

    assert error_of(tmp_path, text) == "2: missing key 'smtp' in mailboxes.sales"


def test_imap_and_inbox_are_mutually_exclusive(tmp_path: Path) -> None:
    text = imap_box("host: imap.example.com\n") + "    inbox: maildir:Maildir\n"

    assert error_of(tmp_path, text) == "9: use either imap or inbox, not both"


@pytest.mark.parametrize("inbox", ["Maildir", "mbox:/var/mail/dana", "'maildir: '"])
def test_an_inbox_must_be_a_maildir(tmp_path: Path, inbox: str) -> None:
    assert error_of(tmp_path, BOX + f"    inbox: {inbox}\n") == "6: inbox: must be maildir:PATH"


@pytest.mark.parametrize("name", ["'sales team'", "'a/b'"])
def test_mailbox_names_are_letters_digits_dash_and_underscore(tmp_path: Path, name: str) -> None:
    text = BOX.replace("  sales:", f"  {name}:")

    assert error_of(tmp_path, text).startswith("2: mailbox name ")


def test_daily_limit_must_be_positive(tmp_path: Path) -> None:
    text = BOX + "    daily_limit: 0\n"

    assert error_of(tmp_path, text) == "6: mailboxes.sales.daily_limit: must be at least 1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("claim_lease: 0s\n", "1: claim_lease: must be longer than 0s"),
        ("tick: soon\n", "1: tick: 'soon' is not a duration: use a number and s, m, h, d or w"),
        ("mailboxes: []\n", "1: mailboxes: must be a mapping of keys"),
        ("mailboxes:\n  sales: 5\n", "2: mailboxes.sales: must be a mapping of keys"),
    ],
)
def test_bad_top_level_values_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    assert error_of(tmp_path, text) == reason


# --- unknown keys, duplicates, broken YAML ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("databse: sqlite://\n", "1: unknown key 'databse'"),
        (BOX + "    reply_to: x@example.com\n", "6: unknown key 'reply_to' in mailboxes.sales"),
        (BOX + "      hots: x\n", "6: unknown key 'hots' in mailboxes.sales.smtp"),
        (
            imap_box("host: h.example\nfoldr: X\n"),
            "9: unknown key 'foldr' in mailboxes.sales.imap",
        ),
        (BOX.replace("from:", "sender:"), "3: unknown key 'sender' in mailboxes.sales"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(tmp_path: Path, text: str, reason: str) -> None:
    assert error_of(tmp_path, text) == reason


def test_duplicate_keys_are_refused_on_the_second_one(tmp_path: Path) -> None:
    text = BOX + "      host: other.example.com\n"

    assert error_of(tmp_path, text) == "6: duplicate key 'host' (first on line 5)"


def test_duplicate_keys_in_a_flow_mapping_are_refused(tmp_path: Path) -> None:
    text = "templates: t\nmailboxes: {a: {from: x@example.com}, a: {}}\n"

    assert error_of(tmp_path, text) == "2: duplicate key 'a' (first on line 2)"


def test_an_unclosed_bracket_is_reported_where_it_opens(tmp_path: Path) -> None:
    text = "mailboxes:\n  sales:\n    smtp: {host: x\n    from: y\n"

    assert error_of(tmp_path, text) == (
        "3: invalid YAML: '{' opened here is never closed "
        "(expected ',' or '}', but got ':' on line 4)"
    )


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    assert error_of(tmp_path, 'templates: t\nbroker: "memory\n').startswith(
        "2: invalid YAML: quote opened here is never closed"
    )


def test_tab_indentation_is_reported_on_its_line(tmp_path: Path) -> None:
    text = BOX.replace("    smtp:", "\tsmtp:")

    assert error_of(tmp_path, text) == "4: invalid YAML: a tab character: indent YAML with spaces"


def test_bad_indentation_is_reported_on_its_line(tmp_path: Path) -> None:
    assert error_of(tmp_path, "broker: memory\n  tick: 1s\n") == (
        "2: invalid YAML: mapping values are not allowed here"
    )


def test_two_documents_in_one_file_are_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "broker: memory\n---\ntick: 1s\n") == (
        "2: invalid YAML: only one YAML document is allowed per file"
    )


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    assert error_of(tmp_path, text) == "1: the top level must be a mapping of keys"


def test_python_tags_are_refused(tmp_path: Path) -> None:
    text = "broker: !!python/object/apply:os.system ['true']\n"

    assert error_of(tmp_path, text).startswith("1: invalid YAML: could not determine a constructor")


# --- secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("password: hunter2\n", 1),
        (BOX + "      username: dana\n      password: hunter2\n", 7),
        (imap_box("host: h.example\npassword: hunter2\n"), 9),
        (BOX + "    smtp_password: hunter2\n", 6),
        ("mailboxes:\n  sales:\n    PASSWORD: hunter2\n", 3),
    ],
)
def test_a_literal_password_anywhere_is_refused(tmp_path: Path, text: str, line: int) -> None:
    message = error_of(tmp_path, text)

    assert message == f"{line}: {SECRET_IN_YAML}"
    assert "hunter2" not in message


def test_a_secret_never_shows_itself() -> None:
    secret = Secret(SECRET)

    assert repr(secret) == "Secret('***')"
    assert str(secret) == "Secret('***')"
    assert f"{secret}" == "Secret('***')"
    assert f"{secret!r:>30}" != SECRET
    assert f"{secret:s}" == "Secret('***')"
    assert "%s %r" % (secret, secret) == "Secret('***') Secret('***')"  # noqa: UP031
    assert secret.reveal() == SECRET


def test_secrets_compare_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))


def test_no_secret_in_the_repr_of_settings_or_their_parts(tmp_path: Path) -> None:
    env = {**ENV, "SEQUENCER_DATABASE_URL": f"postgresql+psycopg://app:{SECRET}@db/seq"}
    env["SEQUENCER_BROKER_URL"] = f"redis://:{SECRET}@localhost:6379/0"

    settings = load(tmp_path, DESIGN, env)

    box = settings.mailboxes["sales"]
    for shown in (repr(settings), str(settings), f"{settings}", repr(box), repr(box.smtp)):
        assert SECRET not in shown
    assert "postgresql+psycopg://app:***@db/seq" in repr(settings)
    assert "redis://:***@localhost:6379/0" in repr(settings)
    assert "Secret('***')" in repr(box.imap)


def test_no_secret_reaches_a_debug_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {**ENV, "SEQUENCER_DATABASE_URL": f"postgresql+psycopg://app:{SECRET}@db/seq"}
    settings = load(tmp_path, DESIGN, env)
    box = settings.mailboxes["sales"]
    logger = logging.getLogger("tests.config")

    logger.debug("settings %s", settings)
    logger.debug("settings %r mailbox %r", settings, box)
    logger.debug("smtp %s imap %s", box.smtp, box.imap)
    logger.debug("secret %s %r", box.smtp.password, box.smtp.password)
    logger.debug(f"secret {box.smtp.password} {settings}")
    logger.debug("as a dict %s", {"mailbox": box})

    assert len(caplog.records) >= 6
    assert SECRET not in caplog.text
    assert all(SECRET not in record.getMessage() for record in caplog.records)


# --- reading YAML files -----------------------------------------------------------------


def test_a_file_over_one_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == f"{path}: file is larger than 1 MiB"


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    body = b"tick: 2s\n"
    path.write_bytes(body + b"#" * (MAX_BYTES - len(body)))

    assert load_settings(path, env={}).tick_s == 2.0


def test_invalid_utf8_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"broker: memory\ntemplates: caf\xe9\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == f"{path}:2: not valid UTF-8 text"


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbftick: 3s\n")

    assert load_settings(path, env={}).tick_s == 3.0


def test_an_unreadable_file_is_an_error_of_the_callers_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_yaml(tmp_path, ConfigError)
    assert str(caught.value).startswith(f"{tmp_path}: cannot read: ")


def test_anchors_and_aliases_can_share_a_block(tmp_path: Path) -> None:
    text = (
        "mailboxes:\n"
        "  a: &box\n    from: a@example.com\n    smtp: {host: smtp.example.com}\n"
        "  b: *box\n"
    )

    settings = load(tmp_path, text)

    assert settings.mailboxes["a"].smtp == settings.mailboxes["b"].smtp


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]

    message = error_of(tmp_path, "\n".join(lines) + "\n")

    assert message == " too many YAML nodes (alias expansion?)"


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    text = "base: &b {tick: 1s}\nother:\n  <<: *b\n"

    assert error_of(tmp_path, text) == "3: merge keys (<<) are not supported"


@pytest.mark.parametrize("text", ["1: x\n", "templates: t\n? [a, b]\n: c\n", "null: x\n"])
def test_keys_that_are_not_text_are_refused(tmp_path: Path, text: str) -> None:
    assert error_of(tmp_path, text).endswith(": keys must be text (quote them)")


def test_the_line_of_a_location_falls_back_to_the_deepest_known_part() -> None:
    doc = YamlDocument({}, Path("x.yaml"), {("a",): 3, ("a", "b"): 5}, root_line=1)

    assert doc.line_of(("a", "b", "c")) == 5
    assert doc.line_of(("a", "function-after[x]", "b")) == 5
    assert doc.line_of(("z",)) == 1
    assert list(doc.key_lines()) == [(("a",), 3), (("a", "b"), 5)]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("postgresql://app:pw@db/seq", "postgresql://app:***@db/seq"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("memory", "memory"),
        ("redis://u:pw@[::1", "***"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- unsubscribe links ------------------------------------------------------------------

KEY = "k" * 40


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://x.example/u", "must contain {token} exactly once"),
        ("https://x.example/{token}/{token}", "must contain {token} exactly once"),
        ("https://x.example/{id}/{token}", "only {token} may stand in braces"),
        ("ftp://x.example/{token}", "must be an https:// URL"),
        ("http://x.example/u/{token}",
         "must be https:// (http:// only on a loopback host such as 127.0.0.1)"),
        ("https://{token}.x.example/u", "{token} must be in the path or the query"),
        ("https:///u/{token}", "has no host"),
        ("https://me:pw@x.example/u/{token}", "must not carry a user name or password"),
        ("https://x.example/u/{token}#top", "must not have a #fragment (it never reaches "
         "the server)"),
        ("'https://x.example/u /{token}'", "has characters a URI cannot carry (spaces, "
         "quotes, <>, non-ASCII): percent-encode them"),
        ("https://x.example/ü/{token}", "has characters a URI cannot carry (spaces, quotes, "
         "<>, non-ASCII): percent-encode them"),
        ("https://x.example:99999/u/{token}", "is not a URL (Port out of range 0-65535)"),
        ("https://x.example/" + "a" * 200 + "/{token}",
         "is too long for a List-Unsubscribe header (keep it under 200 characters)"),
    ],
)
def test_a_bad_unsubscribe_url_is_refused_on_its_line_with_the_reason(
    tmp_path: Path, url: str, reason: str
) -> None:
    text = f"templates: t\nunsubscribe_url: {url}\nsecret_env: UNSUB_KEY\n"
    got = error_of(tmp_path, text, {**ENV, "UNSUB_KEY": KEY})
    assert got == f"2: unsubscribe_url: {reason}"


@pytest.mark.parametrize(
    "url",
    [
        "https://x.example/u/{token}",
        "https://x.example:8443/unsubscribe?t={token}&list=sales",
        "http://127.0.0.1:8080/u/{token}",
        "http://localhost/u/{token}",
        "http://[::1]:8080/u/{token}",
    ],
)
def test_https_and_loopback_http_unsubscribe_urls_load(tmp_path: Path, url: str) -> None:
    text = f"unsubscribe_url: '{url}'\nsecret_env: UNSUB_KEY\n"
    settings = load(tmp_path, text, {**ENV, "UNSUB_KEY": KEY})
    assert settings.unsubscribe_url == url
    assert settings.unsubscribe_keys is not None and settings.unsubscribe_keys.reveal() == KEY


def test_an_unsubscribe_url_needs_a_secret_env(tmp_path: Path) -> None:
    got = error_of(tmp_path, "unsubscribe_url: https://x.example/u/{token}\n")
    assert got == ("1: unsubscribe_url: needs secret_env: the name of the environment "
                   "variable that holds the key signing its links")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "secret_env: environment variable UNSUB_KEY is not set"),
        ("short", "secret_env: the key in UNSUB_KEY must be at least 32 characters"),
        (KEY + " short", "secret_env: the key in UNSUB_KEY must be at least 32 characters"),
    ],
)
def test_the_signing_key_must_be_set_and_long(
    tmp_path: Path, value: str | None, reason: str
) -> None:
    env = dict(ENV) if value is None else {**ENV, "UNSUB_KEY": value}
    got = error_of(tmp_path, "unsubscribe_url: https://x.example/u/{token}\n"
                   "secret_env: UNSUB_KEY\n", env)
    assert got.startswith(f"2: {reason}")
    if value is not None:
        assert value not in got.replace("UNSUB_KEY", "")


def test_the_signing_key_never_shows_in_the_settings_repr(tmp_path: Path) -> None:
    settings = load(tmp_path, "unsubscribe_url: https://x.example/u/{token}\n"
                    "secret_env: UNSUB_KEY\n", {**ENV, "UNSUB_KEY": KEY})
    assert KEY not in repr(settings) and KEY not in str(settings)
    assert KEY not in f"{settings.unsubscribe_keys}"


def test_trust_settings_default_to_believing_no_authentication_results(tmp_path: Path) -> None:
    settings = load(tmp_path, BOX)
    assert settings.mailboxes["sales"].authserv_ids == frozenset()
    assert (settings.soft_bounces.suppress_after, settings.soft_bounces.within_s) == (
        3, 14 * 86400)


def test_authserv_id_and_the_decay_rule_can_be_set(tmp_path: Path) -> None:
    text = BOX + "    authserv_id: [MX.Google.com, mx2.example.com]\n" \
        "soft_bounces: {suppress_after: 5, within: 30d}\n"
    settings = load(tmp_path, text)
    assert settings.mailboxes["sales"].authserv_ids == {"mx.google.com", "mx2.example.com"}
    assert (settings.soft_bounces.suppress_after, settings.soft_bounces.within_s) == (
        5, 30 * 86400)
    assert load(tmp_path, BOX + "    authserv_id: mx.google.com\n").mailboxes[
        "sales"].authserv_ids == {"mx.google.com"}


def test_bad_trust_settings_are_refused_with_their_line(tmp_path: Path) -> None:
    assert error_of(tmp_path, BOX + "    authserv_id: 'mx.example.com; dmarc=pass'\n") \
        .startswith("6: authserv_id:")
    assert "within" in error_of(tmp_path, BOX + "soft_bounces: {within: 0s}\n")
    assert "suppress_after" in error_of(tmp_path, BOX + "soft_bounces: {suppress_after: 0}\n")


def test_one_active_sequence_per_prospect_unless_max_active_sequences_says_more(
        tmp_path: Path) -> None:
    assert load(tmp_path, BOX).max_active_sequences == 1
    assert load(tmp_path, BOX + "max_active_sequences: 3\n").max_active_sequences == 3
    for bad in ("0", "-1", "two", "1.5", "true"):
        reason = error_of(tmp_path, BOX + f"max_active_sequences: {bad}\n")
        assert reason.startswith("6: max_active_sequences: "), (bad, reason)


def test_free_mail_entries_extend_the_bundled_list_and_a_bad_one_names_its_line(
        tmp_path: Path) -> None:
    assert load(tmp_path, BOX).free_mail == ()
    settings = load(tmp_path, BOX + "free_mail: [kabelmail.example, regionet.*]\n")
    assert settings.free_mail == ("kabelmail.example", "regionet.*")
    text = BOX + "free_mail:\n  - kabelmail.example\n  - '*.regionet.de'\n"
    assert error_of(tmp_path, text) == (
        "8: free_mail: '*.regionet.de': write a domain (gmail.com) or a pattern (yahoo.*)")

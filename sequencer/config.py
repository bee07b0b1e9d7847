"""Settings: ``sequencer.yaml`` plus the environment, validated into frozen values.

This is the only module that reads the environment. Secrets never live in YAML: a
mailbox names an environment variable (``password_env``) and gets a ``Secret`` that
never shows itself in a repr, a str, a format or a log line.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sequencer.core.company import FreeMail
from sequencer.core.durations import Duration
from sequencer.core.presets import PRESETS, merged
from sequencer.core.text import has_control
from sequencer.core.unsubscribe import MIN_KEY_LENGTH, PLACEHOLDER
from sequencer.core.webhooks import WEBHOOK_EVENTS
from sequencer.core.yamlfile import Loc, StrictModel, Text, YamlDocument, read_yaml, validate
from sequencer.errors import ConfigError

log = logging.getLogger(__name__)

PROVIDERS = tuple(PRESETS)

DEFAULT_FILE = "sequencer.yaml"
SECRET_IN_YAML = "secrets never live in YAML: use password_env"
_SECRET_KEYS = {
    "client_secret": "secrets never live in YAML: use client_secret_env",
    "refresh_token": "secrets never live in YAML: `sequencer auth MAILBOX` stores the grant",
    "access_token": "secrets never live in YAML: `sequencer auth MAILBOX` stores the grant",
}
NO_SETTINGS_FILE = ("no settings file (run sequencer in your working folder, or pass --config "
                    "or set SEQUENCER_CONFIG)")


class Secret:
    """A value that never reveals itself except through ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: Secret | None
    tls: Literal["ssl", "starttls", "none"]
    allow_plaintext: bool
    timeout_s: float


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    username: str
    password: Secret | None
    tls: Literal["ssl", "none"]
    allow_plaintext: bool
    folder: str = "INBOX"
    sent_folder: str | None = None


@dataclass(frozen=True)
class OAuthSettings:
    """One mailbox's OAuth2 client (from its ``oauth2:`` settings, or a provider preset)."""

    client_id: str
    authorize_url: str
    token_url: str
    client_secret: Secret | None = None
    device_url: str | None = None
    scopes: tuple[str, ...] = ()
    #: Extra authorization-request parameters (Google: access_type=offline, prompt=consent).
    authorize_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The host of the loopback redirect URI the provider has registered for the client.
    redirect_host: str = "127.0.0.1"
    sasl: Literal["auto", "XOAUTH2", "OAUTHBEARER"] = "auto"
    #: Refresh an access token this long before it expires (at most half its lifetime).
    refresh_margin_s: float = 300.0
    http_timeout_s: float = 30.0


@dataclass(frozen=True)
class OAuthMailbox:
    """``auth: oauth2``: the client, the SASL user name and where the grant is kept
    (``token_file``, or else the database, encrypted with the key in ``token_key_env``)."""

    client: OAuthSettings
    username: str
    token_key_env: str
    token_key: Secret | None
    token_file: Path | None


@dataclass(frozen=True)
class MailboxConfig:
    name: str
    sender: str
    sender_address: str
    sender_domain: str
    smtp: SmtpConfig
    imap: ImapConfig | None
    inbox: Path | None
    daily_limit: int = 200
    oauth: OAuthMailbox | None = None  # None: auth: password
    #: Sends in any 60 minutes (None: no hourly limit).
    hourly_limit: int | None = None
    #: The least time between two sends from this mailbox, and the most random time added
    #: on top of it each time (``store.limits``).
    min_spacing_s: float = 0.0
    spacing_jitter_s: float = 0.0
    #: The mailbox's own day for ``daily_limit`` (an IANA name).
    timezone: str = "UTC"
    #: ``save_sent``: APPEND each sent message to the Sent folder (``auto``: unless the
    #: server files submitted mail there by itself).
    save_sent: Literal["auto", "always", "never"] = "auto"
    #: How long after DATA an ``unknown`` step is looked for in Sent by its Message-ID.
    sent_grace_s: float = 900.0

    @property
    def copies_sent(self) -> bool:
        """Whether the sender APPENDs its sent messages to this mailbox's Sent folder."""
        if self.imap is None or self.save_sent == "never":
            return False
        return self.save_sent == "always" or self.saves_sent is not True
    provider: str | None = None
    #: Does the server file submitted mail in Sent by itself? None: not known.
    saves_sent: bool | None = None
    #: authserv-ids of the receiving server whose Authentication-Results header we believe
    #: (the topmost one carrying one of these); empty: believe none (docs/trust.md).
    authserv_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SoftBounceConfig:
    """The decay rule: this many proven soft bounces (of distinct sends) within this long
    suppress the address; fewer, or older ones, do not (docs/trust.md)."""

    suppress_after: int = 3
    within_s: float = 14 * 86400.0


@dataclass(frozen=True)
class RetryConfig:
    """Transient send failures: how often to try, and the capped exponential backoff."""

    attempts: int = 5
    backoff_s: float = 60.0
    max_backoff_s: float = 3600.0


@dataclass(frozen=True)
class WebhookConfig:
    """One ``webhooks:`` entry: where to POST, which events, and the signing secret."""

    url: str
    events: frozenset[str]
    secret: Secret


@dataclass(frozen=True, repr=False)
class Settings:
    path: Path | None
    database: str
    broker: str
    templates_dir: Path
    sequences_dir: Path
    mailboxes: Mapping[str, MailboxConfig]
    #: ``pools:``: a name a sequence may give as its ``mailbox`` for several mailboxes.
    pools: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    claim_lease_s: float = 300.0
    tick_s: float = 1.0
    unsubscribe_url: str | None = None
    # $secret_env: the key(s) that sign unsubscribe links, whitespace-separated, newest last
    unsubscribe_keys: Secret | None = None
    retry: RetryConfig = RetryConfig()
    soft_bounces: SoftBounceConfig = SoftBounceConfig()
    idle_s: float = 240.0
    imap_timeout_s: float = 30.0
    # how long a watcher's hold on its mailbox lasts unrenewed: a killed process's
    # mailboxes are watched again by another (or a restarted) process after it
    watch_lease_s: float = 60.0
    # how many sequences one prospect may be active (or paused) in at once
    max_active_sequences: int = 1
    # free-mail and ISP domains beyond the bundled list (core/freemail.txt), same syntax
    free_mail: tuple[str, ...] = ()
    test_crash_at: str | None = None  # $SEQUENCER_TEST_CRASH_AT: fault-injection tests only
    test_clock: TestClock | None = None  # $SEQUENCER_TEST_CLOCK: time-travel tests only
    webhooks: tuple[WebhookConfig, ...] = ()
    #: Webhook redelivery: capped exponential backoff (seconds).
    webhook_backoff_s: float = 10.0
    webhook_max_backoff_s: float = 3600.0
    webhook_timeout_s: float = 10.0  # connect, and then read, of one POST

    def mailboxes_of(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """A sequence's ``mailbox:`` names with each pool replaced by its members, in order,
        each once; a name that is neither stays (``validate`` reports it)."""
        out: list[str] = []
        for name in names:
            out.extend(self.pools.get(name, (name,)))
        return tuple(dict.fromkeys(out))

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["database"] = redact_url(self.database)
        shown["broker"] = redact_url(self.broker)
        shown["mailboxes"] = dict(self.mailboxes)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__


# --- the schema as written in YAML ---------------------------------------------------------


class _SmtpModel(StrictModel):
    host: Text
    port: int | None = Field(default=None, ge=1, le=65535)
    username: Text | None = None
    password_env: Text | None = None
    tls: Literal["ssl", "starttls", "none"] = "starttls"
    allow_plaintext: bool = False
    timeout: Duration = timedelta(seconds=30)


class _ImapModel(StrictModel):
    host: Text
    port: int | None = Field(default=None, ge=1, le=65535)
    username: Text
    password_env: Text | None = None
    tls: Literal["ssl", "none"] = "ssl"
    allow_plaintext: bool = False
    folder: Text = "INBOX"
    sent_folder: Text | None = None


class _OAuth2Model(StrictModel):
    client_id: Text
    client_secret_env: Text | None = None
    authorize_url: Text
    token_url: Text
    device_url: Text | None = None
    scopes: list[Text] = Field(default_factory=list)
    authorize_params: dict[str, str] = Field(default_factory=dict)
    redirect_host: Literal["127.0.0.1", "localhost"] = "127.0.0.1"
    sasl: Literal["auto", "xoauth2", "oauthbearer"] = "auto"
    refresh_margin: Duration = timedelta(minutes=5)
    token_key_env: Text = "SEQUENCER_TOKEN_KEY"
    token_file: Text | None = None


class _MailboxModel(StrictModel):
    sender: Text = Field(alias="from")
    provider: Literal[PROVIDERS] | None = None  # type: ignore[valid-type]
    saves_sent: bool | None = None
    auth: Literal["password", "oauth2"] = "password"
    oauth2: _OAuth2Model | None = None
    smtp: _SmtpModel
    imap: _ImapModel | None = None
    inbox: Text | None = None
    daily_limit: int = Field(default=200, ge=1)
    hourly_limit: int | None = Field(default=None, ge=1)
    min_spacing: Duration | None = None
    spacing_jitter: Duration | None = None
    timezone: Text = "UTC"
    save_sent: Literal["auto", "always", "never"] = "auto"
    sent_grace: Duration = timedelta(minutes=15)
    authserv_id: Text | list[Text] | None = None


class _SoftBounceModel(StrictModel):
    suppress_after: int = Field(default=3, ge=1, le=1000)
    within: Duration = timedelta(days=14)


class _RetryModel(StrictModel):
    attempts: int = Field(default=5, ge=1)
    backoff: Duration = timedelta(minutes=1)
    max_backoff: Duration = timedelta(hours=1)


class _WebhookModel(StrictModel):
    url: Text
    events: list[Literal[WEBHOOK_EVENTS]] = Field(min_length=1)  # type: ignore[valid-type]
    secret_env: Text


class _SettingsModel(StrictModel):
    database: Text | None = None
    broker: Text = "memory"
    templates: Text = "templates"
    sequences: Text = "sequences"
    mailboxes: dict[str, _MailboxModel] = Field(default_factory=dict)
    pools: dict[str, list[Text]] = Field(default_factory=dict)
    claim_lease: Duration = timedelta(minutes=5)
    tick: Duration = timedelta(seconds=1)
    unsubscribe_url: Text | None = None
    secret_env: Text | None = None
    retry: _RetryModel = _RetryModel()
    soft_bounces: _SoftBounceModel = _SoftBounceModel()
    imap_idle: Duration = timedelta(minutes=4)
    imap_timeout: Duration = timedelta(seconds=30)
    watch_lease: Duration = timedelta(seconds=60)
    webhooks: list[_WebhookModel] = Field(default_factory=list)
    webhook_backoff: Duration = timedelta(seconds=10)
    webhook_max_backoff: Duration = timedelta(hours=1)
    webhook_timeout: Duration = timedelta(seconds=10)
    max_active_sequences: int = Field(default=1, ge=1)
    free_mail: list[Text] = Field(default_factory=list)


# --- loading -------------------------------------------------------------------------------


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None, *,
                  required: bool = False) -> Settings:
    """Settings from ``path`` (or ``$SEQUENCER_CONFIG``, or ``./sequencer.yaml``) and ``env``.

    Without any file, the defaults for the current folder; ``required`` (the commands that
    open the database) makes that an error naming the file looked for, unless
    ``$SEQUENCER_DATABASE_URL`` names the database: a database is never invented.
    """
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("SEQUENCER_CONFIG"))
    chosen = path or Path(env.get("SEQUENCER_CONFIG") or DEFAULT_FILE)
    if not chosen.exists():
        if explicit:
            raise ConfigError("no such settings file", chosen)
        if required and not env.get("SEQUENCER_DATABASE_URL"):
            raise ConfigError(NO_SETTINGS_FILE, Path.cwd() / DEFAULT_FILE)
        return _defaults(env)
    if not chosen.is_file():
        raise ConfigError("not a file", chosen)
    doc = read_yaml(chosen, ConfigError)
    return _Builder(doc, env).settings()


def _defaults(env: Mapping[str, str]) -> Settings:
    cwd = Path.cwd()
    return Settings(
        path=None,
        database=_env_database(env, cwd) or f"sqlite:///{cwd / 'sequencer.db'}",
        broker=_env_broker(env) or "memory",
        templates_dir=cwd / "templates",
        sequences_dir=cwd / "sequences",
        mailboxes=MappingProxyType({}),
        test_crash_at=env.get("SEQUENCER_TEST_CRASH_AT") or None,
        test_clock=_test_clock(env),
    )


@dataclass(frozen=True)
class TestClock:
    """A clock for tests of the real processes: ``at`` when the wall clock read ``since``
    (a Unix time), running ``speed`` times faster from there (0: stopped); or, with
    ``path``, whatever ISO 8601 instant that file holds when asked (the test moves it)."""

    __test__ = False  # not a pytest class

    at: datetime
    since: float = 0.0
    speed: float = 0.0
    path: Path | None = None

    def __call__(self) -> datetime:
        if self.path is not None:
            try:
                return _instant(self.path.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                return self.at  # being replaced this instant: the last value given
        return self.at + timedelta(seconds=(time.time() - self.since) * self.speed)


_TEST_CLOCK = re.compile(r"(\S+)@(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)")


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(text)
    return at.astimezone(UTC)


def _test_clock(env: Mapping[str, str]) -> TestClock | None:
    """``$SEQUENCER_TEST_CLOCK``: ``2026-11-25T12:00:00Z@1764000000.5x3600`` (from that
    instant at that Unix time, 3600 times faster) or ``file:PATH``."""
    value = (env.get("SEQUENCER_TEST_CLOCK") or "").strip()
    if not value:
        return None
    try:
        if value.startswith("file:"):
            path = Path(value.removeprefix("file:"))
            return TestClock(_instant(path.read_text(encoding="utf-8").strip()), path=path)
        match = _TEST_CLOCK.fullmatch(value)
        if match is None:
            raise ValueError(value)
        return TestClock(_instant(match.group(1)), float(match.group(2)),
                         float(match.group(3)))
    except (OSError, ValueError):
        raise ConfigError("must be file:PATH (an ISO 8601 instant in it) or look like "
                          "2026-11-25T12:00:00Z@UNIXTIMExSPEED", "$SEQUENCER_TEST_CLOCK"
                          ) from None


class _Builder:
    """Turns a validated YAML document into ``Settings``, checking across keys."""

    def __init__(self, doc: YamlDocument, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.base = doc.path.resolve().parent

    def fail(self, reason: str, loc: Loc) -> ConfigError:
        return ConfigError(reason, self.doc.path, self.doc.line_of(loc))

    def settings(self) -> Settings:
        for loc, line in self.doc.key_lines():
            key = str(loc[-1]).lower()
            if "password" in key and key != "password_env":
                raise ConfigError(SECRET_IN_YAML, self.doc.path, line)
            if key in _SECRET_KEYS:
                raise ConfigError(_SECRET_KEYS[key], self.doc.path, line)
        raw = validate(_SettingsModel, _with_presets(self.doc), ConfigError)
        log.debug("loaded settings from %s", self.doc.path)
        return Settings(
            path=self.doc.path.resolve(),
            database=_env_database(self.env, Path.cwd()) or self._database(raw.database),
            broker=_env_broker(self.env) or self._broker(raw.broker),
            templates_dir=self._path(raw.templates),
            sequences_dir=self._path(raw.sequences),
            mailboxes=MappingProxyType(
                {name: self._mailbox(name, box) for name, box in raw.mailboxes.items()}
            ),
            pools=self._pools(raw),
            claim_lease_s=self._positive(raw.claim_lease, ("claim_lease",)),
            tick_s=self._positive(raw.tick, ("tick",)),
            unsubscribe_url=self._unsubscribe(raw.unsubscribe_url, raw.secret_env),
            unsubscribe_keys=self._signing_keys(raw.secret_env),
            retry=self._retry(raw.retry),
            soft_bounces=SoftBounceConfig(
                raw.soft_bounces.suppress_after,
                self._positive(raw.soft_bounces.within, ("soft_bounces", "within"))),
            idle_s=self._positive(raw.imap_idle, ("imap_idle",)),
            imap_timeout_s=self._positive(raw.imap_timeout, ("imap_timeout",)),
            watch_lease_s=self._positive(raw.watch_lease, ("watch_lease",)),
            max_active_sequences=raw.max_active_sequences,
            free_mail=self._free_mail(raw.free_mail),
            test_crash_at=self.env.get("SEQUENCER_TEST_CRASH_AT") or None,
            test_clock=_test_clock(self.env),
            webhooks=self._webhooks(raw.webhooks),
            webhook_backoff_s=self._positive(raw.webhook_backoff, ("webhook_backoff",)),
            webhook_max_backoff_s=self._positive(raw.webhook_max_backoff,
                                                 ("webhook_max_backoff",)),
            webhook_timeout_s=self._positive(raw.webhook_timeout, ("webhook_timeout",)),
        )

    def _pools(self, raw: _SettingsModel) -> Mapping[str, tuple[str, ...]]:
        """``pools: {NAME: [MAILBOX, …]}``: every member a configured mailbox, no pool named
        like a mailbox."""
        pools: dict[str, tuple[str, ...]] = {}
        for name, members in raw.pools.items():
            at: Loc = ("pools", name)
            if name in raw.mailboxes:
                raise self.fail(f"pool {name!r}: a mailbox has that name", at)
            if not members:
                raise self.fail(f"pool {name!r}: list at least one mailbox", at)
            for index, member in enumerate(members):
                if member not in raw.mailboxes:
                    known = ", ".join(sorted(raw.mailboxes)) or "none configured"
                    raise self.fail(f"pool {name!r}: {member!r} is not a mailbox ({known})",
                                    (*at, index))
            pools[name] = tuple(dict.fromkeys(members))
        return MappingProxyType(pools)

    def _webhooks(self, raw: list[_WebhookModel]) -> tuple[WebhookConfig, ...]:
        hooks: list[WebhookConfig] = []
        for i, hook in enumerate(raw):
            at: Loc = ("webhooks", i)
            if not _http_url_ok(hook.url):
                raise self.fail("url: must be an https URL (http only to a loopback host)",
                                (*at, "url"))
            if any(h.url == hook.url for h in hooks):
                raise self.fail("url: listed twice in webhooks (list all its events once)",
                                (*at, "url"))
            secret = self._secret(hook.secret_env, (*at, "secret_env"), "secret_env")
            if secret is not None:  # always: secret_env is required
                hooks.append(WebhookConfig(hook.url, frozenset(hook.events), secret))
        return tuple(hooks)
    def _free_mail(self, entries: list[str]) -> tuple[str, ...]:
        for index, entry in enumerate(entries):
            try:
                FreeMail.parse([entry])
            except ValueError as err:
                raise self.fail(f"free_mail: {err}", ("free_mail", index)) from None
        return tuple(entries)

    def _retry(self, raw: _RetryModel) -> RetryConfig:
        backoff = self._positive(raw.backoff, ("retry", "backoff"))
        most = self._positive(raw.max_backoff, ("retry", "max_backoff"))
        if most < backoff:
            raise self.fail(
                "max_backoff: must not be shorter than backoff", ("retry", "max_backoff")
            )
        return RetryConfig(raw.attempts, backoff, most)

    def _path(self, text: str) -> Path:
        return self.base / Path(text).expanduser()

    def _positive(self, value: timedelta, at: Loc) -> float:
        if value <= timedelta(0):
            raise self.fail(f"{at[-1]}: must be longer than 0s", at)
        return value.total_seconds()

    def _database(self, url: str | None) -> str:
        if url is None:
            return f"sqlite:///{self.base / 'sequencer.db'}"
        try:
            parsed = make_url(url)
        except ArgumentError as err:
            raise self.fail("database: not a database URL", ("database",)) from err
        if parsed.password is not None:
            reason = "database: secrets never live in YAML: use SEQUENCER_DATABASE_URL"
            raise self.fail(reason, ("database",))
        problem = database_problem(url)
        if problem is not None:
            raise self.fail(f"database: {problem}", ("database",))
        return _absolute_sqlite(url, self.base)

    def _broker(self, url: str) -> str:
        problem = _broker_problem(url)
        if problem is not None:
            raise self.fail(f"broker: {problem}", ("broker",))
        if url != "memory" and urlsplit(url).password is not None:
            reason = "broker: secrets never live in YAML: use SEQUENCER_BROKER_URL"
            raise self.fail(reason, ("broker",))
        return url

    def _unsubscribe(self, url: str | None, secret_env: str | None) -> str | None:
        if url is None:
            return None
        problem = unsubscribe_url_problem(url)
        if problem is None and secret_env is None:
            problem = ("needs secret_env: the name of the environment variable that holds "
                       "the key signing its links")
        if problem is not None:
            raise self.fail(f"unsubscribe_url: {problem}", ("unsubscribe_url",))
        return url

    def _signing_keys(self, name: str | None) -> Secret | None:
        at: Loc = ("secret_env",)
        secret = self._secret(name, at, "secret_env")
        if secret is not None and (not secret.reveal().split() or any(
                len(key) < MIN_KEY_LENGTH for key in secret.reveal().split())):
            reason = (f"secret_env: the key in {name} must be at least {MIN_KEY_LENGTH} "
                      "characters (several keys: separated by spaces, newest last); make one "
                      "with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
            raise self.fail(reason, at)
        return secret

    def _mailbox(self, name: str, raw: _MailboxModel) -> MailboxConfig:
        at: Loc = ("mailboxes", name)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise self.fail(f"mailbox name {name!r}: use letters, digits, - and _", at)
        sender, address, domain = self._sender(raw.sender, (*at, "from"))
        if raw.imap is not None and raw.inbox is not None:
            raise self.fail("use either imap or inbox, not both", (*at, "inbox"))
        oauth = self._oauth(raw, address, at)
        spacing, jitter = self._spacing(raw, at)
        if raw.save_sent == "always" and raw.imap is None:
            raise self.fail("save_sent: always needs an imap: section (the Sent folder is "
                            "reached over IMAP)", (*at, "save_sent"))
        return MailboxConfig(
            name=name,
            sender=sender,
            sender_address=address,
            sender_domain=domain,
            smtp=self._smtp(raw.smtp, (*at, "smtp")),
            imap=None if raw.imap is None else self._imap(raw.imap, (*at, "imap")),
            inbox=None if raw.inbox is None else self._inbox(raw.inbox, (*at, "inbox")),
            daily_limit=raw.daily_limit,
            oauth=oauth,
            hourly_limit=raw.hourly_limit,
            min_spacing_s=spacing,
            spacing_jitter_s=jitter,
            timezone=raw.timezone,
            save_sent=raw.save_sent,
            sent_grace_s=self._positive(raw.sent_grace, (*at, "sent_grace")),
            provider=raw.provider,
            saves_sent=raw.saves_sent,
            authserv_ids=self._authserv(raw.authserv_id, (*at, "authserv_id")),
        )

    def _authserv(self, value: str | list[str] | None, at: Loc) -> frozenset[str]:
        names = [value] if isinstance(value, str) else list(value or ())
        for name in names:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise self.fail(f"authserv_id: {name!r} is not a host name such as "
                                "mx.example.com", at)
        return frozenset(name.lower() for name in names)

    def _spacing(self, raw: _MailboxModel, at: Loc) -> tuple[float, float]:
        """``min_spacing`` and ``spacing_jitter`` (by default a quarter of it) in seconds;
        checks the ``timezone`` whose day ``daily_limit`` counts."""
        spacing = raw.min_spacing or timedelta(0)
        if raw.spacing_jitter is not None and raw.min_spacing is None:
            raise self.fail("spacing_jitter: only used with min_spacing",
                            (*at, "spacing_jitter"))
        jitter = spacing / 4 if raw.spacing_jitter is None else raw.spacing_jitter
        try:
            ZoneInfo(raw.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"timezone: unknown time zone {raw.timezone!r} (use an IANA name "
                            "such as Europe/Berlin)", (*at, "timezone")) from None
        return spacing.total_seconds(), jitter.total_seconds()

    def _oauth(self, raw: _MailboxModel, address: str, at: Loc) -> OAuthMailbox | None:
        if raw.auth == "password":
            if raw.oauth2 is not None:
                raise self.fail("oauth2: only used with auth: oauth2", (*at, "oauth2"))
            return None
        if raw.oauth2 is None:
            raise self.fail("auth: oauth2 needs an oauth2: section (client_id, authorize_url, "
                            "token_url)", (*at, "auth"))
        for part, box in (("smtp", raw.smtp), ("imap", raw.imap)):
            if box is not None and box.password_env is not None:
                raise self.fail("password_env: not used with auth: oauth2",
                                (*at, part, "password_env"))
        o = raw.oauth2
        where: Loc = (*at, "oauth2")
        for url_key in ("authorize_url", "token_url", "device_url"):
            url = getattr(o, url_key)
            if url is not None and not _http_url_ok(url):
                raise self.fail(
                    f"{url_key}: must be an https URL (http only to a loopback host)",
                    (*where, url_key))
        token_file = None if o.token_file is None else self._path(o.token_file)
        token_key = None
        if token_file is None:
            token_key = self._secret(o.token_key_env, (*where, "token_key_env"),
                                     "token_key_env")
            assert token_key is not None
            try:
                from cryptography.fernet import Fernet

                Fernet(token_key.reveal().encode())
            except ValueError:
                raise self.fail(
                    f"token_key_env: {o.token_key_env} is not a Fernet key (32 url-safe base64 "
                    "bytes; make one with `sequencer auth --new-key`)",
                    (*where, "token_key_env"),
                ) from None
        client = OAuthSettings(
            client_id=o.client_id,
            authorize_url=o.authorize_url,
            token_url=o.token_url,
            client_secret=self._secret(o.client_secret_env, (*where, "client_secret_env"),
                                       "client_secret_env"),
            device_url=o.device_url,
            scopes=tuple(o.scopes),
            authorize_params=MappingProxyType(dict(o.authorize_params)),
            redirect_host=o.redirect_host,
            sasl="auto" if o.sasl == "auto" else o.sasl.upper(),  # type: ignore[arg-type]
            refresh_margin_s=o.refresh_margin.total_seconds(),
        )
        username = raw.smtp.username or address
        return OAuthMailbox(client=client, username=username, token_key_env=o.token_key_env,
                            token_key=token_key, token_file=token_file)

    def _sender(self, text: str, at: Loc) -> tuple[str, str, str]:
        try:
            return parse_sender(text)
        except ValueError as err:
            raise self.fail(f"from: {err}", at) from None

    def _inbox(self, text: str, at: Loc) -> Path:
        scheme, _, rest = text.partition(":")
        if scheme != "maildir" or not rest.strip():
            raise self.fail("inbox: must be maildir:PATH", at)
        return self._path(rest.strip())

    def _smtp(self, raw: _SmtpModel, at: Loc) -> SmtpConfig:
        self._plaintext(raw.host, raw.tls, raw.allow_plaintext, at)
        if raw.password_env is not None and raw.username is None:
            raise self.fail("password_env needs a username", (*at, "password_env"))
        ports = {"starttls": 587, "ssl": 465, "none": 25}
        return SmtpConfig(
            host=raw.host,
            port=raw.port or ports[raw.tls],
            username=raw.username,
            password=self._secret(raw.password_env, (*at, "password_env")),
            tls=raw.tls,
            allow_plaintext=raw.allow_plaintext,
            timeout_s=self._positive(raw.timeout, (*at, "timeout")),
        )

    def _imap(self, raw: _ImapModel, at: Loc) -> ImapConfig:
        self._plaintext(raw.host, raw.tls, raw.allow_plaintext, at)
        return ImapConfig(
            host=raw.host,
            port=raw.port or (993 if raw.tls == "ssl" else 143),
            username=raw.username,
            password=self._secret(raw.password_env, (*at, "password_env")),
            tls=raw.tls,
            allow_plaintext=raw.allow_plaintext,
            folder=raw.folder,
            sent_folder=raw.sent_folder,
        )

    def _plaintext(self, host: str, tls: str, allowed: bool, at: Loc) -> None:
        if tls == "none" and not allowed and not is_loopback(host):
            reason = (
                f"tls: none would send in plaintext to {host}: "
                "use tls, a loopback host, or allow_plaintext: true"
            )
            raise self.fail(reason, (*at, "tls"))

    def _secret(self, name: str | None, at: Loc, key: str = "password_env") -> Secret | None:
        if name is None:
            return None
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise self.fail(f"{key}: {name!r} is not an environment variable name", at)
        value = self.env.get(name)
        if not value:
            raise self.fail(f"{key}: environment variable {name} is not set", at)
        return Secret(value)


# --- helpers -------------------------------------------------------------------------------


def _with_presets(doc: YamlDocument) -> YamlDocument:
    """The document with each ``provider:`` mailbox's preset merged under its own keys.

    The preset's ``oauth2`` part applies only with ``auth: oauth2``; SMTP and IMAP log in
    as the ``from`` address unless they name a username. Line numbers stay those of the
    file: a problem in a filled-in value points at the mailbox's ``provider`` line's
    mailbox."""
    data = doc.data
    boxes = data.get("mailboxes") if isinstance(data, dict) else None
    if not isinstance(boxes, dict):
        return doc
    changed = dict(boxes)
    for name, box in boxes.items():
        if not isinstance(box, dict) or box.get("provider") not in PRESETS:
            continue
        preset = {k: v for k, v in PRESETS[box["provider"]].items()
                  if k != "oauth2" or box.get("auth") == "oauth2"}
        sent_folder = preset.pop("sent_folder")
        preset["imap"] = {**preset["imap"], "sent_folder": sent_folder}
        address = getaddresses([str(box.get("from", ""))])
        if address and address[0][1]:
            preset["smtp"] = {**preset["smtp"], "username": address[0][1]}
            preset["imap"] = {**preset["imap"], "username": address[0][1]}
        changed[name] = merged(preset, box)
    return replace(doc, data={**data, "mailboxes": changed})


def _http_url_ok(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if host is None:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_URI = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")  # RFC 3986 characters
_LONGEST_TOKEN = 700


def unsubscribe_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable ``unsubscribe_url`` template, or None when it is: https
    (http only on loopback), a host, ``{token}`` once in the path or query, no user,
    password or fragment, only characters a URI carries, short enough for the header."""
    if url.count(PLACEHOLDER) != 1:
        return f"must contain {PLACEHOLDER} exactly once"
    if "{" in url.replace(PLACEHOLDER, "") or "}" in url.replace(PLACEHOLDER, ""):
        return f"only {PLACEHOLDER} may stand in braces"
    marker = "T" * _LONGEST_TOKEN
    sample = url.replace(PLACEHOLDER, marker)
    if len(sample) > 900:
        return "is too long for a List-Unsubscribe header (keep it under 200 characters)"
    if not _URI.fullmatch(sample):
        return "has characters a URI cannot carry (spaces, quotes, <>, non-ASCII): " \
               "percent-encode them"
    try:
        parts = urlsplit(sample)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as err:
        return f"is not a URL ({err})"
    if parts.scheme not in ("https", "http"):
        return "must be an https:// URL"
    if not host:
        return "has no host"
    if parts.scheme == "http" and not is_loopback(host):
        return "must be https:// (http:// only on a loopback host such as 127.0.0.1)"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if "#" in url:
        return "must not have a #fragment (it never reaches the server)"
    if marker not in parts.path + parts.query:
        return f"{PLACEHOLDER} must be in the path or the query"
    return None


def parse_sender(text: str) -> tuple[str, str, str]:
    """``"Dana <Dana@X.com>"`` -> (text, ``dana@x.com``, ``x.com``); ValueError when bad."""
    if has_control(text):
        raise ValueError("control characters are not allowed")
    pairs = getaddresses([text])
    if len(pairs) != 1 or not pairs[0][1]:
        raise ValueError(f"{text!r} is not one address such as 'Dana <dana@example.com>'")
    try:
        checked = validate_email(
            pairs[0][1],
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except EmailNotValidError as err:
        raise ValueError(f"{pairs[0][1]!r} is not a valid address: {err}") from None
    return text.strip(), checked.normalized.lower(), checked.ascii_domain.lower()


def _absolute_sqlite(url: str, base: Path) -> str:
    match = re.fullmatch(r"(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?", url)
    if match is None:
        return url
    scheme, file, query = match.group(1), match.group(2), match.group(3) or ""
    if not file or file.startswith((":memory:", "/")):
        return url
    return f"{scheme}:///{base / Path(file).expanduser()}{query}"


def _broker_problem(url: str) -> str | None:
    if url == "memory":
        return None
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("redis", "rediss"):
        return "must be memory or a redis:// URL"
    return None


def _env_database(env: Mapping[str, str], base: Path) -> str | None:
    url = env.get("SEQUENCER_DATABASE_URL")
    if not url:
        return None
    try:
        make_url(url)
    except ArgumentError as err:
        raise ConfigError("not a database URL", "$SEQUENCER_DATABASE_URL") from err
    problem = database_problem(url)
    if problem is not None:
        raise ConfigError(problem, "$SEQUENCER_DATABASE_URL")
    return _absolute_sqlite(url, base)


SUPPORTED_DATABASES = ("sqlite", "postgresql")


def database_problem(url: str) -> str | None:
    """Why ``url`` cannot be our database (None when it can): a backend other than SQLite
    or PostgreSQL, a driver that is not installed, or an in-memory SQLite database (each
    command, and each engine of one, would get its own empty one)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "not a database URL"
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DATABASES:
        return (f"unsupported database {backend!r}: use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/NAME")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:") or (
            parsed.query.get("mode") == "memory"):
        return "an in-memory database is gone when the command ends: use sqlite:///PATH"
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as err:
        hint = "postgresql+psycopg://" if backend == "postgresql" else "sqlite:///PATH"
        return (f"the driver {parsed.get_driver_name()!r} is not installed ({err}): use "
                f"{hint} (pip install 'sequencer[postgres]' for PostgreSQL)")
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's plugin loader raises its own kinds
        return f"cannot load the database driver for {backend!r}: {err}"
    return None


def _env_broker(env: Mapping[str, str]) -> str | None:
    url = env.get("SEQUENCER_BROKER_URL")
    if not url:
        return None
    problem = _broker_problem(url)
    if problem is not None:
        raise ConfigError(problem, "$SEQUENCER_BROKER_URL")
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()

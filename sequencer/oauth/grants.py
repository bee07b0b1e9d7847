"""Where a mailbox's OAuth2 grant (its refresh token) is kept: never in the YAML.

* ``DatabaseGrants``: the ``oauth_grants`` table, each grant encrypted with Fernet
  (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key taken from an environment
  variable. Every worker on every machine that shares the database sees the same grant, so
  a refresh token the provider rotates is seen by all of them.
* ``FileGrants``: a JSON file created 0600 (refused when group or others can read it),
  written atomically under an exclusive lock; for a single machine.

A ``Grant`` never shows its refresh token in a repr, a str or a log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select, update

from sequencer.config import Secret
from sequencer.errors import SequencerError
from sequencer.store.db import Store
from sequencer.store.schema import oauth_grants


class GrantStoreError(SequencerError):
    """The stored grant cannot be read or written (wrong key, unsafe file, bad content)."""


@dataclass(frozen=True)
class Grant:
    """What ``sequencer auth`` obtained: the refresh token and what it is for."""

    refresh_token: Secret
    scope: str
    account: str | None
    obtained_at: datetime

    @property
    def fingerprint(self) -> str:
        """A short hash that tells two refresh tokens apart without revealing either."""
        return hashlib.sha256(self.refresh_token.reveal().encode()).hexdigest()[:16]

    def with_refresh_token(self, token: str) -> Grant:
        return Grant(Secret(token), self.scope, self.account, self.obtained_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "refresh_token": self.refresh_token.reveal(),
            "scope": self.scope,
            "account": self.account,
            "obtained_at": self.obtained_at.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Grant:
        try:
            token = data["refresh_token"]
            if not isinstance(token, str) or not token:
                raise ValueError("no refresh token")
            return cls(
                refresh_token=Secret(token),
                scope=str(data.get("scope") or ""),
                account=data.get("account"),
                obtained_at=datetime.fromisoformat(data["obtained_at"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise GrantStoreError(f"{where}: the stored grant is not readable ({err})") from None


class GrantStore(Protocol):
    def load(self, mailbox: str) -> Grant | None: ...

    def save(self, mailbox: str, grant: Grant) -> None: ...

    def delete(self, mailbox: str) -> None: ...

    def describe(self) -> str: ...


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


class DatabaseGrants:
    """Grants in the ``oauth_grants`` table, encrypted with the key from ``key_env``."""

    def __init__(self, store: Store, key: Secret, key_env: str) -> None:
        self._store = store
        self._fernet = Fernet(key.reveal().encode())
        self._key_env = key_env

    def describe(self) -> str:
        return f"the database, encrypted with the key in ${self._key_env}"

    def load(self, mailbox: str) -> Grant | None:
        with self._store.read() as conn:
            sealed = conn.scalar(
                select(oauth_grants.c.sealed).where(oauth_grants.c.mailbox == mailbox)
            )
        if sealed is None:
            return None
        try:
            plain = self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, ValueError):
            raise GrantStoreError(
                f"the stored OAuth2 grant of mailbox {mailbox} does not decrypt with the key "
                f"in ${self._key_env}: restore the key, or run `sequencer auth {mailbox}` again"
            ) from None
        return Grant.from_json(json.loads(plain), f"mailbox {mailbox}")

    def save(self, mailbox: str, grant: Grant) -> None:
        sealed = self._fernet.encrypt(json.dumps(grant.to_json()).encode()).decode("ascii")
        now = datetime.now(UTC)
        with self._store.write() as conn:
            exists = conn.scalar(
                select(oauth_grants.c.mailbox).where(oauth_grants.c.mailbox == mailbox)
            )
            if exists is None:
                conn.execute(insert(oauth_grants).values(mailbox=mailbox, sealed=sealed,
                                                         updated_at=now))
            else:
                conn.execute(update(oauth_grants).where(oauth_grants.c.mailbox == mailbox)
                             .values(sealed=sealed, updated_at=now))

    def delete(self, mailbox: str) -> None:
        with self._store.write() as conn:
            conn.execute(delete(oauth_grants).where(oauth_grants.c.mailbox == mailbox))


class FileGrants:
    """Grants in one JSON file, mode 0600, keyed by mailbox name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the file {self.path} (mode 0600)"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise GrantStoreError(f"{lock_path}: cannot open the lock file: {err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise GrantStoreError(f"{self.path}: cannot open: {err}") from None
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise GrantStoreError(
                    f"{self.path}: holds refresh tokens but its mode is "
                    f"{stat.S_IMODE(mode):04o}: run chmod 600 {self.path}"
                )
            raw = handle.read()
        try:
            data = json.loads(raw or b"{}")
        except ValueError as err:
            raise GrantStoreError(f"{self.path}: not JSON ({err})") from None
        if not isinstance(data, dict):
            raise GrantStoreError(f"{self.path}: not a JSON object of grants")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)  # whatever the umask did
                json.dump(data, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise GrantStoreError(f"{self.path}: cannot write: {err}") from None

    def load(self, mailbox: str) -> Grant | None:
        with self._locked():
            entry = self._read().get(mailbox)
        return None if entry is None else Grant.from_json(entry, f"{self.path} [{mailbox}]")

    def save(self, mailbox: str, grant: Grant) -> None:
        with self._locked():
            data = self._read()
            data[mailbox] = grant.to_json()
            self._write(data)

    def delete(self, mailbox: str) -> None:
        with self._locked():
            data = self._read()
            if data.pop(mailbox, None) is not None:
                self._write(data)

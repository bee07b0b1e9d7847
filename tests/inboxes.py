"""A working folder whose mailbox is watched by the real watcher: a Maildir, or a real
Dovecot over IMAP. Tests that must hold for both take the ``watched`` fixture."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.workdir import Workdir, make_workdir


@dataclass
class Watched:
    """The workdir, and how mail reaches the watched inbox."""

    kind: str
    wd: Workdir
    dovecot: Any = None

    def deliver(self, raw: bytes) -> None:
        if self.dovecot is not None:
            self.dovecot.append(raw)
            return
        maildir = self.wd.path / "Maildir"
        name = f"{time.time_ns()}.M1P1.test"
        (maildir / "tmp" / name).write_bytes(raw)
        (maildir / "tmp" / name).rename(maildir / "new" / name)


def watched_workdir(kind: str, tmp_path: Path, smtp_port: int, dovecot: Any = None, *,
                    wait2: str = "3s", wait3: str = "1h", mailbox_extra: str = "",
                    extra: str = "") -> Watched:
    if kind == "dovecot":
        box = (f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: "
               f"{dovecot.username}, password_env: IMAP_PW, tls: none}}\n")
    else:
        box = "    inbox: maildir:Maildir\n"
        for sub in ("new", "cur", "tmp"):
            (tmp_path / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
    wd = make_workdir(tmp_path, smtp_port, wait2=wait2, wait3=wait3,
                      extra="imap_idle: 30s\nimap_timeout: 5s\n" + extra,
                      mailbox_extra=box + mailbox_extra)
    if dovecot is not None:
        wd.env["IMAP_PW"] = dovecot.password
    return Watched(kind, wd, dovecot)


@pytest.fixture(params=["maildir", "dovecot"])
def inbox_kind(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """("maildir", None) or ("dovecot", a running Dovecot)."""
    if request.param == "dovecot":
        return "dovecot", request.getfixturevalue("dovecot")
    return "maildir", None

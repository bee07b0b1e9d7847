"""Build a user's working folder (settings, sequences, templates, CSV) for a test, and run
the real `sequencer` command in it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

THREE_STEPS = """\
name: {name}
mailbox: sales
timezone: UTC
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
  - name: reminder
    template: reminder
    wait: {wait2}
    thread: true
  - name: new-information
    template: new_info
    wait: {wait3}
"""

TEMPLATES = {
    "thank_you.txt.j2": "Subject: Thanks, {{ first_name }}\n\nHi {{ first_name }} at "
    "{{ company | default('your company') }}, thanks!\n",
    "reminder.txt.j2": "Subject: Reminder for {{ first_name }}\n\nJust a reminder.\n",
    "new_info.txt.j2": "Subject: New for {{ company | default('you') }}\n\nSomething new.\n",
}


@dataclass
class Workdir:
    path: Path
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.path / "sequencer.yaml"

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def cli(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 60,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        result = subprocess.run(
            [sys.executable, "-m", "sequencer", *args],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"sequencer {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def start(
        self, *args: str, extra_env: dict[str, str] | None = None, log: str = "run.log"
    ) -> subprocess.Popen[bytes]:
        env = {**self.env, **(extra_env or {})}
        with open(self.path / log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sequencer", *args],
                cwd=self.path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.log_path = self.path / log  # type: ignore[attr-defined]
        return proc

    def status(self) -> list[dict[str, Any]]:
        result = self.cli("status", "--json", check=True)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def status_of(self, email: str) -> list[dict[str, Any]]:
        result = self.cli("status", "--json", "--email", email, check=True)
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def log(self, name: str = "run.log") -> str:
        path = self.path / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def make_workdir(
    path: Path,
    smtp_port: int,
    *,
    database: str | None = None,
    broker: str = "memory",
    extra: str = "",
    mailbox_extra: str = "",
    sequence: str | None = None,
    wait2: str = "2s",
    wait3: str = "2s",
    lease: str = "3s",
) -> Workdir:
    path.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQUENCER_")}
    env["PYTHONPATH"] = str(REPO)
    wd = Workdir(path, env)
    wd.write(
        "sequencer.yaml",
        f"database: {database or 'sqlite:///sequencer.db'}\n"
        f"broker: {broker}\n"
        "tick: 0.2s\n"
        f"claim_lease: {lease}\n"
        "retry: {attempts: 3, backoff: 1s, max_backoff: 2s}\n"
        f"{extra}"
        "mailboxes:\n"
        "  sales:\n"
        '    from: "Dana Reyes <dana@example.com>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, timeout: 3s}}\n"
        f"{mailbox_extra}",
    )
    wd.write(
        "sequences/three.yaml",
        sequence or THREE_STEPS.format(name="three", wait2=wait2, wait3=wait3),
    )
    for name, text in TEMPLATES.items():
        wd.write(f"templates/{name}", text)
    return wd


def prospects_csv(wd: Workdir, emails: list[str], name: str = "prospects.csv") -> Path:
    lines = ["email,first_name,company"]
    lines += [f"{e},{e.split('@')[0].title()},Co{i}" for i, e in enumerate(emails)]
    return wd.write(name, "\n".join(lines) + "\n")


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_watcher(wd: Workdir, mailbox: str = "sales", timeout: float = 30) -> None:
    """Until the worker logs that it watches `mailbox`: its IMAP login and first
    SELECT can take several seconds on a loaded machine."""
    wait_until(lambda: f"watching mailbox {mailbox}" in wd.log(), timeout, "the watcher")


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM once the worker is up (its handler installed), then its exit code."""
    log: Path | None = getattr(proc, "log_path", None)
    if log is not None:
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            if log.exists() and "running:" in log.read_text(errors="replace"):
                break
            time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)

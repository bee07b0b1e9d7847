"""`sequencer demo`: the whole loop on embedded defaults, in under a minute.

A throwaway working folder gets settings (SQLite, in-process broker), a short copy of the
example sequence, three prospects, a loopback SMTP server (aiosmtpd) that writes what it
receives into ``outbox/``, and a Maildir inbox. Once Bo has the first email, a reply from
Bo is dropped into the inbox: Bo's sequence halts while the others carry on.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlalchemy import select

import sequencer
from sequencer.errors import SequencerError
from sequencer.store.schema import enrollments, sends
from sequencer.store.status import status
from sequencer.usecases.importing import run_enroll
from sequencer.workspace import Workspace

DEMO_SEQUENCE = """\
name: demo
mailbox: sales
timezone: UTC
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
  - name: reminder
    template: reminder
    wait: 4s
    thread: true
  - name: new-information
    template: new_info
    wait: 4s
"""

DEMO_PROSPECTS = """\
email,first_name,last_name,company,timezone
ann.lee@example.com,Ann,Lee,Northwind,America/Chicago
bo.chen@example.org,Bo,Chen,Globex,Europe/Berlin
cy.diaz@example.net,Cy,Diaz,Initech,
"""

REPLIER = "bo.chen@example.org"
DEADLINE_S = 50.0


def _examples_root() -> Path:
    root = Path(sequencer.__file__).resolve().parent.parent
    if not (root / "templates" / "thank_you.txt.j2").exists():
        raise SequencerError(f"the example templates are not at {root / 'templates'}: run the "
                             "demo from a checkout of the repository")
    return root


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(directory: Path, smtp_port: int) -> Path:
    """Write the demo working folder; returns the settings file."""
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "sequences").mkdir(parents=True)
    (directory / "outbox").mkdir()
    for sub in ("new", "cur", "tmp"):
        (directory / "Maildir" / sub).mkdir(parents=True)
    shutil.copytree(_examples_root() / "templates", directory / "templates")
    (directory / "sequences" / "demo.yaml").write_text(DEMO_SEQUENCE, encoding="utf-8")
    (directory / "prospects.csv").write_text(DEMO_PROSPECTS, encoding="utf-8")
    settings = directory / "sequencer.yaml"
    settings.write_text(
        "database: sqlite:///sequencer.db\n"
        "broker: memory\n"
        "tick: 0.2s\n"
        "mailboxes:\n"
        "  sales:\n"
        '    from: "Dana Reyes <dana@example.com>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none}}\n"
        "    inbox: maildir:Maildir\n",
        encoding="utf-8",
    )
    return settings


class _Outbox:
    """aiosmtpd handler: every message received is written to ``outbox/NNN.eml``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, _server: object, _session: object, envelope: object) -> str:
        with self.lock:
            self.count += 1
            name = self.folder / f"{self.count:03d}.eml"
        name.write_bytes(envelope.content)  # type: ignore[attr-defined]
        return "250 2.0.0 queued"


def _drop_reply(app: Workspace, maildir: Path) -> bool:
    with app.store.read() as conn:
        row = conn.execute(
            select(sends.c.message_id, sends.c.subject)
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(enrollments.c.email == REPLIER, sends.c.status == "sent")
        ).first()
    if row is None:
        return False
    reply = (
        f"From: Bo Chen <{REPLIER}>\r\n"
        "To: Dana Reyes <dana@example.com>\r\n"
        f"Subject: Re: {row.subject}\r\n"
        f"Date: {format_datetime(app.clock())}\r\n"
        f"Message-ID: {make_msgid(domain='example.org')}\r\n"
        f"In-Reply-To: {row.message_id}\r\n"
        f"References: {row.message_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hi Dana, Thursday at 15:00 works. Talk then!\r\n"
        "Bo\r\n"
    )
    tmp = maildir / "tmp" / "reply-from-bo"
    tmp.write_text(reply, encoding="utf-8")
    tmp.rename(maildir / "new" / "reply-from-bo")
    return True


def run_demo(directory: Path) -> int:
    from aiosmtpd.controller import Controller

    from workers.run import run

    directory = directory.resolve()
    port = _free_port()
    settings_file = prepare(directory, port)
    handler = _Outbox(directory / "outbox")
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(f"demo folder {directory}: SMTP on 127.0.0.1:{port} -> outbox/, inbox Maildir/")
    app = Workspace.load(settings_file)
    try:
        summary = run_enroll(app, "demo", directory / "prospects.csv", progress=False)
        print(f"enrolled {summary.enrolled} prospects into demo "
              f"(rejected {len(summary.rejected)})")
        replied = False
        started = time.monotonic()

        def finished() -> bool:
            nonlocal replied
            if not replied:
                replied = _drop_reply(app, directory / "Maildir")
                if replied:
                    print(f"… a reply from {REPLIER} lands in the inbox")
            if time.monotonic() - started > DEADLINE_S:
                return True
            rows = status(app.store)
            return all(r.state != "active" for r in rows)

        run(app, threading.Event(), threads=2, until=finished)
        rows = status(app.store)
        print()
        for r in rows:
            print(f"{r.email:<24} {r.state:<10} sent {r.steps_sent}/3  last {r.last_step}")
        print(f"\n{handler.count} emails delivered to {directory / 'outbox'}")
        ok = {r.email: r.state for r in rows} == {
            "ann.lee@example.com": "completed", REPLIER: "replied",
            "cy.diaz@example.net": "completed"}
        if not ok:
            print("demo did not finish as expected", flush=True)
        return 0 if ok else 1
    finally:
        app.close()
        controller.stop()

"""Many mailboxes in one `sequencer run`: every watcher on one event loop, so the process's
threads do not grow with its mailboxes, and a reply into any of them halts its prospect
(issue 10 item 4), on a real Dovecot with one user per mailbox."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.dovecot import DovecotServer
from tests.fixtures.smtp import SmtpServer
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until
from tests.workers.test_watch import reply_to
from workers.watch import DB_THREADS

MAILBOXES = 16


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _workdir(tmp_path: Path, smtp_port: int, dovecot: DovecotServer,
             count: int = MAILBOXES) -> tuple[Workdir, list[str]]:
    names = [f"box{i}" for i in range(count)]
    users = {name: f"{name}@example.test" for name in names}
    passwords = {name: dovecot.add_user(user) for name, user in users.items()}
    boxes = "".join(
        f"  {name}:\n"
        f"    from: \"Dana <{users[name]}>\"\n"
        f"    smtp: {{host: 127.0.0.1, port: {smtp_port}, tls: none, timeout: 3s}}\n"
        f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, username: {users[name]}, "
        f"password_env: PW_{name.upper()}, tls: none}}\n" for name in names)
    wd = make_workdir(tmp_path, smtp_port, extra="imap_idle: 30s\nimap_timeout: 5s\n",
                      wait2="1h", wait3="1h", mailbox_extra=boxes)
    wd.write("sequences/three.yaml", (wd.path / "sequences/three.yaml").read_text().replace(
        "mailbox: sales", f"mailbox: [{', '.join(names)}]\nassign: round-robin"))
    for name in names:
        wd.env[f"PW_{name.upper()}"] = passwords[name]
    return wd, names


def _threads_watching_one(tmp_path: Path, smtp_port: int, dovecot: DovecotServer) -> int:
    wd, _ = _workdir(tmp_path / "one", smtp_port, dovecot, count=1)
    proc = wd.start("run")
    try:
        wait_until(lambda: "watching mailbox box0" in wd.log(), 60, "the watcher")
        return _threads(proc.pid)
    finally:
        assert terminate(proc) == 0, wd.log()


def test_sixteen_mailboxes_share_one_watcher_thread_and_each_halts_its_replies(
        tmp_path: Path, smtp_server: SmtpServer, dovecot: DovecotServer) -> None:
    one = _threads_watching_one(tmp_path, smtp_server.port, dovecot)
    wd, names = _workdir(tmp_path / "many", smtp_server.port, dovecot)
    proc = wd.start("run")
    try:
        wait_until(lambda: all(f"watching mailbox {n}" in wd.log() for n in names), 60,
                   "every watcher")
        threads = _threads(proc.pid)  # before any send: the sender's threads are apart
        emails = [f"p{i}@example.com" for i in range(MAILBOXES)]
        wd.cli("enroll", "three", str(prospects_csv(wd, emails)), check=True)
        sent = smtp_server.wait_for(MAILBOXES, timeout=60)
        by_sender = {d.message["From"].split("<")[1].rstrip(">"): d for d in sent}
        assert sorted(by_sender) == sorted(f"{n}@example.test" for n in names)
        for user, delivery in by_sender.items():
            dovecot.append(reply_to(delivery), user=user)
        wait_until(lambda: all(s["state"] == "replied" for s in wd.status()), 60,
                   "every prospect replied")
    finally:
        assert terminate(proc) == 0, wd.log()
    # One watcher thread and a bounded pool for database work (its threads start as they
    # are needed, so at most DB_THREADS more than with one mailbox); a thread per mailbox
    # (the old layout) would be 15 more, and each loop's own executor more still.
    assert threads <= one + DB_THREADS, (one, threads)
    assert "Traceback" not in wd.log()

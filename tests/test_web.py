"""`sequencer serve` over real HTTP (issue 8, point 4): the link in a delivered email, POSTed,
halts and suppresses before the next step; GET never unsubscribes; forged, altered, swapped
and replayed tokens change nothing; every email carries both headers.

The engine runs in-process with an injected clock (real scheduler, real sender, the aiosmtpd
ledger); `sequencer serve` runs as its own process on a free loopback port, over the same
database, and is driven with urllib.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from sequencer.core.unsubscribe import Tokens
from sequencer.mail.watching import Inbound
from sequencer.store.schema import enrollments, events, inbound, suppressions
from sequencer.usecases import receiving
from sequencer.usecases.importing import run_enroll
from tests.fixtures.smtp import Delivery, SmtpServer, free_port
from tests.harness import Engine
from tests.workdir import THREE_STEPS, Workdir, make_workdir, prospects_csv, wait_until

KEY = "unsubscribe-signing-key-for-tests-0123456789"
THANK_YOU = ("Subject: Thanks, {{ first_name }}\n\nHi {{ first_name }}, thanks!\n\n--\n"
             "Not interested? {{ unsubscribe_url }}\n")


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]


def http(url: str, data: bytes | None = None, *, method: str | None = None,
         content_type: str = "application/x-www-form-urlencoded") -> Reply:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, response.read().decode(),
                         {k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read().decode(), {k.lower(): v for k, v in err.headers.items()})


def one_click(url: str) -> Reply:
    return http(url, b"List-Unsubscribe=One-Click")


def unsubscribe_uris(delivery: Delivery) -> tuple[list[str], str | None]:
    """(the List-Unsubscribe URIs, the List-Unsubscribe-Post value), read with the stdlib."""
    message = BytesParser(policy=policy.default).parsebytes(delivery.raw)
    header = message["List-Unsubscribe"]
    uris = [] if header is None else re.findall(r"<([^<>]*)>", str(header))
    post = message["List-Unsubscribe-Post"]
    return uris, None if post is None else str(post)


def web_link(delivery: Delivery) -> str:
    uris, _ = unsubscribe_uris(delivery)
    return next(uri for uri in uris if uri.startswith("http"))


@dataclass
class Site:
    wd: Workdir
    engine: Engine
    port: int
    proc: subprocess.Popen[bytes]

    def state(self, email: str, sequence: str = "three") -> str:
        with self.engine.app.store.read() as conn:
            return str(conn.scalar(select(enrollments.c.state).where(
                enrollments.c.email == email, enrollments.c.sequence == sequence)))

    def suppressed(self) -> set[str]:
        with self.engine.app.store.read() as conn:
            return set(conn.scalars(select(suppressions.c.email)).all())

    def snapshot(self) -> tuple[object, ...]:
        """Everything an unsubscribe could change."""
        with self.engine.app.store.read() as conn:
            return (
                sorted(conn.execute(select(enrollments.c.email, enrollments.c.sequence,
                                           enrollments.c.state, enrollments.c.next_due)).all()),
                sorted(conn.execute(select(suppressions.c.email)).all()),
                conn.scalar(select(func.count()).select_from(events)),
                conn.scalar(select(func.count()).select_from(inbound)),
            )

    def unsubscribed_events(self) -> list[tuple[str, str]]:
        with self.engine.app.store.read() as conn:
            return [(r.email, r.detail) for r in conn.execute(
                select(events.c.email, events.c.detail)
                .where(events.c.event == "unsubscribed"))]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sequencer serve exited {proc.returncode}:\n"
                                 f"{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"sequencer serve did not listen on {port}:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def make_site(tmp_path: Path, smtp_port: int, policy_line: str = "list_unsubscribe: always\n",
              emails: tuple[str, ...] = ("ann@example.com", "bo@example.com")
              ) -> Iterator[Site]:
    port = free_port()
    wd = make_workdir(
        tmp_path, smtp_port,
        extra=f"unsubscribe_url: http://127.0.0.1:{port}/u/{{token}}\nsecret_env: UNSUB_KEY\n"
        "max_active_sequences: 2\n",  # ann is in two sequences
        sequence=policy_line + THREE_STEPS.format(name="three", wait2="1d", wait3="1d"))
    wd.env["UNSUB_KEY"] = KEY
    wd.write("templates/thank_you.txt.j2", THANK_YOU)
    wd.write("sequences/other.yaml", policy_line + "name: other\nmailbox: sales\nsteps:\n"
             "  - {name: later, template: new_info, wait: 3d}\n")
    engine = Engine(wd)
    proc = wd.start("serve", "--port", str(port), log="serve.log")
    try:
        run_enroll(engine.app, "three", prospects_csv(wd, list(emails)), progress=False)
        run_enroll(engine.app, "other", prospects_csv(wd, ["ann@example.com"], "o.csv"),
                   progress=False)
        _wait_for_port(port, proc, wd.path / "serve.log")
        yield Site(wd, engine, port, proc)
    finally:
        code = _stop(proc)
        engine.close()
    assert code == 0, wd.log("serve.log")


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    yield from make_site(tmp_path, smtp_server.port)


def by_rcpt(deliveries: list[Delivery], email: str) -> list[Delivery]:
    return [d for d in deliveries if d.rcpt_tos == [email]]


def test_the_link_in_the_delivered_email_posted_halts_and_suppresses_before_the_next_step(
    site: Site, smtp_server: SmtpServer
) -> None:
    assert site.engine.step() == 2
    ann = by_rcpt(smtp_server.wait_for(2), "ann@example.com")[0]

    reply = one_click(web_link(ann))

    assert reply.status == 200 and "You are unsubscribed" in reply.body
    assert site.state("ann@example.com") == "unsubscribed"
    assert site.state("ann@example.com", "other") == "unsubscribed", "suppression halts all"
    assert site.suppressed() == {"ann@example.com"}
    assert site.unsubscribed_events() == [("ann@example.com", "unsubscribe link: "
                                           "one-click POST")]
    wait_until(lambda: "⊘ unsubscribed" in site.wd.log("serve.log"), 5, "the log line")
    assert "ann@example.com" in site.wd.log("serve.log")

    site.engine.clock.advance(days=4)  # every later step of both sequences is due
    site.engine.step()
    site.engine.clock.advance(days=2)
    site.engine.step()
    assert len(by_rcpt(smtp_server.deliveries, "ann@example.com")) == 1, "nothing after it"
    assert len(by_rcpt(smtp_server.deliveries, "bo@example.com")) == 3, "bo goes on"
    assert site.state("bo@example.com") == "completed"


def test_every_email_carries_both_headers_and_its_own_link_in_the_body(
    site: Site, smtp_server: SmtpServer
) -> None:
    for _ in range(3):
        site.engine.step()
        site.engine.clock.advance(days=4)
    deliveries = smtp_server.deliveries
    assert len(deliveries) == 7  # 3 + 3 in "three", 1 in "other"
    links = set()
    for delivery in deliveries:
        uris, post = unsubscribe_uris(delivery)
        assert len(uris) == 2 and post == "List-Unsubscribe=One-Click"
        web, mail = uris
        parts = urlsplit(web)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", site.port)
        assert re.fullmatch(r"/u/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}", parts.path)
        mail_parts = urlsplit(mail)
        assert mail_parts.scheme == "mailto"
        assert parseaddr(mail_parts.path)[1] == "dana@example.com"
        assert parse_qs(mail_parts.query) == {"subject": ["unsubscribe"]}
        links.add(web)
        message = delivery.message
        if message["Subject"].startswith("Thanks"):
            assert web in message.get_content(), "unsubscribe_url is this email's link"
    assert len(links) == 7, "each email has its own token"


def test_get_shows_a_button_and_never_unsubscribes_then_the_button_does(
    site: Site, smtp_server: SmtpServer
) -> None:
    site.engine.step()
    url = web_link(by_rcpt(smtp_server.wait_for(2), "bo@example.com")[0])
    before = site.snapshot()

    page = http(url)
    head = http(url, method="HEAD")

    assert page.status == 200 and head.status == 200
    assert '<form method="post">' in page.body and "<button" in page.body
    assert 'name="List-Unsubscribe" value="One-Click"' in page.body
    assert "Dana Reyes" in page.body
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert site.snapshot() == before, "a GET (a link scanner) changes nothing"

    pressed = http(url, b"List-Unsubscribe=One-Click&via=page")

    assert pressed.status == 200
    assert site.state("bo@example.com") == "unsubscribed"
    assert site.unsubscribed_events() == [("bo@example.com", "unsubscribe link: "
                                           "unsubscribe page")]
    again = http(url)
    assert again.status == 200 and "You are unsubscribed" in again.body
    assert "<form" not in again.body


def test_forged_altered_and_swapped_tokens_get_404_and_change_nothing(
    site: Site, smtp_server: SmtpServer
) -> None:
    site.engine.step()
    deliveries = smtp_server.wait_for(2)
    ann = web_link(by_rcpt(deliveries, "ann@example.com")[0])
    bo = web_link(by_rcpt(deliveries, "bo@example.com")[0])
    base, ann_token = ann.rsplit("/", 1)
    bo_token = bo.rsplit("/", 1)[1]
    ann_mid = by_rcpt(deliveries, "ann@example.com")[0].message["Message-ID"]
    with site.engine.app.store.read() as conn:
        ann_id = conn.scalar(select(enrollments.c.id).where(
            enrollments.c.email == "ann@example.com", enrollments.c.sequence == "three"))
    assert ann_id is not None
    # Flip the signature's first character: every bit of it counts, whereas the last
    # base64 character carries padding bits, so some flips of it decode to the same bytes.
    message, signature = ann_token.rsplit(".", 1)
    flipped = message + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = {
        "garbage": "not-a-token",
        "altered signature": flipped,
        "altered message": "Q" + ann_token[1:],
        "swapped: ann's message, bo's signature": (ann_token.split(".")[0] + "."
                                                   + bo_token.split(".")[1]),
        "signed with another key": Tokens(["x" * 40]).issue(
            message_id=ann_mid, enrollment_id=ann_id, email="ann@example.com"),
        "ann's message signed for another enrollment": Tokens([KEY]).issue(
            message_id=ann_mid, enrollment_id=ann_id + 1, email="ann@example.com"),
        "a message we never sent": Tokens([KEY]).issue(
            message_id="<0000feed@example.com>", enrollment_id=ann_id,
            email="ann@example.com"),
    }
    before = site.snapshot()
    for what, token in forged.items():
        for reply in (one_click(f"{base}/{token}"), http(f"{base}/{token}")):
            assert reply.status == 404, what
            assert "not valid" in reply.body, what
    assert http(f"http://127.0.0.1:{site.port}/elsewhere").status == 404
    assert site.snapshot() == before
    assert site.state("ann@example.com") == "active"


def test_a_replayed_post_is_answered_as_done_and_changes_nothing(
    site: Site, smtp_server: SmtpServer
) -> None:
    site.engine.step()
    url = web_link(by_rcpt(smtp_server.wait_for(2), "ann@example.com")[0])
    assert one_click(url).status == 200
    after_first = site.snapshot()

    replays = [one_click(url) for _ in range(3)]

    assert all(r.status == 200 and "You are unsubscribed" in r.body for r in replays)
    assert site.snapshot() == after_first
    assert len(site.unsubscribed_events()) == 1
    wait_until(lambda: "used again" in site.wd.log("serve.log"), 5, "the replay's log line")


def test_a_post_without_the_one_click_body_is_refused_and_multipart_is_accepted(
    site: Site, smtp_server: SmtpServer
) -> None:
    site.engine.step()
    url = web_link(by_rcpt(smtp_server.wait_for(2), "ann@example.com")[0])
    before = site.snapshot()
    assert http(url, b"", method="POST").status == 400
    assert http(url, b"List-Unsubscribe=Maybe").status == 400
    assert http(url, b"List-Unsubscribe=One-Click", content_type="text/plain").status == 400
    assert http(url, b"x=" + b"a" * 5000).status == 413
    assert site.snapshot() == before

    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
            f"One-Click\r\n--{boundary}--\r\n").encode()
    reply = http(url, body, content_type=f"multipart/form-data; boundary={boundary}")

    assert reply.status == 200
    assert site.state("ann@example.com") == "unsubscribed"


@pytest.mark.parametrize("policy_line", ["list_unsubscribe: never\n", ""])
def test_without_list_headers_the_body_link_and_a_stop_reply_still_unsubscribe(
    tmp_path: Path, smtp_server: SmtpServer, policy_line: str
) -> None:
    # "" is the default, auto: 200 a day from one mailbox is far from a bulk sender.
    for site in make_site(tmp_path, smtp_server.port, policy_line):
        site.engine.step()
        deliveries = smtp_server.wait_for(2)
        for delivery in deliveries:
            assert unsubscribe_uris(delivery) == ([], None)
            assert not any(k.lower().startswith("list-") for k in delivery.message)
        ann, bo = (by_rcpt(deliveries, e)[0] for e in ("ann@example.com", "bo@example.com"))
        body_link = re.search(r"http://\S+", ann.message.get_content())
        assert body_link is not None
        assert one_click(body_link.group()).status == 200
        assert site.state("ann@example.com") == "unsubscribed"

        stop = (f"From: <bo@example.com>\r\nTo: {bo.message['From']}\r\n"
                f"Subject: Re: {bo.message['Subject']}\r\nMessage-ID: <stop-1@example.com>\r\n"
                f"In-Reply-To: {bo.message['Message-ID']}\r\n\r\nstop\r\n").encode()
        record = receiving.handle(site.engine.app, "sales", Inbound(uid=1, raw=stop))
        assert record is not None and record.event.value == "unsubscribed"
        assert site.suppressed() == {"ann@example.com", "bo@example.com"}


def test_serve_needs_an_unsubscribe_url(tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    result = wd.cli("serve", "--port", str(free_port()))
    assert result.returncode == 1
    assert "serve needs unsubscribe_url and secret_env" in result.stderr

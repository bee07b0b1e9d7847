"""The inbound classifier: real bounces (K1), out-of-office (K2), Outlook replies (K3),
unsubscribe by reply (K4) and hostile mail (W6)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sequencer.core.classify import Kind, Verdict, classify, new_text, return_date

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "sisimai"
DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)  # a Thursday
OWN = frozenset({"dana@example.com"})

# Bounces in the corpus that are soft, each checked by hand against the notice: the
# delivery is only delayed (``Action: delayed``, "has not yet been delivered"), the
# decisive status is 4.x.x or a 4xx reply, or the queue gave up after retrying a
# temporary failure. Every other bounce in the corpus is a permanent (5.x.x) failure.
SOFT = frozenset({
    "lhost-amazonses-17.eml", "lhost-amazonworkmail-05.eml", "lhost-amazonworkmail-07.eml",
    "lhost-exchange2007-05.eml", "lhost-exim-07.eml", "lhost-exim-41.eml", "lhost-gmail-09.eml",
    "lhost-gmail-17.eml", "lhost-messagingserver-07.eml", "lhost-mfilter-05.eml",
    "lhost-opensmtpd-05.eml", "lhost-opensmtpd-13.eml", "lhost-opensmtpd-15.eml",
    "lhost-outlook-07.eml", "lhost-postfix-05.eml", "lhost-postfix-09.eml",
    "lhost-postfix-15.eml", "lhost-postfix-37.eml", "lhost-postfix-43.eml",
    "lhost-postfix-45.eml", "lhost-postfix-49.eml", "lhost-postfix-75.eml",
    "lhost-qmail-05.eml", "lhost-qmail-07.eml", "lhost-qmail-19.eml",
    "lhost-receivingses-03.eml", "lhost-sendgrid-03.eml", "lhost-sendmail-11.eml",
    "lhost-sendmail-21.eml", "lhost-sendmail-29.eml", "lhost-sendmail-39.eml",
    "lhost-sendmail-55.eml", "lhost-v5sendmail-01.eml", "lhost-x2-03.eml", "lhost-x2-05.eml",
    "lhost-yandex-03.eml", "rfc3464-07.eml", "rfc3464-09.eml", "rfc3464-43.eml",
    "rfc3464-53.eml", "rfc3464-55.eml", "rfc3464-59.eml", "rhost-cloudflare-01.eml",
    "rhost-franceptt-07.eml", "rhost-franceptt-11.eml", "rhost-gsuite-03.eml",
    "rhost-gsuite-05.eml", "rhost-gsuite-07.eml", "rhost-gsuite-13.eml", "rhost-gsuite-15.eml",
    "rhost-microsoft-05.eml", "rhost-outlook-07.eml"
})


def category(name: str) -> str:
    return "bounce" if name.startswith(("lhost-", "rhost-", "rfc3464-")) else name.split("-")[0]


def right(name: str, verdict: Verdict) -> bool:
    """Is this what the corpus README says the file is?"""
    kind = category(name)
    if kind == "bounce":
        expected = "soft" if name in SOFT else "hard"
        return verdict.kind is Kind.BOUNCE and verdict.bounce == expected
    if kind == "arf":
        return verdict.kind is Kind.COMPLAINT
    if kind == "rfc3834":
        return verdict.kind is Kind.AUTO_REPLY
    return verdict.kind is not Kind.BOUNCE


@pytest.fixture(scope="module")
def corpus() -> dict[str, tuple[bytes, Verdict]]:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) > 300, f"corpus not found at {CORPUS}"
    return {f.name: (raw := f.read_bytes(), classify(raw)) for f in files}


def mail(headers: str, body: str = "Hello\n") -> bytes:
    return (headers.strip() + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")


def reply_with(body: str, subject: str = "Re: Thanks for stopping by") -> Verdict:
    return classify(mail(f"From: Sam <sam@prospect.example>\nSubject: {subject}", body),
                    own_addresses=OWN, now=NOW)


# --- K1: the corpus ---------------------------------------------------------------------


def test_corpus_share_classified_right_is_at_least_95_percent(corpus, capsys):
    total: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for name, (_, verdict) in corpus.items():
        total[category(name)] += 1
        good[category(name)] += right(name, verdict)
    with capsys.disabled():
        print()
        for kind in sorted(total):
            print(f"classify {kind:>10}: {good[kind]}/{total[kind]} right")
        share = sum(good.values()) / sum(total.values())
        print(f"classify    overall: {sum(good.values())}/{sum(total.values())} = {share:.1%}")
    assert share >= 0.95


def test_every_corpus_bounce_is_hard_or_soft_as_its_notice_says(corpus):
    wrong = [(name, verdict.bounce) for name, (_, verdict) in corpus.items()
             if verdict.kind is Kind.BOUNCE
             and verdict.bounce != ("soft" if name in SOFT else "hard")]
    assert wrong == []


def test_a_delayed_notice_is_never_a_hard_bounce(corpus):
    delayed = 0
    for name, (raw, verdict) in corpus.items():
        actions = re.findall(rb"(?im)^Action:\s*(\w+)", raw)
        if actions and all(action.lower() == b"delayed" for action in actions):
            delayed += 1
            assert (verdict.kind, verdict.bounce) == (Kind.BOUNCE, "soft"), name
    assert delayed >= 5


def test_a_delayed_dsn_with_a_5xx_status_is_still_soft():
    raw = DSN.format(action="delayed", status="5.0.0").encode()
    assert classify(raw).bounce == "soft"


def test_no_corpus_bounce_is_missed_but_the_three_that_are_not_bounces(corpus):
    missed = {name: verdict.kind for name, (_, verdict) in corpus.items()
              if category(name) == "bounce" and verdict.kind is not Kind.BOUNCE}
    # The SES "bounce" folder also holds a complaint and a delivery notification, and
    # fml's "Loop Alert" is a mailing-list server's note about a duplicate, not a bounce.
    assert missed == {"lhost-amazonses-11.eml": Kind.COMPLAINT,
                      "lhost-amazonses-13.eml": Kind.UNRELATED,
                      "lhost-fml-03.eml": Kind.UNRELATED}


def test_most_corpus_bounces_name_the_failed_recipient(corpus):
    bounces = [v for _, v in corpus.values() if v.kind is Kind.BOUNCE]
    named = [v for v in bounces if v.recipient and "@" in v.recipient]
    assert len(named) / len(bounces) >= 0.97


def test_postfix_dsn_gives_recipient_status_and_our_message_id(corpus):
    verdict = corpus["rhost-franceptt-11.eml"][1]
    assert verdict.recipient == "xxxx@laposte.net"
    assert verdict.reason == "RFC 3464 Action: failed, Status: 4.2.1"
    assert verdict.original_message_id is not None
    assert verdict.original_message_id.startswith("<1576577162.")


def test_arf_report_is_a_complaint_naming_the_recipient(corpus):
    verdict = corpus["arf-23.eml"][1]
    assert verdict.kind is Kind.COMPLAINT
    assert verdict.recipient == "kijitora@example.com"
    assert verdict.original_message_id == "<0000000000fffffffff0000000000000@example.com>"


def test_ses_json_bounce_is_read_from_the_notification(corpus):
    verdict = corpus["lhost-amazonses-09.eml"][1]
    assert (verdict.kind, verdict.bounce) == (Kind.BOUNCE, "hard")
    assert verdict.recipient == "bounce@simulator.amazonses.com"


SES = ('{{"notificationType":"{kind}","bounce":{{"bounceType":"Transient","bouncedRecipients":'
       '[{{"emailAddress":"Sam@Prospect.example"}}]}},"mail":{{"headers":[{{"name":"Message-ID",'
       '"value":"seq-1-step-1@example.com"}}]}}}}')


def test_ses_transient_bounce_is_soft_and_names_our_message():
    raw = mail("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message",
               SES.format(kind="Bounce"))
    verdict = classify(raw)
    assert (verdict.kind, verdict.bounce, verdict.recipient) == (
        Kind.BOUNCE, "soft", "sam@prospect.example")
    assert verdict.original_message_id == "<seq-1-step-1@example.com>"


@pytest.mark.parametrize(
    "body",
    ['{"notificationType": broken', '{"notificationType":"Unknown"}',
     '{"notificationType":"Complaint","complaint":[],"mail":[]}'],
)
def test_ses_notification_that_is_not_a_bounce_is_not_one(body):
    verdict = classify(mail("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification", body))
    assert verdict.kind in (Kind.REPLY, Kind.COMPLAINT)
    assert verdict.bounce is None


def test_vendor_notice_recipient_skips_mail_system_addresses():
    raw = mail("From: MAILER-DAEMON@mx.example.net\nSubject: failure notice",
               "From postmaster@mx.example.net: could not deliver to sam@prospect.example\n")
    assert classify(raw).recipient == "sam@prospect.example"


DSN = """From: MAILER-DAEMON@mx.example.net
To: dana@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery report.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; Sam@Prospect.example
Action: {action}
Status: {status}

--B
Content-Type: text/rfc822-headers

From: dana@example.com
Message-ID: <seq-1-step-1@example.com>

--B--
"""


def test_dsn_with_rfc822_headers_gives_our_message_id_and_lowercased_recipient():
    verdict = classify(DSN.format(action="failed", status="5.1.1").encode())
    assert (verdict.kind, verdict.bounce) == (Kind.BOUNCE, "hard")
    assert verdict.recipient == "sam@prospect.example"
    assert verdict.original_message_id == "<seq-1-step-1@example.com>"
    assert verdict.reason == "RFC 3464 Action: failed, Status: 5.1.1"


def test_dsn_that_reports_a_delivery_is_unrelated():
    verdict = classify(DSN.format(action="delivered", status="2.0.0").encode())
    assert verdict.kind is Kind.UNRELATED


@pytest.mark.parametrize(
    ("body", "severity"),
    [
        ("Delivery to the following recipient has been delayed:\n  sam@prospect.example\n", "soft"),
        ("<sam@prospect.example>:\n550 5.1.1 User unknown\n", "hard"),
        ("<sam@prospect.example>: host said: 452 mailbox full\n", "soft"),
        ("<sam@prospect.example>: message expired\n", "soft"),
        ("<sam@prospect.example>: it did not work\n", "hard"),
        ("Final-Recipient: rfc822; sam@prospect.example\nAction: failed\n"
         "Diagnostic-Code: smtp; 421 try later\n", "soft"),
        ("Final-Recipient: rfc822; sam@prospect.example\nAction: failed\n"
         "Diagnostic-Code: smtp; user unknown\n", "hard"),
    ],
)
def test_vendor_notice_is_hard_or_soft_by_its_words(body, severity):
    raw = mail("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
               "Subject: Mail delivery failed", body)
    verdict = classify(raw)
    assert (verdict.kind, verdict.bounce, verdict.recipient) == (
        Kind.BOUNCE, severity, "sam@prospect.example")


@pytest.mark.parametrize("subject", ["Re: Delivery failure", "Delivery failure on order 12"])
def test_person_writing_about_a_delivery_failure_is_a_reply(subject):
    verdict = reply_with("The parcel could not be delivered: 550 boxes!", subject)
    assert verdict.kind is Kind.REPLY


def test_failure_subject_with_a_null_return_path_is_a_bounce():
    raw = mail("Return-Path: <>\nFrom: mail@mx.example.net\nSubject: Delivery failure",
               "sam@prospect.example: no such mailbox\n")
    verdict = classify(raw)
    assert (verdict.kind, verdict.bounce, verdict.recipient) == (
        Kind.BOUNCE, "hard", "sam@prospect.example")


# --- replies (K3) and auto-replies (K2) -------------------------------------------------


@pytest.mark.parametrize("path", sorted((DATA / "replies").glob("*.eml")), ids=lambda p: p.name)
def test_human_reply_sample_is_a_reply(path):
    verdict = classify(path.read_bytes(), own_addresses=OWN, now=NOW)
    assert (verdict.kind, verdict.reason) == (Kind.REPLY, "human reply")
    assert verdict.sender is not None and verdict.sender == verdict.sender.lower()
    assert verdict.references and verdict.references[0].startswith("<seq-")


def test_there_are_at_least_eight_reply_samples():
    assert len(list((DATA / "replies").glob("*.eml"))) >= 8


def test_outlook_reply_with_x_auto_response_suppress_is_a_reply():
    verdict = classify((DATA / "replies" / "outlook_suppress.eml").read_bytes(), now=NOW)
    assert verdict.kind is Kind.REPLY
    assert verdict.sender == "kate.obrien@corp.example"
    assert verdict.message_id == "<DM6PR11MB4321ABCDEF@DM6PR11MB4321.namprd11.prod.outlook.com>"


AUTO_REPLIES = {
    "gmail_vacation.eml": date(2025, 12, 1),
    "outlook_automatic_reply.eml": date(2025, 12, 1),
    "outlook_no_rfc3834.eml": date(2025, 12, 1),
    "exchange_out_of_office.eml": date(2026, 1, 5),
    "german_abwesenheitsnotiz.eml": date(2025, 12, 15),
    "french_reponse_automatique.eml": date(2025, 12, 3),
    "precedence_auto_reply.eml": date(2026, 1, 9),
    "x_autoreply_no_date.eml": None,
}


@pytest.mark.parametrize(("name", "back"), sorted(AUTO_REPLIES.items()))
def test_out_of_office_sample_is_an_auto_reply_with_its_return_date(name, back):
    verdict = classify((DATA / "autoreplies" / name).read_bytes(), own_addresses=OWN, now=NOW)
    assert verdict.kind is Kind.AUTO_REPLY
    assert verdict.return_date == back


def test_every_auto_reply_sample_is_checked():
    assert {p.name for p in (DATA / "autoreplies").glob("*.eml")} == set(AUTO_REPLIES)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("X-Autorespond: yes", "X-Autorespond header"),
        ("Precedence: junk", "Precedence: junk"),
        ("Subject: Abwesenheitsnotiz", "out-of-office subject 'Abwesenheitsnotiz'"),
    ],
)
def test_auto_reply_markers(headers, reason):
    verdict = classify(mail(f"From: sam@prospect.example\n{headers}", "Away.\n"), now=NOW)
    assert (verdict.kind, verdict.reason) == (Kind.AUTO_REPLY, reason)


@pytest.mark.parametrize(
    "subject", ["Re: Vacation plans", "Re: Out of office next week?", "Re: Away from desk"])
def test_reply_whose_subject_mentions_absence_is_still_a_reply(subject):
    assert reply_with("Let's meet after that.", subject).kind is Kind.REPLY


def test_auto_submitted_no_is_not_an_auto_reply():
    verdict = classify(mail("From: sam@prospect.example\nAuto-Submitted: no", "Sure.\n"))
    assert verdict.kind is Kind.REPLY


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I'll be back on 2026-12-01.", date(2026, 12, 1)),
        ("I will return on December 1.", date(2025, 12, 1)),
        ("Out of the office until 1 December 2026.", date(2026, 12, 1)),
        ("Returning Monday, Dec 1st, 2025", date(2025, 12, 1)),
        ("Back on January 5", date(2026, 1, 5)),          # next year: it has passed
        ("Back on November 2", date(2025, 11, 2)),        # recently: a stale notice
        ("Back Monday.", date(2025, 11, 24)),
        ("Back tomorrow.", date(2025, 11, 21)),
        ("Ab 02.12.2025 wieder zurück, bis 1.12. nicht da", date(2025, 12, 1)),
        ("Estaré fuera hasta el 9 de enero de 2026.", date(2026, 1, 9)),
        ("Back on February 30.", None),
        ("I am away with no date.", None),
        ("I'll be back. On December 1 I start.", None),
    ],
)
def test_return_date_is_read_from_the_text(text, back):
    assert return_date(text, NOW) == back


def test_return_date_without_a_year_needs_now():
    assert return_date("back on December 1", None) is None
    assert return_date("back Monday", None) is None
    assert return_date("back on 2026-12-01", None) == date(2026, 12, 1)
    assert return_date("zurück am 01.12.26", None) == date(2026, 12, 1)


# --- unsubscribe by reply (K4) ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "unsubscribe",
        "Please remove me from your list.\n\nThanks",
        "STOP",
        "Stop.\n\nSent from my iPhone",
        "Hi, take me off your list please.",
        "I'd like to opt out of these emails.",
        "Bitte abmelden.",
        "Merci de me désinscrire.",
        "Por favor, darme de baja.",
    ],
)
def test_unsubscribe_request_in_the_new_text_is_an_unsubscribe(body):
    assert reply_with(body + "\n\nOn Mon, Dec 1, 2025 Dana <dana@example.com> wrote:\n> Hi\n"
                      ).kind is Kind.UNSUBSCRIBE


def test_unsubscribe_in_the_subject_is_an_unsubscribe():
    assert reply_with("", subject="Re: UNSUBSCRIBE").kind is Kind.UNSUBSCRIBE


@pytest.mark.parametrize(
    "body",
    [
        "Sounds good.\n\n> Unsubscribe: https://example.com/u/1\n",
        "Sounds good.\n\nOn Mon, Dec 1, 2025 Dana <dana@example.com> wrote:\nunsubscribe here\n",
        "Sounds good.\n\n-----Original Message-----\nTo stop these, unsubscribe.\n",
        "Sounds good.\n\nFrom: Dana Reyes\nSent: Monday\nPlease remove me? Click unsubscribe.\n",
        "Sounds good.\nTo unsubscribe visit https://example.com/u/1\n",
        "Sounds good.\n-- \nSam | unsubscribe from our newsletter at our site\n",
        "I'll stop by the booth tomorrow.",
        "Please remove the second seat from the quote.",
    ],
)
def test_reply_that_only_quotes_our_unsubscribe_footer_is_a_reply(body):
    assert reply_with(body).kind is Kind.REPLY


def test_new_text_drops_quoted_history():
    body = "Yes.\n\nOn Mon, Dec 1, 2025 at 10:00 Dana <dana@example.com>\nwrote:\n> old\n"
    assert new_text(body) == "Yes."


# --- what is not a reply ----------------------------------------------------------------


def test_our_own_sent_mail_is_unrelated_whatever_the_case_of_the_address():
    raw = mail("From: Dana Reyes <Dana@Example.com>\nSubject: Re: hello", "unsubscribe\n")
    verdict = classify(raw, own_addresses=frozenset({"DANA@example.com"}))
    assert (verdict.kind, verdict.reason) == (Kind.UNRELATED, "from our own address")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("List-Id: <sales.lists.example>", "mailing list (List-Id)"),
        ("Precedence: list", "mailing list (Precedence: list)"),
        ("List-Unsubscribe: <https://news.example/u>\nPrecedence: bulk",
         "newsletter (List-Unsubscribe)"),
    ],
)
def test_mailing_lists_and_newsletters_are_unrelated(headers, reason):
    verdict = classify(mail(f"From: news@vendor.example\n{headers}\nSubject: Weekly news"))
    assert (verdict.kind, verdict.reason) == (Kind.UNRELATED, reason)


def test_message_without_a_sender_is_unrelated():
    assert classify(mail("Subject: who?")).reason == "no sender address"


def test_verdict_as_dict_is_json_ready():
    verdict = classify((DATA / "autoreplies" / "gmail_vacation.eml").read_bytes(), now=NOW)
    data = json.loads(json.dumps(verdict.as_dict("gmail_vacation.eml")))
    assert data["file"] == "gmail_vacation.eml"
    assert (data["kind"], data["return_date"]) == ("auto_reply", "2025-12-01")
    bounce = classify(DSN.format(action="failed", status="5.1.1").encode()).as_dict()
    assert (bounce["kind"], bounce["bounce"], bounce["recipient"]) == (
        "bounce", "hard", "sam@prospect.example")
    assert bounce["file"] is None and "reason" in bounce


# --- W6: hostile input ------------------------------------------------------------------

HEAD = b"From: a@b.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"


def _huge() -> bytes:
    return HEAD + b"Content-Type: text/plain\r\n\r\n" + (b"x" * 76 + b"\r\n") * 270_000


def _many_parts() -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                     for i in range(5000))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"


def _deep_parts() -> bytes:
    nest = b"".join(b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1)
                    for i in range(5000))
    return HEAD + b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n" + nest


def _encoded_words() -> bytes:
    words = b"\r\n ".join(b"=?utf-8?q?=C3=A9t=C3=A9?=" for _ in range(20_000))
    return b"From: " + words + b" <a@b.example>\r\nSubject: " + words + b"\r\n\r\nbody\r\n"


def _bad_charsets() -> bytes:
    return (b"From: =?x-nope?q?=FF?= <a@b.example>\r\nSubject: =?utf-7?b?////?= \xff\xfe\r\n"
            b"Content-Type: text/plain; charset=x-no-such\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nhell=F6 =?x?\r\n")


def _truncated_mime() -> bytes:
    return HEAD + (b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y")


def _tiny_parts() -> bytes:
    parts = b"--B\r\n\r\nx\r\n" * 500_000
    return HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts


def _dsn_blocks() -> bytes:
    blocks = b"".join(b"Final-Recipient: rfc822; x%d@y.example\r\nAction: failed\r\n"
                      b"Status: 5.1.1\r\n\r\n" % i for i in range(100_000))
    return (HEAD + b"Content-Type: multipart/report; report-type=delivery-status; boundary=B"
            b"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n" + blocks + b"--B--\r\n")


def _many_headers() -> bytes:
    return b"".join(b"X-H%d: v\r\n" % i for i in range(300_000)) + HEAD + b"\r\nbody"


@pytest.mark.parametrize(
    "make",
    [_huge, _many_parts, _deep_parts, _encoded_words, _bad_charsets, _truncated_mime,
     _tiny_parts, _dsn_blocks, _many_headers, lambda: b"", lambda: bytes(range(256)) * 64],
    ids=["20MB", "5000-parts", "5000-deep", "encoded-words", "bad-charsets", "truncated-mime",
         "500k-tiny-parts", "100k-dsn-blocks", "300k-headers", "empty", "binary"],
)
def test_hostile_message_comes_back_quickly_with_a_verdict(make):
    raw = make()
    started = time.perf_counter()
    verdict = classify(raw, own_addresses=OWN, now=NOW)
    elapsed = time.perf_counter() - started
    assert isinstance(verdict, Verdict) and verdict.reason
    assert elapsed < 5.0


def test_hostile_message_that_breaks_the_parser_is_unrelated_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="sequencer.core.classify"):
        verdict = classify(_deep_parts())
    assert (verdict.kind, verdict.reason) == (Kind.UNRELATED, "unparseable: RecursionError")
    assert "unparseable inbound message" in caplog.text


def test_input_is_cut_at_max_bytes():
    raw = mail("From: sam@prospect.example", "Thanks!\n" + "x" * 5000 + "\nunsubscribe\n")
    assert classify(raw).kind is Kind.UNSUBSCRIBE
    assert classify(raw, max_bytes=200).kind is Kind.REPLY


def test_charset_damage_does_not_stop_a_reply_being_read():
    verdict = classify(_bad_charsets(), now=NOW)
    assert (verdict.kind, verdict.sender) == (Kind.REPLY, "a@b.example")

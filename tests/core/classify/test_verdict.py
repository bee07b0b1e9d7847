"""The order of the rules and what every verdict carries: human replies from the major
clients (K3), our own mail, lists and newsletters, the JSON form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sequencer.core.classify import Kind, classify
from tests.core.classify.mails import NOW, OWN, dsn, mail, read

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("path", sorted((DATA / "replies").glob("*.eml")), ids=lambda p: p.name)
def test_human_reply_sample_is_a_reply(path: Path) -> None:
    verdict = classify(path.read_bytes(), own_addresses=OWN, now=NOW)
    assert (verdict.kind, verdict.reason) == (Kind.REPLY, "human reply")
    assert verdict.sender is not None and verdict.sender == verdict.sender.lower()
    assert verdict.references and verdict.references[0].startswith("<seq-")


def test_there_are_at_least_eight_reply_samples() -> None:
    assert len(list((DATA / "replies").glob("*.eml"))) >= 8


def test_outlook_reply_with_x_auto_response_suppress_is_a_reply() -> None:
    verdict = classify((DATA / "replies" / "outlook_suppress.eml").read_bytes(), now=NOW)
    assert verdict.kind is Kind.REPLY
    assert verdict.sender == "kate.obrien@corp.example"
    assert verdict.message_id == "<DM6PR11MB4321ABCDEF@DM6PR11MB4321.namprd11.prod.outlook.com>"


def test_our_own_sent_mail_is_unrelated_whatever_the_case_of_the_address() -> None:
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
def test_mailing_lists_and_newsletters_are_unrelated(headers: str, reason: str) -> None:
    verdict = read(mail(f"From: news@vendor.example\n{headers}\nSubject: Weekly news"))
    assert (verdict.kind, verdict.reason) == (Kind.UNRELATED, reason)


def test_message_without_a_sender_is_unrelated() -> None:
    assert read(mail("Subject: who?")).reason == "no sender address"


def test_verdict_as_dict_is_json_ready_and_carries_what_the_effect_side_needs() -> None:
    verdict = classify((DATA / "autoreplies" / "gmail_vacation.eml").read_bytes(), now=NOW)
    data = json.loads(json.dumps(verdict.as_dict("gmail_vacation.eml")))
    assert data["file"] == "gmail_vacation.eml"
    assert (data["kind"], data["subkind"], data["return_date"]) == (
        "auto_reply", "out_of_office", "2025-12-01")
    bounce = read(dsn()).as_dict()
    assert (bounce["kind"], bounce["subkind"], bounce["bounce"], bounce["cause"]) == (
        "bounce", "failure", "hard", "userunknown")
    assert (bounce["recipient"], bounce["original_message_id"], bounce["sender"]) == (
        "sam@prospect.example", "<seq-1-step-1@example.com>", "mailer-daemon@mx.example.net")
    assert bounce["file"] is None and bounce["reason"]

"""Amazon SES notifications through SNS: the JSON is parsed, inside the SNS envelope too."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sequencer.core.classify import Kind
from tests.core.classify.mails import mail, read
from tests.corpus import CORPUS

HEAD = "From: AWS Notifications <no-reply@sns.amazonaws.com>\nSubject: AWS Notification Message"


def ses(kind: str = "Bounce", **bounce: object) -> dict[str, object]:
    return {"notificationType": kind,
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": "Sam@Prospect.example",
                                              "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       **bounce},
            "complaint": {"complainedRecipients": [{"emailAddress": "Sam@Prospect.example"}],
                          "complaintFeedbackType": "abuse"},
            "mail": {"messageId": "0100018c", "headers": [
                {"name": "Message-ID", "value": "<seq-1-step-1@example.com>"}]}}


def in_sns(notification: dict[str, object]) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "5b2c", "TopicArn":
                       "arn:aws:sns:eu-west-1:123456789012:ses-bounces",
                       "Message": json.dumps(notification), "Timestamp": "2025-11-20T12:00:00Z"})


@pytest.mark.parametrize("wrap", [json.dumps, in_sns], ids=["email", "email-json"])
def test_a_permanent_ses_bounce_is_hard_by_its_diagnostic_and_names_our_message(
        wrap: Callable[[dict[str, object]], str]) -> None:
    verdict = read(mail(HEAD, wrap(ses())))
    assert (verdict.kind, verdict.bounce, verdict.cause, verdict.recipient) == (
        Kind.BOUNCE, "hard", "userunknown", "sam@prospect.example")
    assert verdict.original_message_id == "<seq-1-step-1@example.com>"
    assert "bounceType: Permanent/General" in verdict.reason


@pytest.mark.parametrize("wrap", [json.dumps, in_sns], ids=["email", "email-json"])
def test_a_transient_ses_bounce_is_soft(wrap: Callable[[dict[str, object]], str]) -> None:
    verdict = read(mail(HEAD, wrap(ses(bounceType="Transient", bounceSubType="MailboxFull"))))
    assert (verdict.kind, verdict.bounce) == (Kind.BOUNCE, "soft")


def test_a_permanent_bounce_for_a_blocked_sender_is_soft() -> None:
    notice = ses(bouncedRecipients=[{"emailAddress": "sam@prospect.example", "status": "5.7.1",
                                     "diagnosticCode": "smtp; 550 5.7.1 blocked using "
                                     "zen.spamhaus.org"}])
    verdict = read(mail(HEAD, in_sns(notice)))
    assert (verdict.bounce, verdict.cause) == ("soft", "blocked")


def test_an_ses_complaint_in_sns_is_a_complaint() -> None:
    verdict = read(mail(HEAD, in_sns(ses("Complaint"))))
    assert (verdict.kind, verdict.subkind, verdict.recipient) == (
        Kind.COMPLAINT, "ses_complaint", "sam@prospect.example")


def test_an_ses_delivery_is_a_success_report() -> None:
    verdict = read(mail(HEAD, in_sns(ses("Delivery"))))
    assert (verdict.kind, verdict.subkind) == (Kind.AUTO_REPLY, "delivery_success")


def test_the_corpus_ses_bounce_is_read_from_its_json() -> None:
    verdict = read((CORPUS / "sisimai" / "lhost-amazonses-09.eml").read_bytes())
    assert (verdict.kind, verdict.bounce) == (Kind.BOUNCE, "hard")
    assert verdict.recipient == "bounce@simulator.amazonses.com"


@pytest.mark.parametrize(
    "body",
    ['{"notificationType": broken', '{"notificationType":"Unknown"}',
     '{"notificationType":"Complaint","complaint":[],"mail":[]}',
     '{"Type":"Notification","Message":"not json"}'],
)
def test_a_notification_that_is_not_a_bounce_is_not_one(body: str) -> None:
    verdict = read(mail(HEAD, body))
    assert verdict.bounce is None

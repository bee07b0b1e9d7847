"""A person's own words (K3) and unsubscribe by reply (K4, T4)."""

from __future__ import annotations

import pytest

from sequencer.core.classify import Kind, new_text
from tests.core.classify.mails import reply_with

QUOTE = "\n\nOn Mon, Dec 1, 2025 Dana <dana@example.com> wrote:\n> Hi\n"


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
def test_unsubscribe_request_in_the_new_text_is_an_unsubscribe(body: str) -> None:
    assert reply_with(body + QUOTE).kind is Kind.UNSUBSCRIBE


def test_unsubscribe_in_the_subject_is_an_unsubscribe() -> None:
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
def test_reply_that_only_quotes_our_unsubscribe_footer_is_a_reply(body: str) -> None:
    assert reply_with(body).kind is Kind.REPLY


def test_new_text_drops_quoted_history() -> None:
    body = "Yes.\n\nOn Mon, Dec 1, 2025 at 10:00 Dana <dana@example.com>\nwrote:\n> old\n"
    assert new_text(body) == "Yes."


@pytest.mark.parametrize(
    "body",
    [
        "Please don't unsubscribe me, I want the next one too.",
        "Do not remove me from your list, this is useful.",
        "I didn't want to unsubscribe, it was my colleague.",
        "Please remove me from the cc, Jo handles this now.",
        "Take me off this thread please; Jo will answer.",
        "Can you remove me from the email chain? Thanks.",
        "Thanks, sounds good! From: Dana Reyes <dana@example.com> Sent: Monday, November 17, "
        "2025 10:00 To: Sam Subject: Thanks for stopping by Hi Sam, ... Not interested? Reply "
        '"unsubscribe" or visit https://example.com/u/1',
        "Great, talk Thursday. On Mon, Nov 17, 2025 at 10:00 AM Dana <dana@example.com> wrote: "
        'Not interested? Reply "unsubscribe" or visit https://example.com/u/1',
        'Not interested? Reply "unsubscribe" or visit https://example.com/u/1 -- kidding, '
        "send the pricing.",
    ],
)
def test_negated_cc_and_quoted_opt_outs_are_replies(body: str) -> None:
    assert reply_with(body).kind is Kind.REPLY


@pytest.mark.parametrize(
    "body",
    ["Please unsubscribe me.", "Not interested, remove me from your mailing list.",
     "Stop emailing me.", "Do not contact me again.", "No more emails please.",
     "How do I unsubscribe?", "Bitte tragen Sie mich aus.", "Désinscrivez-moi s'il vous plaît."],
)
def test_a_positive_request_is_an_unsubscribe(body: str) -> None:
    assert reply_with(body + QUOTE).kind is Kind.UNSUBSCRIBE


def test_a_newsletter_without_list_fields_is_not_an_unsubscribe_request() -> None:
    from tests.core.classify.mails import mail, read

    raw = mail("From: Vendor News <news@vendor.example>\nSubject: Our November news",
               "Hello!\n\nHere is what is new this month.\n\nView this email in your browser: "
               "https://vendor.example/v\nYou are receiving this email because you signed up.\n"
               "Unsubscribe\n")
    verdict = read(raw)
    assert verdict.kind is Kind.UNRELATED
    assert verdict.reason.startswith("newsletter without List-* fields")

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
def test_unsubscribe_request_in_the_new_text_is_an_unsubscribe(body):
    assert reply_with(body + QUOTE).kind is Kind.UNSUBSCRIBE


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

"""One control-character rule, one reply-prefix rule."""

from __future__ import annotations

import pytest

from sequencer.config import parse_sender
from sequencer.core.text import bare_subject, has_control


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\r", "\x1f", "\x7f", "\x85", "\u2028",
                                  "\u2029"])
def test_every_line_ending_and_c0_character_is_a_control_character(char: str) -> None:
    assert has_control(f"a{char}b")


@pytest.mark.parametrize("text", ["plain", "é ü ß", "日本語", "\u00a0nbsp", "emoji 🙂"])
def test_printable_text_has_no_control_character(text: str) -> None:
    assert not has_control(text)


def test_a_sender_with_a_unicode_line_separator_is_refused_like_any_control_character() -> None:
    with pytest.raises(ValueError, match="control characters"):
        parse_sender("Dana\u2028Bcc <dana@example.com>")


@pytest.mark.parametrize(("subject", "bare"), [
    ("Re: Hello", "Hello"),
    ("RE: re:  AW: Hello", "Hello"),
    ("Fwd: Re: Hello", "Hello"),
    ("WG: SV: TR: Hello", "Hello"),
    ("Regarding: Hello", "Regarding: Hello"),
    ("Hello: Re: world", "Hello: Re: world"),
])
def test_a_bare_subject_has_no_leading_reply_or_forward_prefixes(subject: str, bare: str) -> None:
    assert bare_subject(subject) == bare

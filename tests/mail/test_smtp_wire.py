"""The bytes after DATA: CRLF line endings, dot-stuffing and the final dot (RFC 5321 §4.5.2),
the same whether the message needed rewriting or took the already-CRLF fast path."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from sequencer.mail.smtp import _dot_terminated


def by_the_rules(data: bytes) -> bytes:
    wire = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", data)
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", wire) + b".\r\n"


@given(st.lists(st.sampled_from([b"a", b".", b"\r\n", b"\n", b"\r", b"..", b" "]),
                max_size=30).map(b"".join))
def test_dot_terminated_matches_the_rules_for_any_line_endings_and_dots(data: bytes) -> None:
    assert _dot_terminated(data) == by_the_rules(data)


def test_a_composed_crlf_message_is_sent_as_is_plus_the_final_dot() -> None:
    data = b"Subject: x\r\n\r\nline one\r\nline two\r\n"
    assert _dot_terminated(data) == data + b".\r\n"
    assert _dot_terminated(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"

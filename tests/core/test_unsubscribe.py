"""core.unsubscribe: signed link tokens bound to one message, the header policy, link paths."""

from __future__ import annotations

import pytest

from sequencer.core.unsubscribe import (
    BULK_SENDER_DAILY,
    InvalidToken,
    ListUnsubscribe,
    Tokens,
    link,
    link_pattern,
    mailto,
    wants_headers,
)

KEY = "a" * 40
OTHER_KEY = "b" * 40
MID = "<0f3c2a9e8b7d4c1a9e8b7d4c1a9e8b7d@example.com>"


def mint(tokens: Tokens, mid: str = MID, enrollment_id: int = 7,
         email: str = "ann@example.org") -> str:
    return tokens.issue(message_id=mid, enrollment_id=enrollment_id, email=email)


def test_a_token_checks_out_for_the_message_enrollment_and_address_it_was_minted_for() -> None:
    tokens = Tokens([KEY])
    ref = Tokens.read(mint(tokens))
    assert ref.message_id == MID
    assert tokens.valid(ref, enrollment_id=7, email="ann@example.org")
    assert tokens.valid(ref, enrollment_id=7, email="Ann@Example.org"), "addresses fold case"


def test_a_token_is_opaque_url_safe_and_carries_no_address() -> None:
    token = mint(Tokens([KEY]))
    assert "ann" not in token and "@" not in token and "example" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(("enrollment_id", "email"),
                         [(8, "ann@example.org"), (7, "bo@example.org")])
def test_a_token_does_not_check_out_for_another_enrollment_or_address(
    enrollment_id: int, email: str
) -> None:
    tokens = Tokens([KEY])
    ref = Tokens.read(mint(tokens))
    assert not tokens.valid(ref, enrollment_id=enrollment_id, email=email)


def test_swapping_message_and_signature_between_two_tokens_fails_both_ways() -> None:
    tokens = Tokens([KEY])
    other_mid = "<1111aaaa2222bbbb3333cccc4444dddd@example.com>"
    ann = mint(tokens)
    bo = mint(tokens, other_mid, 9, "bo@example.org")
    ann_part, ann_sig = ann.split(".")
    bo_part, bo_sig = bo.split(".")
    for forged, enrollment_id, email in ((f"{bo_part}.{ann_sig}", 9, "bo@example.org"),
                                         (f"{ann_part}.{bo_sig}", 7, "ann@example.org")):
        assert not tokens.valid(Tokens.read(forged), enrollment_id=enrollment_id, email=email)


def test_an_altered_signature_or_another_key_fails() -> None:
    tokens = Tokens([KEY])
    token = mint(tokens)
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not tokens.valid(Tokens.read(altered), enrollment_id=7, email="ann@example.org")
    foreign = mint(Tokens([OTHER_KEY]))
    assert not tokens.valid(Tokens.read(foreign), enrollment_id=7, email="ann@example.org")


def test_rotating_keys_keeps_old_links_valid_and_signs_with_the_newest() -> None:
    old = mint(Tokens([KEY]))
    rotated = Tokens([KEY, OTHER_KEY])
    assert rotated.valid(Tokens.read(old), enrollment_id=7, email="ann@example.org")
    assert mint(rotated) == mint(Tokens([OTHER_KEY]))


@pytest.mark.parametrize("token", [
    "", "nodot", ".sig", "abc.", "YWJj.short", "!!!!." + "A" * 43,
    "YWJjZGVm." + "A" * 43,  # decodes, but not to a Message-ID
    "a" * 5000 + "." + "A" * 43,
])
def test_a_malformed_token_is_refused_before_anything_is_looked_up(token: str) -> None:
    with pytest.raises(InvalidToken):
        Tokens.read(token)


def test_keys_must_be_long_and_never_show() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Tokens(["short"])
    with pytest.raises(ValueError):
        Tokens([])
    assert KEY not in repr(Tokens([KEY]))


@pytest.mark.parametrize(
    ("policy", "capacity", "expected"),
    [
        (ListUnsubscribe.ALWAYS, 1, True),
        (ListUnsubscribe.NEVER, 10 * BULK_SENDER_DAILY, False),
        (ListUnsubscribe.AUTO, 200, False),
        (ListUnsubscribe.AUTO, BULK_SENDER_DAILY - 1, False),
        (ListUnsubscribe.AUTO, BULK_SENDER_DAILY, True),
    ],
)
def test_the_header_policy(policy: ListUnsubscribe, capacity: int, expected: bool) -> None:
    assert wants_headers(policy, capacity) is expected


def test_links_and_mailto() -> None:
    assert link("https://x.example/u/{token}?l=1", "T.K") == "https://x.example/u/T.K?l=1"
    assert mailto("dana@example.com") == "mailto:dana@example.com?subject=unsubscribe"


@pytest.mark.parametrize(
    ("template", "path", "query", "token"),
    [
        ("https://x.example/u/{token}", "/u/abc.DEF-_", "", "abc.DEF-_"),
        ("https://x.example/u/{token}", "/u/abc", "utm=1", "abc"),
        ("https://x.example:8443/a/b/{token}/go", "/a/b/abc/go", "", "abc"),
        ("https://x.example?t={token}&l=2", "/", "t=abc&l=2", "abc"),
        ("https://x.example/u?t={token}", "/u", "t=abc", "abc"),
        ("https://x.example/u/{token}", "/u/abc/def", "", None),
        ("https://x.example/u/{token}", "/other/abc", "", None),
        ("https://x.example/u?t={token}", "/u", "t=abc&x=1", None),
    ],
)
def test_the_request_paths_a_template_reaches(
    template: str, path: str, query: str, token: str | None
) -> None:
    assert link_pattern(template).token(path, query) == token

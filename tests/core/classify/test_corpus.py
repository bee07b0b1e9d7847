"""Floors on the labelled real-world corpus (tests/data/corpus, K1): the share of kinds
right, hard/soft agreeing with the cited reference (sisimai's hard-bounce flags), and no
human reply read as anything else, on the mail the classifier was tuned on and, apart, on
the held-out mail it was not."""

from __future__ import annotations

import pytest

from tests.core.classify.scoring import Score, score
from tests.corpus import load

# The tune floors are the ones the contract promises. The held-out mail (never tuned on)
# holds the floors it reached when first measured, 90.6% of kinds and 80.6% hard/soft
# (149 messages, 72 bounces; docs/classifier.md): below the promise, kept honest rather than
# tuned up.
FLOORS = {"tune": (0.98, 0.95), "holdout": (0.90, 0.80)}
LEAST = {"tune": 300, "holdout": 1}


@pytest.fixture(scope="module")
def scores() -> dict[str, Score]:
    rows = load()
    return {name: score((r for r in rows if r.set == name), detailed=name == "tune")
            for name in FLOORS}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_kinds_hard_soft_and_human_replies_hold_their_floors(
        scores: dict[str, Score], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    found = scores[name]
    with capsys.disabled():
        print("\n" + found.line(name))
    kinds, severity = FLOORS[name]
    assert found.messages >= LEAST[name], f"{name}: only {found.messages} messages"
    assert found.kinds_share >= kinds, (found.line(name), found.wrong)
    assert found.severity_share >= severity, (found.line(name), found.wrong)
    assert found.replies_misread == 0, (found.line(name), found.wrong)

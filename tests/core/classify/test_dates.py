"""Return dates in out-of-office replies (K2, X8)."""

from __future__ import annotations

from datetime import date

import pytest

from sequencer.core.classify import return_date
from tests.core.classify.mails import NOW


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("I'll be back on 2026-02-01.", date(2026, 2, 1)),
        ("I will return on December 1.", date(2025, 12, 1)),
        ("Out of the office until 1 December 2025.", date(2025, 12, 1)),
        ("Returning Monday, Dec 1st, 2025", date(2025, 12, 1)),
        ("Back on January 5", date(2026, 1, 5)),          # next year: it has passed
        ("Back Monday.", date(2025, 11, 24)),
        ("Back tomorrow.", date(2025, 11, 21)),
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

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
def test_return_date_is_read_from_the_text(text: str, back: date | None) -> None:
    assert return_date(text, NOW) == back


def test_return_date_without_a_year_needs_now() -> None:
    assert return_date("back on December 1", None) is None
    assert return_date("back Monday", None) is None
    assert return_date("back on 2026-12-01", None) == date(2026, 12, 1)
    assert return_date("zurück am 01.12.26", None) == date(2026, 12, 1)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("Ab dem 10.12. bin ich wieder im Büro.", date(2025, 12, 10)),
        ("Ich bin bis einschließlich 30. November im Urlaub.", date(2025, 12, 1)),
        ("Ik ben terug op 7 december.", date(2025, 12, 7)),
        ("I am out of the office through 18 December.", date(2025, 12, 19)),
        ("Away until December 3 inclusive.", date(2025, 12, 4)),
        ("Ik ben afwezig tot en met 5 december.", date(2025, 12, 6)),
        ("Jag är ledig till och med 2 december.", date(2025, 12, 3)),
        ("Je suis absente jusqu'au 3 décembre inclus.", date(2025, 12, 4)),
        ("Sono in ferie fino al 4 dicembre.", date(2025, 12, 4)),
        ("Estou de férias até 5 de dezembro.", date(2025, 12, 5)),
        ("Olen lomalla 8.12. asti.", date(2025, 12, 8)),
        ("Jestem na urlopie do 9 grudnia.", date(2025, 12, 9)),
        ("Jsem na dovolené do 10. prosince.", date(2025, 12, 10)),
        ("Я в отпуске до 11 декабря.", date(2025, 12, 11)),
        ("Я у відпустці до 12 грудня.", date(2025, 12, 12)),
        ("Είμαι εκτός γραφείου έως 13 Δεκεμβρίου.", date(2025, 12, 13)),
        ("14 Aralık'a kadar izindeyim.", date(2025, 12, 14)),
        ("12月15日まで不在にしております。", date(2025, 12, 15)),
        ("我将于2025年12月16日回来。", date(2025, 12, 16)),
        ("12월 17일까지 휴가 중입니다.", date(2025, 12, 17)),
        ("Saya sedang cuti sampai 18 Desember.", date(2025, 12, 18)),
        ("Back on Mon., Dec. 1", date(2025, 12, 1)),
        ("I'm away from 24 November to 1 December.", date(2025, 12, 1)),
        ("Ich bin ab dem 1.12. im Urlaub.", None),          # the day the absence starts
        ("Back on 12/15.", date(2025, 12, 15)),
        ("Back on 2/12/2025.", date(2025, 12, 2)),          # 2 Dec or Feb 12: the earlier
        ("Back on November 2.", None),                      # in the past
        ("Back on 2025-11-02.", None),
        ("Back on 2027-01-10.", None),                      # more than six months out
        ("Back on 9999-12-31.", None),
        ("Away through 9999-12-31.", None),
        ("Guten Morgen, ich bin im Urlaub.", None),
    ],
)
def test_return_date_in_more_languages_and_forms(text: str, back: date | None) -> None:
    assert return_date(text, NOW) == back


def test_a_single_date_with_no_words_around_it_in_an_unknown_language_is_taken() -> None:
    assert return_date("ฉันไม่อยู่ที่สำนักงาน 3/12/2025", NOW) == date(2025, 12, 3)


def test_an_out_of_office_back_on_9999_12_31_is_still_an_out_of_office() -> None:
    from sequencer.core.classify import Kind
    from tests.core.classify.mails import mail, read

    verdict = read(mail("From: sam@prospect.example\nSubject: Out of office\n"
                        "Auto-Submitted: auto-replied", "I am back on 9999-12-31.\n"))
    assert (verdict.kind, verdict.return_date) == (Kind.AUTO_REPLY, None)

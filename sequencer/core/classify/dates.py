"""The date an out-of-office says its writer is back."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_MONTHS = {
    name: number
    for number, names in enumerate((
        "january jan januar jänner janvier enero gennaio",
        "february feb februar février fevrier febrero febbraio",
        "march mar märz maerz mars marzo",
        "april apr avril abril aprile",
        "may mai mayo maggio",
        "june jun juni juin junio giugno",
        "july jul juli juillet julio luglio",
        "august aug août aout agosto",
        "september sep sept septembre septiembre setiembre settembre",
        "october oct oktober octobre octubre ottobre",
        "november nov novembre noviembre",
        "december dec dezember décembre decembre diciembre dicembre",
    ), start=1)
    for name in names.split()
}
_WEEKDAYS = {
    name: number
    for number, names in enumerate((
        "monday mon montag lundi lunes", "tuesday tue tues dienstag mardi martes",
        "wednesday wed mittwoch mercredi miércoles miercoles",
        "thursday thu thurs donnerstag jeudi jueves", "friday fri freitag vendredi viernes",
        "saturday sat samstag samedi sábado sabado", "sunday sun sonntag dimanche domingo",
    ))
    for name in names.split()
}
_MONTH_NAMES = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_WEEKDAY = "(?:" + "|".join(sorted(map(re.escape, _WEEKDAYS), key=len, reverse=True)) + ")"
_FULL_WEEKDAY = "(?:" + "|".join(name for name in _WEEKDAYS if len(name) > 4) + ")"
_TRIGGER = (r"(?:\bback\b|\breturn(?:ing|s)?\b|\buntil\b|\btill\b|\bthrough\b|\bthru\b|"
            r"zurück|\bbis\b|\bwieder\b|retour|jusqu|\bhasta\b|\bregres\w*|\bvuelvo\b)")
_DATE_FORMS = (
    r"(?P<iso>(?P<y1>\d{4})[-/](?P<m1>\d{1,2})[-/](?P<d1>\d{1,2}))",
    r"(?P<dotted>(?P<d2>\d{1,2})\.(?P<m2>\d{1,2})\.(?P<y2>\d{4}|\d{2})?)",
    rf"(?:{_WEEKDAY},?\s+)?(?P<month>{_MONTH_NAMES})\.?\s+(?P<d3>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y3>\d{{4}}))?",
    rf"(?:{_WEEKDAY},?\s+)?(?P<d4>\d{{1,2}})(?:st|nd|rd|th|er|\.|º)?\s+(?:of\s+|de\s+)?"
    rf"(?P<month4>{_MONTH_NAMES})\b\.?(?:,?\s+(?:de\s+)?(?P<y4>\d{{4}}))?",
    rf"(?P<weekday>{_FULL_WEEKDAY})\b",
    r"(?P<tomorrow>tomorrow|morgen|demain|mañana)",
)
_RETURN_RE = re.compile(
    rf"{_TRIGGER}[^.!?\n]{{0,40}}?(?:{'|'.join(_DATE_FORMS)})", re.IGNORECASE)


def return_date(text: str, now: datetime | None) -> date | None:
    """The date the sender says they are back, or None when unsure."""
    for match in _RETURN_RE.finditer(text[:5_000]):
        try:
            found = _date_of(match, now)
        except ValueError:
            found = None
        if found is not None:
            return found
    return None


def _date_of(match: re.Match[str], now: datetime | None) -> date | None:
    groups = match.groupdict()
    if groups["iso"]:
        return date(int(groups["y1"]), int(groups["m1"]), int(groups["d1"]))
    if groups["dotted"]:
        return _with_year(groups["y2"], int(groups["m2"]), int(groups["d2"]), now)
    if groups["month"]:
        return _with_year(groups["y3"], _MONTHS[groups["month"].lower()], int(groups["d3"]), now)
    if groups["month4"]:
        return _with_year(groups["y4"], _MONTHS[groups["month4"].lower()], int(groups["d4"]), now)
    if now is None:
        return None
    if groups["weekday"]:
        ahead = (_WEEKDAYS[groups["weekday"].lower()] - now.weekday() - 1) % 7 + 1
        return now.date() + timedelta(days=ahead)
    return now.date() + timedelta(days=1)


def _with_year(year: str | None, month: int, day: int, now: datetime | None) -> date | None:
    if year:
        return date(int(year) + (2000 if len(year) == 2 else 0), month, day)
    if now is None:
        return None
    found = date(now.year, month, day)
    # A date well in the past means next year; a few weeks back is a stale notice, not next year.
    if found < now.date() - timedelta(days=30):
        found = date(now.year + 1, month, day)
    return found

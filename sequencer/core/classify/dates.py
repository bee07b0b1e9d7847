"""The date an out-of-office says its writer is back.

Dates are found in the common written forms (``2025-12-01``, ``01.12.2025``, ``10.9.``,
``12/1``, ``1 December``, ``December 1st``, ``1. Dezember``, ``9 de enero``,
``7 oktober``, ``15 września``, ``15 сентября``, ``12月1日``, ``12월 1일``, weekdays,
"tomorrow") with month and weekday names in 20 languages. Each date is read with the words
around it:

- "back", "zurück", "wieder", "de retour", "terug op", "に戻ります" … : back that day;
- "until", "bis", "jusqu'au", "hasta", "tot", "do", "まで", "asti", a range "1–5 Dec": back
  that day (the last one named wins);
- "through", "bis einschließlich", "tot en met", "till och med", "inclusive", "по": away that
  day too, so back the day after;
- "from", "ab dem", "à partir du", "vanaf": back that day, unless the words after it say the
  absence starts then ("ab dem 1.12. im Urlaub").

A date without a year is the next one on or after ``now``. A date in the past, more than
``HORIZON`` ahead, or impossible (9999-12-31 plus a day) is ignored: the message is still
an out-of-office, it just does not move the next step. Without ``now`` only dates with a
year are read, and not checked against any horizon.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

HORIZON = timedelta(days=183)
MAX_CHARS = 5_000

_MONTHS: dict[int, tuple[str, ...]] = {
    1: ("january", "jan", "januar", "janner", "janvier", "janv", "enero", "gennaio", "janeiro",
        "januari", "stycznia", "styczen", "leden", "ledna", "ocak", "ianuarie"),
    2: ("february", "feb", "februar", "fevrier", "fevr", "febrero", "febbraio", "fevereiro",
        "fev", "februari", "lutego", "luty", "unor", "unora", "subat", "februarie"),
    3: ("march", "mar", "marz", "maerz", "mars", "marzo", "marco", "maart", "mrt", "marca",
        "marzec", "brezen", "brezna", "mart", "martie"),
    4: ("april", "apr", "avril", "avr", "abril", "abr", "aprile", "kwietnia", "kwiecien",
        "duben", "dubna", "nisan", "aprilie"),
    5: ("may", "mai", "mayo", "maggio", "maio", "mei", "maj", "maja", "kveten", "kvetna",
        "mayis", "mayıs"),
    6: ("june", "jun", "juni", "juin", "junio", "giugno", "junho", "czerwca", "czerwiec",
        "cerven", "cervna", "haziran", "iunie"),
    7: ("july", "jul", "juli", "juillet", "juil", "julio", "luglio", "julho", "lipca", "lipiec",
        "cervenec", "cervence", "temmuz", "iulie"),
    8: ("august", "aug", "aout", "agosto", "augustus", "augusti", "sierpnia", "sierpien",
        "srpen", "srpna", "agustos", "august"),
    9: ("september", "sep", "sept", "septembre", "septiembre", "setiembre", "settembre",
        "setembro", "wrzesnia", "wrzesien", "zari", "eylul", "septembrie"),
    10: ("october", "oct", "oktober", "okt", "octobre", "octubre", "ottobre", "outubro",
         "pazdziernika", "pazdziernik", "rijen", "rijna", "ekim", "octombrie"),
    11: ("november", "nov", "novembre", "noviembre", "novembro", "listopada", "listopad",
         "listopadu", "kasim", "kasım", "noiembrie"),
    12: ("december", "dec", "dezember", "dez", "decembre", "diciembre", "dic", "dicembre",
         "dezembro", "grudnia", "grudzien", "prosinec", "prosince", "aralik", "aralık",
         "decembrie", "desember"),
}
# Scripts and languages whose month names are one word each.
_MORE_MONTHS: dict[int, tuple[str, ...]] = {
    1: ("januari", "január", "يناير", "ינואר", "בינואר", "जनवरी", "มกราคม"),
    2: ("februari", "február", "فبراير", "פברואר", "בפברואר", "फ़रवरी", "फरवरी", "กุมภาพันธ์"),
    3: ("maret", "március", "مارس", "מרץ", "במרץ", "मार्च", "มีนาคม"),
    4: ("április", "أبريل", "إبريل", "אפריל", "באפריל", "अप्रैल", "เมษายน"),
    5: ("mei", "május", "مايو", "מאי", "במאי", "मई", "พฤษภาคม"),
    6: ("juni", "június", "يونيو", "יוני", "ביוני", "जून", "มิถุนายน"),
    7: ("juli", "július", "يوليو", "יולי", "ביולי", "जुलाई", "กรกฎาคม"),
    8: ("agustus", "augusztus", "أغسطس", "אוגוסט", "באוגוסט", "अगस्त", "สิงหาคม"),
    9: ("szeptember", "سبتمبر", "ספטמבר", "בספטמבר", "सितंबर", "सितम्बर", "กันยายน"),
    10: ("oktober", "október", "أكتوبر", "אוקטובר", "באוקטובר", "अक्टूबर", "ตุลาคม"),
    11: ("november", "نوفمبر", "נובמבר", "בנובמבר", "नवंबर", "नवम्बर", "พฤศจิกายน"),
    12: ("desember", "desember", "december", "ديسمبر", "דצמבר", "בדצמבר", "दिसंबर", "दिसम्बर",
         "ธันวาคม"),
}
_MONTHS = {n: (*_MONTHS[n], *_MORE_MONTHS[n]) for n in _MONTHS}
# Inflected languages: any word that starts with one of these is that month.
_STEMS: dict[int, tuple[str, ...]] = {
    1: ("tammikuu", "январ", "січ", "ιανουαρ"), 2: ("helmikuu", "феврал", "лют", "φεβρουαρ"),
    3: ("maaliskuu", "март", "берез", "μαρτ"), 4: ("huhtikuu", "апрел", "квіт", "απριλ"),
    5: ("toukokuu", "мая", "май", "трав", "μαι"), 6: ("kesakuu", "июн", "черв", "ιουν"),
    7: ("heinakuu", "июл", "лип", "ιουλ"), 8: ("elokuu", "август", "серп", "αυγουστ"),
    9: ("syyskuu", "сентябр", "верес", "σεπτεμβρ"), 10: ("lokakuu", "октябр", "жовт", "οκτωβρ"),
    11: ("marraskuu", "ноябр", "листопад", "νοεμβρ"), 12: ("joulukuu", "декабр", "груд", "δεκεμβρ"),
}
_WEEKDAYS: dict[int, tuple[str, ...]] = {
    0: ("monday", "montag", "lundi", "lunes", "lunedi", "maandag", "mandag", "maanantai",
        "poniedzialek", "понедельник", "понеділок", "pazartesi"),
    1: ("tuesday", "dienstag", "mardi", "martes", "martedi", "dinsdag", "tisdag", "tirsdag",
        "tiistai", "wtorek", "вторник", "вівторок"),
    2: ("wednesday", "mittwoch", "mercredi", "miercoles", "mercoledi", "woensdag", "onsdag",
        "keskiviikko", "sroda", "среда", "середа", "carsamba"),
    3: ("thursday", "donnerstag", "jeudi", "jueves", "giovedi", "donderdag", "torsdag",
        "torstai", "czwartek", "четверг", "четвер", "persembe"),
    4: ("friday", "freitag", "vendredi", "viernes", "venerdi", "vrijdag", "fredag",
        "perjantai", "piatek", "пятница", "пʼятниця", "cuma"),
    5: ("saturday", "samstag", "samedi", "sabado", "sabato", "zaterdag", "lordag", "lauantai",
        "sobota", "суббота", "субота", "cumartesi"),
    6: ("sunday", "sonntag", "dimanche", "domingo", "domenica", "zondag", "sondag",
        "sunnuntai", "niedziela", "воскресенье", "неділя"),
}
_SHORT_WEEKDAYS = ("mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
                   "mo", "di", "mi", "do", "fr", "sa", "so", "lun", "mar", "mer", "jeu", "ven",
                   "sam", "dim")


def _normalise(text: str) -> str:
    """Case-folded, accents off Latin, Greek and Cyrillic letters (not off Thai or Hindi)."""
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.category(char) == "Mn" and out and ord(out[-1]) < 0x0530:
            continue
        out.append(char)
    return unicodedata.normalize("NFC", "".join(out)).casefold()   # NFC: Hangul whole again


_MONTHS = {n: tuple(_normalise(w) for w in ws) for n, ws in _MONTHS.items()}
_STEMS = {n: tuple(_normalise(w) for w in ws) for n, ws in _STEMS.items()}
_WEEKDAYS = {n: tuple(_normalise(w) for w in ws) for n, ws in _WEEKDAYS.items()}


def _alternation(words: Iterable[str]) -> str:
    return "|".join(sorted({re.escape(str(w)) for w in words}, key=len, reverse=True))


_MONTH_WORD = (r"(?:" + _alternation(w for ws in _MONTHS.values() for w in ws) + "|"
               + "|".join(re.escape(s) + r"\w*" for ss in _STEMS.values() for s in ss) + ")")
_WEEKDAY_WORD = r"(?:" + _alternation(w for ws in _WEEKDAYS.values() for w in ws) + ")"
_ANY_WEEKDAY = (r"(?:" + _alternation([*_SHORT_WEEKDAYS, *(w for ws in _WEEKDAYS.values()
                                                              for w in ws)])
                + r")\.?,?(?:\s+(?:den|the|le|el|il))?")
_NOT_LETTER = r"(?![^\W\d_]|[\u0900-\u0dff\u0e00-\u0e7f])"

_FORMS = re.compile(
    rf"(?<![\d.])(?P<cjk>(?:(?P<cy>\d{{4}})\s*[年년]\s*)?(?P<cm>\d{{1,2}})\s*[月월]\s*(?P<cd>\d{{1,2}})"
    rf"\s*[日일]?)|"
    r"(?<![\w.])(?:"
    rf"(?P<iso>(?P<iy>\d{{4}})[-/.](?P<im>\d{{1,2}})[-/.](?P<id>\d{{1,2}}))(?![\d])"
    rf"|(?:{_ANY_WEEKDAY}\s+)?(?P<dotted>(?P<dd>\d{{1,2}})\.\s?(?P<dm>\d{{1,2}})\."
    rf"(?:\s?(?P<dy>\d{{4}}|\d{{2}}(?!\d)))?)"
    rf"|(?:{_ANY_WEEKDAY}\s+)?(?P<slash>(?P<s1>\d{{1,2}})[/](?P<s2>\d{{1,2}})(?:[/](?P<sy>\d{{4}}|\d{{2}}))?)"
    rf"(?![\d/])"
    rf"|(?:{_ANY_WEEKDAY}\s+)?(?P<named>(?P<nd>\d{{1,2}})(?:st|nd|rd|th|er|e|º|ª|\.|-?го|-?ого)?"
    rf"\s*(?:de\s+|of\s+|d')?(?P<nm>{_MONTH_WORD}){_NOT_LETTER}\.?(?:,?\s+(?:de\s+)?"
    rf"(?P<ny>\d{{4}}))?)"
    rf"|(?:{_ANY_WEEKDAY}\s+)?(?P<monthfirst>(?:(?P<hy>\d{{4}})\.\s+)?(?P<mm>{_MONTH_WORD})"
    rf"{_NOT_LETTER}\.?\s+(?P<md>\d{{1,2}})"
    rf"(?:st|nd|rd|th)?\b(?:,?\s+(?P<my>\d{{4}}))?)"
    rf"|(?P<weekday>{_WEEKDAY_WORD})\b"
    r"|(?P<tomorrow>tomorrow|morgen|demain|manana|domani|amanha|imorgon|i morgen|huomenna|"
    r"jutro|zitra|завтра|yarin|明日|明天|내일|besok|ngay mai)"
    r")",
)

_BACK_BEFORE = re.compile(
    r"\b(?:back|return(?:ing|s)?|returns|(?:in|into) the office|available|resum\w*|zuruck|"
    r"wieder|retour|rentre|reviens|de vuelta|regres\w*|vuelvo|volver\w*|rientr\w*|ritorn\w*|"
    r"torner\w*|retorn\w*|volto|voltar\w*|terug|weer|tillbaka|ater|tilbage|tilbake|palaan|"
    r"takaisin|wracam|powrot\w*|vratim|zpet|вернусь|вернуся|повернус\w*|выйду|επιστρεφ\w*|"
    r"kembali|tro lai|quay lai|أعود|عودتي|سأعود|אחזור|חוזר|חוזרת)\b|กลับมา|लौट")
_BACK_AFTER = re.compile(
    r"^.{0,40}?(?:\bwieder\b|\bzuruck|\bde retour\b|\bterug\b|\btillbaka\b|\btilbage\b|"
    r"\btilbake\b|\bpalaan\b|\bback\b|\bitibaren\b|\bofise don|\bdonecegim|\bdondugumde|"
    r"に戻|より出社|から出社|出社|以降|以後|回来|返回|上班|复工|복귀|출근|\bkembali\b|लौट)",
    re.DOTALL)
_UNTIL_BEFORE = re.compile(
    r"\b(?:until|till|til|through|thru|up to and including|bis|jusqu'?\s?(?:au|a)|hasta|"
    r"fino al?|sino al?|ate|tot|t/m|till och med|t\.?o\.?m\.?|til og med|indtil|frem til|"
    r"sampai|hingga|do dnia|εως|μεχρι|cho đen|حتى|עד)\b|จนถึง")
_RANGE_BEFORE = re.compile(
    r"(?:\d|\b[a-z]{3,}\.?)\s*(?:-|–|—|~|〜|～|\bto\b|\bbis\b|\bau\b|\bal\b|\btot\b|\bdo\b|\bдо\b|"
    r"\bпо\b|đen)\s*(?:the\s+|le\s+|el\s+|il\s+|den\s+|dem\s+)?$")
_UNTIL_SHORT = re.compile(r"(?:\bdo|\bдо|\bпо|đen|\bto)\s*$")
_UNTIL_AFTER = re.compile(r"^\W{0,3}(?:asti|saakka|mennessa|['’]?(?:[ey]?[ae]) kadar|"
                          r"(?:tarihine |tarihe )?kadar|ig\b|तक|まで|"
                          r"까지|为止|前)")
_FROM_BEFORE = re.compile(
    r"\b(?:from|as of|starting|beginning|ab|a partir d[eu]|a partir de|desde el|dal|dalla|"
    r"vanaf|fran och med|fr o m|fra og med|od|с|з)\b")
_INCLUSIVE_BEFORE = re.compile(
    r"\b(?:through|thru|up to and including|einschliesslich|einschl|inklusive|inkl|tot en met|"
    r"t/m|till och med|t\.?o\.?m\.?|til og med|по)\b[^\d]{0,25}$")
_INCLUSIVE_AFTER = re.compile(
    r"^\W{0,3}(?:\(?inclusive\)?|incl\b|included|inclus(?:e|ive)?\b|incluso|incluido|compreso|"
    r"inclusief|включительно|включно|dahil|einschliesslich)")
_DEPARTS_AFTER = re.compile(
    r"^.{0,30}?(?:im urlaub|abwesend|nicht im buro|out of (?:the )?office|on (?:annual )?leave|"
    r"on vacation|en conges?|en vacances|de vacaciones|in ferie|de ferias|afwezig|met vakantie|"
    r"pa semester|lomalla|na urlopie|в отпуске|у відпустці)", re.DOTALL)
_SENTENCE_END = re.compile(r"[!?\n]|(?<=[^\W\d]{3})\.\s")


@dataclass(frozen=True)
class _Found:
    back: date
    rank: int      # 3 back, 2 until, 1 from, 0 no words at all
    at: int
    relative: bool  # a weekday or "tomorrow", not a date


def return_date(text: str, now: datetime | None) -> date | None:
    """The date the writer says they are back, or None when unsure."""
    plain = _normalise(text[:MAX_CHARS])
    found: list[_Found] = []
    matches = list(_FORMS.finditer(plain))
    for index, match in enumerate(matches):
        upto = matches[index + 1].start() if index + 1 < len(matches) else len(plain)
        candidate = _candidate(plain, match, now, upto)
        if candidate is not None:
            found.append(candidate)
    ranked = [f for f in found if f.rank > 0]
    if ranked:
        best = max(f.rank for f in ranked)
        top = [f for f in ranked if f.rank == best]
        if best == 3:
            return min(top, key=lambda f: (f.relative, f.at)).back
        return max(f.back for f in top)
    dates = {f.back for f in found}
    if len(dates) == 1 and not _any_trigger(plain):
        return dates.pop()
    return None


def _candidate(text: str, match: re.Match[str], now: datetime | None,
               upto: int) -> _Found | None:
    """One date and how the words around it (up to the next date) read it."""
    before = text[max(0, match.start() - 60):match.start()]
    before = _SENTENCE_END.split(before)[-1]
    after = text[match.end():min(match.end() + 40, upto)]
    after = _SENTENCE_END.split(after)[0]
    rank = _rank(before, after, match)
    if rank < 0:
        return None
    inclusive = bool(_INCLUSIVE_BEFORE.search(before) or _INCLUSIVE_AFTER.search(after))
    try:
        day = _date_of(match, now)
        if day is not None and inclusive:
            day += timedelta(days=1)
    except (ValueError, OverflowError):
        return None
    if day is None or not _plausible(day, now):
        return None
    relative = bool(match.group("weekday") or match.group("tomorrow"))
    return _Found(day, rank, match.start(), relative)


def _rank(before: str, after: str, match: re.Match[str]) -> int:
    if (_UNTIL_BEFORE.search(before[-20:]) or _RANGE_BEFORE.search(before)
            or _UNTIL_SHORT.search(before) or _UNTIL_AFTER.search(after)):
        return 2     # "until" right next to the date
    if _BACK_BEFORE.search(before) or _BACK_AFTER.search(after):
        return 3
    if _UNTIL_BEFORE.search(before):
        return 2
    if _FROM_BEFORE.search(before):
        return -1 if _DEPARTS_AFTER.search(after) else 1
    if match.group("weekday") or match.group("tomorrow"):
        return -1    # a bare weekday or "morgen" is not a date anyone is back on
    return 0


def _any_trigger(text: str) -> bool:
    return any(p.search(text) for p in (_BACK_BEFORE, _UNTIL_BEFORE, _FROM_BEFORE))


def _date_of(match: re.Match[str], now: datetime | None) -> date | None:
    g = match.groupdict()
    if g["iso"]:
        return date(int(g["iy"]), int(g["im"]), int(g["id"]))
    if g["cjk"]:
        return _with_year(g["cy"], int(g["cm"]), int(g["cd"]), now)
    if g["dotted"]:
        return _with_year(g["dy"], int(g["dm"]), int(g["dd"]), now)
    if g["slash"]:
        return _slashed(int(g["s1"]), int(g["s2"]), g["sy"], now)
    if g["named"]:
        return _with_year(g["ny"], _month(g["nm"]), int(g["nd"]), now)
    if g["monthfirst"]:
        return _with_year(g["my"] or g["hy"], _month(g["mm"]), int(g["md"]), now)
    if now is None:
        return None
    if g["weekday"]:
        weekday = next(n for n, names in _WEEKDAYS.items() if g["weekday"] in names)
        return now.date() + timedelta(days=(weekday - now.weekday() - 1) % 7 + 1)
    return now.date() + timedelta(days=1)


def _slashed(first: int, second: int, year: str | None, now: datetime | None) -> date | None:
    """``1/12``: day/month or month/day; when both are possible, the earlier date (a step
    that goes out a little early does less harm than one held back for weeks)."""
    options = []
    for month, day in ((second, first), (first, second)):
        try:
            found = _with_year(year, month, day, now)
        except ValueError:
            continue
        if found is not None and _plausible(found, now):
            options.append(found)
    return min(options) if options else None


def _month(word: str) -> int:
    for number, names in _MONTHS.items():
        if word in names:
            return number
    for number, stems in _STEMS.items():
        if any(word.startswith(stem) for stem in stems):
            return number
    raise ValueError(word)


def _with_year(year: str | None, month: int, day: int, now: datetime | None) -> date | None:
    if year:
        digits = year.lstrip("'")
        number = int(digits) + (2000 if len(digits) == 2 else 0)
        return date(number - 543 if number > 2400 else number, month, day)  # Thai: BE 2568
    if now is None:
        return None
    found = date(now.year, month, day)
    return found if found >= now.date() else date(now.year + 1, month, day)


def _plausible(day: date, now: datetime | None) -> bool:
    if now is None:
        return 1900 < day.year < 2200
    return now.date() <= day <= now.date() + HORIZON

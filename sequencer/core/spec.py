"""A sequence file (``sequences/NAME.yaml``) validated into a frozen ``Sequence``.

Every problem raises ``SpecError`` whose ``str()`` reads ``PATH:LINE: reason``. Whether
a step's template exists and whether the mailbox is configured is for the caller to check.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Literal

import holidays as holiday_data
from pydantic import Field, PlainValidator

from sequencer.core.durations import parse_duration
from sequencer.core.unsubscribe import DEFAULT_POLICY, ListUnsubscribe
from sequencer.core.yamlfile import Loc, StrictModel, Text, YamlDocument, read_yaml, validate
from sequencer.errors import DurationError, SpecError

STOP_REASONS = frozenset({"reply", "bounce", "unsubscribe", "complaint"})  # the default
# `company_reply`: a reply halts everyone enrolled from the replier's company (opt-in).
STOP_CHOICES = STOP_REASONS | {"company_reply"}

# ISO 3166 alpha-2 codes that the `holidays` package has a public-holiday calendar for.
COUNTRIES = frozenset(
    code for code in holiday_data.list_supported_countries() if len(code) == 2
)
# The longest wait or lead a step may have: past it a due date is a typo, and a few more
# zeros would overflow the calendar (``datetime`` ends in year 9999) at send time.
MAX_SPAN = timedelta(days=5 * 365 + 1)
MAX_SPAN_TEXT = "5 years"
MAX_BUSINESS_DAYS = 5 * 261


class Weekday(IntEnum):
    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6


@dataclass(frozen=True)
class Wait:
    """How long after the previous step (or enrollment): a span or business days."""

    delta: timedelta
    business_days: int = 0

    def __post_init__(self) -> None:
        if self.delta < timedelta(0) or self.business_days < 0:
            raise ValueError("a wait cannot be negative")
        if self.delta and self.business_days:
            raise ValueError("a wait is either a span or business days, not both")


@dataclass(frozen=True)
class SendWindow:
    """Days (0 = Monday … 6 = Sunday) and hours [start, end) when a step may go out.

    ``spread``: a step moved to the window's opening goes out somewhere in the first
    ``spread`` of the window instead (deterministic per enrollment and step), so a batch
    does not leave at 09:00:00 sharp. Zero: exactly at the opening.
    """

    days: frozenset[int]
    start: time
    end: time
    spread: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not self.days or not self.days <= set(Weekday):
            raise ValueError("days must be a non-empty set of 0 (Monday) … 6 (Sunday)")
        if not self.start < self.end:
            raise ValueError("a send window must start before it ends")
        if self.spread < timedelta(0) or self.spread > self.length:
            raise ValueError("spread must be between 0 and the length of the window")

    @property
    def length(self) -> timedelta:
        day = date(2000, 1, 3)
        return datetime.combine(day, self.end) - datetime.combine(day, self.start)


@dataclass(frozen=True)
class Pacing:
    """Limits on how often one prospect hears from us, over all their sequences.

    ``min_gap``: at least this long after the previous email to the prospect.
    ``max_per_week``: at most this many emails to the prospect in any 7 days (rolling).
    Both are off (None) unless the sequence sets them.
    """

    min_gap: timedelta | None = None
    max_per_week: int | None = None

    def __post_init__(self) -> None:
        if self.min_gap is not None and self.min_gap <= timedelta(0):
            raise ValueError("min_gap must be longer than zero")
        if self.max_per_week is not None and self.max_per_week < 1:
            raise ValueError("max_per_week must be at least 1")

    @property
    def active(self) -> bool:
        return self.min_gap is not None or self.max_per_week is not None


@dataclass(frozen=True)
class Step:
    name: str
    template: str
    wait: Wait
    thread: bool = False
    ahead_of: str | None = None
    lead: timedelta | None = None
    line: int = 0


@dataclass(frozen=True)
class Sequence:
    name: str
    #: The mailboxes (or pools of ``pools:`` in the settings) as written: ``mailbox: NAME``
    #: or ``mailbox: [NAME, …]``; each new prospect gets one of them, by ``assign``.
    mailboxes: tuple[str, ...]
    timezone: str
    send_window: SendWindow | None
    stop_on: frozenset[str]
    steps: tuple[Step, ...]
    path: Path
    # None: each prospect's `country` column decides; empty: `holidays: none`; else the
    # countries whose public holidays apply to prospects without a `country` of their own.
    holidays: frozenset[str] | None = None
    pacing: Pacing = Pacing()
    list_unsubscribe: ListUnsubscribe = DEFAULT_POLICY
    assign: Literal["round-robin", "least-loaded"] = "round-robin"

    @property
    def mailbox(self) -> str:
        """The first name under ``mailbox:`` (the only one, for a sequence that names one)."""
        return self.mailboxes[0]

    @property
    def date_columns(self) -> frozenset[str]:
        """The columns that ``ahead_of`` reads: each must hold an ISO date (or be empty)."""
        return frozenset(step.ahead_of for step in self.steps if step.ahead_of)

    @property
    def reads_country(self) -> bool:
        """Whether a prospect's `country` column chooses their holidays."""
        return self.holidays != frozenset()

    def step(self, index: int) -> Step:
        """The step at ``index`` (0-based); IndexError when there is none."""
        if not 0 <= index < len(self.steps):
            raise IndexError(f"sequence {self.name!r} has no step {index}")
        return self.steps[index]


# --- values as written in YAML -------------------------------------------------------------

_BUSINESS = re.compile(r"(\d+)\s+business\s+days?")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {name: index for index, full in enumerate(_FULL_DAYS) for name in (full, full[:3])}
_HOURS = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


def parse_wait(value: object) -> Wait:
    """``"0s"``, ``"2d"``, ``"36h"``, ``"1w"`` or ``"3 business days"``."""
    if not isinstance(value, str):
        raise ValueError("must be a duration with a unit, such as 2d or 3 business days")
    business = _BUSINESS.fullmatch(value.strip().lower())
    if business is not None:
        digits = business.group(1).lstrip("0") or "0"
        days = int(digits) if len(digits) <= 9 else MAX_BUSINESS_DAYS + 1
        if days > MAX_BUSINESS_DAYS:
            raise ValueError(f"{value.strip()!r} is more than {MAX_BUSINESS_DAYS} business days "
                             f"({MAX_SPAN_TEXT}), the longest wait")
        return Wait(timedelta(0), days)
    return Wait(_span(value))


def _span(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError("must be a duration with a unit: s, m, h, d or w")
    try:
        span = parse_duration(value)
    except DurationError as err:
        raise ValueError(err.reason) from None
    if span > MAX_SPAN:
        raise ValueError(f"{value.strip()!r} is longer than {MAX_SPAN_TEXT}, the longest a "
                         "wait or lead may be")
    return span


def parse_days(value: object) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"sat-sun"``, ``"daily"``, ``[mon, tue]``."""
    parts = value if isinstance(value, list) else str(value).split(",")
    days: set[int] = set()
    for part in parts:
        text = str(part).strip().lower()
        if text in ("daily", "every day"):
            days.update(range(7))
            continue
        first, _, last = text.partition("-")
        start, end = _day(first), _day(last or first)
        days.update((start + offset) % 7 for offset in range((end - start) % 7 + 1))
    return frozenset(days)


def _day(text: str) -> int:
    day = _DAY_NAMES.get(text.strip())
    if day is None:
        raise ValueError(f"{text.strip()!r} is not a day: use mon … sun, mon-fri or daily")
    return day


def parse_hours(value: object) -> tuple[time, time]:
    """``"09:00-17:00"`` -> (09:00, 17:00); the start must come before the end."""
    match = _HOURS.fullmatch(str(value).strip())
    if match is None:
        raise ValueError("must look like 09:00-17:00")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if max(h1, h2) > 23 or max(m1, m2) > 59:
        raise ValueError("hours and minutes must be 00:00 … 23:59")
    start, end = time(h1, m1), time(h2, m2)
    if not start < end:
        raise ValueError("the start must come before the end (no overnight windows)")
    return start, end


def check_timezone(value: object) -> str:
    """An IANA time zone name such as ``America/New_York``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an IANA time zone such as America/New_York")
    try:
        zoneinfo.ZoneInfo(value.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone") from None
    return value.strip()


def check_stop_on(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list such as [reply, bounce, unsubscribe]")
    unknown = sorted(set(value) - STOP_CHOICES)
    if unknown:
        raise ValueError(f"unknown {unknown[0]!r}: use {', '.join(sorted(STOP_CHOICES))}")
    if "company_reply" in value and "reply" not in value:
        raise ValueError("company_reply halts the replier's colleagues as well as the "
                         "replier: list reply too")
    return frozenset(value)


def check_country(value: object) -> str:
    """An ISO 3166 alpha-2 code with a public-holiday calendar (``US``, ``de``) -> ``US``."""
    text = value.strip().upper() if isinstance(value, str) else ""
    if text not in COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code with a "
                         "public-holiday calendar (such as US, DE, GB)")
    return text


def check_holidays(value: object) -> frozenset[str]:
    """``none`` (no holidays) or a list of country codes such as ``[US, DE]``."""
    if isinstance(value, str) and value.strip().lower() == "none":
        return frozenset()
    if not isinstance(value, list) or not value:
        raise ValueError("must be a list of country codes such as [US, DE], or none")
    return frozenset(check_country(item) for item in value)


def check_per_week(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number of emails, at least 1")
    return value


def _positive_span(value: object) -> timedelta:
    span = _span(value)
    if span <= timedelta(0):
        raise ValueError("must be longer than zero, such as 3d")
    return span


def check_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ValueError("use letters, digits, - and _")
    return value


def check_mailboxes(value: object) -> tuple[str, ...]:
    """``mailbox: NAME`` or ``mailbox: [NAME, …]`` (a mailbox or a pool of the settings)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("must be a mailbox name or a list of them")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError("must be a mailbox name or a list of them")
        if not name.strip():
            raise ValueError("must not be empty")
        out.append(name.strip())
    return tuple(dict.fromkeys(out))


def check_template(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must name a template")
    name = value.strip()
    if name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"{name!r} must be a template name under templates/")
    return name




class _WindowModel(StrictModel):
    days: Annotated[frozenset[int], PlainValidator(parse_days)]
    hours: Annotated[tuple[time, time], PlainValidator(parse_hours)]
    spread: Annotated[timedelta, PlainValidator(_span)] = timedelta(0)


class _StepModel(StrictModel):
    name: Text
    template: Annotated[str, PlainValidator(check_template)]
    wait: Annotated[Wait, PlainValidator(parse_wait)]
    thread: bool = False
    ahead_of: Text | None = None
    lead: Annotated[timedelta, PlainValidator(_span)] | None = None


class _SequenceModel(StrictModel):
    name: Annotated[str, PlainValidator(check_name)]
    mailbox: Annotated[tuple[str, ...], PlainValidator(check_mailboxes)]
    assign: Literal["round-robin", "least-loaded"] = "round-robin"
    timezone: Annotated[str, PlainValidator(check_timezone)] = "UTC"
    send_window: _WindowModel | None = None
    stop_on: Annotated[frozenset[str], PlainValidator(check_stop_on)] = STOP_REASONS
    holidays: Annotated[frozenset[str], PlainValidator(check_holidays)] | None = None
    min_gap: Annotated[timedelta, PlainValidator(_positive_span)] | None = None
    max_per_week: Annotated[int, PlainValidator(check_per_week)] | None = None
    steps: list[_StepModel] = Field(min_length=1)
    list_unsubscribe: Literal["always", "never", "auto"] = DEFAULT_POLICY.value


# --- loading -------------------------------------------------------------------------------


def load_sequence(path: Path) -> Sequence:
    """Read and validate one sequence file."""
    return build_sequence(read_yaml(path, SpecError))


def build_sequence(doc: YamlDocument) -> Sequence:
    """Validate a parsed sequence document."""
    raw = validate(_SequenceModel, doc, SpecError)
    steps: list[Step] = []
    for index, step in enumerate(raw.steps):
        steps.append(_step(doc, index, step, {earlier.name for earlier in steps}))
    return Sequence(
        name=raw.name,
        mailboxes=raw.mailbox,
        assign=raw.assign,
        timezone=raw.timezone,
        send_window=_window(doc, raw.send_window),
        stop_on=raw.stop_on,
        steps=tuple(steps),
        path=doc.path,
        holidays=raw.holidays,
        pacing=Pacing(raw.min_gap, raw.max_per_week),
        list_unsubscribe=ListUnsubscribe(raw.list_unsubscribe),
    )


def _window(doc: YamlDocument, raw: _WindowModel | None) -> SendWindow | None:
    if raw is None:
        return None
    try:
        return SendWindow(raw.days, *raw.hours, spread=raw.spread)
    except ValueError as err:
        raise SpecError(f"send_window: {err}", doc.path,
                        doc.line_of(("send_window", "spread"))) from None


def _step(doc: YamlDocument, index: int, raw: _StepModel, earlier: set[str]) -> Step:
    at: Loc = ("steps", index)

    def fail(reason: str, key: str) -> SpecError:
        return SpecError(reason, doc.path, doc.line_of((*at, key)))

    if raw.name in earlier:
        raise fail(f"step name {raw.name!r} is used twice", "name")
    if raw.thread and index == 0:
        raise fail("thread: the first step has nothing to reply to", "thread")
    if (raw.lead is None) != (raw.ahead_of is None):
        present = "lead" if raw.ahead_of is None else "ahead_of"
        raise fail("lead and ahead_of go together: give both or neither", present)
    return Step(
        name=raw.name,
        template=raw.template,
        wait=raw.wait,
        thread=raw.thread,
        ahead_of=raw.ahead_of,
        lead=raw.lead,
        line=doc.line_of(at),
    )


def sequence_name(path: Path) -> str | None:
    """The top-level ``name:`` of a sequence file, without validating the rest (None when
    it has none, or is not YAML at all)."""
    try:
        return _sequence_name(path)
    except SpecError:
        return None


def _sequence_name(path: Path) -> str | None:
    data = read_yaml(path, SpecError).data
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _files(sequences_dir: Path) -> list[Path]:
    if not sequences_dir.is_dir():
        return []
    found = [*sequences_dir.glob("*.yaml"), *sequences_dir.glob("*.yml")]
    return sorted(path for path in found if path.is_file())


def resolve_sequence(ref: str, sequences_dir: Path) -> Path:
    """``ref`` as a sequence file path, or the file under ``sequences_dir`` named ``ref``."""
    as_path = Path(ref)
    if as_path.is_file():
        return as_path
    if as_path.suffix in (".yaml", ".yml") or "/" in ref:
        raise SpecError("no such sequence file", ref)
    matches: list[Path] = []
    broken: list[SpecError] = []
    for path in _files(sequences_dir):
        try:
            if _sequence_name(path) == ref:
                matches.append(path)
        except SpecError as err:
            broken.append(err)
    if len(matches) > 1:
        files = ", ".join(str(path) for path in matches)
        raise SpecError(f"several sequences are named {ref!r}: {files}", sequences_dir)
    if matches:
        return matches[0]
    if broken:
        raise broken[0]
    raise SpecError(f"no sequence named {ref!r}", sequences_dir)


def load_sequences(sequences_dir: Path) -> list[Sequence]:
    """Every sequence under ``sequences_dir``, sorted by name; two with one name is an error."""
    sequences, broken = load_sequences_skipping(sequences_dir)
    if broken:
        raise broken[0]
    return sequences


def load_sequences_skipping(sequences_dir: Path) -> tuple[list[Sequence], list[SpecError]]:
    """Every sequence that loads, sorted by name, and the error of each file that does not
    (in file order; a second file with a name already taken is one of them)."""
    by_name: dict[str, Sequence] = {}
    broken: list[SpecError] = []
    for path in _files(sequences_dir):
        try:
            doc = read_yaml(path, SpecError)
            sequence = build_sequence(doc)
        except SpecError as err:
            broken.append(err)
            continue
        other = by_name.get(sequence.name)
        if other is not None:
            reason = f"sequence name {sequence.name!r} is also used by {other.path}"
            broken.append(SpecError(reason, path, doc.line_of(("name",))))
            continue
        by_name[sequence.name] = sequence
    return [by_name[name] for name in sorted(by_name)], broken

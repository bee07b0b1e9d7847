"""How the classifier does on the labelled corpus (tests/data/corpus): shared by the floors
test and ``bench/classify_rate.py``.

Each message is read as the watcher read it when it arrived: ``now`` is the message's own
``Date`` (so "back on Monday" and "a date in the past" mean what they meant then).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sequencer.core.classify import Verdict, classify
from tests.corpus import Labelled

FALLBACK_NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
_DATE_RE = re.compile(rb"(?im)^Date:[ \t]*(.+)$")


def arrival(raw: bytes) -> datetime:
    """When the message arrived, by its ``Date`` field (UTC), else ``FALLBACK_NOW``."""
    found = _DATE_RE.search(raw[:65_536].split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0])
    if found is None:
        return FALLBACK_NOW
    try:
        when = email.utils.parsedate_to_datetime(found.group(1).decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return FALLBACK_NOW
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def verdict_of(row: Labelled) -> Verdict:
    raw = row.raw()
    return classify(raw, now=arrival(raw))


@dataclass
class Score:
    """Kinds right, hard/soft agreement and human replies misread, for one set of mail."""

    messages: int = 0
    kinds_right: int = 0
    bounces: int = 0
    severity_agrees: int = 0
    replies: int = 0
    replies_misread: int = 0
    dated: int = 0           # out-of-office replies whose label states a full return date
    dates_right: int = 0
    # What was read wrong, by file: kept only for mail that may be tuned on (never for
    # the held-out set, whose files nobody looks at while tuning).
    detailed: bool = True
    wrong: list[str] = field(default_factory=list, repr=False)

    @property
    def kinds_share(self) -> float:
        return self.kinds_right / self.messages if self.messages else 0.0

    @property
    def severity_share(self) -> float:
        return self.severity_agrees / self.bounces if self.bounces else 0.0

    def add(self, row: Labelled, verdict: Verdict) -> None:
        self.messages += 1
        right = verdict.kind.value == row.kind
        self.kinds_right += right
        if not right:
            self._note(f"{row.name}: {row.kind} read as {verdict.kind.value} ({verdict.reason})")
        if row.kind == "bounce":
            self.bounces += 1
            agrees = verdict.bounce == row.bounce
            self.severity_agrees += agrees
            if right and not agrees:
                self._note(f"{row.name}: {row.bounce} ({row.cause}) read as {verdict.bounce} "
                           f"({verdict.cause})")
        if row.kind == "reply":
            self.replies += 1
            self.replies_misread += not right
        if row.return_date is not None:
            self.dated += 1
            self.dates_right += verdict.return_date == row.return_date
            if verdict.return_date != row.return_date:
                self._note(f"{row.name}: back {row.return_date} read as {verdict.return_date}")

    def _note(self, line: str) -> None:
        if self.detailed:
            self.wrong.append(line)

    def line(self, label: str) -> str:
        return (f"{label}: {self.messages} messages, kinds right {self.kinds_right}/"
                f"{self.messages} = {self.kinds_share:.1%}, hard/soft agrees "
                f"{self.severity_agrees}/{self.bounces} = {self.severity_share:.1%}, human "
                f"replies misread {self.replies_misread}/{self.replies}, return dates right "
                f"{self.dates_right}/{self.dated}")


def score(rows: Iterable[Labelled], detailed: bool = True) -> Score:
    """The figures for ``rows``; ``detailed=False`` keeps no file names (held-out mail)."""
    result = Score(detailed=detailed)
    for row in rows:
        result.add(row, verdict_of(row))
    return result

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
    replies_misread: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

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
            self.wrong.append(f"{row.name}: {row.kind} read as {verdict.kind.value} "
                              f"({verdict.reason})")
        if row.kind == "bounce":
            self.bounces += 1
            agrees = verdict.bounce == row.bounce
            self.severity_agrees += agrees
            if right and not agrees:
                self.wrong.append(f"{row.name}: {row.bounce} ({row.cause}) read as "
                                  f"{verdict.bounce} ({verdict.cause})")
        if row.kind == "reply":
            self.replies += 1
            if not right:
                self.replies_misread.append(row.name)

    def line(self, label: str) -> str:
        return (f"{label}: {self.messages} messages, kinds right {self.kinds_right}/"
                f"{self.messages} = {self.kinds_share:.1%}, hard/soft agrees "
                f"{self.severity_agrees}/{self.bounces} = {self.severity_share:.1%}, human "
                f"replies misread {len(self.replies_misread)}/{self.replies}")


def score(rows: Iterable[Labelled]) -> Score:
    result = Score()
    for row in rows:
        result.add(row, verdict_of(row))
    return result

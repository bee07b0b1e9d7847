"""The worker log: one line per event, human-readable or JSON.

Library code calls :func:`emit` after the event is committed to the database; only the
CLI installs handlers (:func:`configure`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sequencer.core.machine import Event

logger = logging.getLogger("sequencer.events")

_SYMBOL = {
    Event.ENROLLED: "+",
    Event.SENT: "→",
    Event.RETRYING: "↻",
    Event.FAILED: "✗",
    Event.UNKNOWN: "?",
    Event.REPLIED: "←",
    Event.AUTO_REPLY: "~",
    Event.BOUNCED: "↩",
    Event.DELAYED: "≈",
    Event.UNSUBSCRIBED: "⊘",
    Event.COMPLETED: "✓",
    Event.PAUSED: "‖",
    Event.RESUMED: "▶",
    Event.STOPPED: "■",
    Event.DEFERRED: "…",
    Event.UNVERIFIED: "!",
}


@dataclass(frozen=True)
class EventRecord:
    event: Event
    at: datetime
    email: str | None = None
    mailbox: str | None = None
    sequence: str | None = None
    step: str | None = None
    message_id: str | None = None
    detail: str | None = None
    enrollment_id: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = self.event.value
        data["at"] = self.at.isoformat().replace("+00:00", "Z")
        return data


def emit(record: EventRecord) -> None:
    level = (logging.WARNING if record.event in (Event.FAILED, Event.UNKNOWN, Event.UNVERIFIED)
             else logging.INFO)
    logger.log(level, "%s", record.event.value, extra={"sequencer_event": record})


class HumanFormatter(logging.Formatter):
    """``2026-11-23 20:00:01Z → sent      sales trade-show/thank-you ann@x.test <id@x>``"""

    def format(self, record: logging.LogRecord) -> str:
        event: EventRecord | None = getattr(record, "sequencer_event", None)
        if event is None:
            stamp = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
            text = f"{stamp}Z {record.levelname.lower():<12} {record.getMessage()}"
            if record.exc_info:
                text += "\n" + self.formatException(record.exc_info)
            return text
        where = event.sequence or ""
        if event.step:
            where = f"{where}/{event.step}"
        parts = [
            event.at.strftime("%Y-%m-%d %H:%M:%S") + "Z",
            _SYMBOL.get(event.event, " "),
            f"{event.event.value:<12}",
            event.mailbox or "-",
            where or "-",
            event.email or "-",
        ]
        if event.message_id:
            parts.append(event.message_id)
        if event.detail:
            parts.append(f"({event.detail})")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: EventRecord | None = getattr(record, "sequencer_event", None)
        if event is not None:
            return json.dumps(event.as_dict(), ensure_ascii=False)
        data = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure(fmt: str = "human", log_file: Path | None = None, *, verbose: bool = False,
              stream: TextIO | None = None) -> None:
    """Install the worker-log handlers on the root logger (CLI only)."""
    import time

    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else HumanFormatter()
    formatter.converter = time.gmtime
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("aiosmtplib", "aioimaplib", "dramatiq", "mail.log", "asyncio", "sqlalchemy",
                  "alembic", "flufl.bounce"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)

"""Durations as written in YAML: ``"90s" "15m" "2h" "2d" "1w"`` or a bare number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import PlainValidator

from sequencer.errors import DurationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(text: str | int | float) -> timedelta:
    """``"90s" "15m" "2h" "2d" "1w"`` (or a bare number of seconds) as a timedelta."""
    if isinstance(text, bool):
        raise DurationError("a duration must be a number with a unit: s, m, h, d or w")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text.strip().lower())
        if match is None:
            raise DurationError(
                f"{text!r} is not a duration: use a number and s, m, h, d or w")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise DurationError("a duration cannot be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError as err:
        raise DurationError(f"{text!r} is too long a duration") from err


def _duration(value: object) -> timedelta:
    if not isinstance(value, str | int | float):
        raise ValueError("must be a duration such as 30s, 5m or 2h")
    return parse_duration(value)  # a DurationError is a ValueError: pydantic reports it


#: A pydantic field type for a duration key.
Duration = Annotated[timedelta, PlainValidator(_duration)]

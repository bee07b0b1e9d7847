"""Durations as written in YAML."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sequencer.core.durations import parse_duration
from sequencer.errors import ConfigError, DurationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        (" 1.5H ", timedelta(minutes=90)),
        ("10 m", timedelta(minutes=10)),
        (45, timedelta(seconds=45)),
        (0.25, timedelta(seconds=0.25)),
    ],
)
def test_durations_take_a_unit_or_bare_seconds(
    text: str | int | float, expected: timedelta
) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2 days", "'2 days' is not a duration: use a number and s, m, h, d or w"),
        ("", "'' is not a duration: use a number and s, m, h, d or w"),
        ("-5m", "'-5m' is not a duration: use a number and s, m, h, d or w"),
        (-5, "a duration cannot be negative"),
        (True, "a duration must be a number with a unit: s, m, h, d or w"),
        ("99999999999999w", "'99999999999999w' is too long a duration"),
    ],
)
def test_bad_durations_are_refused(text: str | int, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    assert str(caught.value) == reason


def test_a_bad_duration_is_a_config_error_and_a_value_error() -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration("soon")
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, ValueError)

"""Sequence files: every rule, both directions, with the exact ``path:line: reason``."""

from __future__ import annotations

import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest

from sequencer.core.spec import (
    STOP_REASONS,
    Pacing,
    SendWindow,
    Sequence,
    Step,
    Wait,
    Weekday,
    load_sequence,
    load_sequences,
    resolve_sequence,
)
from sequencer.errors import SpecError

GOOD = """\
name: trade-show
mailbox: sales
timezone: America/New_York
send_window: {days: mon-fri, hours: "09:00-17:00"}
stop_on: [reply, bounce, unsubscribe]
steps:
  - name: thank-you
    template: thank_you
    wait: 0s
  - name: reminder
    template: reminder
    wait: 2d
    thread: true
  - name: new-information
    template: new_info
    wait: 1w
    ahead_of: follow_up_by
    lead: 2w
"""

MINIMAL = """\
name: short
mailbox: sales
steps:
  - name: only
    template: hello
    wait: 0s
"""


def write(tmp_path: Path, text: str, name: str = "seq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Sequence:
    return load_sequence(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_sequence(path)
    assert caught.value.path == str(path)
    return str(caught.value).removeprefix(f"{path}:")


def with_step(extra: str, first: str = "") -> str:
    """MINIMAL with ``first`` added to step one and a second step carrying ``extra``."""
    return (
        MINIMAL
        + textwrap.indent(first, "    ")
        + ("  - name: second\n    template: again\n    wait: 1d\n" + textwrap.indent(extra, "    "))
    )


# --- the happy path ---------------------------------------------------------------------


def test_the_design_example_loads_into_a_sequence(tmp_path: Path) -> None:
    sequence = load(tmp_path, GOOD)

    assert sequence.name == "trade-show"
    assert sequence.mailbox == "sales"
    assert sequence.timezone == "America/New_York"
    assert sequence.send_window == SendWindow(frozenset(range(5)), time(9), time(17))
    assert sequence.stop_on == {"reply", "bounce", "unsubscribe"}
    assert [step.name for step in sequence.steps] == ["thank-you", "reminder", "new-information"]
    assert [step.line for step in sequence.steps] == [7, 10, 14]
    assert sequence.step(0).wait == Wait(timedelta(0))
    assert sequence.step(1).wait == Wait(timedelta(days=2))
    assert sequence.step(1).thread is True
    assert sequence.step(2).ahead_of == "follow_up_by"
    assert sequence.step(2).lead == timedelta(weeks=2)
    assert sequence.path == tmp_path / "seq.yaml"


def test_defaults_are_utc_no_window_and_every_stop_reason(tmp_path: Path) -> None:
    sequence = load(tmp_path, MINIMAL)

    assert sequence.timezone == "UTC"
    assert sequence.send_window is None
    assert sequence.stop_on == STOP_REASONS == {"reply", "bounce", "unsubscribe", "complaint"}
    assert sequence.step(0) == Step(name="only", template="hello", wait=Wait(timedelta(0)), line=4)


def test_asking_for_a_step_that_does_not_exist_raises_index_error(tmp_path: Path) -> None:
    sequence = load(tmp_path, MINIMAL)

    with pytest.raises(IndexError, match="has no step 1"):
        sequence.step(1)
    with pytest.raises(IndexError, match="has no step -1"):
        sequence.step(-1)


# --- waits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wait"),
    [
        ("0s", Wait(timedelta(0))),
        ("90s", Wait(timedelta(seconds=90))),
        ("15m", Wait(timedelta(minutes=15))),
        ("36h", Wait(timedelta(hours=36))),
        ("2d", Wait(timedelta(days=2))),
        ("1w", Wait(timedelta(weeks=1))),
        ("3 business days", Wait(timedelta(0), 3)),
        ("1 business day", Wait(timedelta(0), 1)),
        ("1 Business Day", Wait(timedelta(0), 1)),
    ],
)
def test_waits_take_units_or_business_days(tmp_path: Path, text: str, wait: Wait) -> None:
    sequence = load(tmp_path, MINIMAL.replace("wait: 0s", f"wait: {text}"))

    assert sequence.step(0).wait == wait


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2", "steps[0].wait: must be a duration with a unit, such as 2d or 3 business days"),
        ('"2"', "steps[0].wait: '2' is not a duration: use a number and s, m, h, d or w"),
        ("2 days", "steps[0].wait: '2 days' is not a duration: use a number and s, m, h, d or w"),
        ("-1d", "steps[0].wait: '-1d' is not a duration: use a number and s, m, h, d or w"),
        ("[1d]", "steps[0].wait: must be a duration with a unit, such as 2d or 3 business days"),
    ],
)
def test_a_wait_without_a_unit_or_with_a_bad_one_is_refused_on_its_line(
    tmp_path: Path, text: str, reason: str
) -> None:
    assert error_of(tmp_path, MINIMAL.replace("wait: 0s", f"wait: {text}")) == f"6: {reason}"


def test_a_missing_wait_is_reported_on_the_line_of_its_step(tmp_path: Path) -> None:
    text = MINIMAL.replace("    wait: 0s\n", "")

    assert error_of(tmp_path, text) == "4: missing key 'wait' in steps[0]"


def test_a_wait_is_a_span_or_business_days_never_both_nor_negative() -> None:
    with pytest.raises(ValueError, match="not both"):
        Wait(timedelta(days=1), 2)
    with pytest.raises(ValueError, match="negative"):
        Wait(timedelta(days=-1))
    with pytest.raises(ValueError, match="negative"):
        Wait(timedelta(0), -1)


# --- send windows -----------------------------------------------------------------------


def window(days: str, hours: str = '"09:00-17:00"') -> str:
    return MINIMAL.replace("steps:", f"send_window: {{days: {days}, hours: {hours}}}\nsteps:")


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ('"mon,wed,fri"', {0, 2, 4}),
        ("sat-sun", {5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("daily", set(range(7))),
        ("every day", set(range(7))),
        ("Tuesday", {1}),
        ("[mon, thu]", {0, 3}),
        ('"mon-wed, sat"', {0, 1, 2, 5}),
    ],
)
def test_send_window_days_read_ranges_lists_and_daily(
    tmp_path: Path, days: str, expected: set[int]
) -> None:
    sequence = load(tmp_path, window(days))

    assert sequence.send_window is not None
    assert sequence.send_window.days == expected
    assert sequence.send_window.start == time(9, 0)
    assert sequence.send_window.end == time(17, 0)


@pytest.mark.parametrize(
    ("days", "reason"),
    [
        ("weekdays", "'weekdays' is not a day: use mon … sun, mon-fri or daily"),
        ("mon-funday", "'funday' is not a day: use mon … sun, mon-fri or daily"),
        ("1", "'1' is not a day: use mon … sun, mon-fri or daily"),
    ],
)
def test_unknown_days_are_refused_on_their_line(tmp_path: Path, days: str, reason: str) -> None:
    assert error_of(tmp_path, window(days)) == f"3: send_window.days: {reason}"


@pytest.mark.parametrize(
    ("hours", "reason"),
    [
        ('"17:00-09:00"', "the start must come before the end (no overnight windows)"),
        ('"09:00-09:00"', "the start must come before the end (no overnight windows)"),
        ('"09:00-24:00"', "hours and minutes must be 00:00 … 23:59"),
        ('"09:60-10:00"', "hours and minutes must be 00:00 … 23:59"),
        ("9-5", "must look like 09:00-17:00"),
        ("9:00", "must look like 09:00-17:00"),
    ],
)
def test_bad_hours_are_refused_on_their_line(tmp_path: Path, hours: str, reason: str) -> None:
    assert error_of(tmp_path, window("mon-fri", hours)) == f"3: send_window.hours: {reason}"


def test_single_digit_hours_are_read(tmp_path: Path) -> None:
    sequence = load(tmp_path, window("mon", '"8:30-17:45"'))

    assert sequence.send_window == SendWindow(frozenset({Weekday.MON}), time(8, 30), time(17, 45))


def test_a_send_window_needs_both_days_and_hours(tmp_path: Path) -> None:
    text = MINIMAL.replace("steps:", "send_window:\n  days: mon-fri\nsteps:")

    assert error_of(tmp_path, text) == "3: missing key 'hours' in send_window"


def test_a_send_window_value_checks_itself() -> None:
    with pytest.raises(ValueError, match="start before it ends"):
        SendWindow(frozenset({0}), time(10), time(9))
    with pytest.raises(ValueError, match="non-empty"):
        SendWindow(frozenset(), time(9), time(10))
    with pytest.raises(ValueError, match="non-empty"):
        SendWindow(frozenset({7}), time(9), time(10))


# --- time zone, stop_on, name, mailbox ----------------------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Berlin", "UTC", "Asia/Kolkata"])
def test_iana_time_zones_are_accepted(tmp_path: Path, zone: str) -> None:
    assert load(tmp_path, f"timezone: {zone}\n" + MINIMAL).timezone == zone


@pytest.mark.parametrize(
    ("zone", "reason"),
    [
        ("Mars/Olympus", "timezone: 'Mars/Olympus' is not an IANA time zone"),
        ("../etc/passwd", "timezone: '../etc/passwd' is not an IANA time zone"),
        ('""', "timezone: must be an IANA time zone such as America/New_York"),
        ("5", "timezone: must be an IANA time zone such as America/New_York"),
    ],
)
def test_unknown_time_zones_are_refused(tmp_path: Path, zone: str, reason: str) -> None:
    assert error_of(tmp_path, MINIMAL + f"timezone: {zone}\n") == f"7: {reason}"


def test_stop_on_accepts_any_subset_of_the_known_reasons(tmp_path: Path) -> None:
    sequence = load(tmp_path, MINIMAL + "stop_on: [reply, complaint, reply]\n")

    assert sequence.stop_on == {"reply", "complaint"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[reply, vacation]",
         "unknown 'vacation': use bounce, company_reply, complaint, reply, unsubscribe"),
        ("[company_reply, bounce]",
         "company_reply halts the replier's colleagues as well as the replier: list reply too"),
        ("reply", "must be a list such as [reply, bounce, unsubscribe]"),
        ("[reply, 3]", "must be a list such as [reply, bounce, unsubscribe]"),
    ],
)
def test_stop_on_refuses_unknown_reasons(tmp_path: Path, value: str, reason: str) -> None:
    assert error_of(tmp_path, MINIMAL + f"stop_on: {value}\n") == f"7: stop_on: {reason}"


def test_company_reply_is_opt_in_beside_reply(tmp_path: Path) -> None:
    assert "company_reply" not in load(tmp_path, MINIMAL).stop_on
    sequence = load(tmp_path, MINIMAL + "stop_on: [reply, company_reply, bounce]\n")
    assert sequence.stop_on == {"reply", "company_reply", "bounce"}


@pytest.mark.parametrize("name", ["a", "trade-show_2", "X9"])
def test_sequence_names_of_letters_digits_dash_and_underscore_load(
    tmp_path: Path, name: str
) -> None:
    assert load(tmp_path, MINIMAL.replace("name: short", f"name: {name}")).name == name


@pytest.mark.parametrize("name", ["'trade show'", "a/b", "'é'", "''", "42"])
def test_other_sequence_names_are_refused(tmp_path: Path, name: str) -> None:
    text = MINIMAL.replace("name: short", f"name: {name}")

    assert error_of(tmp_path, text) == "1: name: use letters, digits, - and _"


def test_an_empty_mailbox_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("mailbox: sales", "mailbox: '  '")

    assert error_of(tmp_path, text) == "2: mailbox: must not be empty"


def test_a_missing_top_level_key_is_reported_on_the_first_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("mailbox: sales\n", "")

    assert error_of(tmp_path, text) == "1: missing key 'mailbox'"


# --- steps ------------------------------------------------------------------------------


def test_a_sequence_needs_at_least_one_step(tmp_path: Path) -> None:
    text = "name: empty\nmailbox: sales\nsteps: []\n"

    assert error_of(tmp_path, text) == "3: steps: must not be empty"


def test_steps_must_be_a_list(tmp_path: Path) -> None:
    text = "name: empty\nmailbox: sales\nsteps: {a: 1}\n"

    assert error_of(tmp_path, text) == "3: steps: must be a list"


def test_a_step_must_be_a_mapping(tmp_path: Path) -> None:
    text = "name: x\nmailbox: sales\nsteps:\n  - just-a-name\n"

    assert error_of(tmp_path, text) == "4: steps[0]: must be a mapping of keys"


def test_step_names_must_be_unique(tmp_path: Path) -> None:
    text = with_step("").replace("name: second", "name: only")

    assert error_of(tmp_path, text) == "7: step name 'only' is used twice"


def test_step_names_must_not_be_empty(tmp_path: Path) -> None:
    text = MINIMAL.replace("- name: only", "- name: ''")

    assert error_of(tmp_path, text) == "4: steps[0].name: must not be empty"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("''", "must name a template"),
        ("7", "must name a template"),
        ("../secrets", "'../secrets' must be a template name under templates/"),
        ("/etc/passwd", "'/etc/passwd' must be a template name under templates/"),
    ],
)
def test_a_step_template_must_be_a_name(tmp_path: Path, template: str, reason: str) -> None:
    text = MINIMAL.replace("template: hello", f"template: {template}")

    assert error_of(tmp_path, text) == f"5: steps[0].template: {reason}"


def test_a_template_in_a_subfolder_is_a_name(tmp_path: Path) -> None:
    text = MINIMAL.replace("template: hello", "template: intro/hello")

    assert load(tmp_path, text).step(0).template == "intro/hello"


def test_thread_on_a_later_step_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, with_step("thread: true\n")).step(1).thread is True


def test_thread_on_the_first_step_has_nothing_to_reply_to(tmp_path: Path) -> None:
    text = with_step("", first="thread: true\n")

    assert error_of(tmp_path, text) == "7: thread: the first step has nothing to reply to"


def test_thread_must_be_true_or_false(tmp_path: Path) -> None:
    text = with_step('thread: "yes"\n')

    assert error_of(tmp_path, text) == "10: steps[1].thread: must be true or false"


def test_lead_without_ahead_of_is_refused_on_the_lead_line(tmp_path: Path) -> None:
    text = with_step("lead: 2w\n")

    assert error_of(tmp_path, text) == "10: lead and ahead_of go together: give both or neither"


def test_ahead_of_without_lead_is_refused_on_the_ahead_of_line(tmp_path: Path) -> None:
    text = with_step("ahead_of: follow_up_by\n")

    assert error_of(tmp_path, text) == "10: lead and ahead_of go together: give both or neither"


def test_lead_needs_a_unit(tmp_path: Path) -> None:
    text = with_step("ahead_of: follow_up_by\nlead: 14\n")

    assert error_of(tmp_path, text) == (
        "11: steps[1].lead: must be a duration with a unit: s, m, h, d or w"
    )


# --- unknown keys, duplicates, broken YAML ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (MINIMAL + "colour: blue\n", "7: unknown key 'colour'"),
        (MINIMAL + "    retries: 3\n", "7: unknown key 'retries' in steps[0]"),
        (
            MINIMAL + 'send_window:\n  days: mon\n  hours: "09:00-17:00"\n  tz: UTC\n',
            "10: unknown key 'tz' in send_window",
        ),
    ],
)
def test_unknown_keys_are_refused_at_every_level(tmp_path: Path, text: str, reason: str) -> None:
    assert error_of(tmp_path, text) == reason


def test_an_unknown_key_is_reported_before_the_missing_key_it_misspells(tmp_path: Path) -> None:
    text = MINIMAL.replace("    wait: 0s", "    wiat: 0s")

    assert error_of(tmp_path, text) == "6: unknown key 'wiat' in steps[0]"


def test_duplicate_keys_are_refused_on_the_second_one(tmp_path: Path) -> None:
    text = MINIMAL.replace("    wait: 0s", "    wait: 0s\n    wait: 2d")

    assert error_of(tmp_path, text) == "7: duplicate key 'wait' (first on line 6)"


def test_an_unclosed_bracket_is_reported_where_it_opens(tmp_path: Path) -> None:
    text = MINIMAL + "stop_on: [reply, bounce\n"

    assert error_of(tmp_path, text) == (
        "7: invalid YAML: '[' opened here is never closed "
        "(expected ',' or ']', but got '<stream end>' on line 8)"
    )


def test_tab_indentation_is_reported_on_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("    template: hello", "\ttemplate: hello")

    assert error_of(tmp_path, text) == "5: invalid YAML: a tab character: indent YAML with spaces"


def test_a_list_at_the_top_level_is_refused(tmp_path: Path) -> None:
    assert error_of(tmp_path, "- a\n- b\n") == "1: the top level must be a mapping of keys"


def test_an_empty_file_lacks_every_key(tmp_path: Path) -> None:
    assert error_of(tmp_path, "") == "1: missing key 'name'"


# --- finding sequences by name ----------------------------------------------------------


def test_a_sequence_is_found_by_its_name_not_its_file_name(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    wanted = write(tmp_path, MINIMAL.replace("name: short", "name: trade-show"), "b.yml")

    assert resolve_sequence("trade-show", tmp_path) == wanted


def test_a_sequence_is_found_by_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, "x.yaml")

    assert resolve_sequence(str(path), tmp_path / "elsewhere") == path


def test_a_missing_sequence_file_path_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")

    with pytest.raises(SpecError) as caught:
        resolve_sequence(missing, tmp_path)
    assert str(caught.value) == f"{missing}: no such sequence file"


def test_an_unknown_sequence_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    (tmp_path / "notes.txt").write_text("name: ghost\n")

    with pytest.raises(SpecError) as caught:
        resolve_sequence("ghost", tmp_path)
    assert str(caught.value) == f"{tmp_path}: no sequence named 'ghost'"


def test_a_missing_sequences_folder_finds_nothing(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no sequence named 'short'"):
        resolve_sequence("short", tmp_path / "absent")


def test_two_files_with_the_same_name_are_ambiguous(tmp_path: Path) -> None:
    first = write(tmp_path, MINIMAL, "a.yaml")
    second = write(tmp_path, MINIMAL, "b.yaml")

    with pytest.raises(SpecError) as caught:
        resolve_sequence("short", tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: several sequences are named 'short': {first}, {second}"
    )


def test_a_broken_file_is_reported_when_no_name_matches(tmp_path: Path) -> None:
    broken = write(tmp_path, "name: [oops\n", "broken.yaml")
    write(tmp_path, "- a list\n", "list.yaml")
    write(tmp_path, "name: 5\n", "number.yaml")

    with pytest.raises(SpecError) as caught:
        resolve_sequence("oops", tmp_path)
    assert str(caught.value).startswith(f"{broken}:1: invalid YAML:")


def test_a_broken_file_does_not_hide_a_sequence_that_matches(tmp_path: Path) -> None:
    write(tmp_path, "name: [oops\n", "broken.yaml")
    good = write(tmp_path, MINIMAL, "good.yaml")

    assert resolve_sequence("short", tmp_path) == good


# --- loading a folder -------------------------------------------------------------------


def test_all_sequences_load_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL.replace("name: short", "name: zebra"), "a.yaml")
    write(tmp_path, MINIMAL.replace("name: short", "name: alpha"), "b.yml")
    (tmp_path / "README.md").write_text("not a sequence")
    (tmp_path / "folder.yaml").mkdir()

    assert [sequence.name for sequence in load_sequences(tmp_path)] == ["alpha", "zebra"]


def test_two_sequences_with_one_name_are_refused_on_the_second_name_line(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL, "a.yaml")
    second = write(tmp_path, "# same name again\n" + MINIMAL, "b.yaml")

    with pytest.raises(SpecError) as caught:
        load_sequences(tmp_path)
    assert str(caught.value) == (
        f"{second}:2: sequence name 'short' is also used by {tmp_path / 'a.yaml'}"
    )


def test_a_missing_sequences_folder_loads_no_sequences(tmp_path: Path) -> None:
    assert load_sequences(tmp_path / "absent") == []


def test_a_broken_sequence_stops_loading_the_folder(tmp_path: Path) -> None:
    broken = write(tmp_path, MINIMAL + "extra: 1\n", "a.yaml")

    with pytest.raises(SpecError) as caught:
        load_sequences(tmp_path)
    assert str(caught.value) == f"{broken}:7: unknown key 'extra'"


# --- holidays, jitter and pacing (issue 8) ----------------------------------------------


def top(extra: str) -> str:
    return MINIMAL.replace("steps:", f"{extra}\nsteps:")


def test_holidays_pacing_and_spread_are_off_unless_set(tmp_path: Path) -> None:
    sequence = load(tmp_path, MINIMAL)
    assert sequence.holidays is None and sequence.reads_country
    assert sequence.pacing == Pacing() and not sequence.pacing.active
    assert load(tmp_path, window("mon-fri")).send_window.spread == timedelta(0)  # type: ignore[union-attr]


def test_holidays_take_a_list_of_country_codes_or_none(tmp_path: Path) -> None:
    assert load(tmp_path, top("holidays: [US, de]")).holidays == frozenset({"US", "DE"})
    off = load(tmp_path, top("holidays: none"))
    assert off.holidays == frozenset() and not off.reads_country


@pytest.mark.parametrize(("value", "reason"), [
    ("[USA]", "3: holidays: 'USA' is not an ISO 3166 alpha-2 country code"),
    ("[XX]", "3: holidays: 'XX' is not an ISO 3166 alpha-2 country code"),
    ("US", "3: holidays: must be a list of country codes such as [US, DE], or none"),
    ("[]", "3: holidays: must be a list of country codes such as [US, DE], or none"),
])
def test_unknown_holiday_countries_are_refused_on_their_line(
    tmp_path: Path, value: str, reason: str
) -> None:
    assert error_of(tmp_path, top(f"holidays: {value}")).startswith(reason)


def test_min_gap_and_max_per_week_load(tmp_path: Path) -> None:
    sequence = load(tmp_path, top("min_gap: 3d\nmax_per_week: 2"))
    assert sequence.pacing == Pacing(min_gap=timedelta(days=3), max_per_week=2)
    assert sequence.pacing.active


@pytest.mark.parametrize(("text", "reason"), [
    ("min_gap: 0s", "3: min_gap: must be longer than zero, such as 3d"),
    ("min_gap: 3", "3: min_gap: "),
    ("max_per_week: 0", "3: max_per_week: must be a whole number of emails, at least 1"),
    ("max_per_week: two", "3: max_per_week: must be a whole number of emails, at least 1"),
    ("max_per_week: true", "3: max_per_week: must be a whole number of emails, at least 1"),
])
def test_bad_pacing_is_refused_on_its_line(tmp_path: Path, text: str, reason: str) -> None:
    assert error_of(tmp_path, top(text)).startswith(reason)


def test_a_send_window_spread_is_read_and_must_fit_the_window(tmp_path: Path) -> None:
    spread = window("mon-fri").replace('"09:00-17:00"}', '"09:00-17:00", spread: 30m}')
    assert load(tmp_path, spread).send_window.spread == timedelta(minutes=30)  # type: ignore[union-attr]
    too_long = window("mon-fri", '"09:00-10:00", spread: 2h')
    assert error_of(tmp_path, too_long).startswith(
        "3: send_window: spread must be between 0 and the length of the window")


def test_ahead_of_columns_are_the_date_columns(tmp_path: Path) -> None:
    sequence = load(tmp_path, with_step("ahead_of: decision_date\nlead: 2w\n"))
    assert sequence.date_columns == frozenset({"decision_date"})


# --- caps (RELIABILITY X8) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "text", "reason"),
    [
        ("wait", "9999999w", "steps[0].wait: '9999999w' is longer than 5 years, the longest a "
         "wait or lead may be"),
        ("wait", "1827d", "steps[0].wait: '1827d' is longer than 5 years"),
        ("wait", "99999999999 business days", "steps[0].wait: '99999999999 business days' is "
         "more than 1305 business days (5 years), the longest wait"),
        ("wait", "1" + "0" * 5000 + " business days", "steps[0].wait: "),
        ("wait", "9" * 400 + "s", "steps[0].wait: "),
    ],
)
def test_a_wait_longer_than_five_years_is_refused_on_its_line(
        tmp_path: Path, key: str, text: str, reason: str) -> None:
    error = error_of(tmp_path, MINIMAL.replace("wait: 0s", f"{key}: {text}"))
    assert error.startswith(f"6: {reason}"), error


def test_a_lead_longer_than_five_years_is_refused_on_its_line(tmp_path: Path) -> None:
    text = with_step("ahead_of: follow_up_by\nlead: 9999999w\n")
    assert error_of(tmp_path, text) == (
        "11: steps[1].lead: '9999999w' is longer than 5 years, the longest a wait or lead may be")


def test_five_years_is_still_a_wait_and_a_lead(tmp_path: Path) -> None:
    text = with_step("ahead_of: follow_up_by\nlead: 1826d\n").replace("wait: 1d", "wait: 260w")
    sequence = load(tmp_path, text)
    assert sequence.step(1).wait == Wait(timedelta(weeks=260))
    assert sequence.step(1).lead == timedelta(days=1826)
    assert load(tmp_path, MINIMAL.replace("wait: 0s", "wait: 1305 business days")).step(0).wait \
        == Wait(timedelta(0), 1305)

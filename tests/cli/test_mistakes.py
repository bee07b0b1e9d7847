"""Settings and file mistakes through the real `sequencer` command (RELIABILITY X8–X13):
each one is a clear `file:line: reason` with exit 1 and no traceback, before anything is
stored; nothing already stored is lost, and no enrollment is failed for good."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sequencer.store.db import Store
from sequencer.store.schema import enrollments, sends
from tests.fixtures.smtp import SmtpServer
from tests.timetravel import Driver, SteppedClock
from tests.workdir import (
    THREE_STEPS,
    Workdir,
    make_workdir,
    prospects_csv,
    terminate,
    wait_until,
)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def failed_with(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    no_traceback(result)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert re.search(pattern, result.stderr), result.stderr


def emails(wd: Workdir) -> list[str]:
    return sorted(s["email"] for s in wd.status())


def test_x8_a_wait_or_lead_that_would_overflow_the_calendar_is_refused_with_its_line(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525, wait3="9999999w")
    for command in (["validate"], ["enroll", "three", str(prospects_csv(wd, ["a@example.com"]))]):
        failed_with(wd.cli(*command), r"sequences/three\.yaml:14: steps\[2\]\.wait: '9999999w' "
                    r"is longer than 5 years")
    wd.write("sequences/three.yaml", wd.path.joinpath("sequences/three.yaml").read_text()
             .replace("wait: 9999999w", "wait: 1d\n    ahead_of: follow_up_by\n"
                      "    lead: 9999999w"))
    failed_with(wd.cli("validate"), r"sequences/three\.yaml:16: steps\[2\]\.lead: '9999999w' "
                r"is longer than 5 years")
    wd.write("sequences/three.yaml", THREE_STEPS.format(name="three", wait2="1d", wait3="1d"))
    assert emails(wd) == []  # nothing was enrolled while the file was wrong


def test_x8_a_follow_up_date_at_the_end_of_the_calendar_rejects_only_its_row(
        tmp_path: Path) -> None:
    sequence = ("name: three\nmailbox: sales\ntimezone: Asia/Tokyo\nsteps:\n"
                "  - {name: hello, template: thank_you, wait: 0s, ahead_of: follow_up_by, "
                "lead: 260w}\n")
    wd = make_workdir(tmp_path, 2525, sequence=sequence)
    csv = wd.write("prospects.csv", "email,first_name,follow_up_by\n"
                   "ann@example.com,Ann,0001-01-01\nbo@example.com,Bo,9999-12-31\n"
                   "cy@example.com,Cy,2027-03-01\n")
    result = wd.cli("enroll", "three", str(csv))
    no_traceback(result)
    assert result.returncode == 0 and "enrolled 1, rejected 2" in result.stdout, result.stderr
    assert re.search(r"prospects\.csv:2: .*`follow_up_by` 0001-01-01 is out of range",
                     result.stderr)
    assert re.search(r"prospects\.csv:3: .*`follow_up_by` 9999-12-31 is out of range",
                     result.stderr)
    assert emails(wd) == ["cy@example.com"]


def test_x10_a_bad_cell_after_row_2000_stores_nothing(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    good = [f"p{i}@example.com" for i in range(2500)]
    csv = prospects_csv(wd, good)
    with csv.open("a", encoding="utf-8") as handle:  # a quote never closed: one huge cell
        handle.write('late@example.com,"Late,Co\n' + "x" * 200_000 + "\n")
    result = wd.cli("enroll", "three", str(csv))
    failed_with(result, r"prospects\.csv:2502: unreadable CSV: a cell is longer than 131072 "
                r"characters \(a quote that is never closed\?\)")
    assert "enrolled" not in result.stdout
    assert emails(wd) == []
    csv.write_text(csv.read_text().split("late@")[0])  # fixed: the same file goes in whole
    result = wd.cli("enroll", "three", str(csv), check=True)
    assert "enrolled 2500, rejected 0" in result.stdout
    assert len(wd.status()) == 2500


def test_x10_rejected_rows_are_still_reported_one_by_one_and_the_rest_enrolled(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["old@example.com"], "first.csv")),
           check=True)
    wd.cli("suppress", "gone@example.com", check=True)
    csv = wd.write("prospects.csv", "email,first_name\nnew@example.com,New\nnot-an-address,X\n"
                   "new@example.com,Again\nold@example.com,Old\ngone@example.com,Gone\n")
    result = wd.cli("enroll", "three", str(csv))
    no_traceback(result)
    assert result.returncode == 0 and "enrolled 1, rejected 4 (5 rows)" in result.stdout
    for line, reason in ((3, "invalid address"), (4, "duplicate of line 2"),
                         (5, "already enrolled in three"), (6, r"suppressed \(by hand\)")):
        assert re.search(rf"prospects\.csv:{line}: rejected .*{reason}", result.stderr), \
            result.stderr
    assert emails(wd) == ["new@example.com", "old@example.com"]


def test_x12_yaml_nested_20000_deep_is_a_file_line_error(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.write("sequences/deep.yaml", "name: deep\nmailbox: sales\nsteps: " + "[" * 20_000
             + "]" * 20_000 + "\n")
    failed_with(wd.cli("validate"), r"sequences/deep\.yaml:3: invalid YAML: nested more "
                r"than 64 levels deep")
    deep_settings = wd.config.read_text() + "extra: " + "[" * 20_000 + "]" * 20_000 + "\n"
    wd.config.write_text(deep_settings)
    line = deep_settings.count("\n")
    for command in (["validate"], ["status"], ["run"]):
        failed_with(wd.cli(*command), rf"sequencer\.yaml:{line}: invalid YAML: nested more "
                    r"than 64 levels deep")


def test_x13_one_broken_sequence_file_leaves_status_stop_and_suppress_usable(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com",
                                                     "cy@example.com"])), check=True)
    wd.write("sequences/broken.yaml", "name: broken\nmailbox: sales\nwiat: 2d\nsteps: []\n")
    warning = r"warning: .*sequences/broken\.yaml:3: unknown key 'wiat' \(skipped\)"
    result = wd.cli("status")
    assert result.returncode == 0 and "ann@example.com" in result.stdout, result.stderr
    assert re.search(warning, result.stderr), result.stderr
    assert len(wd.status()) == 3
    for command, out in ((["pause", "ann@example.com"], "paused: ann@example.com"),
                         (["resume", "ann@example.com"], "resumed: ann@example.com"),
                         (["stop", "bo@example.com"], "stopped: bo@example.com"),
                         (["suppress", "cy@example.com"], "suppressed: cy@example.com")):
        result = wd.cli(*command)
        no_traceback(result)
        assert result.returncode == 0 and out in result.stdout, (command, result.stderr)
        assert re.search(warning, result.stderr), result.stderr
    states = {s["email"]: s["state"] for s in wd.status()}
    assert states == {"ann@example.com": "active", "bo@example.com": "stopped",
                      "cy@example.com": "stopped"}
    # what would send, or enroll into the sequences, still refuses to work around it
    for command in (["run"], ["validate"],
                    ["enroll", "three", str(prospects_csv(wd, ["dee@example.com"], "d.csv"))]):
        failed_with(wd.cli(*command), r"error: .*sequences/broken\.yaml:3: unknown key 'wiat'")
    assert len(wd.status()) == 3


def test_status_without_a_settings_file_is_an_error_and_creates_nothing(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.config.unlink()
    for command in (["status"], ["stop", "ann@example.com"], ["suppress", "ann@example.com"],
                    ["run"], ["validate"], ["enroll", "three", "prospects.csv"],
                    ["preview", "three", "--email", "ann@example.com"]):
        failed_with(wd.cli(*command), rf"error: {re.escape(str(wd.config))}: no settings "
                    r"file \(run sequencer in your working folder, or pass --config or set "
                    r"SEQUENCER_CONFIG\)")
    assert sorted(p.name for p in wd.path.iterdir()) == ["sequences", "templates"]


def test_an_unusable_database_url_is_a_clear_error_with_its_line(tmp_path: Path) -> None:
    cases = {
        "mysql://app@127.0.0.1/crm": r"database: unsupported database 'mysql': use "
        r"sqlite:///PATH or postgresql\+psycopg://",
        "oracle+cx_oracle://app@127.0.0.1/crm": r"database: unsupported database 'oracle'",
        "nosuch://x": r"database: unsupported database 'nosuch'",
        "postgresql+psycopg2://app@127.0.0.1/crm": r"database: the driver 'psycopg2' is not "
        r"installed \(No module named 'psycopg2'\): use postgresql\+psycopg://",
        "sqlite:///:memory:": r"database: an in-memory database is gone when the command "
        r"ends: use sqlite:///PATH",
        "sqlite://": r"database: an in-memory database is gone",
    }
    wd = make_workdir(tmp_path, 2525)
    settings = wd.config.read_text()
    for url, reason in cases.items():
        wd.config.write_text(settings.replace("database: sqlite:///sequencer.db",
                                              f'database: "{url}"'))
        commands = (["status"], ["validate"], ["run"]) if url.startswith("mysql") else (
            ["status"],)
        for command in commands:
            failed_with(wd.cli(*command), rf"sequencer\.yaml:1: {reason}")
        result = wd.cli("status", extra_env={"SEQUENCER_DATABASE_URL": url})
        failed_with(result, rf"\$SEQUENCER_DATABASE_URL: {reason.removeprefix('database: ')}")
    assert not (wd.path / "sequencer.db").exists()


def test_an_unreachable_database_is_an_error_for_every_command_not_a_traceback(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525, database="sqlite:///no/such/folder/seq.db")
    csv = prospects_csv(wd, ["ann@example.com"])
    for command in (["status"], ["stop", "ann@example.com"], ["suppress", "ann@example.com"],
                    ["enroll", "three", str(csv)], ["preview", "three", "--email", "a@b.c"],
                    ["run"]):
        failed_with(wd.cli(*command), r"error: cannot prepare the database sqlite:///.*"
                    r"no/such/folder/seq\.db: unable to open database file")


def test_x9_a_template_error_is_refused_when_the_worker_starts(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    wd.write("templates/new_info.txt.j2", "Subject: New\n\n{{ company | nosuchfilter }}\n")
    redis = {"SEQUENCER_BROKER_URL": "redis://127.0.0.1:9/0"}  # refused before connecting
    for command in (["run"], ["worker"], ["scheduler"]):
        failed_with(wd.cli(*command, extra_env=redis), r"error: .*templates/new_info\.txt\.j2:3:"
                    r" .*nosuchfilter.* \(step new-information of .*sequences/three\.yaml:12\)")
    assert [(s["state"], s["flag"]) for s in wd.status()] == [("active", None)]


def test_x9_a_send_time_template_error_pauses_with_a_flag_and_resume_sends_after_the_fix(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1s", wait3="1s")
    wd.write("templates/reminder.txt.j2", "Subject: Reminder for {{ first_name }}\n\n"
             "{% if first_name == 'Bo' %}{{ 1 // 0 }}{% endif %}Just a reminder.\n")
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    proc = wd.start("run")
    try:
        wait_until(lambda: {s["state"] for s in wd.status()} == {"completed", "paused"}, 30,
                   "ann completed, bo paused")
    finally:
        assert terminate(proc) == 0
    bo = next(s for s in wd.status() if s["email"] == "bo@example.com")
    assert bo["flag"].startswith("settings: cannot compose step reminder: ")
    table = wd.cli("status", check=True).stdout
    assert re.search(r"bo@example\.com +three +paused +1 +thank-you +- +settings: cannot "
                     r"compose step reminder", table), table
    assert re.search(r"paused +sales three/reminder bo@example\.com .*ZeroDivisionError.*fix "
                     r"it, then `sequencer resume`", wd.log()), wd.log()
    wd.write("templates/reminder.txt.j2", "Subject: Reminder for {{ first_name }}\n\nHi.\n")
    result = wd.cli("resume", "bo@example.com", check=True)
    assert "resumed: bo@example.com in three" in result.stdout
    proc = wd.start("run")
    try:
        wait_until(lambda: {s["state"] for s in wd.status()} == {"completed"}, 30, "completed")
    finally:
        assert terminate(proc) == 0
    to_bo = [str(d.message["Subject"]) for d in smtp_server.deliveries
             if d.rcpt_tos == ["bo@example.com"]]
    assert to_bo == ["Thanks, Bo", "Re: Thanks, Bo", "New for Co1"]
    assert len(smtp_server.deliveries) == 6


def test_x9_a_csv_column_named_like_a_template_function_is_refused_at_enroll(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.write("templates/reminder.txt.j2",
             "Subject: Reminder\n\n{% for i in range(3) %}.{% endfor %}\n")
    rows = "".join(f"p{i}@example.com,P{i},{i}\n" for i in range(3000))
    csv = wd.write("prospects.csv", "email,first_name,range\n" + rows)
    failed_with(wd.cli("enroll", "three", str(csv)), r"prospects\.csv:1: column `range` "
                r"\(column 3\) cannot be used: it would hide the template function range\(\); "
                r"rename it")
    assert emails(wd) == []


def test_x11_templates_whose_work_has_no_bound_are_refused_at_validate(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.write("templates/reminder.txt.j2", "Subject: Reminder\n\n{% macro f(n) %}{% if n %}"
             "{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}\n")
    wd.write("templates/new_info.txt.j2", "Subject: New\n\n{% set s = 'x' * 1000000 %}\n"
             "{% for i in range(9999) %}{{ s|list|map('upper')|join|length }}{% endfor %}\n")
    result = wd.cli("validate", timeout=60)
    failed_with(result, r"templates/reminder\.txt\.j2:3: macro `f` calls itself: recursive "
                r"macros are not allowed \(step reminder")
    assert re.search(r"templates/new_info\.txt\.j2:4: refused by the sandbox: more than "
                     r"20000 filter, test, macro or method calls \(step new-information",
                     result.stderr), result.stderr
    csv = prospects_csv(wd, ["ann@example.com"])
    failed_with(wd.cli("enroll", "three", str(csv), timeout=60), r"macro `f` calls itself")
    assert emails(wd) == []


def stored(wd: Workdir) -> dict[str, tuple[str, str | None, int]]:
    """Each enrollment's state, flag and sends, read from the database."""
    sent = select(func.count()).where(sends.c.enrollment_id == enrollments.c.id,
                                      sends.c.status == "sent").scalar_subquery()
    store = Store(f"sqlite:///{wd.path / 'sequencer.db'}")
    try:
        with store.read() as conn:
            return {r.email: (r.state, r.flag, r.sent) for r in conn.execute(
                select(enrollments.c.email, enrollments.c.state, enrollments.c.flag,
                       sent.label("sent")))}
    finally:
        store.dispose()


T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# Each `sequencer` command costs about 2.5 s of CPU to start; these tests run up to ten of
# them, which on a loaded 2-core machine can pass the default 120 s.
SEVERAL_COMMANDS = pytest.mark.timeout(300)


def sent_first_steps_then_renamed(tmp_path: Path, smtp_server: SmtpServer, people: list[str]
                                  ) -> tuple[Workdir, SteppedClock, Driver, str]:
    """Every first step sent through `run`, then `name: three` changed to `follow-up` and
    the clock moved on until every next step is due."""
    clock = SteppedClock(tmp_path / "clock", T0)
    wd = make_workdir(tmp_path / "wd", smtp_server.port, wait2="1d", wait3="1d")
    wd.env.update(clock.env)
    wd.cli("enroll", "three", str(prospects_csv(wd, people)), check=True)
    driver = Driver(wd, clock, smtp_server)
    proc = wd.start("run")
    try:
        driver.settle()  # every thank-you went out; the reminders are due tomorrow
    finally:
        assert terminate(proc) == 0, wd.log()
    assert len(smtp_server.deliveries) == len(people)
    sequence = wd.path / "sequences/three.yaml"
    original = sequence.read_text()
    sequence.write_text(original.replace("name: three", "name: follow-up"))
    clock.set(T0 + timedelta(days=3))  # everything left is due, and nothing may go out
    return wd, clock, driver, original


RENAMED = (r"sequences/three\.yaml:1: sequence name changed from 'three' to 'follow-up' while "
           r"3 enrollments are active or paused \(2 active, 1 paused\): put `name: three` back "
           r"and they go on where they left off, or end them first \(`sequencer status "
           r"--sequence three` lists them; `sequencer stop EMAIL --sequence three` ends one\)")


@SEVERAL_COMMANDS
def test_x9_a_sequence_renamed_under_active_enrollments_is_refused_at_load_and_fails_none(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ["ann@example.com", "bo@example.com", "cy@example.com", "dee@example.com"]
    wd, _, driver, _ = sent_first_steps_then_renamed(tmp_path, smtp_server, people)
    driver.close()
    # what only reads or stops enrollments works, and says what is wrong
    for command, out in ((["pause", "cy@example.com"], "paused: cy@example.com"),
                         (["suppress", "dee@example.com"], "suppressed: dee@example.com")):
        result = wd.cli(*command)
        no_traceback(result)
        assert result.returncode == 0 and out in result.stdout, (command, result.stderr)
    result = wd.cli("status")
    assert result.returncode == 0 and "ann@example.com" in result.stdout, result.stderr
    assert re.search("warning: .*" + RENAMED, result.stderr), result.stderr
    # what would send or enroll refuses to start, naming the file and the line
    csv = prospects_csv(wd, ["eve@example.com"], "more.csv")
    for command in (["run"], ["worker"], ["validate"], ["enroll", "follow-up", str(csv)]):
        failed_with(wd.cli(*command), "error: .*" + RENAMED)
    assert len(smtp_server.deliveries) == 4  # nothing sent
    assert stored(wd) == {"ann@example.com": ("active", None, 1),
                          "bo@example.com": ("active", None, 1),
                          "cy@example.com": ("paused", None, 1),
                          "dee@example.com": ("stopped", None, 1)}  # nothing failed


@SEVERAL_COMMANDS
def test_x9_the_name_put_back_the_same_enrollments_go_on_where_they_were(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ["ann@example.com", "bo@example.com", "cy@example.com"]
    wd, _, driver, original = sent_first_steps_then_renamed(tmp_path, smtp_server, people)
    try:
        failed_with(wd.cli("run"), r"error: .*sequences/three\.yaml:1: sequence name changed "
                    r"from 'three' to 'follow-up' while 3 enrollments are active")
        (wd.path / "sequences/three.yaml").write_text(original)
        proc = wd.start("run")
        try:
            driver.run(until=T0 + timedelta(weeks=2))
        finally:
            assert terminate(proc) == 0, wd.log()
    finally:
        driver.close()
    for number, person in enumerate(("ann", "bo", "cy")):
        name = person.title()
        assert [str(d.message["Subject"]) for d in smtp_server.deliveries
                if d.rcpt_tos == [f"{person}@example.com"]] == [
            f"Thanks, {name}", f"Re: Thanks, {name}", f"New for Co{number}"]
    assert len(smtp_server.deliveries) == 9
    assert {email: state for email, (state, _, _) in stored(wd).items()} == dict.fromkeys(
        people, "completed")
    assert "failed" not in wd.log() and "paused " not in wd.log(), wd.log()


WEBINAR = ("name: webinar\nmailbox: sales\nsteps:\n"
           "  - {name: invite, template: thank_you, wait: 0s}\n"
           "  - {name: last-call, template: new_info, wait: 1d}\n")


def enrolled_in_two(wd: Workdir) -> None:
    wd.write("sequences/webinar.yaml", WEBINAR)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    wd.cli("enroll", "webinar", str(prospects_csv(wd, ["bo@example.com"], "b.csv")), check=True)


@SEVERAL_COMMANDS
def test_x9_the_renamed_file_is_told_apart_from_a_new_one_by_the_steps_it_sent(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, wait2="1d", wait3="1d")
    enrolled_in_two(wd)
    proc = wd.start("run")
    try:
        wait_until(lambda: len(smtp_server.deliveries) == 2, 30, "the first steps")
    finally:
        assert terminate(proc) == 0, wd.log()
    sequence = wd.path / "sequences/three.yaml"
    original = sequence.read_text()
    # moved to another file and renamed, beside a brand-new sequence: the step that was
    # sent tells which one it was
    sequence.unlink()
    wd.write("sequences/a-new-one.yaml", "# a new sequence\nname: launch\nmailbox: sales\n"
             "steps:\n  - {name: announce, template: thank_you, wait: 0s}\n")
    wd.write("sequences/renamed.yaml", "# was three\n" + original.replace("name: three",
                                                                         "name: trade-show"))
    failed_with(wd.cli("run"), r"error: .*sequences/renamed\.yaml:2: sequence name changed "
                r"from 'three' to 'trade-show' while 1 enrollment is active: put `name: three` "
                r"back and it goes on where it left off, or end it first")
    # only a new one that shares nothing with it: named, but as a maybe
    (wd.path / "sequences/renamed.yaml").unlink()
    failed_with(wd.cli("run"), r"error: .*sequences/a-new-one\.yaml:2: no file defines sequence "
                r"'three' any more while 1 enrollment is active, and 'launch' here is new: if "
                r"it is 'three' renamed, put `name: three` back and it goes on where it left "
                r"off; if not, put 'three''s file back, or end it first")
    assert len(smtp_server.deliveries) == 2
    assert stored(wd) == {"ann@example.com": ("active", None, 1),
                          "bo@example.com": ("active", None, 1)}


@SEVERAL_COMMANDS
def test_x9_a_sequence_file_removed_under_an_active_enrollment_is_refused_until_it_ends(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    enrolled_in_two(wd)
    (wd.path / "sequences/three.yaml").unlink()
    for command in (["run"], ["validate"]):
        failed_with(wd.cli(*command), r"error: .*/sequences: no file defines sequence 'three' "
                    r"any more \(removed, or its name: changed\) while 1 enrollment is active: "
                    r"put the file back and it goes on where it left off, or end it first")
    result = wd.cli("validate", "sequences/webinar.yaml")  # says nothing about other files
    assert result.returncode == 0 and "ok: webinar" in result.stdout, result.stderr
    wd.cli("stop", "ann@example.com", check=True)  # ended on purpose: nothing to refuse
    result = wd.cli("validate")
    assert result.returncode == 0 and "ok: webinar" in result.stdout, result.stderr
    assert stored(wd) == {"ann@example.com": ("stopped", None, 0),
                          "bo@example.com": ("active", None, 0)}

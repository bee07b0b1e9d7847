"""One active sequence per prospect (``max_active_sequences``) and ``--move``, in the store:
SQLite and PostgreSQL, and the import staying one unit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from sequencer.config import load_settings
from sequencer.errors import EnrollError
from sequencer.prospects import Prospect
from sequencer.store.enrollments import Enrolled, Rules, enroll
from sequencer.store.schema import enrollments, events
from sequencer.usecases.importing import load_checked_sequence, run_enroll
from sequencer.workspace import Workspace
from tests.workdir import Workdir, make_workdir, prospects_csv

ONE_STEP = "name: {name}\nmailbox: sales\nsteps:\n  - {{name: a, template: reminder, wait: 1d}}\n"


def workspace(tmp_path: Path, extra: str = "", database: str | None = None
              ) -> tuple[Workdir, Workspace]:
    wd = make_workdir(tmp_path, 2525, extra=extra, database=database)
    for name in ("other", "after"):
        wd.write(f"sequences/{name}.yaml", ONE_STEP.format(name=name))
    return wd, Workspace.from_settings(load_settings(wd.config, env=wd.env))


def states(app: Workspace) -> dict[tuple[str, str], str]:
    with app.store.read() as conn:
        rows = conn.execute(select(enrollments.c.sequence, enrollments.c.email,
                                   enrollments.c.state)).all()
    return {(r.sequence, r.email): r.state for r in rows}


def stopped_events(app: Workspace) -> list[tuple[str, str, str]]:
    with app.store.read() as conn:
        rows = conn.execute(select(events.c.email, events.c.sequence, events.c.detail)
                            .where(events.c.event == "stopped")).all()
    return [(r.email, r.sequence, r.detail) for r in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("pg_database_url")


def test_a_prospect_active_elsewhere_is_rejected_and_move_stops_it_there(
        tmp_path: Path, database: str | None) -> None:
    wd, app = workspace(tmp_path, database=database)
    try:
        run_enroll(app, "three", prospects_csv(wd, ["ann@example.com", "bo@example.com"]),
                   progress=False)
        csv = prospects_csv(wd, ["ann@example.com", "cy@example.com"], "after.csv")

        summary = run_enroll(app, "after", csv, progress=False)
        assert (summary.enrolled, summary.moved) == (1, 0)
        assert [(r.line, r.email, r.reason) for r in summary.rejected] == [
            (2, "ann@example.com", "active in sequence three; use --move")]
        assert states(app)[("three", "ann@example.com")] == "active"
        assert stopped_events(app) == []

        summary = run_enroll(app, "after", csv, progress=False, move=True)
        assert (summary.enrolled, summary.moved) == (1, 1)
        assert states(app) == {
            ("three", "ann@example.com"): "stopped", ("three", "bo@example.com"): "active",
            ("after", "ann@example.com"): "active", ("after", "cy@example.com"): "active"}
        assert stopped_events(app) == [("ann@example.com", "three", "moved to after")]

        # Moving on again: `after` ends the same way; a second --move changes nothing more.
        again = prospects_csv(wd, ["ann@example.com"], "other.csv")
        assert run_enroll(app, "other", again, progress=False, move=True).moved == 1
        assert run_enroll(app, "other", again, progress=False, move=True).enrolled == 0
        assert states(app)[("after", "ann@example.com")] == "stopped"
        assert len(stopped_events(app)) == 2
    finally:
        app.close()


def test_one_person_written_two_ways_is_one_prospect_for_the_rule(tmp_path: Path) -> None:
    wd, app = workspace(tmp_path)
    try:
        run_enroll(app, "three", prospects_csv(wd, ["Ann@Bücher.de"]), progress=False)
        summary = run_enroll(app, "after", prospects_csv(
            wd, ["ann@xn--bcher-kva.de"], "a.csv"), progress=False)
        assert [r.reason for r in summary.rejected] == ["active in sequence three; use --move"]
        moved = run_enroll(app, "after", prospects_csv(wd, ["ann@xn--bcher-kva.de"], "a.csv"),
                           progress=False, move=True)
        assert moved.moved == 1
        assert [e[1:] for e in stopped_events(app)] == [("three", "moved to after")]
    finally:
        app.close()


def test_paused_counts_as_active_and_a_finished_sequence_does_not(tmp_path: Path) -> None:
    wd, app = workspace(tmp_path)
    try:
        run_enroll(app, "three", prospects_csv(wd, ["ann@example.com", "bo@example.com",
                                                    "cy@example.com"]), progress=False)
        with app.store.write() as conn:
            for email, state in (("ann@example.com", "paused"), ("bo@example.com", "replied"),
                                 ("cy@example.com", "completed")):
                conn.execute(update(enrollments).where(enrollments.c.email == email)
                             .values(state=state))
        summary = run_enroll(app, "after", prospects_csv(
            wd, ["ann@example.com", "bo@example.com", "cy@example.com"], "a.csv"),
            progress=False)
        assert summary.enrolled == 2
        assert [r.email for r in summary.rejected] == ["ann@example.com"]
    finally:
        app.close()


def test_max_active_sequences_allows_more_and_names_them_all_when_full(tmp_path: Path) -> None:
    wd, app = workspace(tmp_path, extra="max_active_sequences: 2\n")
    try:
        for name in ("three", "other"):
            csv = prospects_csv(wd, ["ann@example.com"], f"{name}.csv")
            assert run_enroll(app, name, csv, progress=False).enrolled == 1
        summary = run_enroll(app, "after", prospects_csv(wd, ["ann@example.com"], "a.csv"),
                             progress=False)
        assert [r.reason for r in summary.rejected] == [
            "active in sequences three, other (max_active_sequences: 2); use --move"]
        moved = run_enroll(app, "after", prospects_csv(wd, ["ann@example.com"], "a.csv"),
                           progress=False, move=True)
        assert moved.moved == 1, "--move ends every other active sequence"
        assert sorted(stopped_events(app)) == [
            ("ann@example.com", "other", "moved to after"),
            ("ann@example.com", "three", "moved to after")]
    finally:
        app.close()


def test_a_move_is_part_of_the_import_and_an_import_that_fails_moves_nobody(
        tmp_path: Path) -> None:
    wd, app = workspace(tmp_path)
    try:
        run_enroll(app, "three", prospects_csv(wd, ["ann@example.com"]), progress=False)
        seq = load_checked_sequence(app, "after")
        now = app.clock()

        def rows() -> Iterator[Prospect]:
            yield Prospect(2, "ann@example.com", {"email": "ann@example.com"}, None, None,
                           "ann@example.com")
            raise EnrollError("the file changed under the import", wd.path / "a.csv")

        results = enroll(app.store, seq, rows(), now, lambda _: now, "UTC",
                         rules=Rules(move=True))
        with pytest.raises(EnrollError):
            list(results)
        assert states(app) == {("three", "ann@example.com"): "active"}
        assert stopped_events(app) == []

        done = list(enroll(app.store, seq, iter([
            Prospect(2, "ann@example.com", {"email": "ann@example.com"}, None, None,
                     "ann@example.com")]),
            now, lambda _: now, "UTC", rules=Rules(move=True)))
        assert done == [Enrolled(2, "ann@example.com", now, moved_from=("three",))]
        assert states(app)[("three", "ann@example.com")] == "stopped"
    finally:
        app.close()


def test_an_import_into_a_postgresql_without_statistics_analyzes_after_its_first_batch(
        tmp_path: Path, pg_database_url: str) -> None:
    """A fresh PostgreSQL has no planner statistics, and autovacuum cannot see an import's
    uncommitted rows: the "already enrolled" check then flips to a plan that reads the
    whole table per batch (a 100k import took 227 s). The import analyzes once, after its
    first batch, in its own transaction; the following batches are planned knowing that
    ``email_key`` is nearly unique."""
    from sqlalchemy import event, text

    from sequencer.store.enrollments import BATCH

    wd, app = workspace(tmp_path, database=pg_database_url)
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, parameters: object,
               context: object, executemany: bool) -> None:
        if statement.startswith(("ANALYZE", "INSERT INTO enrollments")):
            seen.append(statement.split(" (")[0])

    emails = [f"p{i}@example.com" for i in range(2 * BATCH + 1)]
    event.listen(app.store.writer, "before_cursor_execute", record)
    try:
        summary = run_enroll(app, "three", prospects_csv(wd, emails), progress=False)
        with app.store.read() as conn:
            tuples = conn.scalar(text(
                "SELECT reltuples FROM pg_class WHERE relname = 'enrollments'"))
    finally:
        event.remove(app.store.writer, "before_cursor_execute", record)
        app.close()
    assert summary.enrolled == len(emails)
    assert seen == ["INSERT INTO enrollments", 'ANALYZE "enrollments"',
                    'ANALYZE "prospects"', 'ANALYZE "suppressions"',
                    "INSERT INTO enrollments", "INSERT INTO enrollments"], seen
    assert tuples == BATCH  # counted inside the import's transaction

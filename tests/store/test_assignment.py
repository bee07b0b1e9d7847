"""Which mailbox a new prospect gets (store.assignment): least-loaded, a failing mailbox
skipped, nothing stored when no mailbox can take prospects, and the pool settings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sequencer.errors import EnrollError
from sequencer.eventlog import EventRecord
from sequencer.store import outcomes
from sequencer.store.status import status
from sequencer.usecases.importing import run_enroll
from tests.fixtures.smtp import SmtpServer, free_port
from tests.harness import Engine
from tests.workdir import Workdir, make_workdir, prospects_csv


def two_boxes(tmp_path: Path, dana_port: int, lee_port: int, assign: str) -> Workdir:
    wd = make_workdir(tmp_path, dana_port, sequence=f"""\
name: one
mailbox: [dana, lee]
assign: {assign}
steps:
  - {{name: only, template: reminder, wait: 0s}}
""")
    wd.write("sequencer.yaml", wd.config.read_text().split("mailboxes:")[0] + f"""\
mailboxes:
  dana:
    from: "Dana <dana@example.com>"
    smtp: {{host: 127.0.0.1, port: {dana_port}, tls: none, timeout: 1s}}
  lee:
    from: "Lee <lee@example.com>"
    smtp: {{host: 127.0.0.1, port: {lee_port}, tls: none, timeout: 1s}}
""")
    return wd


def given(engine: Engine) -> Counter[str]:
    return Counter(r.mailbox for r in status(engine.app.store))


def enroll(engine: Engine, wd: Workdir, prefix: str, n: int) -> None:
    csv = prospects_csv(wd, [f"{prefix}{i}@example.com" for i in range(n)], f"{prefix}.csv")
    assert run_enroll(engine.app, "one", csv, progress=False).enrolled == n


def test_least_loaded_fills_the_mailbox_with_fewer_active_prospects_first(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = two_boxes(tmp_path, smtp_server.port, smtp_server.port, "least-loaded")
    engine = Engine(wd)
    try:
        enroll(engine, wd, "a", 4)
        assert given(engine) == {"dana": 2, "lee": 2}
        engine.step()  # all four sent and completed: nobody is active any more
        outcomes.pause_mailbox(engine.app.store, "lee", "test", _paused_record(engine))
        enroll(engine, wd, "b", 3)  # lee is paused: all three to dana
        outcomes.unpause_mailboxes(engine.app.store)
        enroll(engine, wd, "c", 5)  # dana has 3 active, lee none: lee first, then evenly
        assert given(engine) == {"dana": 2 + 3 + 1, "lee": 2 + 4}
    finally:
        engine.close()


def test_a_failing_mailbox_gets_no_new_prospects_and_keeps_its_own(tmp_path: Path,
                                                                   smtp_server: SmtpServer) -> None:
    wd = two_boxes(tmp_path, smtp_server.port, free_port(), "round-robin")  # lee is down
    engine = Engine(wd)
    try:
        enroll(engine, wd, "a", 4)
        engine.step()  # lee's two attempts find no server: retries pending
        assert len(smtp_server.deliveries) == 2
        enroll(engine, wd, "b", 4)
        rows = list(status(engine.app.store))
        assert Counter(r.mailbox for r in rows if r.email.startswith("b")) == {"dana": 4}
        assert Counter(r.mailbox for r in rows if r.email.startswith("a")) == {
            "dana": 2, "lee": 2}
    finally:
        engine.close()


def test_no_usable_mailbox_refuses_the_import_and_stores_nothing(tmp_path: Path,
                                                                 smtp_server: SmtpServer) -> None:
    wd = two_boxes(tmp_path, smtp_server.port, smtp_server.port, "round-robin")
    engine = Engine(wd)
    try:
        for name in ("dana", "lee"):
            outcomes.pause_mailbox(engine.app.store, name, "535 refused",
                                   _paused_record(engine, name))
        with pytest.raises(EnrollError, match="no mailbox of sequence one can take new "
                                              r"prospects: dana: paused \(535 refused\)"):
            enroll(engine, wd, "a", 3)
        assert list(status(engine.app.store)) == []
    finally:
        engine.close()


@pytest.mark.parametrize(("pools", "line", "reason"), [
    ("pools:\n  sales: [sales]\n", 7, "pool 'sales': a mailbox has that name"),
    ("pools:\n  team: [sales, nobody]\n", 7,
     "pool 'team': 'nobody' is not a mailbox (sales)"),
    ("pools:\n  team: []\n", 7, "pool 'team': list at least one mailbox"),
])
def test_a_bad_pool_is_a_file_line_error(tmp_path: Path, pools: str, line: int,
                                         reason: str) -> None:
    wd = make_workdir(tmp_path, 2525, extra=pools)
    result = wd.cli("validate")
    assert result.returncode == 1
    assert f"sequencer.yaml:{line}: {reason}" in result.stderr


def test_a_sequence_naming_an_unknown_mailbox_in_its_list_is_refused(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525, sequence="""\
name: one
mailbox: [sales, nobody]
steps:
  - {name: only, template: reminder, wait: 0s}
""")
    result = wd.cli("validate")
    assert result.returncode == 1
    assert "three.yaml:2: mailbox 'nobody' is not in the settings (sales)" in result.stderr


def _paused_record(engine: Engine, mailbox: str = "lee") -> EventRecord:
    from sequencer.core.machine import Event

    return EventRecord(Event.PAUSED, engine.clock(), mailbox=mailbox, detail="test")


def test_a_pool_and_mailboxes_mixed_in_one_list_expand_in_order_each_once(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence="""\
name: one
mailbox: [kim, team, lee]
steps:
  - {name: only, template: reminder, wait: 0s}
""")
    boxes = "".join(
        f'  {name}:\n    from: "{name.title()} <{name}@example.com>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {smtp_server.port}, tls: none, timeout: 1s}}\n"
        for name in ("dana", "lee", "kim"))
    wd.write("sequencer.yaml", wd.config.read_text().split("mailboxes:")[0]
             + f"pools:\n  team: [dana, kim, lee]\nmailboxes:\n{boxes}")
    checked = wd.cli("validate", check=True).stdout
    assert "mailboxes kim, dana, lee (round-robin)" in checked
    engine = Engine(wd)
    try:
        enroll(engine, wd, "a", 9)
        assert given(engine) == {"kim": 3, "dana": 3, "lee": 3}
        engine.step()
        senders = Counter(d.message["From"] for d in smtp_server.deliveries)
        assert senders == {f"{n.title()} <{n}@example.com>": 3 for n in ("dana", "lee", "kim")}
    finally:
        engine.close()

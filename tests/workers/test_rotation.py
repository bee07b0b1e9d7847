"""Several mailboxes per sequence (issue 9, "What it must show" 4): three mailboxes, each
its own aiosmtpd, a named pool, `sequencer run --threads 4`. Every prospect's steps come
from one mailbox, new prospects spread evenly, and a paused mailbox gets none (its own
prospects wait for it)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import make_workdir, prospects_csv, terminate, wait_until

BOXES = ("dana", "lee", "kim")
SEQUENCE = """\
name: three
mailbox: team
timezone: UTC
steps:
  - {name: thank-you, template: thank_you, wait: 0s}
  - {name: reminder, template: reminder, wait: 1s, thread: true}
  - {name: new-information, template: new_info, wait: 1s, thread: true}
"""


def test_rotation_over_three_mailboxes_keeps_each_prospect_on_one_and_skips_a_paused_one(
        tmp_path: Path, make_smtp_server: Callable[..., SmtpServer]) -> None:
    servers = {name: make_smtp_server() for name in BOXES}
    servers["kim"].require_auth("kim@example.com", "right")  # kim's password is wrong
    wd = make_workdir(tmp_path, servers["dana"].port, sequence=SEQUENCE, lease="30s")
    boxes = "".join(
        f'  {name}:\n    from: "{name.title()} <{name}@example.com>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {servers[name].port}, tls: none, timeout: 3s"
        + (", username: kim@example.com, password_env: KIM_PW" if name == "kim" else "")
        + "}\n" for name in BOXES)
    wd.write("sequencer.yaml", wd.config.read_text().split("mailboxes:")[0]
             + f"pools:\n  team: [{', '.join(BOXES)}]\nmailboxes:\n{boxes}")
    wd.env["KIM_PW"] = "wrong"
    checked = wd.cli("validate", check=True).stdout
    assert "mailboxes dana, lee, kim (round-robin)" in checked
    first = [f"a{i}@example.com" for i in range(30)]
    wd.cli("enroll", "three", str(prospects_csv(wd, first, "a.csv")), check=True)
    given = {s["email"]: s["mailbox"] for s in wd.status()}
    assert Counter(given.values()) == {"dana": 10, "lee": 10, "kim": 10}
    proc = wd.start("run", "--threads", "4")
    try:
        wait_until(lambda: "paused" in wd.log(), 20, "kim paused by its 535")
        # kim is paused now: new prospects go to the other two only, evenly.
        second = [f"b{i}@example.com" for i in range(20)]
        wd.cli("enroll", "three", str(prospects_csv(wd, second, "b.csv")), check=True)
        given = {s["email"]: s["mailbox"] for s in wd.status()}
        assert Counter(given[e] for e in second) == {"dana": 10, "lee": 10}
        wait_until(lambda: len(servers["dana"].deliveries) + len(servers["lee"].deliveries)
                   >= 120, 60, "three steps to each of the 40 prospects of dana and lee")
        wait_until(lambda: sum(s["state"] == "completed" for s in wd.status()) == 40, 20,
                   "40 completed")
    finally:
        assert terminate(proc) == 0, wd.log()
    assert "Traceback" not in wd.log(), wd.log()
    assert servers["kim"].deliveries == []
    assert "DATA" not in {verb for _, verb in servers["kim"].commands}
    came_from: dict[str, set[str]] = defaultdict(set)
    for name in ("dana", "lee"):
        for d in servers[name].deliveries:
            came_from[d.rcpt_tos[0]].add(name)
            assert d.message["From"] == f"{name.title()} <{name}@example.com>"
    assert {email: boxes for email, boxes in came_from.items()} == {
        email: {given[email]} for email in given if given[email] != "kim"}
    for name in ("dana", "lee"):
        per_prospect = Counter(d.rcpt_tos[0] for d in servers[name].deliveries)
        assert len(per_prospect) == 20 and set(per_prospect.values()) == {3}
    # kim's prospects wait for kim: still assigned to it, active, nothing sent.
    waiting = [s for s in wd.status() if s["mailbox"] == "kim"]
    assert len(waiting) == 10
    assert all(s["state"] == "active" and s["steps_sent"] == 0 for s in waiting)
    deliveries = [d for name in BOXES for d in servers[name].deliveries]
    assert check_invariants(deliveries, f"sqlite:///{wd.path / 'sequencer.db'}") == {
        "sent": 120}

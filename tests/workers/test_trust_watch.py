"""Nothing a stranger writes suppresses anyone; the same messages with proof do (issue 6,
RELIABILITY T1, T2, I1): a DSN, an ARF report and an unsubscribe, each proven by our
Message-ID or by DMARC pass, through `sequencer run` and the real watcher on a Maildir and on
Dovecot, seen as a user sees it: `status`, `status --json`, `enroll`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.inboxes import watched_workdir
from tests.notices import arf, authentication_results, dsn, unsubscribe
from tests.workdir import prospects_csv, terminate, wait_for_watcher, wait_until

OTHER = "name: other\nmailbox: sales\nsteps:\n  - {name: a, template: reminder, wait: 1d}\n"
PEOPLE = ["Ann@X.com", "bob@bücher.de", "cy@y.example", "di@y.example", "ed@z.example",
          "fay@z.example", "gus@w.example", "hal@v.example", "ivy@u.example", "jo@t.example"]
TRUSTED = "mx.ours.example"


def _states(wd: Any) -> dict[tuple[str, str], str]:
    return {(r["email"], r["sequence"]): r["state"] for r in wd.status()}


def test_stranger_notices_suppress_nobody_and_the_same_with_proof_do(
        tmp_path: Path, smtp_server: Any, inbox_kind: tuple[str, Any]) -> None:
    kind, dovecot = inbox_kind
    box = watched_workdir(kind, tmp_path, smtp_server.port, dovecot, wait2="1h",
                          mailbox_extra=f"    authserv_id: {TRUSTED}\n",
                          extra="max_active_sequences: 2\n")  # PEOPLE are in both
    wd = box.wd
    wd.write("sequences/other.yaml", OTHER)
    # `other` first: mail that names an address (no Message-ID) finds the most recent
    # active enrollment of it in this mailbox, `three`
    wd.cli("enroll", "other", str(prospects_csv(wd, PEOPLE, "o.csv")), check=True)
    wd.cli("enroll", "three", str(prospects_csv(wd, PEOPLE)), check=True)
    proc = wd.start("run")
    try:
        first = smtp_server.wait_for(len(PEOPLE), timeout=30)
        ours = {d.rcpt_tos[0].lower(): d.message["Message-ID"] for d in first}
        wait_for_watcher(wd)
        forged = [
            dsn("ann@x.com"),                                     # T1: no Message-ID of ours
            arf("BOB@xn--bcher-kva.de"),                          # T2: a forged complaint
            unsubscribe("cy@y.example"),                          # T2: From only
            unsubscribe("di@y.example", auth=authentication_results(  # a stranger's header
                "mx.stranger.example", "y.example")),
        ]
        proven = [
            dsn("ed@z.example", original_id=ours["ed@z.example"]),
            arf("fay@z.example", original_id=ours["fay@z.example"]),
            unsubscribe("GUS@W.EXAMPLE", in_reply_to=ours["gus@w.example"]),  # other spelling
            unsubscribe("hal@v.example",
                        auth=authentication_results(TRUSTED, "v.example")),
            dsn("ivy@u.example", sender="MAILER-DAEMON@mx.u.example",
                auth=authentication_results(TRUSTED, "mx.u.example")),
            arf("jo@t.example", sender="fbl@t.example",  # the complaint itself DMARC-proven
                auth=authentication_results(TRUSTED, "t.example")),
        ]
        for raw in forged + proven:
            box.deliver(raw)
        wait_until(lambda: wd.log().count(" unverified ") >= 2
                   and sum(1 for (_, seq), s in _states(wd).items()
                           if seq == "three" and s != "active") >= 8, 30,
                   "every message handled")
    finally:
        assert terminate(proc) == 0
    states = _states(wd)
    # the forged ones: nothing suppressed; an unproven unsubscribe halts its own thread only
    assert states[("Ann@x.com", "three")] == "active"
    assert states[("bob@bücher.de", "three")] == "active"
    assert states[("cy@y.example", "three")] == "unsubscribed"
    assert states[("di@y.example", "three")] == "unsubscribed"
    for person in ("Ann@x.com", "bob@bücher.de", "cy@y.example", "di@y.example"):
        assert states[(person, "other")] == "active", f"{person} was suppressed"
    # the proven ones: suppressed, so their other sequence halted too
    assert states[("ed@z.example", "three")] == "bounced"
    assert states[("fay@z.example", "three")] == "unsubscribed"
    assert states[("gus@w.example", "three")] == "unsubscribed"
    assert states[("hal@v.example", "three")] == "unsubscribed"
    assert states[("ivy@u.example", "three")] == "bounced"
    assert states[("jo@t.example", "three")] == "unsubscribed"
    for person in ("ed@z.example", "fay@z.example", "gus@w.example", "hal@v.example",
                   "ivy@u.example", "jo@t.example"):
        assert states[(person, "other")] != "active", f"{person} was not suppressed"
    again = wd.cli("enroll", "three", str(prospects_csv(
        wd, ["ann@X.COM", "cy@Y.example", "ED@z.example", "Gus@w.example"], "again.csv")),
        check=True)
    assert "again.csv:4: rejected ED@z.example: suppressed" in again.stderr
    assert "again.csv:5: rejected Gus@w.example: suppressed" in again.stderr
    assert "again.csv:2: rejected ann@x.com: already enrolled" in again.stderr
    assert "again.csv:3: rejected cy@y.example: already enrolled" in again.stderr
    # shown for review, in the table and in --json, and logged
    text = wd.cli("status", check=True).stdout
    assert "4 unverified inbound message(s)" in text
    for who in ("Ann@x.com", "bob@bücher.de", "cy@y.example", "di@y.example"):
        assert any(line.strip().split(" ")[2] == who for line in text.splitlines()
                   if line.startswith("  20")), who
    rows = {(r["email"], r["sequence"]): r for r in json.loads(
        wd.cli("status", "--json", check=True).stdout)}
    ann = rows[("Ann@x.com", "three")]["unverified"]
    assert [(n["kind"], n["proof"], n["action"]) for n in ann] == [
        ("hard_bounce", "none", "review")]
    assert "no Message-ID of ours" in ann[0]["detail"]
    assert [n["kind"] for n in rows[("bob@bücher.de", "three")]["unverified"]] == ["complaint"]
    assert [(n["kind"], n["action"]) for n in rows[("cy@y.example", "three")]["unverified"]] \
        == [("unsubscribe", "halt")]
    assert rows[("ed@z.example", "three")]["unverified"] == []
    log = wd.log()
    assert log.count("unverified") >= 2 and "not acted on" in log

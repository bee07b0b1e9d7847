"""One person, many spellings, through the real CLI (issue 6, RELIABILITY I1, I2, I3):
enroll, re-enroll, preview, pause/resume/stop/suppress, status, and what goes on the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.harness import Engine
from tests.workdir import Workdir, make_workdir, prospects_csv

OTHER = "name: other\nmailbox: sales\nsteps:\n  - {name: a, template: reminder, wait: 1d}\n"


def _workdir(tmp_path: Path, smtp_server: Any) -> Workdir:
    # one person in two sequences at once: max_active_sequences allows it
    wd = make_workdir(tmp_path, smtp_server.port, extra="max_active_sequences: 2\n")
    wd.write("sequences/other.yaml", OTHER)
    return wd


def test_two_csvs_with_different_spellings_enroll_one_person_once(tmp_path: Path,
                                                                  smtp_server: Any) -> None:
    wd = _workdir(tmp_path, smtp_server)
    first = wd.cli("enroll", "three", str(prospects_csv(wd, ["Ann@X.com", "bob@bücher.de"])),
                   check=True)
    assert "enrolled 2, rejected 0" in first.stdout
    again = wd.cli("enroll", "three", str(prospects_csv(
        wd, ["ann@x.com", "ANN@X.COM", "BOB@xn--bcher-kva.de"], "crm.csv")), check=True)
    assert "enrolled 0, rejected 3" in again.stdout
    assert "crm.csv:2: rejected ann@x.com: already enrolled in three as Ann@x.com" in again.stderr
    assert "crm.csv:3: rejected ANN@X.COM: duplicate of line 2" in again.stderr
    assert "crm.csv:4: rejected BOB@bücher.de: already enrolled in three as bob@bücher.de" \
        in again.stderr
    rows = wd.status()
    assert [(r["email"], r["sequence"]) for r in rows] == [("Ann@x.com", "three"),
                                                           ("bob@bücher.de", "three")]
    assert len(wd.status_of("ANN@x.com")) == 1


def test_stop_suppress_pause_resume_and_preview_find_every_spelling(tmp_path: Path,
                                                                   smtp_server: Any) -> None:
    wd = _workdir(tmp_path, smtp_server)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["Ann@X.com", "bob@bücher.de"])),
           check=True)
    wd.cli("enroll", "other", str(prospects_csv(wd, ["ann@x.com"], "o.csv")), check=True)
    assert "paused: Ann@x.com in three" in wd.cli("pause", "ANN@X.COM", "--sequence", "three",
                                                  check=True).stdout
    assert "resumed: Ann@x.com in three" in wd.cli("resume", "ann@x.COM", check=True).stdout
    preview = wd.cli("preview", "three", "--email", "BOB@XN--BCHER-KVA.DE", check=True).stdout
    assert "To: bob@bücher.de" in preview
    stopped = wd.cli("stop", "Ann@x.com", "--sequence", "other", check=True).stdout
    assert "stopped: ann@x.com in other" in stopped
    suppressed = wd.cli("suppress", "ANN@X.COM", check=True).stdout
    assert "stopped: Ann@x.com in three" in suppressed
    states = {(r["email"], r["sequence"]): r["state"] for r in wd.status()}
    assert states == {("Ann@x.com", "three"): "stopped", ("ann@x.com", "other"): "stopped",
                      ("bob@bücher.de", "three"): "active"}
    refused = wd.cli("enroll", "other", str(prospects_csv(wd, ["aNN@x.com"], "late.csv")),
                     check=True)
    assert "late.csv:2: rejected aNN@x.com: suppressed (by hand)" in refused.stderr
    bad = wd.cli("stop", "not-an-address")
    assert bad.returncode == 1 and "not an address" in bad.stderr
    bad_status = wd.cli("status", "--email", "nobody")
    assert bad_status.returncode == 1 and "not an address" in bad_status.stderr


def test_an_idn_prospect_is_sent_to_its_idna_2008_a_label(tmp_path: Path,
                                                         smtp_server: Any) -> None:
    wd = _workdir(tmp_path, smtp_server)
    engine = Engine(wd)
    try:
        from sequencer.usecases.importing import run_enroll

        run_enroll(engine.app, "three", prospects_csv(wd, ["Bob@bücher.de", "ida@faß.de"]),
                   progress=False)
        assert engine.step() == 2
    finally:
        engine.close()
    rcpts = sorted(d.rcpt_tos[0] for d in smtp_server.deliveries)
    assert rcpts == ["Bob@xn--bcher-kva.de", "ida@xn--fa-hia.de"], "IDNA 2008, not fass.de"
    headers = sorted(d.message["To"] for d in smtp_server.deliveries)
    assert headers == ["Bob <Bob@xn--bcher-kva.de>", "Ida <ida@xn--fa-hia.de>"]


def test_a_mixed_script_domain_is_enrolled_with_a_warning_naming_its_line(
        tmp_path: Path, smtp_server: Any) -> None:
    wd = _workdir(tmp_path, smtp_server)
    csv = prospects_csv(wd, ["carl@example.com", "ann@ex\u0430mple.com", "bob@bücher.de"])
    result = wd.cli("enroll", "three", str(csv), check=True)
    assert "enrolled 3, rejected 0" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"{csv}:3: warning: ann@ex\u0430mple.com: the domain label "
                        "'ex\u0430mple' mixes Cyrillic and Latin letters (a look-alike "
                        "domain?) (enrolled; check the address)"]

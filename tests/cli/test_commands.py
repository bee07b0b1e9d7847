"""The other commands through the real CLI: demo, classify, preview, manual control."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.smtp import SmtpServer
from tests.workdir import REPO, make_workdir, prospects_csv

CORPUS = REPO / "tests" / "data" / "corpus" / "sisimai"


def test_demo_runs_the_whole_loop_by_itself_and_exits_0(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sequencer", "demo", "--dir", str(tmp_path / "demo")],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 60
    assert "bo.chen@example.org      replied" in result.stdout
    assert "ann.lee@example.com      completed" in result.stdout
    assert "replied" in result.stderr and "→ sent" in result.stderr
    outbox = sorted((tmp_path / "demo" / "outbox").glob("*.eml"))
    assert len(outbox) == 7  # 3 + 3 + the one Bo got before replying


def test_classify_prints_each_verdict_and_json_objects(tmp_path: Path) -> None:
    bounce = CORPUS / "lhost-postfix-33.eml"
    ooo = next(iter(sorted(CORPUS.glob("rfc3834-*.eml"))))
    reply = REPO / "tests" / "data" / "replies"
    reply_file = next(iter(sorted(reply.glob("*.eml"))))
    run = [sys.executable, "-m", "sequencer", "classify"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    text = subprocess.run([*run, str(bounce), str(ooo), str(reply_file)], capture_output=True,
                          text=True, env=env, timeout=60, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"{bounce}: bounce hard (failure)")
    assert "cause: userunknown" in lines[0]
    assert lines[1].startswith(f"{ooo}: auto_reply")
    assert lines[2].startswith(f"{reply_file}: reply")
    out = subprocess.run([*run, "--json", str(bounce), str(ooo)], capture_output=True,
                         text=True, env=env, timeout=60, cwd=tmp_path)
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert first["file"] == str(bounce) and first["kind"] == "bounce"
    assert first["bounce"] == "hard" and first["cause"] == "userunknown"
    assert "@" in first["recipient"] and first["reason"] and first["subkind"] == "failure"
    assert second["kind"] == "auto_reply"
    missing = subprocess.run([*run, str(tmp_path / "nope.eml"), str(bounce)],
                             capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert missing.returncode == 1 and "nope.eml" in missing.stderr
    assert missing.stdout.startswith(f"{bounce}: bounce hard"), "the other files are still read"


def test_classify_reads_a_message_as_the_watcher_does(tmp_path: Path) -> None:
    """Our own addresses come from sequencer.yaml and "Thursday, December 3" is read
    against the clock (``--now``), as the watcher reads them."""
    wd = make_workdir(tmp_path / "wd", 2525)
    ours = wd.write("ours.eml", "From: Dana Reyes <DANA@example.com>\nSubject: Re: hi\n\n"
                    "unsubscribe\n")
    ooo = wd.write("ooo.eml", "From: sam@prospect.example\nSubject: Out of office\n"
                   "Auto-Submitted: auto-replied\n\nI am away until Thursday, December 3.\n")
    out = wd.cli("classify", "--json", "--now", "2026-11-23T10:00:00Z", str(ours), str(ooo),
                 check=True)
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert (first["kind"], first["reason"]) == ("unrelated", "from our own address")
    assert (second["kind"], second["return_date"]) == ("auto_reply", "2026-12-03")
    bare = subprocess.run([sys.executable, "-m", "sequencer", "classify", "--json", "--now",
                           "2026-11-23T10:00:00Z", str(ours)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60,
                          cwd=tmp_path)
    assert json.loads(bare.stdout)["kind"] == "unsubscribe", "no settings: nothing is ours"
    bad = wd.cli("classify", "--now", "next tuesday", str(ooo))
    assert bad.returncode == 2 and "--now" in bad.stderr


def test_classify_reads_a_3_gb_file_within_the_watchers_budget_and_says_so(
        tmp_path: Path) -> None:
    """X14: a 3 GB file is read as the watcher reads it (header + 64 KiB), never whole."""
    huge = tmp_path / "huge.eml"
    with huge.open("wb") as out:
        out.write(b"From: sam@prospect.example\r\nSubject: Re: hi\r\n\r\nThanks!\r\n")
        out.seek(3 * 2**30)
        out.write(b"\r\n")        # sparse: 3 GB on paper, a few blocks on disk
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
             "capture_output=True, text=True); print(r.returncode); print(r.stdout, end=''); "
             "print(r.stderr, end='', file=sys.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run(
        [sys.executable, "-c", probe, sys.executable, "-m", "sequencer", "classify", str(huge)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    code, verdict, peak_kib = result.stdout.splitlines()
    assert code == "1"
    assert verdict.startswith(f"{huge}: reply")
    assert f"error: {huge}: larger than the watcher's 10 MiB budget" in result.stderr
    assert int(peak_kib) < 200 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB"


def test_preview_renders_every_step_for_an_enrolled_prospect(tmp_path: Path,
                                                            smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    out = wd.cli("preview", "three", "--email", "ann@example.com", check=True).stdout
    assert "Subject: Thanks, Ann" in out and "Subject: Reminder for Ann" in out
    assert "Subject: New for Co0" in out and "Hi Ann at Co0, thanks!" in out
    assert smtp_server.deliveries == []
    missing = wd.cli("preview", "three", "--email", "zed@example.com")
    assert missing.returncode == 1 and "not enrolled" in missing.stderr


def test_pause_resume_stop_and_suppress_by_hand(tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com", "bo@example.com"])),
           check=True)
    assert "paused: ann@example.com in three" in wd.cli("pause", "ann@example.com",
                                                         check=True).stdout
    states = {s["email"]: s["state"] for s in wd.status()}
    assert states == {"ann@example.com": "paused", "bo@example.com": "active"}
    again = wd.cli("pause", "ann@example.com")
    assert again.returncode == 1 and "cannot pause" in again.stderr
    assert "resumed" in wd.cli("resume", "ann@example.com", check=True).stdout
    assert "stopped" in wd.cli("stop", "bo@example.com", check=True).stdout
    assert wd.cli("suppress", "ann@example.com", check=True).returncode == 0
    states = {s["email"]: s["state"] for s in wd.status()}
    assert states == {"ann@example.com": "stopped", "bo@example.com": "stopped"}
    rejected = wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"], "b.csv")))
    assert "suppressed" in rejected.stderr
    proc = wd.start("run")
    time.sleep(1.5)  # nothing is due: the absence of mail can only be shown by waiting
    from tests.workdir import terminate

    assert terminate(proc) == 0
    assert smtp_server.deliveries == []


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "sequencer", "enroll"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    result = subprocess.run([sys.executable, "-m", "sequencer", "run", "--log-format", "xml"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2


def test_validate_warns_on_follow_ups_with_nothing_new_and_strict_fails(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    wd.write("templates/thank_you.txt.j2", "Subject: Thanks\n\nHi {{ first_name }}, thanks for "
             "stopping by our booth; here is the overview we promised.\n")
    wd.write("templates/reminder.txt.j2",
             "Subject: Again\n\nHi {{ first_name }},\n\nJust checking in on this.\n")
    wd.write("templates/new_info.txt.j2", (wd.path / "templates/thank_you.txt.j2").read_text())
    reminder = wd.path / "templates/reminder.txt.j2"
    new_info = wd.path / "templates/new_info.txt.j2"

    lenient = wd.cli("validate")
    strict = wd.cli("validate", "--strict")

    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stdout.startswith("ok: three ")
    assert lenient.stderr.splitlines() == [
        f"{reminder}:5: warning: step three/reminder leans on 'just checking in': a follow-up "
        "should say what is new (a fact, a resource, a question), not that it follows up",
        f"{new_info}:3: warning: step three/new-information repeats step thank-you "
        f"({wd.path / 'templates/thank_you.txt.j2'}): 100% of its 3-word phrases are already "
        "there; bring something new",
    ]
    assert strict.returncode == 1
    assert strict.stdout == ""
    assert [line.split(": ", 2)[:2] for line in strict.stderr.splitlines()] == [
        ["error", f"{reminder}:5"], ["error", f"{new_info}:3"]]


def test_the_shipped_examples_validate_clean_even_under_strict(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    for folder in ("sequences", "templates"):
        for path in (REPO / folder).iterdir():
            wd.write(f"{folder}/{path.name}", path.read_text(encoding="utf-8"))
    result = wd.cli("validate", "--strict", "trade-show", "after-meeting", "after-sale")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.count("ok: ") == 3


def test_the_shipped_examples_with_a_nudge_and_a_repeat_warn_on_their_lines_and_fail_strict(
        tmp_path: Path) -> None:
    wd = make_workdir(tmp_path, 2525)
    (wd.path / "sequences/three.yaml").unlink()
    for folder in ("sequences", "templates"):
        for path in (REPO / folder).iterdir():
            wd.write(f"{folder}/{path.name}", path.read_text(encoding="utf-8"))
    reminder = wd.path / "templates/reminder.txt.j2"
    text = reminder.read_text(encoding="utf-8")
    assert text.splitlines()[4].startswith("Picking up where we left off: ")
    reminder.write_text(text.replace("Picking up where we left off: ",
                                     "Just circling back on this: "), encoding="utf-8")
    review = wd.path / "templates/review_referral.txt.j2"  # the thank-you again
    review.write_text((wd.path / "templates/purchase_thanks.txt.j2").read_text())
    nudge = ("leans on 'circling back': a follow-up should say what is new (a fact, a "
             "resource, a question), not that it follows up")
    repeat = (f"repeats step thank-you ({wd.path / 'templates/purchase_thanks.txt.j2'}): 100% "
              "of its 3-word phrases are already there; bring something new")
    flagged = [f"{reminder}:5: {{}}step after-meeting/nudge {nudge}",
               f"{review}:3: {{}}step after-sale/review-referral {repeat}",
               f"{reminder}:5: {{}}step trade-show/reminder {nudge}"]

    lenient = wd.cli("validate")
    strict = wd.cli("validate", "--strict")

    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stdout.count("ok: ") == 3
    assert lenient.stderr.splitlines() == [line.format("warning: ") for line in flagged]
    assert strict.returncode == 1
    assert strict.stdout == ""
    assert strict.stderr.splitlines() == [
        "error: " + line.format("") + " (--strict)" for line in flagged]

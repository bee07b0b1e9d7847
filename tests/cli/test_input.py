"""Bad input through the real `sequencer` command (RELIABILITY X1–X6; broken YAML; unknown
keys): a clear `file:line: reason`, exit 1, and nothing stored changes."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

from tests.fixtures.smtp import SmtpServer
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until


def enrolled(wd: Workdir) -> list[str]:
    return sorted(s["email"] for s in wd.status())


def test_x1_x2_header_injection_and_multi_address_rows_are_rejected_with_their_line(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence="name: three\nmailbox: sales\n"
                      "steps:\n  - {name: hello, template: thank_you, wait: 0s}\n")
    csv = wd.write("prospects.csv",
                   "email,first_name,company\n"
                   'ann@example.com,Ann,"=?UTF-8?Q?=0A?=Bcc: evil@example.net"\n'
                   '"bo@example.com","Bo\r\nBcc: evil@example.net",Co\n'
                   '"a@example.com, b@example.org",A,C\n'
                   "a@b@c,x,y\n"
                   "cy@example.com,Cy,Co\n"
                   "dee@example.com,Dee\x00,Co\n")
    result = wd.cli("enroll", "three", str(csv))
    assert result.returncode == 0, result.stderr
    assert "enrolled 1, rejected 5" in result.stdout
    err = result.stderr
    assert re.search(r"prospects\.csv:2: .*encoded word hiding a control character in column "
                     r"`company`", err), err
    assert re.search(r"prospects\.csv:3: .*control character in column `first_name`", err)
    assert re.search(r"prospects\.csv:5: .*more than one address", err)
    assert re.search(r"prospects\.csv:6: .*more than one @", err)
    assert re.search(r"prospects\.csv:8: .*control character", err)  # line 3 spans two
    assert enrolled(wd) == ["cy@example.com"]
    proc = wd.start("run")
    try:
        smtp_server.wait_for(1, timeout=15)
        wait_until(lambda: wd.status()[0]["state"] == "completed", 10, "sent")
    finally:
        assert terminate(proc) == 0
    (delivery,) = smtp_server.deliveries
    assert delivery.rcpt_tos == ["cy@example.com"]
    msg = message_from_bytes(delivery.raw, policy=policy.default)
    to = msg.get_all("To")
    assert to is not None and (to == ["Cy <cy@example.com>"] or len(to) == 1)
    assert msg["Bcc"] is None and msg["Cc"] is None


def test_x3_a_template_that_escapes_the_sandbox_is_refused_at_validate_and_enroll(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.write("templates/reminder.txt.j2",
             "Subject: hi\n\n{{ first_name }}\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    result = wd.cli("validate")
    assert result.returncode == 1
    assert re.search(r"templates/reminder\.txt\.j2:4: ", result.stderr), result.stderr
    csv = prospects_csv(wd, ["ann@example.com"])
    result = wd.cli("enroll", "three", str(csv))
    assert result.returncode == 1 and "reminder.txt.j2" in result.stderr
    assert enrolled(wd) == []


def test_x3_a_huge_loop_is_refused_quickly(tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.write("templates/new_info.txt.j2",
             "Subject: hi\n\n{% for i in range(100000) %}{% for j in range(100000) %}x"
             "{% endfor %}{% endfor %}\n")
    result = wd.cli("validate", timeout=20)
    assert result.returncode == 1
    assert "templates/new_info.txt.j2:3:" in result.stderr, result.stderr


def test_x4_a_variable_the_csv_lacks_is_refused_at_enroll_with_its_name(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.write("templates/reminder.txt.j2", "Subject: hi\n\nHow is {{ industry }} going?\n")
    assert wd.cli("validate").returncode == 0  # the template itself is fine
    result = wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])))
    assert result.returncode == 1
    assert "industry" in result.stderr and "prospects.csv" in result.stderr, result.stderr
    assert enrolled(wd) == []


def test_x4_an_empty_value_without_a_default_rejects_that_row(tmp_path: Path,
                                                              smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    csv = wd.write("prospects.csv", "email,first_name\nann@example.com,Ann\nbo@example.com,\n")
    result = wd.cli("enroll", "three", str(csv))
    assert "enrolled 1, rejected 1" in result.stdout
    assert re.search(r"prospects\.csv:3: .*first_name", result.stderr), result.stderr


def test_x5_html_is_escaped_in_the_html_part_and_plain_in_text_and_subject(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port, sequence="name: three\nmailbox: sales\n"
                      "steps:\n  - {name: hello, template: thank_you, wait: 0s}\n")
    wd.write("templates/thank_you.html.j2", "<p>Hi {{ first_name }}</p>\n")
    csv = wd.write("prospects.csv", "email,first_name\nann@example.com,<script>\n")
    wd.cli("enroll", "three", str(csv), check=True)
    proc = wd.start("run")
    try:
        (delivery,) = smtp_server.wait_for(1, timeout=15)
    finally:
        assert terminate(proc) == 0
    msg = message_from_bytes(delivery.raw, policy=policy.default)
    assert msg["Subject"] == "Thanks, <script>"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and rich is not None
    text, html = plain.get_content(), rich.get_content()
    assert "Hi <script> at" in text
    assert "&lt;script&gt;" in html and "<script>" not in html


def test_x6_a_password_in_the_settings_is_refused_with_its_line(tmp_path: Path,
                                                                smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    text = wd.config.read_text().replace("tls: none, timeout: 3s}",
                                         "tls: none, timeout: 3s, password: hunter2}")
    wd.config.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "hunter2" in row)
    for args in (["validate"], ["status"], ["run"]):
        result = wd.cli(*args)
        assert result.returncode == 1, args
        assert f"sequencer.yaml:{line}: " in result.stderr, result.stderr
        assert "password_env" in result.stderr
        assert "hunter2" not in result.stderr + result.stdout


def test_x6_no_secret_reaches_the_log_even_with_debug_logging(tmp_path: Path,
                                                              smtp_server: SmtpServer) -> None:
    secret = 'pa"ss\\word-1f0c9'
    smtp_server.require_auth("dana@example.com", secret)
    wd = make_workdir(tmp_path, smtp_server.port)
    text = wd.config.read_text().replace(
        "tls: none, timeout: 3s}",
        "tls: none, timeout: 3s, username: dana@example.com, password_env: SALES_PW}")
    wd.config.write_text(text)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True,
           extra_env={"SALES_PW": secret})
    proc = wd.start("run", "-v", "--log-file", "debug.log", extra_env={"SALES_PW": secret})
    try:
        smtp_server.wait_for(1, timeout=15)
    finally:
        assert terminate(proc) == 0
    log = wd.log() + wd.log("debug.log")
    assert "sent" in log and "debug" in log.lower()
    assert secret not in log
    assert "cGFzc" not in log  # nor its base64 (AUTH PLAIN)
    import base64

    assert base64.b64encode(f"\0dana@example.com\0{secret}".encode()).decode() not in log


def test_broken_sequence_yaml_is_refused_with_its_line_and_keeps_what_is_stored(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    seq = wd.path / "sequences" / "three.yaml"
    good = seq.read_text()
    seq.write_text(good.replace("    wait: {wait2}".format(wait2="2s"), "    wiat: 2s"))
    result = wd.cli("validate")
    assert result.returncode == 1
    assert re.search(r"sequences/three\.yaml:\d+: .*unknown key 'wiat'", result.stderr), \
        result.stderr
    seq.write_text(good.replace("steps:", "steps: [\n"))
    result = wd.cli("enroll", "three", str(prospects_csv(wd, ["bo@example.com"], "b.csv")))
    assert result.returncode == 1
    assert re.search(r"sequences/three\.yaml:\d+: ", result.stderr), result.stderr
    seq.write_text(good)
    assert enrolled(wd) == ["ann@example.com"], "nothing already stored is lost"


def test_unknown_settings_key_and_a_csv_without_email_column_are_refused(
        tmp_path: Path, smtp_server: SmtpServer) -> None:
    wd = make_workdir(tmp_path, smtp_server.port)
    wd.cli("enroll", "three", str(prospects_csv(wd, ["ann@example.com"])), check=True)
    csv = wd.write("bad.csv", "mail,first_name\nbo@example.com,Bo\n")
    result = wd.cli("enroll", "three", str(csv))
    assert result.returncode == 1 and re.search(r"bad\.csv:1: .*email", result.stderr)
    original = wd.config.read_text()
    wd.config.write_text(original.replace("tick: 0.2s", "tick: 0.2s\ntikc: 1s"))
    result = wd.cli("status")
    assert result.returncode == 1
    assert re.search(r"sequencer\.yaml:4: .*unknown key 'tikc'", result.stderr), result.stderr
    wd.config.write_text(original)
    assert enrolled(wd) == ["ann@example.com"]

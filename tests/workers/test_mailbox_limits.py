"""Per-mailbox limits hold across workers (issue 9, "What it must show" 5): 4 send threads
in one `sequencer run`, and two schedulers with two `sequencer worker` processes on
PostgreSQL + Redis. Checked against what each SMTP ledger received, and when."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.fixtures.redis import RedisServer
from tests.fixtures.smtp import SmtpServer
from tests.invariants import check_invariants
from tests.workdir import Workdir, make_workdir, prospects_csv, terminate, wait_until

DAILY = 6  # `flat`: a daily limit and nothing else
SPACED_DAILY = 5  # `spaced`: a daily limit and min_spacing
SPACING_S = 0.4


def limited_workdir(tmp_path: Path, flat_port: int, spaced_port: int, *,
                    database: str | None = None, broker: str = "memory") -> Workdir:
    wd = make_workdir(tmp_path, flat_port, database=database, broker=broker, lease="30s")
    wd.write("sequencer.yaml", wd.config.read_text().split("mailboxes:")[0] + f"""\
mailboxes:
  flat:
    from: "Dana Reyes <dana@example.com>"
    smtp: {{host: 127.0.0.1, port: {flat_port}, tls: none, timeout: 3s}}
    daily_limit: {DAILY}
  spaced:
    from: "Lee Park <lee@example.com>"
    smtp: {{host: 127.0.0.1, port: {spaced_port}, tls: none, timeout: 3s}}
    daily_limit: {SPACED_DAILY}
    min_spacing: {SPACING_S}s
    timezone: America/New_York
""")
    (wd.path / "sequences" / "three.yaml").unlink()
    for box in ("flat", "spaced"):
        wd.write(f"sequences/{box}.yaml", f"name: {box}\nmailbox: {box}\nsteps:\n"
                 "  - {name: hello, template: thank_you, wait: 0s}\n")
        emails = [f"{box}{i}@example.com" for i in range(15)]
        wd.cli("enroll", box, str(prospects_csv(wd, emails, f"{box}.csv")), check=True)
    return wd


def assert_limits_held(wd: Workdir, flat: SmtpServer, spaced: SmtpServer, database: str) -> None:
    flat.wait_for(DAILY, timeout=30)
    spaced.wait_for(SPACED_DAILY, timeout=30)
    time.sleep(2.0)  # several ticks and spacings more: nothing else goes out today
    assert len(flat.deliveries) == DAILY
    assert len(spaced.deliveries) == SPACED_DAILY
    times = sorted(d.received_at for d in spaced.deliveries)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= SPACING_S, gaps
    counts = check_invariants([*flat.deliveries, *spaced.deliveries], database)
    assert counts == {"sent": DAILY + SPACED_DAILY}
    states = [s["state"] for s in wd.status()]
    assert states.count("completed") == DAILY + SPACED_DAILY
    assert states.count("active") == 30 - DAILY - SPACED_DAILY  # waiting for tomorrow


def test_limits_hold_across_four_send_threads(
        tmp_path: Path, make_smtp_server: Callable[..., SmtpServer]) -> None:
    flat, spaced = make_smtp_server(), make_smtp_server()
    wd = limited_workdir(tmp_path, flat.port, spaced.port)
    proc = wd.start("run", "--threads", "4")
    try:
        assert_limits_held(wd, flat, spaced, f"sqlite:///{wd.path / 'sequencer.db'}")
    finally:
        assert terminate(proc) == 0, wd.log()
    assert "Traceback" not in wd.log(), wd.log()


def test_limits_hold_across_two_schedulers_and_two_worker_processes_on_postgresql(
        tmp_path: Path, make_smtp_server: Callable[..., SmtpServer], pg_database_url: str,
        redis_server: RedisServer) -> None:
    flat, spaced = make_smtp_server(), make_smtp_server()
    wd = limited_workdir(tmp_path, flat.port, spaced.port, database=pg_database_url,
                         broker=redis_server.url)
    procs = [wd.start("scheduler", log=f"scheduler{i}.log") for i in range(2)]
    procs += [wd.start("worker", "--threads", "2", log=f"worker{i}.log") for i in range(2)]
    try:
        wait_until(lambda: all("running:" in wd.log(f"worker{i}.log") for i in range(2)), 20,
                   "both workers up")
        assert_limits_held(wd, flat, spaced, pg_database_url)
    finally:
        codes = [terminate(p) for p in procs]
    logs = "".join(wd.log(f"{kind}{i}.log") for kind in ("scheduler", "worker")
                   for i in range(2))
    assert codes == [0, 0, 0, 0], logs
    assert "Traceback" not in logs, logs

"""Scheduler at scale: the time to find and claim 1,000 due steps among 10k, 100k and 1M
enrollments, and an idle tick's cost, on SQLite and PostgreSQL; the smallest size is the
baseline each ratio is against (a benchmark, not a test).

    .venv/bin/python bench/scheduler_scale.py [--sizes 10000,100000,1000000] [--runs 3]
        [--db sqlite,postgresql] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--idle-run 20]

Per database and size, one database is built by ``bench/bigdb.py`` (1,000 due steps spread
over the table, 60 % of the rest active and due later, ~1.4 sends per enrollment, a
suppression for every unsubscribed and bounced address). Then, ``--runs`` times:

* **claim**: one ``Scheduler.tick()`` with room for 1,000 — the real claim (pacing, limits,
  the sweep, send rows, threads) — must claim all 1,000; its wall time;
* **idle tick**: the claimed steps are put back as due later (not timed), and the median
  of 20 ticks that find nothing due.

With ``--idle-run S`` (default 20; 0 skips it) a real ``sequencer run`` process is started
on the largest SQLite and PostgreSQL database with nothing due, and its CPU (user + system,
from /proc) over S seconds after a warm-up is printed as a share of one core.

On PostgreSQL a throwaway database is created per size on the ``--pg`` server (the
machine's 127.0.0.1:5432, trust auth) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bigdb import STEPS, Shape, build  # noqa: E402

DUE = 1000
IDLE_TICKS = 20


def write_workdir(root: Path, url: str, shape: Shape) -> Path:
    """Settings and sequences matching bigdb's rows (sequences seq*, mailboxes mb*)."""
    (root / "sequences").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "templates" / "t.txt.j2").write_text("Subject: Hi {{ first_name }}\n\nHello.\n")
    boxes = shape.mailbox_names()
    for name in shape.sequence_names():
        steps = "".join(f"  - {{name: {step}, template: t, wait: 1d}}\n" for step in STEPS)
        (root / "sequences" / f"{name}.yaml").write_text(
            f"name: {name}\nmailbox: [{', '.join(boxes)}]\nsteps:\n{steps}")
    mailboxes = "".join(
        f"  {box}:\n    from: \"Dana <{box}@example.test>\"\n"
        f"    smtp: {{host: 127.0.0.1, port: 9, tls: none}}\n"
        f"    daily_limit: 100000\n" for box in boxes)
    (root / "sequencer.yaml").write_text(
        f"database: {url}\nbroker: memory\ntick: 1s\nmailboxes:\n{mailboxes}")
    return root / "sequencer.yaml"


def measure(url: str, config: Path, runs: int) -> tuple[list[float], list[float]]:
    """(claim seconds per run, idle-tick seconds per run)."""
    from sqlalchemy import bindparam, delete, update

    from sequencer.config import load_settings
    from sequencer.store.claims import Job
    from sequencer.store.schema import enrollments, sends
    from sequencer.workspace import Workspace
    from workers.scheduler import Scheduler

    app = Workspace.from_settings(load_settings(config, env={}))
    claims: list[Job] = []
    scheduler = Scheduler(app, claims.append, batch=DUE, probe=DUE)
    claim_s, idle_s = [], []
    try:
        for _ in range(runs):
            claims.clear()
            scheduler._last, scheduler.rate = None, 0.0
            start = time.perf_counter()
            scheduler.tick()
            claim_s.append(time.perf_counter() - start)
            if len(claims) != DUE:
                raise SystemExit(f"{url}: claimed {len(claims)} of {DUE} due steps")
            # Put them back as due later (idle), then time ticks that find nothing.
            later = datetime.now(UTC) + timedelta(days=400)
            with app.store.write() as conn:
                conn.execute(update(enrollments).where(enrollments.c.id == bindparam("eid"))
                             .values(next_due=later, claim_token=None, lease_until=None),
                             [{"eid": j.enrollment_id} for j in claims])
                conn.execute(delete(sends).where(sends.c.id.in_([j.send_id for j in claims])))
            ticks = []
            for _ in range(IDLE_TICKS):
                scheduler._last, scheduler.rate = None, 0.0
                start = time.perf_counter()
                got = scheduler.tick()
                ticks.append(time.perf_counter() - start)
                if got:
                    raise SystemExit(f"{url}: an idle tick claimed {got}")
            idle_s.append(statistics.median(ticks))
            # Due again for the next run, as the generator left them.
            with app.store.write() as conn:
                conn.execute(update(enrollments).where(enrollments.c.id == bindparam("eid"))
                             .values(next_due=datetime.now(UTC) - timedelta(minutes=5)),
                             [{"eid": j.enrollment_id} for j in claims])
    finally:
        app.close()
    return claim_s, idle_s


def idle_run_cpu(config: Path, seconds: float) -> float:
    """A real `sequencer run` with nothing due: its CPU share of one core over ``seconds``."""
    from sqlalchemy import update

    from sequencer.config import load_settings
    from sequencer.store.schema import enrollments
    from sequencer.workspace import Workspace

    app = Workspace.from_settings(load_settings(config, env={}))
    with app.store.write() as conn:  # nothing due (the claim runs left 1,000 due)
        conn.execute(update(enrollments).where(enrollments.c.next_due < datetime.now(UTC))
                     .values(next_due=datetime.now(UTC) + timedelta(days=400)))
    app.close()
    proc = subprocess.Popen([sys.executable, "-m", "sequencer", "run"], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        time.sleep(5)  # start-up: imports, migrations check, first ticks
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"sequencer run exited: {err[-2000:]}")
        tck = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tck
        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        return (cpu() - c0) / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def pg_database(server: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on ``server``; returns (its URL, a function that drops it)."""
    import psycopg

    name = f"sched_{uuid.uuid4().hex[:8]}"
    admin = server.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return server.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--idle-run", type=float, default=20.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"claim {DUE} due steps, and an idle tick (median of {IDLE_TICKS}), at "
          f"{', '.join(f'{s:,}' for s in sizes)} enrollments; {args.runs} runs; baseline "
          f"{sizes[0]:,}", flush=True)
    summary: list[str] = []
    for kind in args.db.split(","):
        base: tuple[float, float] | None = None
        for n in sizes:
            shape = Shape(enrollments=n, due=DUE)
            with tempfile.TemporaryDirectory() as tmp:
                drop = None
                if kind == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'big.db'}"
                else:
                    url, drop = pg_database(args.pg)
                try:
                    build(url, shape)
                    config = write_workdir(Path(tmp) / "wd", url, shape)
                    claim_s, idle_s = measure(url, config, args.runs)
                    claim, idle = statistics.median(claim_s), statistics.median(idle_s)
                    base = base or (claim, idle)
                    line = (f"{kind:10} {n:>9,}: claim {DUE} {claim * 1000:8.1f} ms "
                            f"({claim / base[0]:.2f}x) | idle tick {idle * 1000:7.2f} ms "
                            f"({idle / base[1]:.2f}x)   runs: claim "
                            f"{', '.join(f'{c * 1000:.1f}' for c in claim_s)} ms, idle "
                            f"{', '.join(f'{i * 1000:.2f}' for i in idle_s)} ms")
                    print(line, flush=True)
                    summary.append(line)
                    if args.idle_run and n == sizes[-1]:
                        share = idle_run_cpu(config, args.idle_run)
                        line = (f"{kind:10} {n:>9,}: idle `sequencer run` {share * 100:.2f}% "
                                f"of a core over {args.idle_run:.0f} s")
                        print(line, flush=True)
                        summary.append(line)
                finally:
                    if drop is not None:
                        drop()
    print(f"\nmedian of {args.runs} (ratio against {sizes[0]:,} enrollments):")
    for line in summary:
        print("  " + line.split("   runs:")[0])


if __name__ == "__main__":
    main()

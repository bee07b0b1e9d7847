"""Send throughput: N prospects enrolled with `wait: 0s`, time until Postfix's smtp-sink
has accepted them all, against a plain aiosmtplib loop sending N pre-built messages of the
same size over one reused connection, in the same run.

    .venv/bin/python bench/send_throughput.py [--n 5000] [--runs 3] [--threads 8]
    .venv/bin/python bench/send_throughput.py --processes 2   # scale-out: Redis + processes
    .venv/bin/python bench/send_throughput.py --processes 2 --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

With ``--processes P`` the engine runs as in production at scale: a throwaway redis-server,
one `sequencer scheduler` and `sequencer worker --processes P`, timed from their start.

Needs /usr/sbin/smtp-sink (scripts/install-servers installs postfix for it).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BODY = ("Hi {{ first_name }},\n\n" + ("We help teams like {{ company }} follow up on time. " * 2
        + "\n") * 40 + "\nBest,\n{{ sender }}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    proc = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"220"):
                    return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("smtp-sink did not start")


def build_workdir(root: Path, port: int, n: int) -> Path:
    (root / "sequences").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "sequences" / "bench.yaml").write_text(
        "name: bench\nmailbox: sales\nsteps:\n  - {name: hello, template: hello, wait: 0s}\n")
    (root / "templates" / "hello.txt.j2").write_text(
        "Subject: Following up, {{ first_name }}\n\n" + BODY)
    (root / "sequencer.yaml").write_text(
        "database: sqlite:///bench.db\nbroker: memory\ntick: 0.1s\nmailboxes:\n  sales:\n"
        '    from: "Dana Reyes <dana@example.test>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {port}, tls: none}}\n"
        f"    daily_limit: {n * 10}\n")
    with open(root / "prospects.csv", "w") as f:
        f.write("email,first_name,company\n")
        for i in range(n):
            f.write(f"p{i}@example.com,Pat{i},Company {i}\n")
    return root / "sequencer.yaml"


def sample_message(root: Path) -> bytes:
    from sequencer.core.compose import compose, new_message_id
    from sequencer.store.db import utcnow
    from sequencer.workspace import Workspace

    app = Workspace.load(root / "sequencer.yaml")
    rendered = app.templates.get("hello").render(
        {"first_name": "Pat1", "company": "Company 1", "sender": "Dana Reyes",
         "email": "p1@example.com", "sequence": "bench", "step": "hello",
         "unsubscribe_url": "mailto:dana@example.test?subject=unsubscribe"})
    data = compose(sender="Dana Reyes <dana@example.test>", to="p1@example.com",
                   rendered=rendered, message_id=new_message_id("example.test"),
                   date=utcnow(), to_name="Pat1",
                   list_unsubscribe=("mailto:dana@example.test?subject=unsubscribe",))
    app.close()
    return data


async def baseline(port: int, data: bytes, n: int) -> float:
    start = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                               use_tls=False) as smtp:
        for i in range(n):
            await smtp.sendmail("dana@example.test", [f"p{i}@example.com"], data)
    return n / (time.perf_counter() - start)


def engine(root: Path, n: int, threads: int, timeout_s: float = 600) -> tuple[float, int]:
    from sqlalchemy import func, select

    from sequencer.store.schema import enrollments
    from sequencer.usecases.importing import run_enroll
    from sequencer.workspace import Workspace
    from workers.run import run

    app = Workspace.load(root / "sequencer.yaml")
    summary = run_enroll(app, "bench", root / "prospects.csv", progress=False)
    if summary.enrolled != n:
        reasons = {r.reason for r in summary.rejected[:5]}
        raise SystemExit(f"only {summary.enrolled} of {n} prospects enrolled: {reasons}")

    def completed() -> int:
        with app.store.read() as conn:
            return int(conn.scalar(select(func.count()).select_from(enrollments)
                                   .where(enrollments.c.state == "completed")) or 0)

    start = time.perf_counter()
    deadline = start + timeout_s
    run(app, threading.Event(), threads=threads, watchers=False,
        until=lambda: completed() >= n or time.perf_counter() > deadline)
    elapsed = time.perf_counter() - start
    done = completed()
    app.close()
    return done / elapsed, done


def start_redis(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("redis-server did not start")


def fresh_pg_database(admin_url: str) -> tuple[str, object]:
    """A throwaway database in the given cluster (dropped by the returned callable)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return make_url(admin_url).set(database=name).render_as_string(False), drop


def scaled(root: Path, n: int, processes: int, threads: int, pg: str | None = None,
           timeout_s: float = 600) -> tuple[float, int]:
    import os
    import signal

    from sqlalchemy import create_engine, text

    from sequencer.usecases.importing import run_enroll
    from sequencer.workspace import Workspace

    redis_proc, url = start_redis(root)
    config = root / "sequencer.yaml"
    text_ = config.read_text().replace("broker: memory", f"broker: {url}")
    drop = None
    database = f"sqlite:///{root / 'bench.db'}"
    if pg:
        database, drop = fresh_pg_database(pg)
        text_ = text_.replace("database: sqlite:///bench.db", f"database: {database}")
    config.write_text(text_)
    app = Workspace.load(config)
    run_enroll(app, "bench", root / "prospects.csv", progress=False)
    app.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "sequencer"]
    engine = create_engine(database)
    start = time.perf_counter()
    procs = [
        subprocess.Popen([*cli, "scheduler", "-c", str(config)], env=env, cwd=root,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([*cli, "worker", "-c", str(config), "--processes", str(processes),
                          "--threads", str(threads)], env=env, cwd=root,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    done = 0
    try:
        while time.perf_counter() - start < timeout_s:
            with engine.connect() as conn:
                done = int(conn.scalar(text(
                    "select count(*) from enrollments where state = 'completed'")) or 0)
            if done >= n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)
        redis_proc.kill()
        redis_proc.wait()
        engine.dispose()
        if drop is not None:
            drop()  # type: ignore[operator]
    return done / elapsed, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pg", default=None,
                        help="with --processes: an admin URL of a PostgreSQL cluster; the "
                             "bench creates and drops its own database there")
    parser.add_argument("--processes", type=int, default=0,
                        help="scale-out mode: Redis broker, scheduler + N worker processes")
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    base_rates, ours = [], []
    try:
        for run_no in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                build_workdir(root, port, args.n)
                data = sample_message(root)
                b = asyncio.run(baseline(port, data, args.n))
                if args.processes:
                    rate, done = scaled(root, args.n, args.processes, args.threads, args.pg)
                else:
                    rate, done = engine(root, args.n, args.threads)
                base_rates.append(b)
                ours.append(rate)
                print(f"run {run_no + 1}: baseline {b:7.0f} msg/s   sequencer {rate:7.0f} msg/s "
                      f"({done} sent, message {len(data)} bytes)  ratio {rate / b:.2f}",
                      flush=True)
    finally:
        sink.kill()
        sink.wait()
    mb, mo = statistics.median(base_rates), statistics.median(ours)
    print(f"median of {args.runs}: baseline (aiosmtplib, pre-built, one connection) "
          f"{mb:.0f} msg/s; sequencer end to end {mo:.0f} msg/s; ratio {mo / mb:.2f} "
          f"(aim >= 0.50)")


if __name__ == "__main__":
    main()

"""Send throughput: N prospects enrolled with `wait: 0s`, time until Postfix's smtp-sink
has accepted them all, against a plain aiosmtplib loop sending N pre-built messages of the
same size over one reused connection, in the same run.

    .venv/bin/python bench/send_throughput.py [--n 5000] [--runs 3] [--threads 8]
    .venv/bin/python bench/send_throughput.py --processes 1,2,4      # (b): + PostgreSQL + Redis
    .venv/bin/python bench/send_throughput.py --rss --n 100000       # (d): a worker's RSS

Every run measures, one after the other against one smtp-sink:

* ``baseline``: aiosmtplib ``sendmail`` of one pre-built message, N times, one connection;
* ``embedded`` (a): ``sequencer run`` in this process (``broker: memory``, SQLite), as a
  user runs it on one machine;
* with ``--processes P,...`` (b): for each P, a throwaway redis-server, a fresh database
  on PostgreSQL, one ``sequencer scheduler`` and ``sequencer worker --processes P``, as in
  production at scale. PostgreSQL is a throwaway cluster started like the tests' fixture
  (tests/fixtures/postgres.py: ``fsync=off``, ``synchronous_commit=off``), or the cluster
  of ``--pg ADMIN_URL`` (the bench creates and drops its own database there).

Each rate is counted from the first completed enrollment to the last (polled every 0.1 s),
so process start-up is left out of every mode alike. Ratios: each mode against the
baseline, each scale-out row against the embedded row and against ``--processes 1``.

``--rss`` (d) runs one ``sequencer worker`` (PostgreSQL + Redis, one process) over N sends
and prints its resident set size every ``--every`` seconds, then the first and last sample
after warm-up and their ratio (flat: about 1.0).

Needs /usr/sbin/smtp-sink (scripts/install-servers installs postfix for it), redis-server
and PostgreSQL for (b) and (d).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BODY = ("Hi {{ first_name }},\n\n" + ("We help teams like {{ company }} follow up on time. " * 2
        + "\n") * 40 + "\nBest,\n{{ sender }}\n")
POLL_S = 0.1


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


def build_workdir(root: Path, port: int, n: int, database: str = "sqlite:///bench.db",
                  broker: str = "memory") -> Path:
    (root / "sequences").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    (root / "sequences" / "bench.yaml").write_text(
        "name: bench\nmailbox: sales\nsteps:\n  - {name: hello, template: hello, wait: 0s}\n")
    (root / "templates" / "hello.txt.j2").write_text(
        "Subject: Following up, {{ first_name }}\n\n" + BODY)
    (root / "sequencer.yaml").write_text(
        f"database: {database}\nbroker: {broker}\ntick: 0.1s\nmailboxes:\n  sales:\n"
        '    from: "Dana Reyes <dana@example.test>"\n'
        f"    smtp: {{host: 127.0.0.1, port: {port}, tls: none}}\n"
        f"    daily_limit: {n * 10}\n")
    if not (root / "prospects.csv").exists():
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


def enroll(config: Path, n: int) -> None:
    from sequencer.usecases.importing import run_enroll
    from sequencer.workspace import Workspace

    app = Workspace.load(config)
    try:
        summary = run_enroll(app, "bench", config.parent / "prospects.csv", progress=False)
    finally:
        app.close()
    if summary.enrolled != n:
        reasons = {r.reason for r in summary.rejected[:5]}
        raise SystemExit(f"only {summary.enrolled} of {n} prospects enrolled: {reasons}")


def host_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (every thread), from /proc."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


class Progress:
    """Polls how many enrollments completed, on its own connection, every ``POLL_S``; the
    rate runs from the first poll that saw one completed to the first that saw all.

    ``cpu()`` (CPU seconds of the engine's processes) and the machine's busy time are read
    at both ends too, for the CPU each message cost and how busy the host was meanwhile.
    """

    def __init__(self, database: str, n: int, cpu: Callable[[], float] = lambda: 0.0) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(database)
        self.n = n
        self.cpu = cpu
        self.done = 0
        self.first: tuple[float, int] | None = None
        self.last: float | None = None
        self._start: tuple[float, tuple[float, float]] = (0.0, (0.0, 0.0))
        self.cpu_ms = 0.0  # engine CPU per message, milliseconds
        self.host = 0.0  # share of the machine's CPUs busy (anyone's work)

    def count(self) -> int:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(conn.scalar(text(
                "select count(*) from enrollments where state = 'completed'")) or 0)

    def poll(self) -> bool:
        """One look; True once all are done."""
        self.done = self.count()
        now = time.perf_counter()
        if self.first is None and self.done:
            self.first = (now, self.done)
            self._start = (self.cpu(), host_busy())
        if self.done >= self.n:
            self.last = now
            if self.first is not None and self.done > self.first[1]:
                cpu0, (busy0, total0) = self._start
                busy1, total1 = host_busy()
                self.cpu_ms = 1000 * (self.cpu() - cpu0) / (self.done - self.first[1])
                self.host = (busy1 - busy0) / max(1.0, total1 - total0)
            return True
        return False

    def rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first[0]:
            return 0.0
        return (self.done - self.first[1]) / (self.last - self.first[0])

    def close(self) -> None:
        self.engine.dispose()


def embedded(root: Path, n: int, threads: int, timeout_s: float = 900) -> Progress:
    """(a): ``sequencer run`` in this process, SQLite, ``broker: memory``."""
    from sequencer.workspace import Workspace
    from workers.run import run

    config = root / "sequencer.yaml"
    enroll(config, n)
    progress = Progress(f"sqlite:///{root / 'bench.db'}", n, cpu=time.process_time)
    stop = threading.Event()

    def watch() -> None:
        deadline = time.perf_counter() + timeout_s
        while not progress.poll() and time.perf_counter() < deadline:
            time.sleep(POLL_S)
        stop.set()

    app = Workspace.load(config)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run(app, stop, threads=threads, watchers=False)
    finally:
        app.close()
        watcher.join()
        progress.close()
    if progress.done < n:
        raise SystemExit(f"embedded: only {progress.done} of {n} sent")
    return progress


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def pg_cluster(admin_url: str | None) -> Iterator[str]:
    """The admin URL of ``--pg``, or of a throwaway cluster (the tests' fixture)."""
    if admin_url:
        yield admin_url
        return
    from tests.fixtures.postgres import running_postgres

    with running_postgres() as server:
        yield server.url


@contextlib.contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def start(root: Path, *args: str, log: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQUENCER_")}
    env["PYTHONPATH"] = str(REPO)
    with open(root / log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "sequencer", *args,
                                 "-c", str(root / "sequencer.yaml")],
                                env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_running(root: Path, log: str, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = (root / log).read_text(errors="replace") if (root / log).exists() else ""
        if text.count("running:") >= count:
            return
        time.sleep(0.05)
    raise SystemExit(f"{log}: not running after {timeout_s:.0f} s")


def scaled(root: Path, port: int, n: int, processes: int, threads: int, admin_url: str,
           timeout_s: float = 900,
           sample: Callable[[subprocess.Popen[bytes], Progress], None] | None = None
           ) -> Progress:
    """(b): a scheduler and ``sequencer worker --processes P`` over PostgreSQL + Redis."""
    root.mkdir(parents=True, exist_ok=True)
    with redis_server(root) as url, pg_database(admin_url) as database:
        config = build_workdir(root, port, n, database=database, broker=url)
        enroll(config, n)
        log = f"worker-{processes}.log"
        procs = [start(root, "worker", "--processes", str(processes), "--threads",
                       str(threads), log=log)]

        def engine_cpu() -> float:  # the scheduler, the worker processes and their parent
            pids = [proc.pid for proc in procs]
            return cpu_s(pids + [c for pid in pids for c in children(pid)])

        progress = Progress(database, n, cpu=engine_cpu)
        try:
            wait_running(root, log, processes)  # the workers listen before work is claimed
            procs.append(start(root, "scheduler", log=f"scheduler-{processes}.log"))
            deadline = time.perf_counter() + timeout_s
            while not progress.poll() and time.perf_counter() < deadline:
                if sample is not None:
                    sample(procs[0], progress)
                time.sleep(POLL_S)
        finally:
            stop_all(procs)
            progress.close()
        if progress.done < n:
            raise SystemExit(f"--processes {processes}: only {progress.done} of {n} sent; "
                             f"see {root / log}")
        return progress


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_rss(args: argparse.Namespace, port: int) -> None:
    """(d): one worker's RSS every ``--every`` seconds over ``--n`` sends."""
    samples: list[tuple[float, int, float]] = []
    started = time.perf_counter()
    last = [0.0]

    def sample(worker: subprocess.Popen[bytes], progress: Progress) -> None:
        now = time.perf_counter()
        if now - last[0] < args.every:
            return
        last[0] = now
        mb = rss_mb(worker.pid)
        samples.append((now - started, progress.done, mb))
        print(f"  t={now - started:6.0f} s  sent {progress.done:7d}  worker RSS {mb:6.1f} MB",
              flush=True)

    with tempfile.TemporaryDirectory() as tmp, pg_cluster(args.pg) as admin:
        rate = scaled(Path(tmp), port, args.n, 1, args.threads, admin, timeout_s=7200,
                      sample=sample).rate()
    warm = [s for s in samples if s[1] >= min(args.n // 10, 10_000)] or samples
    first, final = warm[0], warm[-1]
    peak = max(s[2] for s in warm)
    print(f"mode: rss (one `sequencer worker`, PostgreSQL + Redis, {args.threads} threads), "
          f"{args.n} sends at {rate:.0f} msg/s")
    print(f"worker RSS after warm-up ({first[1]} sent) {first[2]:.1f} MB -> at {final[1]} sent "
          f"{final[2]:.1f} MB (peak {peak:.1f} MB): ratio {final[2] / first[2]:.3f} "
          "(flat: about 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--processes", default="",
                        help="scale-out rows: comma-separated worker process counts, "
                             "e.g. 1,2,4 (PostgreSQL + Redis)")
    parser.add_argument("--pg", default=None,
                        help="an admin URL of a PostgreSQL cluster to use instead of a "
                             "throwaway one; the bench creates and drops its own database")
    parser.add_argument("--rss", action="store_true",
                        help="(d): sample one worker's RSS over --n sends instead")
    parser.add_argument("--every", type=float, default=5.0, help="--rss: seconds per sample")
    parser.add_argument("--no-embedded", action="store_true",
                        help="skip the embedded row (only the baseline and --processes)")
    args = parser.parse_args()
    counts = [int(p) for p in args.processes.split(",") if p.strip()]
    port = free_port()
    sink = start_sink(port)
    try:
        if args.rss:
            measure_rss(args, port)
            return
        rows: dict[str, list[float]] = {"baseline": []}
        cost: dict[str, list[float]] = {}  # engine CPU ms per message
        busy: list[float] = []  # how busy the host was during the engine's rows
        names = ([] if args.no_embedded else ["embedded"]) + [f"processes {p}" for p in counts]
        for name in names:
            rows[name], cost[name] = [], []
        with contextlib.ExitStack() as stack:
            admin = stack.enter_context(pg_cluster(args.pg)) if counts else ""
            for run_no in range(args.runs):
                line = []
                with tempfile.TemporaryDirectory() as tmp:
                    root = Path(tmp) / "embedded"
                    build_workdir(root, port, args.n)
                    data = sample_message(root)
                    rows["baseline"].append(asyncio.run(baseline(port, data, args.n)))
                    line.append(f"baseline {rows['baseline'][-1]:5.0f}")
                    for name in names:
                        if name == "embedded":
                            got = embedded(root, args.n, args.threads)
                        else:
                            p = int(name.split()[1])
                            got = scaled(Path(tmp) / f"p{p}", port, args.n, p, args.threads,
                                         admin)
                        rows[name].append(got.rate())
                        cost[name].append(got.cpu_ms)
                        busy.append(got.host)
                        line.append(f"{name} {got.rate():5.0f} ({got.cpu_ms:.1f} ms CPU/msg)")
                print(f"run {run_no + 1} (msg/s, message {len(data)} bytes): "
                      + "   ".join(line), flush=True)
    finally:
        sink.kill()
        sink.wait()
    med = {name: statistics.median(values) for name, values in rows.items()}
    ms = {name: statistics.median(values) for name, values in cost.items()}
    base = med["baseline"]
    print(f"median of {args.runs}, {args.n} sends, {args.threads} threads per process, "
          f"{os.cpu_count()} CPUs, host {statistics.median(busy or [0]):.0%} busy meanwhile "
          "(anyone's work):")
    print(f"  baseline: aiosmtplib, pre-built bytes, one connection   {base:6.0f} msg/s")
    if "embedded" in med:
        print(f"  (a) embedded: sequencer run, SQLite, broker memory       "
              f"{med['embedded']:6.0f} msg/s   {med['embedded'] / base:.2f}x baseline "
              f"(aim >= 0.50); {ms['embedded']:.1f} ms CPU/msg")
    one = med.get("processes 1")
    for p in counts:
        rate = med[f"processes {p}"]
        vs = [f"{rate / base:.2f}x baseline"]
        if "embedded" in med:
            vs.append(f"{rate / med['embedded']:.2f}x (a)")
        if one and p != 1:
            vs.append(f"{rate / one:.2f}x one process" + (" (aim >= 1.40)" if p == 2 else ""))
        print(f"  (b) worker --processes {p}, PostgreSQL + Redis        {rate:6.0f} msg/s   "
              + ", ".join(vs) + f"; {ms[f'processes {p}']:.1f} ms CPU/msg (scheduler + "
              "workers, not PostgreSQL or Redis)")


if __name__ == "__main__":
    main()

"""Import rate: how fast `sequencer enroll` takes a prospects CSV, against email-validator alone
on the same addresses, in the same run (a benchmark, not a test).

    .venv/bin/python bench/import_rate.py [--rows 100000] [--small 10000] [--runs 3]
    .venv/bin/python bench/import_rate.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Per run, over one generated CSV (email,first_name,last_name,company; unique valid addresses):
  (a) email_validator.validate_email(addr, check_deliverability=False) alone, rows/s;
  (b) sequencer.prospects.read_prospects alone (CSV parse + per-row rules, no database), rows/s;
  (c) the full enroll path, sequencer.usecases.importing.run_enroll(app, ...), into a fresh SQLite
      working folder, rows/s, with peak memory: tracemalloc peak, and the ru_maxrss delta.
      It also runs at --small rows (its own CSV and folder): a streaming import's peak memory
      should be about the same at --small and --rows.
With ``--pg SERVER`` (c) also runs into a fresh PostgreSQL database per measurement (created
on SERVER and dropped after; no planner statistics yet, as after `createdb`), at --rows and
--small: the rate at both should be about the same (linear), where it used to fall with size.
(c) runs in child processes, one per measurement (ru_maxrss never goes down,
and tracemalloc slows the run), so (c)'s rate is measured without tracemalloc and its
memory in a second, traced pass.

The host is noisy: compare ratios printed by one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DOMAINS = ("example.com", "example.org", "example.net", "acme-widgets.com", "northwind.io")
FIRST = ("Ana", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Goran", "Hiro", "Ines", "Jon")
LAST = ("Ng", "Okafor", "Petrov", "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Vega", "Wu")


def write_csv(path: Path, rows: int) -> list[str]:
    """A prospects CSV with ``rows`` unique valid addresses; returns the addresses."""
    addresses = []
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,first_name,last_name,company\n")
        for i in range(rows):
            first, last = FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)]
            local = f"{first.lower().replace('é', 'e')}.{last.lower()}{i}"
            addr = f"{local}@{DOMAINS[i % len(DOMAINS)]}"
            addresses.append(addr)
            f.write(f"{addr},{first},{last},Company {i % 997}\n")
    return addresses


def build_workdir(root: Path, database: str = "sqlite:///bench.db") -> Path:
    """A working folder like bench/send_throughput.py's: one sequence, one template, SQLite."""
    (root / "sequences").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "sequences" / "bench.yaml").write_text(
        "name: bench\nmailbox: sales\nsteps:\n  - {name: hello, template: hello, wait: 0s}\n")
    (root / "templates" / "hello.txt.j2").write_text(
        "Subject: Following up, {{ first_name }}\n\nHi {{ first_name }} at {{ company }},\n"
        "\nBest,\n{{ sender }}\n")
    (root / "sequencer.yaml").write_text(
        f"database: {database}\nbroker: memory\nmailboxes:\n  sales:\n"
        '    from: "Dana Reyes <dana@example.com>"\n'
        "    smtp: {host: 127.0.0.1, port: 2525, tls: none}\n")
    return root / "sequencer.yaml"


def rate_validator(addresses: list[str]) -> float:
    from email_validator import validate_email

    start = time.perf_counter()
    for addr in addresses:
        validate_email(addr, check_deliverability=False)
    return len(addresses) / (time.perf_counter() - start)


def rate_read(csv: Path, rows: int) -> float:
    from sequencer.prospects import Prospect, read_prospects

    start = time.perf_counter()
    accepted = sum(1 for r in read_prospects(csv, required=("first_name", "company"))
                   if isinstance(r, Prospect))
    elapsed = time.perf_counter() - start
    if accepted != rows:
        raise SystemExit(f"read_prospects accepted {accepted} of {rows} rows")
    return rows / elapsed


def full_enroll(csv: Path, rows: int, traced: bool,
                database: str = "sqlite:///bench.db") -> dict[str, float]:
    """One full `sequencer enroll` into a fresh working folder (call in a fresh process)."""
    from sequencer.usecases.importing import run_enroll
    from sequencer.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        config = build_workdir(Path(tmp), database)
        app = Workspace.load(config)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if traced:
            tracemalloc.start()
        start = time.perf_counter()
        summary = run_enroll(app, "bench", csv, progress=False)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        if traced:
            tracemalloc.stop()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        app.close()
    if summary.enrolled != rows:
        reasons = {r.reason for r in summary.rejected[:5]}
        raise SystemExit(f"enrolled {summary.enrolled} of {rows} rows: {reasons}")
    return {"rate": rows / elapsed, "peak_mb": peak / 2**20, "rss_delta_mb": (rss1 - rss0) / 1024}


def in_child(csv: Path, rows: int, traced: bool, pg: str | None = None) -> dict[str, float]:
    drop = None
    database = "sqlite:///bench.db"
    if pg:
        database, drop = pg_database(pg)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(csv), "--rows", str(rows),
             "--database", database] + (["--traced"] if traced else []),
            check=True, capture_output=True, text=True)
    finally:
        if drop is not None:
            drop()
    return json.loads(out.stdout.strip().splitlines()[-1])


def pg_database(server: str) -> tuple[str, Callable[[], None]]:
    """A fresh, empty database on ``server``; returns (its URL, a function that drops it)."""
    import psycopg

    name = f"import_{uuid.uuid4().hex[:8]}"
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
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database", default="sqlite:///bench.db", help=argparse.SUPPRESS)
    parser.add_argument("--pg", help="also import into fresh PostgreSQL databases on this server")
    parser.add_argument("--only-pg", action="store_true",
                        help="with --pg: skip the SQLite and no-database measurements")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(full_enroll(args.child, args.rows, args.traced, args.database)))
        return
    if args.pg and args.only_pg:
        pg_only(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.csv", Path(tmp) / "small.csv"
        addresses = write_csv(big, args.rows)
        write_csv(small, args.small)
        print(f"{args.rows} rows ({big.stat().st_size / 2**20:.1f} MB CSV), "
              f"{args.small} rows for the memory comparison; {args.runs} runs", flush=True)
        results: dict[str, list[float]] = {k: [] for k in (
            "validator", "read", "enroll", "peak_big", "rss_big", "peak_small", "rss_small",
            "enroll_small")}
        for run_no in range(1, args.runs + 1):
            v = rate_validator(addresses)
            r = rate_read(big, args.rows)
            e = in_child(big, args.rows, traced=False)
            eb = in_child(big, args.rows, traced=True)
            es = in_child(small, args.small, traced=True)
            for key, value in (("validator", v), ("read", r), ("enroll", e["rate"]),
                               ("peak_big", eb["peak_mb"]), ("rss_big", eb["rss_delta_mb"]),
                               ("peak_small", es["peak_mb"]), ("rss_small", es["rss_delta_mb"]),
                               ("enroll_small", es["rate"])):
                results[key].append(value)
            print(f"run {run_no}: email-validator {v:7.0f} rows/s | read_prospects {r:7.0f} "
                  f"rows/s ({r / v:.2f}x) | enroll {e['rate']:7.0f} rows/s ({e['rate'] / v:.2f}x)"
                  f" | peak {args.rows}: tracemalloc {eb['peak_mb']:.1f} MB, maxrss "
                  f"+{eb['rss_delta_mb']:.1f} MB | peak {args.small}: tracemalloc "
                  f"{es['peak_mb']:.1f} MB, maxrss +{es['rss_delta_mb']:.1f} MB", flush=True)
    m = {k: statistics.median(v) for k, v in results.items()}
    if args.pg:
        pg_only(args)
    # ratios: the median of each run's own ratio (the host is noisy between runs)
    ratio = {k: statistics.median(x / v for x, v in zip(results[k], results["validator"],
                                                         strict=True))
             for k in ("read", "enroll")}
    print(f"\nmedian of {args.runs}:")
    print(f"  email-validator alone        {m['validator']:8.0f} rows/s   1.00x")
    print(f"  read_prospects (no DB)       {m['read']:8.0f} rows/s   {ratio['read']:.2f}x")
    print(f"  full enroll (SQLite)         {m['enroll']:8.0f} rows/s   "
          f"{ratio['enroll']:.2f}x  (aim >= 0.60)")
    print(f"  peak memory, full enroll     {args.rows:>7} rows: tracemalloc {m['peak_big']:.1f} MB,"
          f" maxrss +{m['rss_big']:.1f} MB")
    print(f"                               {args.small:>7} rows: tracemalloc "
          f"{m['peak_small']:.1f} MB, maxrss +{m['rss_small']:.1f} MB  "
          f"(ratio {m['peak_big'] / max(m['peak_small'], 1e-9):.2f}x tracemalloc for "
          f"{args.rows / args.small:.0f}x rows)")


def pg_only(args: argparse.Namespace) -> None:
    """(c) into fresh PostgreSQL databases at --small and --rows; the small one is the
    baseline (a linear import keeps its rate)."""
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.csv", Path(tmp) / "small.csv"
        write_csv(big, args.rows)
        write_csv(small, args.small)
        rates: dict[int, list[float]] = {args.small: [], args.rows: []}
        for run_no in range(1, args.runs + 1):
            for rows, csv in ((args.small, small), (args.rows, big)):
                rates[rows].append(in_child(csv, rows, traced=False, pg=args.pg)["rate"])
            print(f"run {run_no}: PostgreSQL enroll {args.small} rows "
                  f"{rates[args.small][-1]:7.0f} rows/s | {args.rows} rows "
                  f"{rates[args.rows][-1]:7.0f} rows/s "
                  f"({rates[args.rows][-1] / rates[args.small][-1]:.2f}x)", flush=True)
    s_rate, b_rate = statistics.median(rates[args.small]), statistics.median(rates[args.rows])
    print(f"\nmedian of {args.runs}, PostgreSQL, fresh database (no statistics):")
    print(f"  enroll {args.small:>7} rows  {s_rate:8.0f} rows/s   1.00x")
    print(f"  enroll {args.rows:>7} rows  {b_rate:8.0f} rows/s   {b_rate / s_rate:.2f}x  "
          f"(linear: about 1; {args.rows / args.small:.0f}x the rows in "
          f"{args.rows / b_rate:.1f} s against {args.small / s_rate:.1f} s)")


if __name__ == "__main__":
    main()

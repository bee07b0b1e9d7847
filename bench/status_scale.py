"""`sequencer status` at scale: seconds and peak memory of ``status --summary`` and
``status --json --limit 100`` on a large database, against the same commands on the
smallest size in the same run (a benchmark, not a test).

    .venv/bin/python bench/status_scale.py [--sizes 10000,1000000] [--runs 3]
        [--db sqlite,postgresql] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Each database is built by ``bench/bigdb.py`` (the shape its docstring describes). Each
command runs as the real CLI in a child process; its wall time, and its peak RSS as the
kernel reports it for that one child (``os.wait4``'s ``ru_maxrss``), which includes the
interpreter and its imports (``sequencer --help`` is printed for scale).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bigdb import Shape, build  # noqa: E402
from bench.scheduler_scale import pg_database, write_workdir  # noqa: E402

COMMANDS = {
    "--help": ["--help"],
    "status --summary": ["status", "--summary"],
    "status --json --limit 100": ["status", "--json", "--limit", "100"],
}


def run_cli(config: Path, args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `sequencer ARGS` in the working folder."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sequencer", *args], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"sequencer {' '.join(args)} exited {proc.returncode}: {err[-2000:]}")
    return took, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"status on {', '.join(f'{s:,}' for s in sizes)} enrollments; {args.runs} runs; "
          f"baseline {sizes[0]:,}", flush=True)
    summary: list[str] = []
    for kind in args.db.split(","):
        base: dict[str, tuple[float, float]] = {}
        for n in sizes:
            shape = Shape(enrollments=n, due=1000)
            with tempfile.TemporaryDirectory() as tmp:
                drop = None
                if kind == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'big.db'}"
                else:
                    url, drop = pg_database(args.pg)
                try:
                    build(url, shape)
                    config = write_workdir(Path(tmp) / "wd", url, shape)
                    for name, cli in COMMANDS.items():
                        got = [run_cli(config, cli) for _ in range(args.runs)]
                        secs = statistics.median(g[0] for g in got)
                        mb = statistics.median(g[1] for g in got)
                        base.setdefault(name, (secs, mb))
                        line = (f"{kind:10} {n:>9,}  {name:27} {secs:7.2f} s "
                                f"({secs / base[name][0]:5.2f}x)  peak RSS {mb:6.1f} MB "
                                f"({mb / base[name][1]:4.2f}x)")
                        print(line + "   runs: " + ", ".join(
                            f"{s:.2f} s/{m:.0f} MB" for s, m in got), flush=True)
                        summary.append(line)
                finally:
                    if drop is not None:
                        drop()
    print(f"\nmedian of {args.runs} (ratio against {sizes[0]:,} enrollments):")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    main()

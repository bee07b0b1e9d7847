"""How much of the labelled corpus the classifier reads right, and how fast.

    .venv/bin/python bench/classify_rate.py [--runs 5]

For the ``tune`` set (mail the classifier was written against) and, apart, the
``holdout`` set (mail it was never tuned on) of tests/data/corpus: the share of kinds
right, hard/soft agreeing with the cited reference (sisimai's hard-bounce flags), human
replies read as anything else, and return dates right. Then messages per second over the
whole corpus (median of the runs) against a baseline measured in the same run: the stdlib
parse of the same bytes (``email.message_from_bytes``, compat32), which every verdict
includes.
"""

from __future__ import annotations

import argparse
import email
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from email import policy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sequencer.core.classify import classify  # noqa: E402
from tests.core.classify.scoring import arrival, score  # noqa: E402
from tests.corpus import load  # noqa: E402


def _rate(messages: list[tuple[bytes, datetime]],
          read: Callable[[bytes, datetime], object]) -> float:
    started = time.perf_counter()
    for raw, now in messages:
        read(raw, now)
    return len(messages) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed passes (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    rows = load()
    for name in ("tune", "holdout"):
        found = score((r for r in rows if r.set == name), detailed=False)
        print(found.line(name))
    messages = [(raw, arrival(raw)) for raw in (r.raw() for r in rows)]
    ours = []
    baseline = []
    for _ in range(args.runs):
        baseline.append(_rate(messages, lambda raw, _now: email.message_from_bytes(
            raw, policy=policy.compat32)))
        ours.append(_rate(messages, lambda raw, now: classify(raw, now=now)))
    mine, theirs = statistics.median(ours), statistics.median(baseline)
    print(f"{len(messages)} messages x {args.runs} runs: classify {mine:,.0f} msg/s, stdlib parse "
          f"alone {theirs:,.0f} msg/s: {mine / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

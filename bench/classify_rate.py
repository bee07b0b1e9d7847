"""How fast ``classify`` reads the bounce corpus, and how much of it it reads right.

    .venv/bin/python bench/classify_rate.py [--runs 5] [--corpus PATH]

Prints messages per second (median of the runs) and the share of files whose kind is
what the corpus README says (bounce / complaint / auto_reply / not a bounce).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sequencer.core.classify import Kind, Verdict, classify

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "sisimai"


def expected_right(name: str, verdict: Verdict) -> bool:
    if name.startswith(("lhost-", "rhost-", "rfc3464-")):
        return verdict.kind is Kind.BOUNCE
    if name.startswith("arf-"):
        return verdict.kind is Kind.COMPLAINT
    if name.startswith("rfc3834-"):
        return verdict.kind is Kind.AUTO_REPLY
    return verdict.kind is not Kind.BOUNCE


def one_run(messages: list[tuple[str, bytes]]) -> tuple[float, int]:
    right = 0
    started = time.perf_counter()
    for name, raw in messages:
        right += expected_right(name, classify(raw))
    return time.perf_counter() - started, right


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="passes over the corpus (default 5)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of .eml files")
    args = parser.parse_args(argv)
    messages = [(path.name, path.read_bytes()) for path in sorted(args.corpus.glob("*.eml"))]
    if not messages or args.runs < 1:
        print(f"{args.corpus}: no .eml files (or --runs < 1)", file=sys.stderr)
        return 1
    results = [one_run(messages) for _ in range(args.runs)]
    rate = statistics.median(len(messages) / seconds for seconds, _ in results)
    right = results[0][1]
    print(f"{len(messages)} messages x {args.runs} runs: {rate:,.0f} messages/s (median)")
    print(f"classified right: {right}/{len(messages)} = {right / len(messages):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

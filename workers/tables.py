"""Plain-text tables and JSON arrays written as their rows arrive (``status`` on a million
enrollments prints its first line at once and never holds the rows in memory)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

#: Rows read before the column widths are fixed; a longer value later widens only its line.
SAMPLE = 1000


def write_table(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[str]],
                sample: int = SAMPLE) -> int:
    """Columns two spaces apart, as wide as the header or the widest of the first
    ``sample`` rows; trailing spaces trimmed. Returns the number of rows written."""
    it = iter(rows)
    first = list(itertools.islice(it, sample))
    widths = [max([len(h), *(len(r[i]) for r in first)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"

    out.write(line(headers))
    count = 0
    for row in itertools.chain(first, it):
        out.write(line(row))
        count += 1
    return count


def write_json_array(out: TextIO, items: Iterable[dict[str, Any]]) -> int:
    """The same text as ``json.dumps(list(items), indent=2)``, one item at a time."""
    count = 0
    for item in items:
        out.write("[\n  " if count == 0 else ",\n  ")
        out.write(json.dumps(item, indent=2).replace("\n", "\n  "))
        count += 1
    out.write("\n]\n" if count else "[]\n")
    return count

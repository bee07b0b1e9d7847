"""How long `validate` takes to refuse a template whose work has no bound (RELIABILITY X11),
against rendering the shipped trade-show template in the same run (a benchmark, not a test).

    .venv/bin/python bench/template_bombs.py [--runs 3]

Each hostile template below passed `validate` after 20+ seconds (or never returned) before
the sandbox counted calls, work and call depth; now each is refused by a count, so the
verdict is the same on every machine and only the time it takes varies with the host. The
script prints, per template, the median time to refusal and its ratio to one ordinary render.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BIG = "{% set s = 'x ' * 500000 %}{% set t = 'x ' * 500000 %}"
BOMBS = {
    "recursive macro, fan-out 2^40": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}"
    "{% endif %}{% endmacro %}{{ f(40) }}",
    "macro passed to itself": "{% macro f(g) %}{{ g(g) }}{% endmacro %}{{ f(f) }}",
    "fan-out through an argument": "{% macro f(g, n) %}{% if n %}{{ g(g, n - 1) }}"
    "{{ g(g, n - 1) }}{% endif %}{% endmacro %}{{ f(f, 25) }}",
    "map over a 1M-character string": BIG + "{% for i in range(50) %}"
    "{{ s|list|map('upper')|join|length }}{% endfor %}",
    "upper of 1M characters x 9999": BIG + "{% for i in range(9999) %}{{ s|upper|length }}"
    "{% endfor %}",
    "sort 1M items x 50": BIG + "{% for i in range(50) %}{{ s|list|sort|length }}{% endfor %}",
    "wordcount of 1M x 9999": BIG + "{% for i in range(9999) %}{{ s|wordcount }}{% endfor %}",
    "reversed slice x 9999": BIG + "{% for i in range(9999) %}{% if s[::-1] %}{% endif %}"
    "{% endfor %}",
    "compare 1M strings x 9999": BIG + "{% for i in range(9999) %}{% if s == t %}{% endif %}"
    "{% endfor %}",
    "print into a set block x 9999": BIG + "{% for i in range(9999) %}{% set x %}{{ s }}"
    "{% endset %}{% endfor %}",
    "50,000 loop iterations": "{% for i in range(9999) %}{% for j in range(9) %}"
    "{{ loop.length }}{% endfor %}{% endfor %}",
}


def time_refusal(folder: Path, name: str, source: str) -> tuple[float, str]:
    from sequencer.errors import TemplateError
    from sequencer.templating.templates import TemplateSet

    (folder / f"{name}.txt.j2").write_text(f"Subject: hi\n\n{source}\n", encoding="utf-8")
    started = time.perf_counter()
    try:
        TemplateSet(folder).check(name)
    except TemplateError as err:
        return time.perf_counter() - started, err.reason
    raise SystemExit(f"{name}: not refused")


def time_ordinary(rounds: int = 200) -> float:
    from sequencer.templating.templates import TemplateSet, placeholder_context

    template = TemplateSet(REPO / "templates").get("thank_you")
    context = placeholder_context(template.variables)
    started = time.perf_counter()
    for _ in range(rounds):
        template.render(context)
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ordinary = statistics.median(time_ordinary() for _ in range(args.runs))
    print(f"ordinary render (templates/thank_you): {ordinary * 1e6:.0f} µs; "
          f"median of {args.runs} runs each\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index, (label, source) in enumerate(BOMBS.items()):
            timings = [time_refusal(folder, f"bomb{index}", source) for _ in range(args.runs)]
            seconds = statistics.median(t for t, _ in timings)
            reason = timings[0][1]
            print(f"{label:32} refused in {seconds:6.3f} s ({seconds / ordinary:8.0f}x an "
                  f"ordinary render): {reason[:70]}")


if __name__ == "__main__":
    main()

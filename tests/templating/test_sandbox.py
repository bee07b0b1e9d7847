"""The sandbox (X3): hostile templates are refused quickly, with file and line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.templating.test_templates import error_of, write

HOSTILE = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "untaken-branch": "{% if false %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endif %}",
    "subscript": "{{ ''['__class__'] }}",
    "map-attribute": "{{ [1]|map(attribute='__class__')|list }}",
    "globals": "{{ self._TemplateReference__context }}",
    "built-name": "{% set u = '_' %}{{ ''[u ~ u ~ 'class' ~ u ~ u] }}",
    "huge-range": "{% for i in range(10**9) %}{% endfor %}",
    "nested-loops": "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "string-bomb": "{{ 'x' * 10**9 }}",
    "integer-bomb": "{{ 2 ** 10000000 }}",
    "doubling": "{% set n = namespace(s='x') %}{% for i in range(60) %}"
    "{% set n.s = n.s ~ n.s %}{% endfor %}",
    "plus-doubling": "{% set n = namespace(s='x') %}{% for i in range(60) %}"
    "{% set n.s = n.s + n.s %}{% endfor %}",
    "ljust": "{{ 'x'.ljust(10**9) }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "printf-width": "{{ '%999999999d' % 1 }}",
    "center-filter": "{{ 'x'|center(10**9) }}",
    "replace-bomb": "{% set s = 'x' * 100000 %}{{ s|replace('x', s) }}",
    "join-bomb": "{% set s = 'x' * 100000 %}{{ range(1000)|join(s) }}",
    "output-size": "{% for i in range(5000) %}{{ 'x' * 1000 }}{% endfor %}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "recursive-loop": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "include": "{% include 'other.txt.j2' %}",
    "unsafe-filter": "{{ 'x'|attr('upper') }}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_is_refused_at_check_quickly_with_file_and_line(
    tmp_path: Path, name: str
) -> None:
    templates = write(tmp_path, name, f"Subject: Hi\n\nline 3\n{HOSTILE[name]}\n")
    started = time.perf_counter()
    error = error_of(templates, name)
    assert time.perf_counter() - started < 1.0
    assert error.path == str(tmp_path / f"{name}.txt.j2")
    if name != "output-size":
        assert error.line == 4, error
    else:
        assert "rendered output is larger than" in error.reason


def test_underscore_access_is_refused_even_before_any_render(tmp_path: Path) -> None:
    templates = write(tmp_path, "u", "Subject: Hi\n\n{% if never %}{{ x.__init__ }}{% endif %}\n")
    error = error_of(templates, "u", check=False)
    assert error.reason.startswith("access to `__init__` is not allowed")
    assert error.line == 3


def test_sandbox_refusal_at_trial_render_is_a_template_error(tmp_path: Path) -> None:
    templates = write(
        tmp_path, "s", "Subject: Hi\n\n{% set u = '_' %}{{ ''[u ~ u ~ 'class' ~ u ~ u] }}\n"
    )
    error = error_of(templates, "s")
    assert error.reason.startswith("refused by the sandbox")
    assert error.line == 3


def test_loops_within_the_budget_still_render(tmp_path: Path) -> None:
    templates = write(
        tmp_path,
        "loop",
        "Subject: Hi\n\n{% for i in range(200) %}{% for j in range(200) %}{% endfor %}"
        "{% endfor %}{{ range(5)|join(',') }}\n",
    )
    assert templates.check("loop").render({}).text == "0,1,2,3,4\n"


# --- work bombs (RELIABILITY X11): every cap is a count, so the verdict is the same on
# every machine; bench/template_bombs.py prints how long each one takes to be refused.

BIG = "{% set s = 'x ' * 500000 %}{% set t = 'x ' * 500000 %}"
WORK = "more than 200000000 units of work"
CALLS = "more than 20000 filter, test, macro or method calls"
WORK_BOMBS = {
    "macro-fan-out": ("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}"
                      "{% endmacro %}{{ f(40) }}", "macro `f` calls itself: recursive macros "
                      "are not allowed"),
    "macro-through-another": ("{% macro f() %}{{ g() }}{% endmacro %}{% macro g() %}{{ h() }}"
                              "{% endmacro %}{% macro h() %}{{ f() }}{% endmacro %}{{ f() }}",
                              "macro `f` calls itself through `g`, `h`: recursive macros"),
    "call-block-recursion": ("{% macro f() %}{% call f() %}x{% endcall %}{% endmacro %}{{ f() }}",
                             "macro `f` calls itself"),
    "macro-passed-to-itself": ("{% macro f(g) %}{{ g(g) }}{% endmacro %}{{ f(f) }}",
                               "refused by the sandbox: calls nested more than 40 deep"),
    "fan-out-through-an-argument": ("{% macro f(g, n) %}{% if n %}{{ g(g, n - 1) }}"
                                    "{{ g(g, n - 1) }}{% endif %}{% endmacro %}{{ f(f, 25) }}",
                                    f"refused by the sandbox: {CALLS}"),
    "per-item-filter": (BIG + "{% for i in range(50) %}{{ s|list|map('upper')|join|length }}"
                        "{% endfor %}", "refused by the sandbox: more than"),
    "filter-on-a-huge-string": (BIG + "{% for i in range(9999) %}{{ s|upper|length }}"
                                "{% endfor %}", f"refused by the sandbox: {WORK}"),
    "sort": (BIG + "{% for i in range(50) %}{{ s|list|sort|length }}{% endfor %}",
             f"refused by the sandbox: {WORK}"),
    "wordcount": (BIG + "{% for i in range(9999) %}{{ s|wordcount }}{% endfor %}",
                  f"refused by the sandbox: {WORK}"),
    "slice": (BIG + "{% for i in range(9999) %}{% if s[::-1] %}{% endif %}{% endfor %}",
              f"refused by the sandbox: {WORK}"),
    "compare": (BIG + "{% for i in range(9999) %}{% if s == t %}{% endif %}{% endfor %}",
                f"refused by the sandbox: {WORK}"),
    "in": (BIG + "{% for i in range(9999) %}{% if 'y' in s %}{% endif %}{% endfor %}",
           f"refused by the sandbox: {WORK}"),
    "method": (BIG + "{% for i in range(9999) %}{{ s.upper()|length }}{% endfor %}",
               f"refused by the sandbox: {WORK}"),
    "set-block": (BIG + "{% for i in range(9999) %}{% set x %}{{ s }}{% endset %}{% endfor %}",
                  f"refused by the sandbox: {WORK}"),
    "concat": (BIG + "{% for i in range(9999) %}{% set x = s ~ '' %}{% endfor %}",
               f"refused by the sandbox: {WORK}"),
    "integer-doubling": ("{% set n = namespace(x=3) %}{% for i in range(200) %}"
                         "{% for j in range(200) %}{% set n.x = n.x + n.x %}{% endfor %}"
                         "{% endfor %}", "refused by the sandbox: integer too large"),
    "loop-budget": ("{% for i in range(9999) %}{% for j in range(9) %}{{ loop.length }}"
                    "{% endfor %}{% endfor %}", "refused by the sandbox: loops ran more than "
                    "50000 iterations"),
}


@pytest.mark.parametrize("name", sorted(WORK_BOMBS))
def test_a_template_whose_work_has_no_bound_is_refused_on_its_line(
        tmp_path: Path, name: str) -> None:
    source, reason = WORK_BOMBS[name]
    templates = write(tmp_path, name, f"Subject: Hi\n\nline 3\n{source}\n")
    error = error_of(templates, name)
    assert error.path == str(tmp_path / f"{name}.txt.j2")
    assert error.line == 4, error
    assert error.reason.startswith(reason), error.reason


def test_recursive_macros_are_refused_before_any_render(tmp_path: Path) -> None:
    text = "Subject: Hi\n\n{% if false %}{% macro f() %}\n{{ f() }}{% endmacro %}{% endif %}\n"
    error = error_of(write(tmp_path, "r", text), "r", check=False)
    assert (error.line, error.reason) == (4, "macro `f` calls itself: recursive macros are "
                                              "not allowed")


def test_an_ordinary_email_with_macros_filters_slices_and_comparisons_still_renders(
        tmp_path: Path) -> None:
    text = ("Subject: {{ first_name|title }}, {{ company[:20] }}\n\n"
            "{% macro item(name, price) %}- {{ name|upper }}: {{ '%.2f'|format(price) }}"
            "{% endmacro %}{% macro items(rows) %}{% for row in rows %}{{ item(*row) }}\n"
            "{% endfor %}{% endmacro %}"
            "{% if first_name == 'Ann' and 'x' not in company %}Hi Ann,{% endif %}\n"
            "{{ items([('tea', 2), ('cake', 3.5)]) }}"
            "{{ notes|wordwrap(20)|truncate(40) }} {{ notes.split()|sort|unique|join(',') }}\n"
            "{% for i in range(100) %}{% if i is divisibleby 50 %}{{ i }}{% endif %}{% endfor %}"
            "\n")
    rendered = write(tmp_path, "ok", text).get("ok").render(
        {"first_name": "Ann", "company": "Acme Widgets Incorporated", "notes": "b a c a"})
    assert rendered.subject == "Ann, Acme Widgets Incorpo"
    assert rendered.text == ("Hi Ann,\n- TEA: 2.00\n- CAKE: 3.50\nb a c a a,b,c\n050\n")

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
        "Subject: Hi\n\n{% for i in range(300) %}{% for j in range(300) %}{% endfor %}"
        "{% endfor %}{{ range(5)|join(',') }}\n",
    )
    assert templates.check("loop").render({}).text == "0,1,2,3,4\n"

"""Templates: file format, line numbers, variables, sandbox (X3), missing vars (X4), HTML (X5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer.core.compose import Rendered
from sequencer.errors import TemplateError
from sequencer.templating.templates import (
    BUILTIN_VARIABLES,
    TemplateSet,
    empty_required,
    missing_variables,
)

CONTEXT = {
    "first_name": "Ana",
    "company": "Acme",
    "sender": "Dana <dana@example.com>",
    "unsubscribe_url": "https://example.com/u/1",
}


def write(directory: Path, name: str, text: str, html: str | None = None) -> TemplateSet:
    (directory / f"{name}.txt.j2").write_text(text, encoding="utf-8")
    if html is not None:
        (directory / f"{name}.html.j2").write_text(html, encoding="utf-8")
    return TemplateSet(directory)


def error_of(templates: TemplateSet, name: str, *, check: bool = True) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        templates.check(name) if check else templates.get(name)
    return caught.value


def test_template_renders_subject_text_and_html_parts(tmp_path: Path) -> None:
    templates = write(
        tmp_path,
        "thanks",
        "Subject: Thanks, {{ first_name }}\n\nHi {{ first_name }} at {{ company }}.\n",
        "<p>Hi {{ first_name }}</p>\n",
    )
    rendered = templates.get("thanks").render(CONTEXT)
    assert rendered == Rendered(
        subject="Thanks, Ana", text="Hi Ana at Acme.\n", html="<p>Hi Ana</p>\n"
    )


def test_template_without_html_file_renders_no_html_part(tmp_path: Path) -> None:
    templates = write(tmp_path, "plain", "Subject: Hi\n\nBody\n")
    assert templates.get("plain").render({}).html is None


def test_variables_cover_subject_text_and_html_and_required_skips_defaults(
    tmp_path: Path,
) -> None:
    templates = write(
        tmp_path,
        "t",
        "Subject: {{ first_name }}\n\n{{ company|default('your team') }} {{ unsubscribe_url }}\n"
        "{% for i in range(2) %}{{ i }}{% endfor %}{% set local = 1 %}{{ local }}\n",
        "{% if title is defined %}{{ title }}{% endif %}{{ city|d('') }}{{ job }}",
    )
    template = templates.get("t")
    assert template.variables == {
        "first_name", "company", "unsubscribe_url", "title", "city", "job",
    }  # fmt: skip
    assert template.required == {"first_name", "unsubscribe_url", "title", "job"}


def test_missing_variables_names_required_columns_absent_from_the_csv(tmp_path: Path) -> None:
    templates = write(
        tmp_path, "r", "Subject: {{ first_name }}\n\n{{ company }} {{ unsubscribe_url }}\n"
    )
    template = templates.get("r")
    assert missing_variables(template, ["email", "first_name"]) == {"company"}
    assert missing_variables(template, ["email", "first_name", "company"]) == set()
    assert "unsubscribe_url" in BUILTIN_VARIABLES


def test_empty_required_names_blank_values_in_a_row(tmp_path: Path) -> None:
    templates = write(tmp_path, "r", "Subject: {{ first_name }}\n\n{{ company }}{{ x|d('') }}\n")
    template = templates.get("r")
    row = {"first_name": "  ", "company": "Acme", "x": ""}
    assert empty_required(template, row) == {"first_name"}


def test_html_part_escapes_values_while_text_and_subject_keep_them_as_is(tmp_path: Path) -> None:
    templates = write(
        tmp_path,
        "x5",
        "Subject: Hi {{ first_name }}\n\nHi {{ first_name }}\n",
        "<p>Hi {{ first_name }} {{ 'and ' ~ first_name }}</p>",
    )
    rendered = templates.get("x5").render({"first_name": "<script>"})
    assert rendered.subject == "Hi <script>"
    assert rendered.text == "Hi <script>\n"
    assert rendered.html == "<p>Hi &lt;script&gt; and &lt;script&gt;</p>"


def test_unknown_header_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    templates = write(tmp_path, "bad", "Subject: Hi\nReply-To: x@example.com\n\nBody\n")
    error = error_of(templates, "bad")
    assert (error.path, error.line) == (str(tmp_path / "bad.txt.j2"), 2)
    assert error.reason == "unknown header `Reply-To` (only Subject is allowed)"
    assert str(error) == f"{tmp_path / 'bad.txt.j2'}:2: {error.reason}"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("\nBody\n", 1, "missing Subject header"),
        ("Subject: Hi\nBody without blank line", 2, "expected a header line"),
        ("Subject: Hi", 1, "missing blank line between the headers and the body"),
        ("Subject: Hi\n  continued\n\nBody", 2, "header continuation lines are not supported"),
        ("Subject: a\nSubject: b\n\nBody", 2, "Subject given twice"),
    ],
)
def test_malformed_header_block_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    error = error_of(write(tmp_path, "bad", text), "bad")
    assert error.line == line
    assert error.reason.startswith(reason)


def test_missing_template_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    error = error_of(TemplateSet(tmp_path), "nope")
    assert error.path == str(tmp_path / "nope.txt.j2")
    assert error.reason == "template file not found"


def test_body_syntax_error_reports_the_line_in_the_file(tmp_path: Path) -> None:
    templates = write(tmp_path, "syn", "Subject: Hi\n\nline 3\nline 4\n{{ broken }\n")
    error = error_of(templates, "syn")
    assert (error.path, error.line) == (str(tmp_path / "syn.txt.j2"), 5)


def test_subject_syntax_error_reports_the_subject_line(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "syn", "Subject: {% if %}\n\nBody\n"), "syn")
    assert error.line == 1


def test_html_syntax_error_names_the_html_file_and_line(tmp_path: Path) -> None:
    templates = write(tmp_path, "h", "Subject: Hi\n\nBody\n", "<p>\n</p>\n{% endfor %}\n")
    error = error_of(templates, "h")
    assert (error.path, error.line) == (str(tmp_path / "h.html.j2"), 3)


def test_undefined_variable_at_render_is_an_error_naming_it_and_its_line(tmp_path: Path) -> None:
    templates = write(tmp_path, "u", "Subject: Hi\n\nHello\n{{ company }}\n")
    with pytest.raises(TemplateError) as caught:
        templates.get("u").render({})
    assert caught.value.line == 4
    assert "'company' is undefined" in caught.value.reason


def test_subject_with_a_line_break_from_a_variable_is_refused_naming_it(tmp_path: Path) -> None:
    templates = write(tmp_path, "s", "Subject: Hi {{ company }}\n\nBody\n")
    with pytest.raises(TemplateError) as caught:
        templates.get("s").render({"company": "Acme\r\nBcc: evil@example.com"})
    assert (
        caught.value.reason == "subject contains a line break or control character (from `company`)"
    )
    assert caught.value.line == 1


def test_template_set_caches_each_template(tmp_path: Path) -> None:
    templates = write(tmp_path, "c", "Subject: Hi\n\nBody\n")
    assert templates.get("c") is templates.get("c")


def test_check_passes_a_good_template(tmp_path: Path) -> None:
    templates = write(tmp_path, "ok", "Subject: Hi {{ first_name }}\n\n{{ company|upper }}\n")
    assert templates.check("ok").name == "ok"


def test_subject_with_a_trailing_line_break_from_a_variable_is_refused(tmp_path: Path) -> None:
    templates = write(tmp_path, "s", "Subject: Hi {{ company }}\n\nBody\n")
    with pytest.raises(TemplateError, match="from `company`"):
        templates.get("s").render({"company": "Acme\n"})


def test_subject_that_renders_empty_is_refused(tmp_path: Path) -> None:
    templates = write(tmp_path, "s", "Subject: {{ company }}\n\nBody\n")
    with pytest.raises(TemplateError, match="subject renders empty"):
        templates.get("s").render({"company": "  "})

"""Email templates: ``templates/NAME.txt.j2`` (+ optional ``NAME.html.j2``) rendered in a sandbox.

A text template is header lines, a blank line, then the body, like an email file::

    Subject: Thanks for stopping by, {{ first_name }}

    Hi {{ first_name }}, ...

Only ``Subject`` is allowed as a header. Rendering happens in the hardened sandbox of
``templating.sandbox``. Error line numbers are the lines in the ``.j2`` file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.meta import find_undeclared_variables

from sequencer.core.compose import Rendered
from sequencer.core.text import has_control
from sequencer.errors import TemplateError
from sequencer.templating import sandbox

BUILTIN_VARIABLES = frozenset({"sender", "sequence", "step", "unsubscribe_url", "email"})


def reserved_column(name: str) -> str | None:
    """Why a CSV column may not be called ``name`` (None when it may): it would hide one of
    the sandbox's functions (``range`` …), a name Jinja sets inside a template (``loop`` …),
    or a variable sequencer sets for every email (``sender`` …; ``email`` is the address
    column itself). Jinja names are case-sensitive, so ``Range`` is a column like any other."""
    if name in sandbox.GLOBALS:
        return f"it would hide the template function {name}()"
    if name in sandbox.JINJA_NAMES:
        return f"it would hide Jinja's own `{name}`"
    if name in BUILTIN_VARIABLES - {"email"}:
        return f"`{name}` is set by sequencer for every email"
    return None


RESERVED_COLUMNS = frozenset(
    name for name in sandbox.GLOBALS | sandbox.JINJA_NAMES | BUILTIN_VARIABLES
    if reserved_column(name) is not None)
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)")
_OPTIONAL_FILTERS = frozenset({"default", "d"})
_OPTIONAL_TESTS = frozenset({"defined", "undefined"})


@dataclass(frozen=True)
class _Part:
    """One compiled piece of a template file (the subject line, the text body, the HTML body)."""

    template: JinjaTemplate
    path: Path
    variables: frozenset[str]
    required: frozenset[str]
    line: int

    def render(self, context: Mapping[str, Any]) -> str:
        chunks: list[str] = []
        size = 0
        try:
            for chunk in self.template.generate(context):
                size += len(chunk)
                if size > sandbox.MAX_OUTPUT:
                    raise TemplateError(
                        f"rendered output is larger than {sandbox.MAX_OUTPUT} characters", self.path
                    )
                chunks.append(chunk)
        except TemplateError:
            raise
        except SecurityError as err:
            raise self._error(f"refused by the sandbox: {err}", err) from err
        except UndefinedError as err:
            raise self._error(f"undefined variable: {err.message}", err) from err
        except RecursionError as err:
            raise self._error("recursion too deep", err) from err
        except Exception as err:  # noqa: BLE001 - a template is user code: report, never crash
            raise self._error(f"cannot render: {type(err).__name__}: {err}", err) from err
        return "".join(chunks)

    def _error(self, reason: str, err: BaseException) -> TemplateError:
        return TemplateError(reason, self.path, _template_line(err, str(self.path)))


def _template_line(err: BaseException, filename: str) -> int | None:
    line = None
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass(frozen=True)
class Template:
    """A parsed, sandboxed template: its variables and how to render it."""

    name: str
    path: Path
    variables: frozenset[str]
    required: frozenset[str]
    _subject: _Part = field(repr=False, compare=False)
    _text: _Part = field(repr=False, compare=False)
    _html: _Part | None = field(repr=False, compare=False)
    text_source: str = field(default="", repr=False, compare=False)  # the body, as written
    text_line: int = field(default=0, repr=False, compare=False)  # its first line in the file

    def render(self, context: Mapping[str, object]) -> Rendered:
        """Render for one prospect; raise TemplateError instead of sending anything odd."""
        values = dict(context)
        with sandbox.render_budget():
            subject = self._subject.render(values)
            text = self._text.render(values)
            html = self._html.render(values) if self._html is not None else None
        self._check_subject(subject, values)
        return Rendered(subject=subject.strip(), text=text, html=html)

    def _check_subject(self, subject: str, values: Mapping[str, object]) -> None:
        line = self._subject.line
        if has_control(subject):
            culprits = sorted(
                name
                for name in self._subject.variables
                if isinstance(values.get(name), str) and has_control(str(values[name]))
            )
            source = f" (from {', '.join(f'`{c}`' for c in culprits)})" if culprits else ""
            raise TemplateError(
                f"subject contains a line break or control character{source}", self.path, line
            )
        if not subject.strip():
            raise TemplateError("subject renders empty", self.path, line)


def missing_variables(template: Template, columns: Iterable[str]) -> set[str]:
    """Required variables (builtins aside) that are not among the CSV columns."""
    return set(template.required - BUILTIN_VARIABLES - set(columns))


def empty_required(template: Template, row: Mapping[str, str]) -> set[str]:
    """Required variables (builtins aside) that are empty or blank in this row."""
    return {name for name in template.required - BUILTIN_VARIABLES if not row.get(name, "").strip()}


class TemplateSet:
    """The templates of one directory, loaded once each."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, Template] = {}

    def get(self, name: str) -> Template:
        """The template ``NAME`` (``NAME.txt.j2`` and maybe ``NAME.html.j2``), parsed and cached."""
        cached = self._cache.get(name)
        if cached is None:
            cached = self._cache[name] = _load(self.directory, name)
        return cached

    def check(self, name: str) -> Template:
        """``get`` plus a trial render with placeholder values: what ``validate`` runs."""
        template = self.get(name)
        template.render(placeholder_context(template.variables))
        return template


def placeholder_context(variables: Iterable[str]) -> dict[str, str]:
    """Plausible sample values for a trial render."""
    samples = {
        "sender": "Dana Reyes <dana@example.com>",
        "email": "prospect@example.com",
        "unsubscribe_url": "https://example.com/unsubscribe/token",
        "sequence": "sequence",
        "step": "step",
    }
    context = {name: f"sample {name}" for name in variables}
    context.update(samples)
    return context


def _load(directory: Path, name: str) -> Template:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name:
        raise TemplateError(f"invalid template name {name!r}", directory)
    text_path = directory / f"{name}.txt.j2"
    html_path = directory / f"{name}.html.j2"
    source = _read(text_path)
    subject_line, subject_source, body_line, body_source = _split_headers(source, text_path)
    subject = _compile(subject_source, subject_line, text_path, sandbox.TEXT_ENV)
    text = _compile(body_source, body_line, text_path, sandbox.TEXT_ENV)
    html = (_compile(_read(html_path), 1, html_path, sandbox.HTML_ENV)
            if html_path.exists() else None)
    parts = [p for p in (subject, text, html) if p is not None]
    return Template(
        name=name,
        path=text_path,
        variables=frozenset().union(*(p.variables for p in parts)),
        required=frozenset().union(*(p.required for p in parts)),
        _subject=subject,
        _text=text,
        _html=html,
        text_source=body_source,
        text_line=body_line,
    )


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise TemplateError("template file not found", path) from err
    except OSError as err:
        raise TemplateError(f"cannot read template: {err.strerror}", path) from err
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TemplateError("not valid UTF-8", path, line) from err


def _split_headers(source: str, path: Path) -> tuple[int, str, int, str]:
    """(subject line number, subject source, first body line number, body source)."""
    lines = source.split("\n")
    subject: tuple[int, str] | None = None
    for index, line in enumerate(lines):
        number = index + 1
        if not line.strip():
            if subject is None:
                raise TemplateError("missing Subject header", path, number)
            return subject[0], subject[1], number + 1, "\n".join(lines[number:])
        if line[0] in " \t":
            raise TemplateError("header continuation lines are not supported", path, number)
        match = _HEADER.fullmatch(line)
        if match is None:
            reason = "expected a header line like `Subject: ...` or a blank line before the body"
            raise TemplateError(reason, path, number)
        if match.group(1).lower() != "subject":
            raise TemplateError(
                f"unknown header `{match.group(1)}` (only Subject is allowed)", path, number
            )
        if subject is not None:
            raise TemplateError("Subject given twice", path, number)
        subject = (number, match.group(2))
    if subject is None:
        raise TemplateError("missing Subject header", path, 1)
    raise TemplateError("missing blank line between the headers and the body", path, len(lines))


def _compile(source: str, first_line: int, path: Path, env: sandbox.SandboxEnvironment) -> _Part:
    # A comment spanning first_line - 1 newlines keeps Jinja's line numbers equal to file lines.
    padded = "{#" + "\n" * (first_line - 1) + "#}" + source
    try:
        tree = env.parse(padded, filename=str(path))
        sandbox.refuse_unsafe(tree, path)
        variables = frozenset(find_undeclared_variables(tree)) - set(env.globals)
        required = _required(tree, variables)
        sandbox.instrument(tree)
        code = env.compile(tree, name=path.name, filename=str(path))
    except TemplateSyntaxError as err:
        raise TemplateError(err.message or "syntax error", path, err.lineno) from err
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return _Part(template, path, variables, required, first_line)


def _required(tree: nodes.Template, variables: frozenset[str]) -> frozenset[str]:
    """Variables used at least once without a ``default`` filter or ``is defined`` test."""
    required: set[str] = set()

    def walk(node: nodes.Node, parent: nodes.Node | None) -> None:
        if (
            isinstance(node, nodes.Name)
            and node.ctx == "load"
            and node.name in variables
            and not _optional_use(node, parent)
        ):
            required.add(node.name)
        for child in node.iter_child_nodes():
            walk(child, node)

    walk(tree, None)
    return frozenset(required)


def _optional_use(node: nodes.Name, parent: nodes.Node | None) -> bool:
    if isinstance(parent, nodes.Filter) and parent.node is node:
        return parent.name in _OPTIONAL_FILTERS
    if isinstance(parent, nodes.Test) and parent.node is node:
        return parent.name in _OPTIONAL_TESTS
    return False


__all__ = [
    "BUILTIN_VARIABLES",
    "Template",
    "TemplateSet",
    "empty_required",
    "missing_variables",
    "placeholder_context",
]

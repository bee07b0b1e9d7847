"""Email templates: ``templates/NAME.txt.j2`` (+ optional ``NAME.html.j2``) rendered in a sandbox.

A text template is header lines, a blank line, then the body, like an email file::

    Subject: Thanks for stopping by, {{ first_name }}

    Hi {{ first_name }}, ...

Only ``Subject`` is allowed as a header. Rendering happens in Jinja2's immutable sandbox with
``StrictUndefined``; on top of it, this module refuses statically anything that reaches for an
underscore name, caps every loop, every string/list built and the rendered size, so a hostile or
careless template is refused at ``validate`` time quickly instead of hanging a worker.
Error line numbers are the lines in the ``.j2`` file.
"""

from __future__ import annotations

import re
import string
import types
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import (
    do_center,
    do_format,
    do_indent,
    do_join,
    do_replace,
    do_truncate,
    do_wordwrap,
)
from jinja2.meta import find_undeclared_variables
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_environment, pass_eval_context

from sequencer.errors import TemplateError

BUILTIN_VARIABLES = frozenset({"sender", "sequence", "step", "unsubscribe_url", "email"})

MAX_OUTPUT = 1 << 20  # characters in one rendered part (subject, text or html)
MAX_SIZE = 1 << 20  # characters (or items) in any string or list a template builds
MAX_ITERATIONS = 100_000  # loop iterations in one render, all loops together
MAX_RANGE = 10_000  # items in one range()
MAX_WIDTH = 10_000  # a printf/format width or precision
MAX_INT_BITS = 4_096  # integers a template computes

_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)")
_UNDERSCORE_NAME = re.compile(r"_[A-Za-z_]\w*")
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_OPTIONAL_FILTERS = frozenset({"default", "d"})
_OPTIONAL_TESTS = frozenset({"defined", "undefined"})
_ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape",
        "filesizeformat", "first", "float", "forceescape", "groupby", "int", "items", "last",
        "length", "list", "lower", "map", "max", "min", "random", "reject", "rejectattr",
        "reverse", "round", "safe", "select", "selectattr", "sort", "string", "striptags",
        "title", "trim", "unique", "upper", "urlencode", "wordcount",
    }
)  # fmt: skip
_BUDGET_FILTER = "sequencer_loop_budget"
_CONCAT_FILTER = "sequencer_checked_concat"


class _LimitExceeded(SecurityError):
    """A template went past one of the size or iteration caps."""


class _Budget:
    """Loop iterations left in the current render."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_ITERATIONS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _LimitExceeded(f"loops ran more than {MAX_ITERATIONS} iterations")


_BUDGET: ContextVar[_Budget | None] = ContextVar("sequencer_template_budget", default=None)


def _check_size(size: int, what: str) -> None:
    if size > MAX_SIZE:
        raise _LimitExceeded(f"{what} would be larger than {MAX_SIZE} characters")


def _check_printf(fmt: str) -> None:
    for width, precision in _PRINTF_SPEC.findall(fmt):
        for number in (width, precision):
            if number == "*" or (number and int(number) > MAX_WIDTH):
                raise _LimitExceeded("format width too large (or given with *)")


def _check_str_format(fmt: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec))):
            raise _LimitExceeded("format width too large (or nested)")


def _check_binop(operator: str, left: object, right: object) -> None:
    if operator == "*":
        _check_multiply(left, right)
    elif operator == "**":
        _check_power(left, right)
    elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _check_size(len(left) + len(right), "a concatenated value")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


_SEQUENCES = (str, list, tuple)


def _check_multiply(left: object, right: object) -> None:
    if isinstance(left, _SEQUENCES) and isinstance(right, int):
        _check_size(len(left) * right, "a repeated value")
    elif isinstance(right, _SEQUENCES) and isinstance(left, int):
        _check_size(len(right) * left, "a repeated value")
    elif (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise _LimitExceeded("integer too large")


def _check_power(left: object, right: object) -> None:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and left.bit_length() * right > MAX_INT_BITS
    ):
        raise _LimitExceeded("integer too large")


def _str_method_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a call of a ``str`` method that can grow its result; return the args to use."""
    target = getattr(obj, "__wrapped__", obj)
    owner = getattr(target, "__self__", None)
    if not isinstance(owner, str) or not isinstance(target, types.BuiltinMethodType):
        return args
    name = target.__name__
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            _check_size(width, f"str.{name}()")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            _check_size(len(owner) + owner.count("\t") * tabsize, "str.expandtabs()")
    elif name == "replace" and len(args) >= 2:
        _check_size(_replace_size(owner, args[0], args[1]), "str.replace()")
    elif name == "join" and args:
        items = list(args[0])
        _check_size(_join_size(items, owner), "str.join()")
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_str_format(owner)
    return args


def _replace_size(s: str, old: object, new: object) -> int:
    old_s, new_s = str(old), str(new)
    count = s.count(old_s) if old_s else len(s) + 1
    return len(s) + count * max(0, len(new_s) - len(old_s))


def _join_size(items: list[Any], separator: str) -> int:
    lengths = sum(len(item) if isinstance(item, str) else 0 for item in items)
    return lengths + len(separator) * max(0, len(items) - 1)


def _safe_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise _LimitExceeded(f"range() longer than {MAX_RANGE}")
    return result


def _budgeted(value: Iterable[Any]) -> Iterator[Any]:
    budget = _BUDGET.get() or _Budget()
    for item in value:
        budget.spend()
        yield item


@pass_eval_context
def _checked_concat(eval_ctx: EvalContext, parts: list[Any]) -> str:
    _check_size(sum(len(str(part)) for part in parts), "a ~ concatenation")
    joined: str = markup_join(parts) if eval_ctx.autoescape else str_join(parts)
    return joined


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        _check_size(sum(len(str(item)) for item in items), "join")
    _check_size(len(str(d)) * max(0, len(items) - 1), "join")
    joined: str = do_join(eval_ctx, items, d, attribute)
    return joined


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_size(_replace_size(str(s), old, new), "replace")
    return do_replace(eval_ctx, s, old, new, count)


def _center(value: str, width: int = 80) -> str:
    _check_size(int(width), "center")
    return do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = len(width) if isinstance(width, str) else int(width)
    _check_size(len(str(s)) + (str(s).count("\n") + 1) * pad, "indent")
    return do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:  # fmt: skip
    if int(width) < 1:
        raise _LimitExceeded("wordwrap width must be at least 1")
    wrap = len(wrapstring) if wrapstring is not None else 2
    _check_size(len(str(s)) + (len(str(s)) // int(width) + 1) * wrap, "wordwrap")
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


@pass_environment
def _truncate(env: Any, s: str, length: int = 255, killwords: bool = False, end: str = "...",
              leeway: int | None = None) -> str:  # fmt: skip
    _check_size(len(str(s)) + len(str(end)), "truncate")
    return do_truncate(env, s, length, killwords, end, leeway)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    return do_format(value, *args, **kwargs)


class _Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus caps on sizes, widths and integer growth."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        checked = _str_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *checked, **kwargs)


def _make_environment(autoescape: bool) -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True)
    kept = {name: env.filters[name] for name in _ALLOWED_FILTERS}
    env.filters.clear()
    env.filters.update(kept)
    env.filters.update(
        {
            "join": _join, "replace": _replace, "center": _center, "indent": _indent,
            "wordwrap": _wordwrap, "truncate": _truncate, "format": _format,
            _BUDGET_FILTER: _budgeted, _CONCAT_FILTER: _checked_concat,
        }
    )  # fmt: skip
    env.globals.clear()
    env.globals.update({"range": _safe_range, "dict": dict, "namespace": Namespace})
    return env


_TEXT_ENV = _make_environment(autoescape=False)
_HTML_ENV = _make_environment(autoescape=True)


@dataclass(frozen=True)
class Rendered:
    """One prospect's email, rendered: a one-line subject, a text body, maybe an HTML body."""

    subject: str
    text: str
    html: str | None


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
                if size > MAX_OUTPUT:
                    raise TemplateError(
                        f"rendered output is larger than {MAX_OUTPUT} characters", self.path
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
        token = _BUDGET.set(_Budget())
        try:
            subject = self._subject.render(values)
            text = self._text.render(values)
            html = self._html.render(values) if self._html is not None else None
        finally:
            _BUDGET.reset(token)
        self._check_subject(subject, values)
        return Rendered(subject=subject.strip(), text=text, html=html)

    def _check_subject(self, subject: str, values: Mapping[str, object]) -> None:
        line = self._subject.line
        if _CONTROL.search(subject):
            culprits = sorted(
                name
                for name in self._subject.variables
                if isinstance(values.get(name), str) and _CONTROL.search(str(values[name]))
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
    subject = _compile(subject_source, subject_line, text_path, _TEXT_ENV)
    text = _compile(body_source, body_line, text_path, _TEXT_ENV)
    html = _compile(_read(html_path), 1, html_path, _HTML_ENV) if html_path.exists() else None
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


def _compile(source: str, first_line: int, path: Path, env: _Environment) -> _Part:
    # A comment spanning first_line - 1 newlines keeps Jinja's line numbers equal to file lines.
    padded = "{#" + "\n" * (first_line - 1) + "#}" + source
    try:
        tree = env.parse(padded, filename=str(path))
        _refuse_unsafe(tree, path)
        variables = frozenset(find_undeclared_variables(tree)) - set(env.globals)
        required = _required(tree, variables)
        _instrument(tree)
        code = env.compile(tree, name=path.name, filename=str(path))
    except TemplateSyntaxError as err:
        raise TemplateError(err.message or "syntax error", path, err.lineno) from err
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return _Part(template, path, variables, required, first_line)


def _refuse_unsafe(tree: nodes.Template, path: Path) -> None:
    """Refuse, before any render, what the sandbox would only catch in a branch taken."""
    for node in tree.find_all(
        (nodes.Getattr, nodes.Const, nodes.For, nodes.Include, nodes.Import, nodes.FromImport,
         nodes.Extends)
    ):  # fmt: skip
        reason = _unsafe_reason(node)
        if reason is not None:
            raise TemplateError(reason, path, node.lineno)


def _unsafe_reason(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"access to `{node.attr}` is not allowed (names starting with _ are private)"
    if (
        isinstance(node, nodes.Const)
        and isinstance(node.value, str)
        and _UNDERSCORE_NAME.fullmatch(node.value)
    ):
        return f"access to `{node.value}` is not allowed (names starting with _ are private)"
    if isinstance(node, nodes.For) and node.recursive:
        return "recursive loops are not allowed"
    if isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return "include, import and extends are not supported in templates"
    return None


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


def _instrument(tree: nodes.Template) -> None:
    """Route every loop through the iteration budget and every ``~`` through the size cap."""
    for loop in tree.find_all(nodes.For):
        loop.iter = _filter_call(loop.iter, _BUDGET_FILTER)
    _replace_concat(tree)


def _replace_concat(node: nodes.Node) -> None:
    for field_name in node.fields:
        value = getattr(node, field_name, None)
        if isinstance(value, nodes.Node):
            setattr(node, field_name, _concat_checked(value))
        elif isinstance(value, list):
            setattr(node, field_name, [_concat_checked(v) if isinstance(v, nodes.Node) else v
                                       for v in value])  # fmt: skip


def _concat_checked(node: nodes.Node) -> nodes.Node:
    _replace_concat(node)
    if isinstance(node, nodes.Concat):
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return _filter_call(items, _CONCAT_FILTER)
    return node


def _filter_call(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


__all__ = [
    "BUILTIN_VARIABLES",
    "Rendered",
    "Template",
    "TemplateSet",
    "empty_required",
    "missing_variables",
    "placeholder_context",
]

"""The Jinja2 sandbox templates render in, hardened past Jinja2's own.

Jinja2's immutable sandbox with ``StrictUndefined``; on top of it, names starting with an
underscore are refused statically (before any render, in every branch), recursive loops and
include/import/extends are refused, every loop draws on one iteration budget per render,
strings and lists a template builds are capped in size, printf/format widths and integer
growth are capped, and only a list of harmless filters is kept. So a hostile or careless
template is refused at ``validate`` time quickly instead of hanging a worker.
"""


from __future__ import annotations

import re
import string
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import (
    do_center,
    do_format,
    do_indent,
    do_join,
    do_replace,
    do_truncate,
    do_wordwrap,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_environment, pass_eval_context

from sequencer.errors import TemplateError

MAX_OUTPUT = 1 << 20  # characters in one rendered part (subject, text or html)
MAX_SIZE = 1 << 20  # characters (or items) in any string or list a template builds
MAX_ITERATIONS = 100_000  # loop iterations in one render, all loops together
MAX_RANGE = 10_000  # items in one range()
MAX_WIDTH = 10_000  # a printf/format width or precision
MAX_INT_BITS = 4_096  # integers a template computes
_UNDERSCORE_NAME = re.compile(r"_[A-Za-z_]\w*")
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
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


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus caps on sizes, widths and integer growth."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        checked = _str_method_call(__obj, args, kwargs)
        return super().call(__context, __obj, *checked, **kwargs)


def _make_environment(autoescape: bool) -> SandboxEnvironment:
    env = SandboxEnvironment(undefined=StrictUndefined, autoescape=autoescape,
                             keep_trailing_newline=True)
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


TEXT_ENV = _make_environment(autoescape=False)
HTML_ENV = _make_environment(autoescape=True)


def refuse_unsafe(tree: nodes.Template, path: Path) -> None:
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


def instrument(tree: nodes.Template) -> None:
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


@contextmanager
def render_budget() -> Iterator[None]:
    """One render's loop-iteration budget, shared by all the parts rendered inside."""
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)

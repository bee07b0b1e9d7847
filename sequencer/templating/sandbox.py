"""The Jinja2 sandbox templates render in, hardened past Jinja2's own.

Jinja2's immutable sandbox with ``StrictUndefined``; on top of it, names starting with an
underscore are refused statically (before any render, in every branch), recursive loops and
include/import/extends are refused, every loop draws on one iteration budget per render,
strings and lists a template builds are capped in size, printf/format widths and integer
growth are capped, and only a list of harmless filters is kept. So a hostile or careless
template is refused at ``validate`` time quickly instead of hanging a worker.
"""


from __future__ import annotations

import functools
import operator
import re
import string
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
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
MAX_ITERATIONS = 50_000  # loop iterations in one render, all loops together
MAX_RANGE = 10_000  # items in one range()
MAX_WIDTH = 10_000  # a printf/format width or precision
MAX_INT_BITS = 4_096  # integers a template computes
MAX_CALLS = 20_000  # filter, test, macro and method calls in one render, all together
MAX_WORK = 200_000_000  # work units (about a nanosecond each: a character or item that a
# filter, method, slice, operator, comparison or ``{{ }}`` goes over) in one render
MAX_CALL_DEPTH = 40  # macro (and method) calls nested inside each other
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
_COMPARE_FILTER = "sequencer_charged_compare"
_SLICE_FILTER = "sequencer_charged_slice"
_OUTPUT_FILTER = "sequencer_charged_output"


class _LimitExceeded(SecurityError):
    """A template went past one of the size or iteration caps."""


class _Budget:
    """What the current render may still do: loop iterations, calls, work, call depth.

    Every cap is a count, not a clock, so a template that passes ``validate`` on one
    machine passes on every other, and one that is refused is refused everywhere.
    """

    __slots__ = ("calls", "depth", "left", "work")

    def __init__(self) -> None:
        self.left = MAX_ITERATIONS
        self.calls = MAX_CALLS
        self.work = MAX_WORK
        self.depth = 0

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _LimitExceeded(f"loops ran more than {MAX_ITERATIONS} iterations")

    def call(self, units: int = 0) -> None:
        self.calls -= 1
        if self.calls < 0:
            raise _LimitExceeded(f"more than {MAX_CALLS} filter, test, macro or method calls")
        self.charge(units)

    def charge(self, units: int) -> None:
        self.work -= units
        if self.work < 0:
            raise _LimitExceeded(f"more than {MAX_WORK} units of work (filters, methods, "
                                 "slices, comparisons and output over large values)")


_BUDGET: ContextVar[_Budget | None] = ContextVar("sequencer_template_budget", default=None)


def _current() -> _Budget:
    """The render's budget (outside a render, e.g. Jinja folding constants: a fresh one)."""
    return _BUDGET.get() or _Budget()


_SIZED = (str, list, tuple, dict, set, frozenset)
# Work units per character or item a filter (or test) is given, about a nanosecond each on
# our machine (measured over 800,000-character strings): most filters are one pass in C;
# these run Python code per item (a sort key, a regular expression, a generator step).
_WEIGHTS: Mapping[str, int] = {
    "groupby": 10_000, "sort": 2_000, "dictsort": 2_000, "unique": 1_000, "max": 500,
    "min": 500, "striptags": 200, "title": 200, "wordcount": 200, "wordwrap": 200,
    "select": 200, "reject": 200, "selectattr": 200, "rejectattr": 200, "join": 150,
    "list": 80, "urlencode": 60, "items": 30, "map": 30, "truncate": 20, "int": 15,
}  # fmt: skip


def _size(value: object) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def _args_size(args: Iterable[object], kwargs: Mapping[str, object]) -> int:
    return sum(_size(arg) for arg in args) + sum(_size(arg) for arg in kwargs.values())


def _charged(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a filter or test) drawing on the render's budget: one call, plus the size of
    what it is given times its weight. A per-item filter (``map``, ``select``) calls its
    inner filter or test through the environment, so every item is a call too."""
    weight = _WEIGHTS.get(name, 5)

    @functools.wraps(func)
    def charged(*args: Any, **kwargs: Any) -> Any:
        _current().call(weight * _args_size(args, kwargs))
        return func(*args, **kwargs)

    return charged


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
    if any(isinstance(side, int) and side.bit_length() > MAX_INT_BITS for side in (left, right)):
        raise _LimitExceeded("integer too large")
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
    budget = _current()
    for item in value:
        budget.spend()
        yield item


_COMPARISONS: Mapping[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gteq": operator.ge,
    "lt": operator.lt, "lteq": operator.le,
    "in": lambda left, right: left in right, "notin": lambda left, right: left not in right,
}  # fmt: skip


def _slice(value: Any, start: Any, stop: Any, step: Any) -> Any:
    """``value[start:stop:step]``, charged by the size of ``value`` (Jinja slices directly,
    not through the sandbox's ``getitem``)."""
    _current().charge(_size(value))
    return value[start:stop:step]


def _output(value: Any) -> Any:
    """What ``{{ … }}`` prints, charged by its size: printing into a ``{% set %}`` block is
    never capped by the output limit, and copying a long string each time is work."""
    _current().charge(_size(value))
    return value


def _compare(values: list[Any], *ops: str) -> bool:
    """A (chained) comparison, charged by the size of what it compares (``==`` and ``in``
    over two long strings go through all of them)."""
    budget = _current()
    left = values[0]
    for op, right in zip(ops, values[1:], strict=True):
        budget.charge(_size(left) + _size(right))
        if not _COMPARISONS[op](left, right):
            return False
        left = right
    return True


@pass_eval_context
def _checked_concat(eval_ctx: EvalContext, parts: list[Any]) -> str:
    size = sum(len(str(part)) for part in parts)
    _check_size(size, "a ~ concatenation")
    _current().charge(size)
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

    intercepted_binops = frozenset({"*", "**", "+", "-", "%", "//"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        units = _size(left) + _size(right)
        if operator == "*":  # the copy it makes
            units += _size(left) * max(right, 0) if isinstance(right, int) else 0
            units += _size(right) * max(left, 0) if isinstance(left, int) else 0
        _current().charge(units)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        checked = _str_method_call(obj, args, kwargs)
        budget = _current()
        owner = getattr(getattr(obj, "__wrapped__", obj), "__self__", None)
        budget.call(_size(owner) + _args_size(checked, kwargs))
        if budget.depth >= MAX_CALL_DEPTH:
            raise _LimitExceeded(f"calls nested more than {MAX_CALL_DEPTH} deep (a macro "
                                 "that calls itself?)")
        budget.depth += 1
        try:
            return super().call(context, obj, *checked, **kwargs)
        finally:
            budget.depth -= 1

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, slice):
            _current().charge(_size(obj))
        return super().getitem(obj, argument)


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
        }
    )  # fmt: skip
    env.filters.update({name: _charged(name, func) for name, func in env.filters.items()})
    tests: dict[str, Any] = env.tests
    tests.update({name: _charged(name, func) for name, func in tests.items()})
    env.filters.update({_BUDGET_FILTER: _budgeted, _CONCAT_FILTER: _checked_concat,
                        _COMPARE_FILTER: _compare, _SLICE_FILTER: _slice,
                        _OUTPUT_FILTER: _output})
    env.globals.clear()
    env.globals.update({"range": _safe_range, "dict": dict, "namespace": Namespace})
    return env


TEXT_ENV = _make_environment(autoescape=False)
HTML_ENV = _make_environment(autoescape=True)
GLOBALS = frozenset(TEXT_ENV.globals)  # the functions every template may call
JINJA_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self"})  # set by Jinja inside


def refuse_unsafe(tree: nodes.Template, path: Path) -> None:
    """Refuse, before any render, what the sandbox would only catch in a branch taken."""
    for node in tree.find_all(
        (nodes.Getattr, nodes.Const, nodes.For, nodes.Include, nodes.Import, nodes.FromImport,
         nodes.Extends)
    ):  # fmt: skip
        reason = _unsafe_reason(node)
        if reason is not None:
            raise TemplateError(reason, path, node.lineno)
    _refuse_recursive_macros(tree, path)


def _refuse_recursive_macros(tree: nodes.Template, path: Path) -> None:
    """A macro that calls itself, directly or through others, is refused on the line of
    the call that closes the loop: its work has no bound but the budget."""
    macros = {macro.name: macro for macro in tree.find_all(nodes.Macro)}
    calls: dict[str, list[nodes.Call]] = {
        name: [call for call in macro.find_all(nodes.Call)
               if isinstance(call.node, nodes.Name) and call.node.name in macros]
        for name, macro in macros.items()
    }  # fmt: skip
    for start in macros:
        seen: set[str] = set()
        stack: list[tuple[str, tuple[str, ...]]] = [(start, ())]
        while stack:
            name, through = stack.pop()
            for call in calls[name]:
                callee = call.node.name  # type: ignore[attr-defined]
                if callee == start:
                    via = f" through {', '.join(f'`{m}`' for m in through)}" if through else ""
                    raise TemplateError(f"macro `{start}` calls itself{via}: recursive macros "
                                        "are not allowed", path, call.lineno)
                if callee not in seen:
                    seen.add(callee)
                    stack.append((callee, (*through, callee)))


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
    """Route every loop through the iteration budget, every ``~`` through the size cap and
    every comparison through the work budget."""
    for loop in tree.find_all(nodes.For):
        loop.iter = _filter_call(loop.iter, _BUDGET_FILTER)
    _rewrite_children(tree)


def _rewrite_children(node: nodes.Node) -> None:
    for field_name in node.fields:
        value = getattr(node, field_name, None)
        if isinstance(value, nodes.Node):
            setattr(node, field_name, _rewritten(value))
        elif isinstance(value, list):
            setattr(node, field_name, [_rewritten(v) if isinstance(v, nodes.Node) else v
                                       for v in value])  # fmt: skip


def _rewritten(node: nodes.Node) -> nodes.Node:
    _rewrite_children(node)
    if isinstance(node, nodes.Concat):
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return _filter_call(items, _CONCAT_FILTER)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
        bounds = [part if part is not None else nodes.Const(None, lineno=node.lineno)
                  for part in (node.arg.start, node.arg.stop, node.arg.step)]
        return nodes.Filter(node.node, _SLICE_FILTER, bounds, [], None, None,
                            lineno=node.lineno)
    if isinstance(node, nodes.Output):
        node.nodes = [part if isinstance(part, nodes.TemplateData)
                      else _filter_call(part, _OUTPUT_FILTER) for part in node.nodes]
        return node
    if isinstance(node, nodes.Compare):
        operands = nodes.List([node.expr, *(op.expr for op in node.ops)], lineno=node.lineno)
        return nodes.Filter(operands, _COMPARE_FILTER,
                            [nodes.Const(op.op, lineno=node.lineno) for op in node.ops],
                            [], None, None, lineno=node.lineno)
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

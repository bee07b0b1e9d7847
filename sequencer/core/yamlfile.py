"""YAML that remembers where each key came from, and pydantic errors told as ``file:line``.

``read_yaml`` loads a user file with PyYAML's safe loader, refuses what the safe loader
would quietly accept (duplicate keys, merge keys, non-text keys, alias bombs) and keeps
the 1-based line of every mapping key and list item. ``validate`` runs a pydantic model
over the data and turns the first ``ValidationError`` (unknown keys before missing ones)
into the caller's ``InputError`` subclass, so ``str()`` of it reads ``PATH:LINE: reason``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from pydantic_core import ErrorDetails

from sequencer.errors import InputError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64  # nested lists and mappings; PyYAML's composer recurses once per level

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

#: Text a user must write: stripped, and not empty.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class StrictModel(BaseModel):
    """The base of every schema of a user file: unknown keys are errors, values frozen, no
    silent type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class YamlDocument:
    """Plain data from one YAML file, with the line of each key and item."""

    data: Any
    path: Path
    lines: Mapping[Loc, int]
    root_line: int = 1

    def line_of(self, loc: Sequence[str | int]) -> int:
        """Line of the deepest known entry along ``loc``; unknown parts are skipped."""
        prefix: Loc = ()
        line = self.root_line
        for part in loc:
            candidate = (*prefix, part)
            if candidate in self.lines:
                prefix = candidate
                line = self.lines[candidate]
        return line

    def key_lines(self) -> Iterator[tuple[Loc, int]]:
        """Every mapping key (its full location) and its line, in file order."""
        for loc, line in self.lines.items():
            if isinstance(loc[-1], str):
                yield loc, line


def read_yaml(path: Path, error: type[InputError]) -> YamlDocument:
    """Read and parse ``path`` (at most 1 MiB, UTF-8); every problem raises ``error``."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise error(f"cannot read: {err.strerror or err}", path) from err
    if len(raw) > MAX_BYTES:
        raise error("file is larger than 1 MiB", path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error("not valid UTF-8 text", path, line) from err
    return parse_yaml(text, path, error)


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than ``MAX_DEPTH`` before it recurses into it
    (20,000 nested ``[`` would otherwise end in a RecursionError)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text: str, path: Path, error: type[InputError]) -> YamlDocument:
    """Parse YAML text that claims to come from ``path``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument({}, path, {})
        lines: dict[Loc, int] = {}
        _Walker(path, error, lines).walk(node, ())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise _yaml_error(err, path, error) from err
    except yaml.YAMLError as err:  # pragma: no cover - PyYAML raises marked errors
        raise error(f"invalid YAML: {err}", path) from err
    finally:
        loader.dispose()
    return YamlDocument(data, path, lines, node.start_mark.line + 1)


_UNCLOSED = {
    "while parsing a flow sequence": "'[' opened here is never closed",
    "while parsing a flow mapping": "'{' opened here is never closed",
    "while scanning a quoted scalar": "quote opened here is never closed",
}


def _yaml_error(err: yaml.MarkedYAMLError, path: Path, error: type[InputError]) -> InputError:
    problem = err.problem or "cannot parse"
    line = err.problem_mark.line + 1 if err.problem_mark is not None else None
    opened = _UNCLOSED.get(err.context or "")
    if opened is not None and err.context_mark is not None:
        reason = f"invalid YAML: {opened} ({problem} on line {line})"
        return error(reason, path, err.context_mark.line + 1)
    if "'\\t'" in problem:
        problem = "a tab character: indent YAML with spaces"
    elif err.context == "expected a single document in the stream":
        problem = "only one YAML document is allowed per file"
    return error(f"invalid YAML: {problem}", path, line)


class _Walker:
    """Records lines and refuses duplicate, merge and non-text keys."""

    def __init__(self, path: Path, error: type[InputError], lines: dict[Loc, int]) -> None:
        self.path = path
        self.error = error
        self.lines = lines
        self.count = 0

    def walk(self, node: yaml.Node, loc: Loc) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error("too many YAML nodes (alias expansion?)", self.path)
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, loc)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                self.walk(item, (*loc, index))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> None:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = self._key(key_node, line)
            if key in seen:
                raise self.error(
                    f"duplicate key {key!r} (first on line {seen[key]})", self.path, line
                )
            seen[key] = line
            self.lines[(*loc, key)] = line
            self.walk(value_node, (*loc, key))

    def _key(self, node: yaml.Node, line: int) -> str:
        if node.tag == _MERGE_TAG:
            raise self.error("merge keys (<<) are not supported", self.path, line)
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR_TAG:
            raise self.error("keys must be text (quote them)", self.path, line)
        return str(node.value)


def validate(
    model: type[M],
    doc: YamlDocument,
    error: type[InputError],
    context: Mapping[str, Any] | None = None,
) -> M:
    """Validate ``doc.data`` against ``model``; the earliest problem raises ``error``."""
    if not isinstance(doc.data, dict):
        raise error("the top level must be a mapping of keys", doc.path, doc.root_line)
    try:
        return model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as err:
        raise from_validation_error(err, doc, error) from None


def from_validation_error(
    err: ValidationError, doc: YamlDocument, error: type[InputError]
) -> InputError:
    """The first error in file order, as ``error(reason, path, line)``."""
    details = err.errors(include_url=False, include_input=False)
    located = [
        (detail["type"] == "missing", _line(detail, doc), index)
        for index, detail in enumerate(details)
    ]
    _, line, index = min(located)
    return error(describe(details[index]), doc.path, line)


def _line(detail: ErrorDetails, doc: YamlDocument) -> int:
    loc = detail["loc"]
    if detail["type"] == "missing":
        loc = loc[:-1]
    return doc.line_of(loc)


_MESSAGES = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "list_type": "must be a list",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def describe(detail: ErrorDetails) -> str:
    """A one-line reason for a pydantic error detail, naming the key it is about."""
    loc = [part for part in detail["loc"] if not _is_internal(part)]
    kind = detail["type"]
    if kind in ("extra_forbidden", "missing"):
        word = "unknown" if kind == "extra_forbidden" else "missing"
        where = dotted(loc[:-1])
        key = loc[-1] if loc else "?"
        return f"{word} key {key!r}" + (f" in {where}" if where else "")
    ctx = detail.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", detail["msg"]))
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind == "greater_than_equal":
        message = f"must be at least {ctx.get('ge')}"
    elif kind == "less_than_equal":
        message = f"must be at most {ctx.get('le')}"
    else:
        message = _MESSAGES.get(kind, detail["msg"])
    name = dotted(loc)
    return f"{name}: {message}" if name else message


def dotted(loc: Sequence[str | int]) -> str:
    """``("steps", 1, "wait")`` -> ``steps[1].wait``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _is_internal(part: str | int) -> bool:
    return isinstance(part, str) and (part == "[key]" or "[" in part and part.endswith("]"))

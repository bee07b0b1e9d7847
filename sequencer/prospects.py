"""Read a prospects CSV, streaming: one ``Prospect`` or ``Rejected`` per record, with its line.

File-level problems (missing or empty file, no ``email`` column, duplicate columns, a column a
template needs but the CSV lacks, bytes that are not UTF-8) raise ``EnrollError`` before any row
is yielded, so a bad file changes nothing. Row-level problems yield ``Rejected`` with the
physical line where the record starts and the reason, and reading goes on.
"""

from __future__ import annotations

import csv
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from email.header import decode_header
from hashlib import blake2b
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import email_validator
from email_validator import EmailNotValidError, caching_resolver, validate_email

try:  # for the shortcut in _Rows._address; without them, every address takes the full path
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
except ImportError:  # pragma: no cover - another email-validator layout
    _SHORTCUT = False
else:
    _SHORTCUT = email_validator.__version__.split(".")[0] == "2"

from sequencer.core.addresses import address_key, mixed_script
from sequencer.core.schedule import DATE_RANGE
from sequencer.core.text import has_control
from sequencer.errors import EnrollError
from sequencer.templating.templates import BUILTIN_VARIABLES, reserved_column

KNOWN_COLUMNS = ("email", "first_name", "last_name", "company", "timezone", "follow_up_by")

_SEPARATORS = re.compile(r"[,;\s]+")
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9.-]+\Z")
_EMAIL_MAX_LENGTH = 254
_LOCAL_MAX_LENGTH = 64
_DOMAINS_KEPT = 4096
FOLLOW_UP_RANGE = DATE_RANGE  # the dates a step can be due ahead of (core.schedule)


@dataclass(frozen=True)
class Prospect:
    """One accepted row. ``email`` is normalized; ``fields`` holds every column, stripped.

    ``key`` is the address's identity (``address_key``); ``warning`` says why the row is
    enrolled but worth a look (a mixed-script, look-alike domain)."""

    line: int
    email: str
    fields: Mapping[str, str]
    timezone: str | None
    follow_up_by: date | None
    key: str
    warning: str | None = None


@dataclass(frozen=True)
class Rejected:
    """One refused row: where it starts, its address cell if any, and why."""

    line: int
    email: str | None
    reason: str


def count_rows(path: Path) -> int:
    """Records after the header (blank lines aside): the total for a progress bar."""
    with _open(path) as handle:
        return max(0, sum(1 for row in csv.reader(handle) if row) - 1)


def read_prospects(
    path: Path,
    *,
    required: Iterable[str] = (),
    check: Callable[[Prospect], str | None] | None = None,
    check_deliverability: bool = False,
) -> Iterator[Prospect | Rejected]:
    """Yield each record of the CSV at ``path`` as a Prospect or a Rejected, in file order.

    ``required`` names the template variables used without a ``default``: every one must be a
    column, and must not be blank in a row. Pass a mapping ``{variable: template name}`` to have
    errors name the template. ``check`` sees each otherwise valid prospect; a string it returns
    is the reason to reject it ("already enrolled", "suppressed" ...).
    File-level problems raise EnrollError here, at the call, before any row is read.
    """
    path = Path(path)
    _check_file(path)
    needed = _needed(required)
    with _open(path) as handle:
        columns = _header(csv.reader(handle), path, needed)
    rows = _Rows(columns, needed, check, check_deliverability)
    return _stream(path, rows)


def _stream(path: Path, rows: _Rows) -> Iterator[Prospect | Rejected]:
    with _open(path) as handle:
        reader = csv.reader(handle)
        next(reader, None)  # the header, already checked
        for start, row in _records(reader, path):
            yield rows.read(start, row)


def _open(path: Path) -> TextIO:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as err:
        raise EnrollError("file not found", path) from err
    except OSError as err:
        raise EnrollError(f"cannot read: {err.strerror}", path) from err


def _check_file(path: Path) -> None:
    """Read the whole file once as CSV, storing nothing: its encoding and every record's
    structure are whole-file problems, found here before the first row is handed out (and
    so before anything is written)."""
    try:
        with _open(path) as handle:
            reader = csv.reader(handle)
            for _ in _records(reader, path):
                pass
    except UnicodeDecodeError:
        _check_utf8(path)
        raise EnrollError("not valid UTF-8 (save the file as UTF-8)", path) from None


def _check_utf8(path: Path) -> None:
    try:
        with path.open("rb") as raw:
            for number, line in enumerate(raw, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise EnrollError(
                        "not valid UTF-8 (save the file as UTF-8)", path, number
                    ) from err
    except FileNotFoundError as err:
        raise EnrollError("file not found", path) from err
    except OSError as err:
        raise EnrollError(f"cannot read: {err.strerror}", path) from err


def _needed(required: Iterable[str]) -> dict[str, str | None]:
    """Required variable -> the template that needs it (None when unknown), builtins aside."""
    if isinstance(required, Mapping):
        pairs: Iterable[tuple[str, Any]] = required.items()
    else:
        pairs = ((name, None) for name in required)
    return {name: owner for name, owner in pairs if name not in BUILTIN_VARIABLES}


def _header(reader: Any, path: Path, needed: Mapping[str, str | None]) -> list[str]:
    try:
        row: list[str] | None = next(reader, None)
    except csv.Error as err:
        raise EnrollError(f"cannot read the header row: {err}", path, 1) from err
    if row is None:
        raise EnrollError("the file is empty (a header row with an `email` column is needed)", path)
    columns = [_column_name(cell) for cell in row]
    seen: dict[str, int] = {}
    for index, name in enumerate(columns, 1):
        if not name:
            raise EnrollError(f"column {index} has no name", path, 1)
        if name in seen:
            reason = f"duplicate column `{name}` (columns {seen[name]} and {index})"
            raise EnrollError(reason, path, 1)
        shadow = reserved_column(name)
        if shadow is not None:
            raise EnrollError(f"column `{name}` (column {index}) cannot be used: {shadow}; "
                              "rename it", path, 1)
        seen[name] = index
    if "email" not in seen:
        raise EnrollError("no `email` column in the header row", path, 1)
    for name, owner in needed.items():
        if name not in seen:
            who = f"template {owner}" if owner else "a template"
            reason = f"{who} uses {{{{ {name} }}}} but the CSV has no `{name}` column"
            raise EnrollError(reason, path, 1)
    return columns


def _column_name(cell: str) -> str:
    name = cell.strip()
    return name.lower() if name.lower() in KNOWN_COLUMNS else name


def _records(reader: Any, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line where it starts, cells) of each non-blank record. A record the csv module
    cannot read ends the file with ``EnrollError`` on the line where that record starts."""
    previous = reader.line_num
    while True:
        try:
            row = next(reader, None)
        except csv.Error as err:
            raise EnrollError(_unreadable(err), path, previous + 1) from err
        if row is None:
            return
        start, previous = previous + 1, reader.line_num
        if row and any(row):
            yield start, row


def _unreadable(err: csv.Error) -> str:
    if "field limit" in str(err):
        return (f"unreadable CSV: a cell is longer than {csv.field_size_limit()} characters "
                "(a quote that is never closed?)")
    return f"unreadable CSV: {err}"


class _Rows:
    """The per-row rules, with what they remember between rows (addresses already seen)."""

    def __init__(
        self,
        columns: list[str],
        needed: Mapping[str, str | None],
        check: Callable[[Prospect], str | None] | None,
        check_deliverability: bool,
    ) -> None:
        self.columns = columns
        self.width = len(columns)
        self.email_index = columns.index("email")
        self.needed = [name for name in needed if name in columns]
        self.check = check
        self.deliverability = check_deliverability
        self.resolver = caching_resolver(timeout=10) if check_deliverability else None
        self.seen = _SeenIndex()
        self.zones: dict[str, bool] = {}
        # domain as written -> (normalized, IDNA ASCII) when valid, None when not
        self.domains: dict[str, tuple[str, str] | None] = {}
        self.shortcut = _SHORTCUT and not check_deliverability

    def read(self, line: int, row: list[str]) -> Prospect | Rejected:
        cell = row[self.email_index].strip() if len(row) > self.email_index else None
        reason = self._structure(row)
        if reason is not None:
            return Rejected(line, cell, reason)
        fields = {name: value.strip() for name, value in zip(self.columns, row, strict=True)}
        email, reason = self._address(fields["email"])
        if email is None:
            return Rejected(line, cell, reason or "invalid address")
        fields["email"] = email
        timezone = fields.get("timezone") or None
        follow_up_by, date_reason = _follow_up_by(fields.get("follow_up_by", ""))
        reason = self._zone(timezone) or date_reason or self._empty(fields)
        email_key = address_key(email)
        key = _digest(email_key)
        earlier = self.seen.get(key) if reason is None else None
        if earlier is not None:
            reason = f"duplicate of line {earlier}"
        if reason is not None:
            return Rejected(line, cell, reason)
        warning = None if email.isascii() else mixed_script(email)
        prospect = Prospect(line, email, fields, timezone, follow_up_by, email_key, warning)
        reason = self.check(prospect) if self.check is not None else None
        if reason is not None:
            return Rejected(line, cell, reason)
        self.seen.add(key, line)
        return prospect

    def _structure(self, row: list[str]) -> str | None:
        if len(row) != self.width:
            return f"expected {self.width} columns, found {len(row)}"
        joined = "".join(row)
        if has_control(joined):
            name = next(n for n, v in zip(self.columns, row, strict=True) if has_control(v))
            return f"control character in column `{name}`"
        if "=?" in joined:
            for name, value in zip(self.columns, row, strict=True):
                if "=?" in value and _hides_control(value):
                    return f"encoded word hiding a control character in column `{name}`"
        return None

    def _address(self, value: str) -> tuple[str | None, str | None]:
        if not value:
            return None, "empty `email`"
        if sum(1 for token in _SEPARATORS.split(value) if "@" in token) > 1:
            return None, "more than one address in `email` (one address per row)"
        if value.count("@") > 1:
            return None, "more than one @ in `email` (one address per row)"
        normalized = self._simple(value) if self.shortcut else None
        if normalized is not None:
            local, _, domain = normalized.rpartition("@")
            return f"{local}@{domain.lower()}", None
        try:
            valid = validate_email(
                value,
                check_deliverability=self.deliverability,
                dns_resolver=self.resolver,
            )
        except EmailNotValidError as err:
            return None, f"invalid address: {err}"
        local, _, domain = valid.normalized.rpartition("@")
        return f"{local}@{domain.lower()}", None

    def _simple(self, value: str) -> str | None:
        """validate_email(value).normalized for a plain ASCII address, checking its domain once.

        Exactly what email-validator 2.x does, taken apart: a local part that is ASCII
        dot-atom text (and not one of the RFC 2142 names it lower-cases) comes back as it
        is, whatever the domain; the domain's checks depend on the domain alone, so they run
        once per domain, on a stand-in address (``a@domain``); the length limits on the
        whole address are the library's. Anything else — an invalid domain, a long address,
        non-ASCII, quotes, brackets — returns None and goes to validate_email itself, so
        every rejection reason is the library's own.
        """
        local, _, domain = value.partition("@")
        if (len(local) > _LOCAL_MAX_LENGTH or not DOT_ATOM_TEXT.match(local)
                or not _ASCII_DOMAIN.match(domain)
                or local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES):
            return None
        if domain in self.domains:
            forms = self.domains[domain]
        else:
            try:
                probe = validate_email(f"a@{domain}", check_deliverability=False)
                forms = (probe.domain, probe.ascii_domain)
            except EmailNotValidError:
                forms = None
            if len(self.domains) >= _DOMAINS_KEPT:
                self.domains.clear()
            self.domains[domain] = forms
        if forms is None:
            return None
        normalized = f"{local}@{forms[0]}"
        if (len(value) > _EMAIL_MAX_LENGTH
                or len(normalized.encode()) > _EMAIL_MAX_LENGTH
                or len(local) + 1 + len(forms[1]) > _EMAIL_MAX_LENGTH):
            return None
        return normalized

    def _zone(self, name: str | None) -> str | None:
        if name is None:
            return None
        valid = self.zones.get(name)
        if valid is None:
            valid = self.zones[name] = _is_zone(name)
        if valid:
            return None
        return f"unknown timezone `{name}` (use an IANA name such as America/New_York)"

    def _empty(self, fields: Mapping[str, str]) -> str | None:
        for name in self.needed:
            if not fields[name]:
                return f"`{name}` is empty but a template uses it without a default"
        return None


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _follow_up_by(value: str) -> tuple[date | None, str | None]:
    if not value:
        return None, None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None, f"`follow_up_by` is not an ISO date (YYYY-MM-DD): `{value}`"
    if not FOLLOW_UP_RANGE[0] <= day <= FOLLOW_UP_RANGE[1]:
        first, last = (d.isoformat() for d in FOLLOW_UP_RANGE)
        return None, f"`follow_up_by` {value} is out of range ({first} … {last})"
    return day, None


def _hides_control(value: str) -> bool:
    """True when RFC 2047 decoding of ``value`` would produce a control character."""
    try:
        parts = decode_header(value)
        texts = [
            chunk.decode(charset or "raw-unicode-escape", errors="replace")
            if isinstance(chunk, bytes)
            else chunk
            for chunk, charset in parts
        ]
    except (ValueError, LookupError):
        return False  # not a usable encoded word: compose writes it encoded, as literal text
    return any(has_control(text) for text in texts)


def _digest(email_key: str) -> int:
    """A non-zero 64-bit digest of an address key (collisions: ~1e-7 at 2M rows)."""
    return int.from_bytes(blake2b(email_key.encode(), digest_size=8).digest(), "big") or 1


class _SeenIndex:
    """Address digest -> line, in two flat arrays (open addressing): 18-36 bytes a row.

    A dict of Python ints costs ~140 bytes a row; this keeps a million-row import under ~40 MB.
    """

    def __init__(self) -> None:
        self.size = 0
        self.mask = (1 << 12) - 1
        self.keys = array("Q", [0]) * (self.mask + 1)
        self.lines = array("I", [0]) * (self.mask + 1)

    def get(self, key: int) -> int | None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while True:
            found = keys[slot]
            if found == key:
                return self.lines[slot]
            if found == 0:
                return None
            slot = (slot + 1) & mask

    def add(self, key: int, line: int) -> None:
        if 3 * (self.size + 1) > 2 * (self.mask + 1):
            self._grow()
        self._put(key, line)
        self.size += 1

    def _put(self, key: int, line: int) -> None:
        keys, mask = self.keys, self.mask
        slot = key & mask
        while keys[slot] not in (0, key):
            slot = (slot + 1) & mask
        keys[slot] = key
        self.lines[slot] = line

    def _grow(self) -> None:
        old = zip(self.keys, self.lines, strict=True)
        self.mask = self.mask * 2 + 1
        self.keys = array("Q", [0]) * (self.mask + 1)
        self.lines = array("I", [0]) * (self.mask + 1)
        for key, line in old:
            if key:
                self._put(key, line)

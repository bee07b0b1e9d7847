"""The labelled inbound-mail corpus in ``tests/data/corpus`` (what it holds and where each
file comes from: ``tests/data/corpus/README.md``).

``load()`` reads ``labels.csv`` into one frozen ``Labelled`` row per message. A manifest
that breaks the rules below is refused with ``ManifestError`` naming the file, the line
and the reason, so a bad edit never silently changes what the classifier is measured on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
MANIFEST = CORPUS / "labels.csv"

KINDS = frozenset({"reply", "auto_reply", "bounce", "complaint", "unsubscribe", "unrelated"})
BOUNCES = frozenset({"hard", "soft", ""})
SETS = frozenset({"tune", "holdout"})
COLUMNS = ("path", "set", "kind", "subkind", "bounce", "cause", "status", "return_date",
           "language", "client", "source", "licence", "reference", "tags", "notes")


class ManifestError(ValueError):
    """A row of the manifest that cannot be used; the message says ``file:line: reason``."""

    def __init__(self, manifest: Path, line: int, reason: str) -> None:
        super().__init__(f"{manifest}:{line}: {reason}")
        self.manifest = manifest
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Labelled:
    """One message of the corpus and what it is."""

    name: str                # path relative to the corpus folder, as in the manifest
    path: Path               # absolute path of the message file
    set: str                 # "tune" (may be looked at and tuned on) or "holdout"
    kind: str                # one of KINDS
    subkind: str             # finer kind: out_of_office, mdn, failure, delayed, ...
    bounce: str              # "hard", "soft", or "" for anything that is not a bounce
    cause: str               # sisimai reason name where known (userunknown, mailboxfull ...)
    status: str              # RFC 3463 status the label was read from, where known
    return_date: date | None  # the date an out-of-office says its writer is back
    language: str            # ISO 639-1 code of the human text
    client: str              # mail client or service that wrote it, where known
    source: str              # where the message comes from
    licence: str             # SPDX identifier of the source's licence
    reference: str           # where the kind and hard/soft label come from
    tags: frozenset[str]     # sns_json, no_rfc3834, multi_recipient, ...
    notes: str

    def raw(self) -> bytes:
        return self.path.read_bytes()


def load(manifest: Path = MANIFEST) -> tuple[Labelled, ...]:
    """Every row of ``manifest``, checked; the message files are resolved next to it."""
    folder = manifest.parent
    rows: list[Labelled] = []
    seen: set[str] = set()
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ManifestError(manifest, 1, f"missing columns: {', '.join(missing)}")
        for record in reader:
            line = reader.line_num
            rows.append(_row(manifest, line, folder, record))
            if rows[-1].name in seen:
                raise ManifestError(manifest, line, f"{rows[-1].name} is listed twice")
            seen.add(rows[-1].name)
    return tuple(rows)


def _row(manifest: Path, line: int, folder: Path, record: dict[str, str]) -> Labelled:
    def fail(reason: str) -> ManifestError:
        return ManifestError(manifest, line, reason)

    name = record["path"]
    path = (folder / name).resolve()
    if not name or folder.resolve() not in path.parents:
        raise fail(f"path {name!r} is not a file inside {folder}")
    if not path.is_file():
        raise fail(f"{name} does not exist")
    if record["set"] not in SETS:
        raise fail(f"set {record['set']!r} is not one of {sorted(SETS)}")
    if record["kind"] not in KINDS:
        raise fail(f"kind {record['kind']!r} is not one of {sorted(KINDS)}")
    if record["bounce"] not in BOUNCES:
        raise fail(f"bounce {record['bounce']!r} is not hard, soft or empty")
    if (record["kind"] == "bounce") != bool(record["bounce"]):
        raise fail("a bounce needs hard or soft, and only a bounce has one")
    for column in ("subkind", "language", "source", "licence", "reference"):
        if not record[column]:
            raise fail(f"{column} is empty")
    returning: date | None = None
    if record["return_date"]:
        try:
            returning = date.fromisoformat(record["return_date"])
        except ValueError:
            raise fail(f"return_date {record['return_date']!r} is not an ISO date") from None
    return Labelled(
        name=name, path=path, set=record["set"], kind=record["kind"],
        subkind=record["subkind"], bounce=record["bounce"], cause=record["cause"],
        status=record["status"], return_date=returning, language=record["language"],
        client=record["client"], source=record["source"], licence=record["licence"],
        reference=record["reference"],
        tags=frozenset(t for t in record["tags"].split(";") if t), notes=record["notes"])

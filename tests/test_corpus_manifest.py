"""The corpus manifest (tests/data/corpus/labels.csv) is consistent with the files beside it."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from tests.corpus import BOUNCES, CORPUS, KINDS, MANIFEST, SETS, ManifestError, load

LICENSES = CORPUS / "LICENSES"


@pytest.fixture(scope="module")
def rows():
    return load()


def licence_index() -> dict[str, tuple[str, Path]]:
    with (LICENSES / "index.csv").open(newline="", encoding="utf-8") as handle:
        return {r["source"]: (r["licence"], LICENSES / r["file"]) for r in csv.DictReader(handle)}


def test_every_listed_file_exists_and_every_message_file_is_listed(rows):
    listed = {row.name for row in rows}
    assert all(row.path.is_file() for row in rows)
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
               if p.is_file() and p.suffix in {".eml", ".json", ".txt"}
               and "LICENSES" not in p.parts}
    assert on_disk - listed == set()


def test_kinds_bounces_and_sets_are_from_the_allowed_sets(rows):
    assert {row.kind for row in rows} <= KINDS
    assert {row.bounce for row in rows} <= BOUNCES
    assert {row.set for row in rows} <= SETS
    assert all(bool(row.bounce) == (row.kind == "bounce") for row in rows)


def test_every_source_has_its_licence_in_the_licenses_folder(rows):
    index = licence_index()
    for row in rows:
        prefix = max((s for s in index if row.source.startswith(s)), key=len, default=None)
        assert prefix is not None, f"{row.name}: no licence entry for source {row.source!r}"
        licence, text = index[prefix]
        assert row.licence == licence, f"{row.name}: {row.licence} but {prefix} is {licence}"
        assert text.is_file(), f"{text} is missing"


def test_every_bounce_names_where_its_hard_or_soft_label_comes_from(rows):
    bounces = [row for row in rows if row.kind == "bounce"]
    assert len(bounces) > 300
    assert all(row.reference and row.cause for row in bounces)
    assert Counter(row.bounce for row in bounces).keys() == {"hard", "soft"}


def test_every_kind_is_present(rows):
    assert {row.kind for row in rows} >= {"bounce", "complaint", "auto_reply", "unrelated"}


def test_a_broken_manifest_is_refused_with_file_line_and_reason(tmp_path):
    text = MANIFEST.read_text(encoding="utf-8").splitlines()
    header, first = text[0], text[1]
    (tmp_path / "sisimai").mkdir()
    name = first.split(",", 1)[0]
    (tmp_path / name).write_bytes((CORPUS / name).read_bytes())
    broken = tmp_path / "labels.csv"
    broken.write_text(f"{header}\n{first}\n{first.replace(',tune,', ',later,')}\n",
                      encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load(broken)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{broken}:3: ")
    assert "later" in caught.value.reason


def test_a_manifest_row_naming_a_missing_file_is_refused(tmp_path):
    text = MANIFEST.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "labels.csv"
    broken.write_text(f"{text[0]}\n{text[1]}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"labels\.csv:2: .* does not exist"):
        load(broken)

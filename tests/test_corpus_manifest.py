"""The corpus manifest (tests/data/corpus/labels.csv) is consistent with the files beside it."""

from __future__ import annotations

import csv
import email
from collections import Counter
from pathlib import Path

import pytest

from tests.corpus import BOUNCES, CORPUS, KINDS, MANIFEST, SETS, Labelled, ManifestError, load

LICENSES = CORPUS / "LICENSES"


@pytest.fixture(scope="module")
def rows() -> tuple[Labelled, ...]:
    return load()


def licence_index() -> dict[str, tuple[str, Path]]:
    with (LICENSES / "index.csv").open(newline="", encoding="utf-8") as handle:
        return {r["source"]: (r["licence"], LICENSES / r["file"]) for r in csv.DictReader(handle)}


def test_every_listed_file_exists_and_every_message_file_is_listed(
        rows: tuple[Labelled, ...]) -> None:
    listed = {row.name for row in rows}
    assert all(row.path.is_file() for row in rows)
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
               if p.is_file() and p.suffix in {".eml", ".json", ".txt"}
               and "LICENSES" not in p.parts}
    assert on_disk - listed == set()


def test_kinds_bounces_and_sets_are_from_the_allowed_sets(rows: tuple[Labelled, ...]) -> None:
    assert {row.kind for row in rows} <= KINDS
    assert {row.bounce for row in rows} <= BOUNCES
    assert {row.set for row in rows} <= SETS
    assert all(bool(row.bounce) == (row.kind == "bounce") for row in rows)


def test_every_source_has_its_licence_in_the_licenses_folder(rows: tuple[Labelled, ...]) -> None:
    index = licence_index()
    for row in rows:
        prefix = max((s for s in index if row.source.startswith(s)), key=len, default=None)
        assert prefix is not None, f"{row.name}: no licence entry for source {row.source!r}"
        licence, text = index[prefix]
        assert row.licence == licence, f"{row.name}: {row.licence} but {prefix} is {licence}"
        assert text.is_file(), f"{text} is missing"


def test_every_bounce_names_where_its_hard_or_soft_label_comes_from(
        rows: tuple[Labelled, ...]) -> None:
    bounces = [row for row in rows if row.kind == "bounce"]
    assert len(bounces) > 300
    assert all(row.reference and row.cause for row in bounces)
    assert Counter(row.bounce for row in bounces).keys() == {"hard", "soft"}


def test_every_kind_is_present_in_both_sets(rows: tuple[Labelled, ...]) -> None:
    for name in SETS:
        assert {row.kind for row in rows if row.set == name} == KINDS, name


def test_every_kind_of_automatic_mail_the_classifier_must_know_is_present(
        rows: tuple[Labelled, ...]) -> None:
    subkinds = {(row.kind, row.subkind) for row in rows}
    assert subkinds >= {
        ("auto_reply", "out_of_office"), ("auto_reply", "mdn"),
        ("auto_reply", "challenge_response"), ("auto_reply", "auto_generated"),
        ("auto_reply", "delivery_success"), ("bounce", "failure"), ("bounce", "delayed"),
        ("complaint", "arf"), ("complaint", "ses_complaint"),
        ("reply", "negated_optout"), ("reply", "cc_removal"), ("reply", "quoted_footer"),
        ("unsubscribe", "request"), ("unsubscribe", "one_click"), ("unrelated", "newsletter")}
    assert {row.kind for row in rows if "sns_json" in row.tags} >= {"bounce", "complaint"}
    assert any("lotus_notes_auto" in row.tags for row in rows)


def test_out_of_office_replies_come_in_at_least_20_languages_in_each_set(
        rows: tuple[Labelled, ...]) -> None:
    ooo = [row for row in rows if row.subkind == "out_of_office"]
    for name in SETS:
        assert len({row.language for row in ooo if row.set == name}) >= 20, name


def test_an_out_of_office_is_tagged_no_rfc3834_exactly_when_it_has_no_rfc3834_header(
        rows: tuple[Labelled, ...]) -> None:
    marks = ("auto-submitted", "x-autoreply", "x-autorespond", "precedence")
    for row in rows:
        if row.subkind != "out_of_office":
            continue
        headers = email.message_from_bytes(row.raw())
        automatic = any(headers[m] for m in marks)
        assert automatic != ("no_rfc3834" in row.tags), row.name
    without = [row for row in rows if row.subkind == "out_of_office" and "no_rfc3834" in row.tags]
    assert len(without) >= 20


def test_human_replies_come_from_the_major_clients(rows: tuple[Labelled, ...]) -> None:
    clients = {row.client for row in rows if row.kind == "reply"}
    assert clients >= {"gmail", "outlook", "apple_mail", "thunderbird", "ios_mail", "android_gmail"}


def test_the_holdout_is_at_least_a_quarter_of_the_corpus(rows: tuple[Labelled, ...]) -> None:
    counts = Counter(row.set for row in rows)
    assert counts["holdout"] * 4 >= len(rows), counts


def test_a_broken_manifest_is_refused_with_file_line_and_reason(tmp_path: Path) -> None:
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


def test_a_manifest_row_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    text = MANIFEST.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "labels.csv"
    broken.write_text(f"{text[0]}\n{text[1]}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"labels\.csv:2: .* does not exist"):
        load(broken)

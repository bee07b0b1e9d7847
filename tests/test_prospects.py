"""The prospects CSV: file-level errors, every row rule with its line, streaming (X1, X2, X4)."""

from __future__ import annotations

import tracemalloc
from datetime import date
from pathlib import Path

import pytest

from sequencer.errors import EnrollError
from sequencer.prospects import Prospect, Rejected, _SeenIndex, count_rows, read_prospects

CVE_2024_6923 = "=?UTF-8?Q?=0A?=Bcc: evil@example.net"


def csv_file(tmp_path: Path, text: str, name: str = "prospects.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def read(path: Path, **options: object) -> list[Prospect | Rejected]:
    return list(read_prospects(path, **options))  # type: ignore[arg-type]


def rejections(path: Path, **options: object) -> list[tuple[int, str | None, str]]:
    return [(r.line, r.email, r.reason) for r in read(path, **options) if isinstance(r, Rejected)]


def file_error(path: Path, **options: object) -> EnrollError:
    with pytest.raises(EnrollError) as caught:
        read_prospects(path, **options)  # type: ignore[arg-type]
    return caught.value


def test_valid_rows_become_prospects_with_normalized_address_and_stripped_fields(
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        "email,first_name,Company,timezone,follow_up_by,notes\n"
        " Ana.Lima@EXAMPLE.org , Ana ,Acme,America/New_York,2025-06-01,  likes tea \n"
        "bob@example.com,Bob,,,,\n",
    )
    first, second = read(path)
    assert first == Prospect(
        line=2,
        email="Ana.Lima@example.org",
        fields={
            "email": "Ana.Lima@example.org",
            "first_name": "Ana",
            "company": "Acme",
            "timezone": "America/New_York",
            "follow_up_by": "2025-06-01",
            "notes": "likes tea",
        },  # fmt: skip
        timezone="America/New_York",
        follow_up_by=date(2025, 6, 1),
        key="ana.lima@example.org",
    )
    assert isinstance(second, Prospect)
    assert (second.line, second.timezone, second.follow_up_by) == (3, None, None)


def test_a_utf8_bom_before_the_header_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffemail,first_name\nana@example.org,Ana\n".encode())
    (prospect,) = read(path)
    assert isinstance(prospect, Prospect)
    assert prospect.fields == {"email": "ana@example.org", "first_name": "Ana"}


def test_line_numbers_are_where_each_record_starts_across_multi_line_cells(
    tmp_path: Path,
) -> None:
    path = csv_file(
        tmp_path,
        "email,notes\n"
        'ana@example.org,"one\ntwo\nthree"\n'
        "\n"
        "bob@example.com,fine\n"
        'carl@example.com,"a\r\nb"\n'
        "dora@example.com,ok\n",
    )
    results = read(path)
    assert [(r.line, type(r).__name__) for r in results] == [
        (2, "Rejected"), (6, "Prospect"), (7, "Rejected"), (9, "Prospect"),
    ]  # fmt: skip
    assert results[0] == Rejected(2, "ana@example.org", "control character in column `notes`")


@pytest.mark.parametrize(
    "char", ["\r", "\x00", "\t", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
)
def test_control_characters_in_any_value_reject_the_row_naming_the_column(
    tmp_path: Path, char: str
) -> None:
    text = f'email,first_name,company\nana@example.org,Ana,ok\nbob@example.com,Bob,"Ac{char}me"\n'
    path = csv_file(tmp_path, text)
    assert rejections(path) == [(3, "bob@example.com", "control character in column `company`")]


def test_encoded_word_hiding_a_line_break_is_rejected_at_import(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        f"email,first_name,company\nana@example.org,{CVE_2024_6923},Acme\n"
        f"bob@example.com,Bob,{CVE_2024_6923}\ncarl@example.com,Carl,=?utf-8?q?Caf=C3=A9?=\n",
    )
    assert rejections(path) == [
        (2, "ana@example.org", "encoded word hiding a control character in column `first_name`"),
        (3, "bob@example.com", "encoded word hiding a control character in column `company`"),
    ]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ('"a@example.org, b@example.org"', "more than one address in `email`"),
        ("a@example.org;b@example.org", "more than one address in `email`"),
        ('"a@example.org b@example.org"', "more than one address in `email`"),
        ("a@b@example.org", "more than one @ in `email`"),
        ("not-an-address", "invalid address: "),
        ("ana@", "invalid address: "),
        ('"Ana <ana@example.org>"', "invalid address: "),
        ("", "empty `email`"),
    ],
)
def test_a_cell_that_is_not_exactly_one_valid_address_is_rejected(
    tmp_path: Path, cell: str, reason: str
) -> None:
    path = csv_file(tmp_path, f"email,first_name\nok@example.org,Ok\n{cell},X\n")
    ((line, _, got),) = rejections(path)
    assert line == 3
    assert got.startswith(reason)


def test_duplicate_address_names_the_earlier_line_ignoring_case(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "email\nana@example.org\nbob@example.com\nANA@Example.ORG\nbob@EXAMPLE.com\n",
    )
    assert rejections(path) == [
        (4, "ANA@Example.ORG", "duplicate of line 2"),
        (5, "bob@EXAMPLE.com", "duplicate of line 3"),
    ]


def test_a_rejected_row_does_not_count_as_the_first_of_a_duplicate(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,timezone\nana@example.org,Mars/Base\nana@example.org,UTC\n")
    results = read(path)
    assert isinstance(results[0], Rejected) and isinstance(results[1], Prospect)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("timezone", "Mars/Olympus", "unknown timezone `Mars/Olympus`"),
        ("timezone", "../etc/passwd", "unknown timezone `../etc/passwd`"),
        ("follow_up_by", "next tuesday", "`follow_up_by` is not an ISO date (YYYY-MM-DD)"),
        ("follow_up_by", "2025-02-30", "`follow_up_by` is not an ISO date (YYYY-MM-DD)"),
        ("follow_up_by", "0001-01-01", "`follow_up_by` 0001-01-01 is out of range "
         "(1900-01-01 … 2999-12-31)"),
        ("follow_up_by", "9999-12-31", "`follow_up_by` 9999-12-31 is out of range"),
    ],
)
def test_bad_timezone_or_follow_up_date_rejects_the_row(
    tmp_path: Path, column: str, value: str, reason: str
) -> None:
    path = csv_file(tmp_path, f"email,{column}\nana@example.org,{value}\n")
    ((line, email, got),) = rejections(path)
    assert (line, email) == (2, "ana@example.org")
    assert got.startswith(reason)


def test_wrong_column_count_rejects_the_row(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,first_name\nana@example.org,Ana,extra\nbob@example.com\n")
    assert rejections(path) == [
        (2, "ana@example.org", "expected 2 columns, found 3"),
        (3, "bob@example.com", "expected 2 columns, found 1"),
    ]


def test_empty_required_variable_rejects_the_row_naming_it(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,company,city\nana@example.org,Acme,\nbob@example.com, ,\n")
    assert rejections(path, required={"company", "email", "sequence"}) == [
        (3, "bob@example.com", "`company` is empty but a template uses it without a default"),
    ]


def test_check_callback_reason_rejects_and_is_called_only_for_valid_rows(
    tmp_path: Path,
) -> None:
    path = csv_file(tmp_path, "email\nana@example.org\nbad-address\nbob@example.com\n")
    seen: list[str] = []

    def check(prospect: Prospect) -> str | None:
        seen.append(prospect.email)
        return "already enrolled" if prospect.email == "bob@example.com" else None

    assert [r.line for r in read(path, check=check) if isinstance(r, Prospect)] == [2]
    assert rejections(path, check=check)[-1] == (4, "bob@example.com", "already enrolled")
    assert "bad-address" not in seen


def test_missing_file_is_a_file_error(tmp_path: Path) -> None:
    error = file_error(tmp_path / "nope.csv")
    assert error.reason == "file not found"


def test_empty_file_is_a_file_error(tmp_path: Path) -> None:
    error = file_error(csv_file(tmp_path, ""))
    assert error.reason.startswith("the file is empty")


def test_file_without_email_column_is_a_file_error(tmp_path: Path) -> None:
    error = file_error(csv_file(tmp_path, "mail,first_name\nana@example.org,Ana\n"))
    assert (error.line, error.reason) == (1, "no `email` column in the header row")


def test_duplicate_column_names_are_a_file_error(tmp_path: Path) -> None:
    error = file_error(csv_file(tmp_path, "email,company,Company\na@example.org,x,y\n"))
    assert (error.line, error.reason) == (1, "duplicate column `company` (columns 2 and 3)")


@pytest.mark.parametrize(("column", "reason"), [
    ("range", "it would hide the template function range()"),
    ("dict", "it would hide the template function dict()"),
    ("namespace", "it would hide the template function namespace()"),
    ("loop", "it would hide Jinja's own `loop`"),
    ("caller", "it would hide Jinja's own `caller`"),
    ("sender", "`sender` is set by sequencer for every email"),
    ("unsubscribe_url", "`unsubscribe_url` is set by sequencer for every email"),
])
def test_a_column_that_would_shadow_a_template_name_is_a_file_error(
        tmp_path: Path, column: str, reason: str) -> None:
    error = file_error(csv_file(tmp_path, f"email,first_name,{column}\na@example.org,A,x\n"))
    assert (error.line, error.reason) == (1, f"column `{column}` (column 3) cannot be used: "
                                             f"{reason}; rename it")


def test_names_are_case_sensitive_so_range_in_capitals_is_a_column(tmp_path: Path) -> None:
    (prospect,) = read(csv_file(tmp_path, "email,Range\na@example.org,10-20\n"))
    assert isinstance(prospect, Prospect) and prospect.fields["Range"] == "10-20"


def test_unnamed_column_is_a_file_error(tmp_path: Path) -> None:
    error = file_error(csv_file(tmp_path, "email,,x\na@example.org,1,2\n"))
    assert error.reason == "column 2 has no name"


def test_template_variable_missing_from_the_columns_is_refused_with_its_name(
    tmp_path: Path,
) -> None:
    path = csv_file(tmp_path, "email,first_name\nana@example.org,Ana\n")
    error = file_error(path, required={"first_name": "reminder", "company": "reminder"})
    assert str(error) == (
        f"{path}:1: template reminder uses {{{{ company }}}} but the CSV has no `company` column"
    )
    error = file_error(path, required=["company", "unsubscribe_url"])
    assert error.reason == "a template uses {{ company }} but the CSV has no `company` column"


def test_non_utf8_bytes_are_a_file_error_naming_the_line_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"email,company\nana@example.org,Acme\nbob@example.com,Caf\xe9\n")
    error = file_error(path)
    assert (error.line, error.path) == (3, str(path))
    assert error.reason.startswith("not valid UTF-8")


def test_count_rows_counts_records_not_physical_lines(tmp_path: Path) -> None:
    path = csv_file(tmp_path, 'email,notes\na@example.org,"x\ny"\n\nb@example.org,z\n')
    assert count_rows(path) == 2


def write_rows(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,first_name,company,notes\n")
        for i in range(count):
            handle.write(f"user{i}@example{i % 20}.com,First{i},Company {i},{'n' * 60}\n")
    return path


def peak_memory(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        accepted = sum(isinstance(r, Prospect) for r in read_prospects(path))
        return accepted, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_stays_flat_apart_from_a_small_per_address_index(tmp_path: Path) -> None:
    small_rows, small_peak = peak_memory(write_rows(tmp_path / "500.csv", 500))
    large_rows, large_peak = peak_memory(write_rows(tmp_path / "5k.csv", 5_000))
    assert (small_rows, large_rows) == (500, 5_000)
    # A row as parsed (list, dict of fields, Prospect) costs well over 1 KB; only the
    # duplicate index (a 64-bit digest and a line number, ~25-50 bytes) may grow per row.
    per_row = (large_peak - small_peak) / 4_500
    assert per_row < 80, f"{per_row:.0f} bytes retained per row"
    assert large_peak < 4 * small_peak


def test_duplicate_index_finds_every_key_through_collisions_and_growth() -> None:
    index = _SeenIndex()
    colliding = [(i << 32) | 7 for i in range(1, 400)]  # same low bits: one long probe chain
    spread = [i * 0x9E3779B97F4A7C15 % (1 << 64) or 1 for i in range(1, 20_000)]
    for line, key in enumerate(colliding + spread, 2):
        assert index.get(key) is None
        index.add(key, line)
    assert [index.get(key) for key in colliding[:3]] == [2, 3, 4]
    assert all(index.get(key) == line for line, key in enumerate(colliding + spread, 2))
    assert index.get(12345) is None


def test_a_cell_over_the_csv_field_limit_is_a_file_error_before_any_row(tmp_path: Path) -> None:
    rows = "".join(f"p{i}@example.org,ok\n" for i in range(2500))
    path = csv_file(tmp_path, f"email,notes\n{rows}b@example.org,\"{'x' * 200_000}\n")
    error = file_error(path)  # at the call: no row is handed out at all
    assert error.line == 2502
    assert error.reason == ("unreadable CSV: a cell is longer than 131072 characters "
                            "(a quote that is never closed?)")


def test_a_file_that_changes_under_the_import_still_stops_it(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "email,notes\na@example.org,ok\nb@example.org,ok\n")
    rows = read_prospects(path)
    path.write_text(f"email,notes\na@example.org,ok\nb@example.org,{'x' * 200_000}\n")
    assert isinstance(next(rows), Prospect)
    with pytest.raises(EnrollError) as caught:
        next(rows)
    assert caught.value.line == 3


def test_the_fast_path_for_plain_addresses_agrees_with_email_validator(tmp_path: Path) -> None:
    """Plain ASCII addresses skip part of email-validator (their domain is checked once);
    the verdict and the normalized address must stay exactly the library's."""
    import itertools

    from email_validator import EmailNotValidError, validate_email

    locals_ = ["ann", "Ann.Lee", "a+tag", "x_y-z", "postmaster", "Info", "a..b", ".a", "a.",
               "o'neil", "a" * 64, "a" * 65, "ünï", '"quoted"', "a b", "#!$%&*+/=?^`{|}~"]
    domains = ["example.com", "EXAMPLE.org", "sub.example.net", "localhost", "example",
               "ex_ample.com", "-bad.com", "a." + "b" * 63 + ".com", "x" * 64 + ".com",
               "münchen.de", "xn--mnchen-3ya.de", "example.test", "1.2.3.4", "[1.2.3.4]",
               "exa--mple.com", ("d" * 60 + ".") * 4 + "com"]
    addresses = [f"{lp}@{d}" for lp, d in itertools.product(locals_, domains)]
    csv_path = tmp_path / "p.csv"
    lines = ["email"] + [f'"{a}"' if '"' not in a else '"' + a.replace('"', '""') + '"'
                         for a in addresses]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = {r.line: r for r in read_prospects(csv_path)}
    for line, address in enumerate(addresses, start=2):
        try:
            valid = validate_email(address, check_deliverability=False)
            local, _, domain = valid.normalized.rpartition("@")
            expected: str | None = f"{local}@{domain.lower()}"
        except EmailNotValidError:
            expected = None
        got = results[line]
        if expected is None:
            assert isinstance(got, Rejected), (address, got)
        elif isinstance(got, Rejected):
            assert got.reason.startswith("duplicate"), (address, got)
        else:
            assert got.email == expected, address

"""The one reader (issue #20): what landing accepts, the parse reads; a broken row costs that row only."""

import codecs
import gzip
import io
import random
from datetime import date

import pandas as pd
import pytest
from upath import UPath

from lead_assets.core import schema

from lead_assets.core.inbox import reader
from lead_assets.core.inbox.parsing import LeadFileError, detect_format, parse_lead_file, parse_outcome_file, sniff_file
from lead_assets_tests.factories import raw_leads

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)


def _rows(text: str, delimiter: str = ","):
    """Every row after the header as (row, fields) or (row, rule)."""
    out = []
    for chunk in reader.read_chunks(io.StringIO(text, newline=""), delimiter, chunk_rows=3):
        out += [(r, f) for r, f in zip(chunk.rows, chunk.fields)] + [(b.row, b.rule) for b in chunk.broken]
    return sorted(out, key=lambda t: t[0])


def _lines(n: int = 6, header: str = "a,b,c") -> list[str]:
    return [header] + [f"{i},x{i},{i * 10}" for i in range(1, n + 1)]


def _file(tmp_path, lines, name="f.csv", encoding="utf-8", newline="\n") -> UPath:
    path = tmp_path / name
    path.write_bytes(newline.join(lines).encode(encoding) + newline.encode(encoding))
    return UPath(path)


def _parse(path, name="f.csv"):
    return parse_lead_file(path, name=name, sha256="sha", first_day=FIRST, today=TODAY)


def _lead_lines(n=6, seed=0):
    return raw_leads(n, seed=seed).to_csv(index=False).splitlines()


# ---------------------------------------------------------------------------------- quotes
def test_a_stray_opening_quote_costs_its_row_only():
    lines = _lines()
    lines[2] = '2,"Mumbai,20'  # opens a quote that never closes
    assert _rows("\n".join(lines) + "\n") == [
        (2, ["1", "x1", "10"]), (3, "unclosed_quote"), (4, ["3", "x3", "30"]), (5, ["4", "x4", "40"]),
        (6, ["5", "x5", "50"]), (7, ["6", "x6", "60"])]


def test_two_stray_quotes_in_one_column_rows_apart_do_not_swallow_the_rows_between():
    lines = _lines()
    lines[2] = '2,"x2,20'
    lines[5] = '5,x5",50'  # the "closing" quote of another row: the csv module would make rows 3-6 one field
    rows = dict(_rows("\n".join(lines) + "\n"))
    assert rows[3] == "unclosed_quote"
    assert rows[4] == ["3", "x3", "30"] and rows[5] == ["4", "x4", "40"] and rows[6] == ["5", 'x5"', "50"]
    assert len(rows) == 6


def test_a_quoted_field_may_hold_delimiters_quotes_and_line_breaks():
    text = 'a,b,c\n1,"new, delhi\nnorth",10\n2,"say ""hi""",20\r\n3,"",30\n'
    assert _rows(text) == [(2, ["1", "new, delhi\nnorth", "10"]), (3, ["2", 'say "hi"', "20"]),
                           (4, ["3", "", "30"])]


def test_text_after_a_closing_quote_and_a_quote_open_at_the_end_are_broken_rows():
    assert _rows('a,b,c\n1,"x"y,10\n2,x,20\n3,x,"30\n') == [(2, "malformed_csv"), (3, ["2", "x", "20"]),
                                                           (4, "unclosed_quote")]


def test_blank_lines_are_not_rows_and_any_line_end_ends_a_row():
    assert _rows("a,b,c\r\n\r\n   \r\n1,x,10\r2,y,20\n\n3,z,30") == [
        (2, ["1", "x", "10"]), (3, ["2", "y", "20"]), (4, ["3", "z", "30"])]


def test_a_row_over_the_limit_is_skipped_without_holding_it(monkeypatch):
    monkeypatch.setattr(reader, "MAX_ROW_CHARS", 1000)
    lines = _lines()
    lines[2] = "2," + "y" * 5000 + ",20"
    lines[4] = '4,"' + "z" * 5000 + '",40'  # quoted: runs past the limit too
    rows = dict(_rows("\n".join(lines) + "\n"))
    assert rows[3] == "row_too_large" and rows[5] == "row_too_large"
    assert rows[4] == ["3", "x3", "30"] and rows[6] == ["5", "x5", "50"] and len(rows) == 6


def test_row_numbers_hold_across_chunks_and_blocks(monkeypatch):
    monkeypatch.setattr(reader, "BLOCK_CHARS", 64)  # many blocks, some cut mid-line, quotes here and there
    lines = _lines(40)
    for i in (5, 17, 30):
        lines[i] = f'{i},"oops,{i}'
    lines[22] = '22,"quoted, fine",220'
    rows = _rows("\n".join(lines) + "\n")
    assert [r for r, _ in rows] == list(range(2, 42))
    assert [r for r, f in rows if f == "unclosed_quote"] == [6, 18, 31]
    assert dict(rows)[23] == ["22", "quoted, fine", "220"]


# ------------------------------------------------------------------ sniff and parse agree
def test_landing_and_the_parse_read_a_stray_quote_the_same_way(tmp_path):
    """The case of issue #20: accepted at landing, then `EOF inside string` in raw_leads for ever."""
    lines = _lead_lines(8)
    lines[3] = lines[3].replace(",", ',"', 1)  # a quote opened in city_mapped, never closed
    path = _file(tmp_path, lines)
    sniff = sniff_file(path, FIRST, TODAY)
    parsed = _parse(path)
    assert sniff.rows == parsed.rows == 8 and sniff.broken_rows == 1
    assert len(parsed.accepted) == 7 and parsed.rejected[["source_row", "rule"]].values.tolist() == [
        [4, "unclosed_quote"]]
    assert pd.isna(parsed.rejected.loc[0, "day"]) and "line 4" in parsed.rejected.loc[0, "detail"]
    assert sum(sniff.day_counts.values()) == len(parsed.accepted) and sniff.bad_date_rows == [4]


def test_an_outcomes_file_with_a_stray_quote_keeps_its_other_rows(tmp_path):
    path = _file(tmp_path, ["lead_id,app_complete_flag,outcome_at", "a,1,2021-07-06", '"b,0,', "c,0,2021-07-07"])
    parsed = parse_outcome_file(path, name="o.csv", sha256="s", today=TODAY)
    assert parsed.accepted["lead_id"].tolist() == ["a", "c"]
    assert parsed.rejected[["source_row", "rule"]].values.tolist() == [[3, "unclosed_quote"]]


def test_a_nul_byte_rejects_its_row_and_binary_headers_are_not_csv(tmp_path):
    lines = _lead_lines(4)
    lines[2] = lines[2].replace(",", ",\x00", 1)
    parsed = _parse(_file(tmp_path, lines))
    assert len(parsed.accepted) == 3
    assert parsed.rejected[["source_row", "rule", "column"]].values.tolist() == [[3, "binary_data", "city_mapped"]]
    png = tmp_path / "image.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    with pytest.raises(LeadFileError, match="not_a_csv: the file holds binary data"):
        detect_format(UPath(png))


@pytest.mark.parametrize(("magic", "what"), [(b"PK\x03\x04", "xlsx"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls"),
                                             (b"%PDF-1.7", "PDF"), (b"PAR1", "Parquet")])
def test_known_binary_formats_are_named(tmp_path, magic, what):
    path = tmp_path / "export.csv"
    path.write_bytes(magic + b"\x00" * 100)
    with pytest.raises(LeadFileError) as error:
        detect_format(UPath(path))
    assert error.value.rule == "not_a_csv" and what in error.value.detail


def test_sniff_and_parse_agree_on_hostile_files(tmp_path):
    """By construction: whatever the damage, both count the same rows, the parse never fails, and
    every row is accepted or rejected exactly once."""
    rng = random.Random(20)
    base = raw_leads(60, seed=4).to_csv(index=False)
    damage = ['"', '"', '\n', '\r', '\x00', ',', '""', '\r\n', 'é', '\ufeff']
    for trial in range(40):
        text = list(base)
        header_end = base.index("\n") + 1
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(header_end, len(text))
            text.insert(at, rng.choice(damage))
        path = tmp_path / f"hostile_{trial}.csv"
        path.write_text("".join(text), encoding="utf-8")
        try:
            sniff = sniff_file(UPath(path), FIRST, TODAY)
        except LeadFileError as error:
            assert error.rule in ("no_valid_dates",), error
            continue
        parsed = _parse(UPath(path), name=path.name)
        assert sniff.rows == parsed.rows == len(parsed.accepted) + len(parsed.rejected), trial
        rows = sorted([*parsed.accepted["source_row"], *parsed.rejected["source_row"]])
        assert rows == list(range(2, parsed.rows + 2)), trial
        accepted_days = parsed.accepted[schema.CREATED_DATE].dt.strftime("%Y-%m-%d").value_counts().to_dict()
        dated = parsed.rejected["day"].dropna().value_counts().to_dict()
        together = {d: accepted_days.get(d, 0) + dated.get(d, 0) for d in {*accepted_days, *dated}}
        assert together == sniff.day_counts, trial


# ------------------------------------------------------------------------------- encodings
def _export(tmp_path, name, encoding, sep=",", bom=b""):
    frame = raw_leads(5, seed=2)
    frame.loc[1, schema.CITY] = "bhubaneswar é"
    path = tmp_path / name
    path.write_bytes(bom + frame.to_csv(index=False, sep=sep).encode(encoding))
    return UPath(path)


@pytest.mark.parametrize(("encoding", "bom", "sep", "label"), [
    ("utf-8", codecs.BOM_UTF8, ",", "utf-8 with BOM"),
    ("utf-8", b"", ";", "utf-8"),
    ("utf-16-le", codecs.BOM_UTF16_LE, "\t", "utf-16 with BOM"),  # a spreadsheet's "Unicode text"
    ("utf-16-be", codecs.BOM_UTF16_BE, "\t", "utf-16 with BOM"),
    ("utf-16-le", b"", "\t", "utf-16-le"),
    ("cp1252", b"", ",", "cp1252 (Windows Western / Latin-1)"),
])
def test_exports_in_the_encodings_spreadsheets_and_crms_write_are_read(tmp_path, encoding, bom, sep, label):
    path = _export(tmp_path, "export.csv", encoding, sep, bom)
    fmt = detect_format(path)
    assert fmt.encoding.label == label and fmt.delimiter == sep
    assert fmt.columns[0] == schema.CREATED_DATE  # no byte-order mark left in the first column name
    parsed = _parse(path)
    assert len(parsed.accepted) == 5 and parsed.rejected.empty
    assert "bhubaneswar é" in parsed.accepted[schema.CITY].tolist()
    assert sniff_file(path, FIRST, TODAY).rows == 5


def test_cp1252_reads_the_euro_sign_and_curly_quotes(tmp_path):
    frame = raw_leads(2)
    frame.loc[0, schema.CITY] = "€ “pune”"
    path = tmp_path / "win.csv"
    path.write_bytes(frame.to_csv(index=False).encode("cp1252"))
    assert _parse(UPath(path)).accepted[schema.CITY].tolist()[0] == "€ “pune”"


def test_a_bom_file_with_one_latin1_byte_rejects_that_row_only(tmp_path):
    """Issue #20: quarantined as 'required column(s) missing: created_date' (the BOM survived)."""
    lines = _lead_lines(4)
    data = codecs.BOM_UTF8 + ("\n".join(lines) + "\n").encode("utf-8")
    body = data.split(b"\n")
    body[2] = body[2].replace(b",", b",caf\xe9", 1)  # row 3's city gets one Latin-1 byte
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\n".join(body))
    fmt = detect_format(UPath(path))
    assert fmt.encoding.label == "utf-8 with BOM" and fmt.columns[0] == schema.CREATED_DATE
    parsed = _parse(UPath(path))
    assert len(parsed.accepted) == 3
    (row,) = parsed.rejected.to_dict(orient="records")
    assert (row["source_row"], row["rule"], row["column"]) == (3, "undecodable_bytes", schema.CITY)
    assert "\\xe9" in row["detail"] and "\\xe9" in row["raw"]


def test_a_mostly_utf8_file_with_a_broken_byte_is_utf8_with_one_rejected_row(tmp_path):
    lines = _lead_lines(4)
    lines[1] = lines[1].replace(",", ",münchen", 1)
    body = ("\n".join(lines) + "\n").encode("utf-8").split(b"\n")
    body[3] = body[3].replace(b",", b",\xff", 1)
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join(body))
    parsed = _parse(UPath(path))
    assert parsed.accepted[schema.CITY].tolist()[0].startswith("münchen")
    assert parsed.rejected[["source_row", "rule"]].values.tolist() == [[4, "undecodable_bytes"]]


def test_an_undecodable_header_names_the_real_problem(tmp_path):
    header = ",".join(raw_leads(1).columns).encode()
    path = tmp_path / "h.csv"
    path.write_bytes(codecs.BOM_UTF8 + header.replace(b"city", b"c\xe9ity", 1) + b"\n2021-07-05,a,b\n")
    with pytest.raises(LeadFileError) as error:
        detect_format(UPath(path))
    assert error.value.rule == "undecodable_bytes" and "header" in error.value.detail
    assert "\\xe9" in error.value.detail


def test_a_gzip_utf16_export_is_read(tmp_path):
    frame = raw_leads(4, seed=8)
    path = tmp_path / "e.csv.gz"
    path.write_bytes(gzip.compress(codecs.BOM_UTF16_LE + frame.to_csv(index=False, sep="\t").encode("utf-16-le")))
    assert len(_parse(UPath(path)).accepted) == 4

"""Reading lead files: formats, row rules, row numbers and stable lead ids."""

import gzip
import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from lead_assets.core import schema
from lead_assets.core.inbox.parsing import LeadFileError, parse_lead_file, sniff_file
from lead_assets_tests.factories import raw_leads

FIRST, TODAY = date(2021, 7, 1), date(2026, 11, 24)


def _parse(path, name="f.csv"):
    return parse_lead_file(UPath(path), name=name, sha256="sha", first_day=FIRST, today=TODAY)


def _write(tmp_path, frame, name="f.csv", **kwargs):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


def test_good_file_is_accepted_whole(tmp_path):
    path = _write(tmp_path, raw_leads(20))
    parsed = _parse(path)
    assert (len(parsed.accepted), len(parsed.rejected), parsed.rows) == (20, 0, 20)
    assert parsed.accepted["source_row"].tolist() == list(range(2, 22))
    assert parsed.accepted[schema.CREATED_DATE].dtype.kind == "M"


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_delimiters_are_detected(tmp_path, sep):
    parsed = _parse(_write(tmp_path, raw_leads(7), sep=sep))
    assert len(parsed.accepted) == 7


def test_a_semicolon_export_with_decimal_commas_reads_the_same_leads_as_the_comma_file(tmp_path):
    """Excel in a comma-decimal locale writes `;` between fields and `1,0` for one (seen live: the real
    file saved that way had 2,998 of its 3,000 rows rejected as not_a_number)."""
    frame = raw_leads(30, labelled=True)
    frame["total_leads_droppped"] = frame["total_leads_droppped"].astype(float)
    comma = _parse(_write(tmp_path, frame, "comma.csv"), "comma.csv")
    semicolon = _parse(_write(tmp_path, frame, "eu.csv", sep=";", decimal=",", lineterminator="\r\n"), "eu.csv")
    assert "1,0" in (tmp_path / "eu.csv").read_text() or "2,0" in (tmp_path / "eu.csv").read_text()
    assert (len(semicolon.accepted), len(semicolon.rejected)) == (30, 0)
    columns = [schema.LEAD_ID, *schema.numeric_columns(), schema.LABEL]
    pd.testing.assert_frame_equal(semicolon.accepted[columns], comma.accepted[columns])


def test_a_decimal_comma_is_a_number_only_in_a_semicolon_file_and_never_beside_a_point(tmp_path):
    frame = raw_leads(3).astype({"total_leads_droppped": object})
    frame["total_leads_droppped"] = ["1,5", "1,000.5", "2"]
    eu = _parse(_write(tmp_path, frame, "eu.csv", sep=";"), "eu.csv")
    assert eu.accepted["total_leads_droppped"].tolist() == [1.5, 2.0]
    assert eu.rejected[["source_row", "rule"]].values.tolist() == [[3, "not_a_number"]]
    comma = _parse(_write(tmp_path, frame, "comma.csv"), "comma.csv")
    assert sorted(comma.rejected["source_row"]) == [2, 3] and set(comma.rejected["rule"]) == {"not_a_number"}


@pytest.mark.parametrize("spell", [str.upper, lambda c: c.replace("_", " ").title()])
def test_a_relabelled_header_is_read_as_the_schema_spells_it(tmp_path, spell):
    """`CREATED_DATE` or `Created Date` is created_date (seen live: the real file with its header in
    capitals was quarantined as missing every required column)."""
    frame = raw_leads(5, labelled=True)
    plain = _parse(_write(tmp_path, frame, "plain.csv"), "plain.csv")
    relabelled = _parse(_write(tmp_path, frame.rename(columns=spell), "spelled.csv"), "spelled.csv")
    columns = [schema.LEAD_ID, *schema.required_columns(), schema.LABEL]
    pd.testing.assert_frame_equal(relabelled.accepted[columns], plain.accepted[columns])


def test_a_relabelled_name_beside_the_schema_name_stays_unknown(tmp_path):
    frame = raw_leads(2).assign(CITY_MAPPED="elsewhere")
    parsed = _parse(_write(tmp_path, frame))
    assert set(parsed.accepted[schema.CITY]) <= set(frame[schema.CITY].str.lower())


@pytest.mark.parametrize("encoding", ["utf-8-sig", "latin-1"])
def test_bom_and_latin1(tmp_path, encoding):
    frame = raw_leads(3)
    frame.loc[0, schema.CITY] = "bhubaneswar é"
    path = _write(tmp_path, frame, encoding=encoding)
    parsed = _parse(path)
    assert len(parsed.accepted) == 3
    assert "bhubaneswar é" in parsed.accepted[schema.CITY].tolist()


def test_crlf_and_quoted_fields_with_commas_and_newlines(tmp_path):
    frame = raw_leads(4)
    frame.loc[1, schema.CITY] = "new, delhi\nnorth"
    path = _write(tmp_path, frame, lineterminator="\r\n")
    parsed = _parse(path)
    assert len(parsed.accepted) == 4
    assert parsed.accepted.loc[1, schema.CITY] == "new, delhi\nnorth"
    assert parsed.accepted["source_row"].tolist() == [2, 3, 4, 5]


def test_gzip(tmp_path):
    path = tmp_path / "f.csv.gz"
    with gzip.open(path, "wt") as handle:
        raw_leads(6).to_csv(handle, index=False)
    assert len(_parse(path).accepted) == 6
    assert sniff_file(UPath(path), FIRST, TODAY).rows == 6


def test_leading_unnamed_index_column_is_tolerated(tmp_path):
    path = tmp_path / "f.csv"
    raw_leads(3).to_csv(path)  # pandas writes the unnamed index column
    assert len(_parse(path).accepted) == 3


def test_extra_columns_are_ignored_and_reported(tmp_path):
    path = _write(tmp_path, raw_leads(3).assign(utm_campaign="x"))
    assert sniff_file(UPath(path), FIRST, TODAY).unknown_columns == ["utm_campaign"]
    assert "utm_campaign" not in _parse(path).accepted.columns


def test_row_rules_reject_with_file_row_and_rule(tmp_path):
    frame = raw_leads(8)
    frame.loc[0, schema.CREATED_DATE] = "not a date"
    frame.loc[1, schema.CREATED_DATE] = "2020-01-01 00:00:00"
    frame.loc[2, schema.CREATED_DATE] = "2099-01-01 00:00:00"
    frame[schema.LEADS_DROPPED] = frame[schema.LEADS_DROPPED].astype(object)
    frame.loc[3, schema.LEADS_DROPPED] = "three"
    frame.loc[4, schema.LEADS_DROPPED] = -1
    frame.loc[5, "syllabus"] = 50_000
    frame.loc[6, schema.REFERRED] = 2
    frame.loc[7, schema.LABEL] = 5
    parsed = _parse(_write(tmp_path, frame), name="bad.csv")
    assert parsed.accepted.empty
    assert parsed.rejected["rule"].tolist() == [
        "unparseable_date", "date_before_start", "date_in_future", "not_a_number",
        "negative_count", "absurd_count", "not_binary", "label_not_binary"]
    assert parsed.rejected["source_row"].tolist() == list(range(2, 10))
    assert set(parsed.rejected["source_file"]) == {"bad.csv"}
    assert parsed.rejected["detail"].str.len().min() > 10
    assert '"not a date"' in parsed.rejected.loc[0, "raw"]


def test_duplicate_rows_in_a_file(tmp_path):
    frame = raw_leads(3)
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    parsed = _parse(_write(tmp_path, frame))
    assert len(parsed.accepted) == 3
    assert parsed.rejected[["source_row", "rule", "detail"]].values.tolist() == [
        [5, "duplicate_in_file", "same lead as row 3"]]


def test_lead_id_is_stable_across_files_and_label(tmp_path):
    frame = raw_leads(5)
    unlabelled = frame.drop(columns=[schema.LABEL])
    reordered = frame.iloc[::-1]
    with_blank_bad_row = pd.concat([frame, frame.iloc[[0]].assign(created_date="garbage")])
    ids = {}
    for name, f in {"a": frame, "b": unlabelled, "c": reordered, "d": with_blank_bad_row}.items():
        ids[name] = set(_parse(_write(tmp_path, f, name=f"{name}.csv")).accepted[schema.LEAD_ID])
    assert ids["a"] == ids["b"] == ids["c"] == ids["d"]
    assert len(ids["a"]) == 5


def test_given_lead_id_column_wins(tmp_path):
    path = _write(tmp_path, raw_leads(3).assign(lead_id=["a1", "a2", "a3"]))
    assert _parse(path).accepted[schema.LEAD_ID].tolist() == ["a1", "a2", "a3"]


@pytest.mark.parametrize("content, rule", [
    (b"", "empty_file"),
    (b"\x00\x01\x02garbage\xff" * 100, "not_a_csv"),
    (b"created_date,city_mapped\n2021-07-05 10:00:00,pune\n", "missing_columns"),
])
def test_whole_file_problems(tmp_path, content, rule):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(LeadFileError) as error:
        sniff_file(UPath(path), FIRST, TODAY)
    assert error.value.rule == rule
    assert "f.csv" in str(error.value)


def test_header_only_and_no_valid_dates(tmp_path):
    header_only = _write(tmp_path, raw_leads(0), name="h.csv")
    with pytest.raises(LeadFileError, match="no_rows"):
        sniff_file(UPath(header_only), FIRST, TODAY)
    old = _write(tmp_path, raw_leads(3, day="2019-01-01"), name="old.csv")
    with pytest.raises(LeadFileError, match="no_valid_dates"):
        sniff_file(UPath(old), FIRST, TODAY)


def test_sniff_counts_days_and_bad_dates(tmp_path):
    frame = pd.concat([raw_leads(3, day="2021-07-05"), raw_leads(2, day="2021-07-09")], ignore_index=True)
    frame.loc[4, schema.CREATED_DATE] = "yesterday"
    sniff = sniff_file(UPath(_write(tmp_path, frame)), FIRST, TODAY)
    assert sniff.day_counts == {"2021-07-05": 3, "2021-07-09": 1}
    assert sniff.bad_date_rows == [6]
    assert sniff.rows == 5


# ---------------------------------------------------------------- every row accounted for (issue #11)
def test_a_row_with_extra_fields_is_a_rejected_row_not_a_failed_parse(tmp_path):
    frame = raw_leads(4)
    lines = frame.to_csv(index=False).splitlines()
    lines[2] += ",surplus,fields"
    path = tmp_path / "f.csv"
    path.write_text("\n".join(lines) + "\n")
    parsed = _parse(path)
    assert len(parsed.accepted) == 3 and parsed.rows == 4
    assert parsed.rejected[["source_row", "rule"]].values.tolist() == [[3, "wrong_field_count"]]
    assert parsed.rejected.loc[0, "day"] == "2021-07-05"


def test_trailing_empty_fields_are_tolerated(tmp_path):
    lines = raw_leads(2).to_csv(index=False).splitlines()
    path = tmp_path / "f.csv"
    path.write_text("\n".join([lines[0]] + [line + ",," for line in lines[1:]]) + "\n")
    assert len(_parse(path).accepted) == 2


SPELLINGS = {
    "2021-07-20 10:00:00": "2021-07-20", "20210720": "2021-07-20", "2021-7-21": "2021-07-21",
    "2021-07-10T10": "2021-07-10", "2021-07-10T10:30": "2021-07-10", "2021-07-10 10:30:15.250": "2021-07-10",
    "2021-07-11T01:00:00+05:30": "2021-07-10", "2021-07-11T01:00:00Z": "2021-07-11", " 2021-07-12 ": "2021-07-12",
}


def test_sniff_and_parse_agree_on_every_date_spelling(tmp_path):
    """One parser: a mixed column parses, and each row's day is the same in the sniff and the parse."""
    frame = raw_leads(len(SPELLINGS) + 2)
    frame[schema.CREATED_DATE] = [*SPELLINGS, "2021-02-30", "20211340"]
    path = _write(tmp_path, frame)
    sniff = sniff_file(UPath(path), FIRST, TODAY)
    parsed = _parse(path)
    days = parsed.accepted[schema.CREATED_DATE].dt.strftime("%Y-%m-%d")
    assert days.tolist() == list(SPELLINGS.values())
    assert sniff.day_counts == days.value_counts().to_dict()
    assert parsed.rejected["rule"].tolist() == ["unparseable_date"] * 2
    assert sniff.bad_date_rows == parsed.rejected["source_row"].tolist()


def test_rows_outside_the_partitions_are_rejected_without_a_day(tmp_path):
    """date_before_start / date_in_future rows belong to no partition: kept per file, not dropped."""
    frame = raw_leads(3)
    frame.loc[0, schema.CREATED_DATE] = "2020-01-01 00:00:00"
    frame.loc[1, schema.CREATED_DATE] = "2099-01-01 00:00:00"
    rejected = _parse(_write(tmp_path, frame)).rejected
    assert rejected["rule"].tolist() == ["date_before_start", "date_in_future"]
    assert rejected["day"].isna().all()


def test_a_rejected_row_does_not_reject_its_corrected_copy(tmp_path):
    frame = raw_leads(3).assign(lead_id=["a", "b", "c"])
    corrected = frame.iloc[[1]].copy()
    frame.loc[1, schema.REFERRED] = 7  # the CRM sent it wrong, then again right
    parsed = _parse(_write(tmp_path, pd.concat([frame, corrected], ignore_index=True)))
    assert sorted(parsed.accepted[schema.LEAD_ID]) == ["a", "b", "c"]
    assert parsed.rejected[["source_row", "rule"]].values.tolist() == [[3, "not_binary"]]
    assert parsed.accepted.set_index(schema.LEAD_ID).loc["b", "source_row"] == 5


def test_derived_id_ignores_an_optional_column_left_out(tmp_path):
    frame = raw_leads(4)
    frame["syllabus"] = np.nan
    without = frame.drop(columns=["syllabus", "emi_partner_click"])
    with_zero = frame.assign(emi_partner_click=0.0)
    ids = [set(_parse(_write(tmp_path, f, name=f"{i}.csv")).accepted[schema.LEAD_ID])
           for i, f in enumerate((frame, without, with_zero))]
    assert ids[0] == ids[1] == ids[2]


def test_a_duplicate_after_a_rejected_row_names_the_first_valid_copy(tmp_path):
    frame = raw_leads(3)
    frame.loc[0, schema.CREATED_DATE] = "garbage"
    parsed = _parse(_write(tmp_path, pd.concat([frame, frame.iloc[[2]]], ignore_index=True)))
    assert parsed.rejected[["source_row", "rule", "detail"]].values.tolist()[1] == [
        5, "duplicate_in_file", "same lead as row 4"]


def test_lead_ids_equal_the_frame_hash_they_are_defined_as():
    """The column-by-column hash must give exactly the ids of ``hash_pandas_object`` over the fields:
    every lead already landed keeps its id."""
    import numpy as np

    from lead_assets.core import schema
    from lead_assets.core.inbox.parsing import _LEAD_ID_HASH_KEY, lead_ids

    rng = np.random.default_rng(5)
    n = 500
    typed = pd.DataFrame({schema.CREATED_DATE: pd.Timestamp("2021-07-01") + pd.to_timedelta(
        rng.integers(0, 10**7, n), unit="s")})
    typed[schema.CITY] = pd.Series(rng.choice(["mumbai", "pune", None], n), dtype=object)
    for column in schema.LEVEL_COLUMNS:
        typed[column] = pd.Series(rng.choice(["Level0", "Level12", None], n), dtype=object)
    for column in schema.numeric_columns():
        typed[column] = rng.choice([np.nan, 0.0, 1.0, 2.0, 7.5, -0.0], n)
    optional = set(schema.reference().interaction_columns)
    parts = pd.DataFrame({schema.CREATED_DATE: typed[schema.CREATED_DATE].to_numpy(dtype="datetime64[ns]").view("int64")})
    for column in (schema.CITY, *schema.LEVEL_COLUMNS):
        parts[column] = typed[column].fillna("").astype(str)
    for column in schema.numeric_columns():
        value = typed[column].astype("float64")
        parts[column] = (value.mask(value == 0.0) if column in optional else value).fillna(-1.0)
    reference = pd.util.hash_pandas_object(parts, index=False, hash_key=_LEAD_ID_HASH_KEY).to_numpy()
    assert lead_ids(typed).tolist() == np.char.mod("%016x", reference.astype(np.uint64)).tolist()
    assert lead_ids(typed.iloc[:0]).tolist() == []


# ------------------------------------------------------------------ one lead-id rule (issue #20)
LEAD_IDS = [("LEAD 17", True), ("ü-42", True), ("crm:77/a#b@x.y", True), ("李-9", True),
            ("a\tb", False), ("x" * 129, False), ("a\u200bb", False), ("\x01x", False)]


@pytest.mark.parametrize(("lead_id", "ok"), LEAD_IDS)
def test_one_lead_id_rule_for_lead_files_outcomes_files_and_online_requests(tmp_path, lead_id, ok):
    """Issue #20: lead files accepted any id and outcomes files rejected the same ids, so such a lead
    could never get an outcome. Now one rule decides, and all three paths follow it."""
    from lead_assets.core.scoring import online
    from lead_assets.core.inbox.parsing import parse_outcome_file

    leads = raw_leads(2).assign(lead_id=[lead_id, "other"])
    file_rules = _parse(_write(tmp_path, leads, name="leads.csv")).rejected["rule"].tolist()
    outcomes_path = tmp_path / "o.csv"
    pd.DataFrame({"lead_id": [lead_id, "other"], "app_complete_flag": [1, 0]}).to_csv(outcomes_path, index=False)
    outcome_rules = parse_outcome_file(UPath(outcomes_path), name="o.csv", sha256="s", today=TODAY).rejected[
        "rule"].tolist()
    records = pd.DataFrame(json.loads(leads.drop(columns=schema.LABEL).to_json(orient="records")))
    try:
        online.type_leads(records)
        online_rules = []
    except online.InvalidLeads as error:
        online_rules = [p["rule"] for p in error.problems]
    expected = [] if ok else ["bad_lead_id"]
    assert file_rules == outcome_rules == online_rules == expected


def test_a_lead_id_typed_two_ways_is_one_id(tmp_path):
    composed, decomposed = "j\u00fcrgen-1", "ju\u0308rgen-1"  # the same ü, as NFC and as NFD
    parsed = _parse(_write(tmp_path, raw_leads(1).assign(lead_id=[decomposed])))
    assert parsed.accepted[schema.LEAD_ID].tolist() == [composed]

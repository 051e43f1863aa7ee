"""Great Expectations rules per asset: every expectation fails when it should and passes otherwise.

Frames come from the real ingest/clean/features code on factory leads (two days), so the passing
case is what production writes; each failing case breaks one thing. Great Expectations is
imported once for the session (the context and suites are cached by ``quality``).
"""

import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from lead_assets.core import schema

from lead_assets.core.leads import quality
from lead_assets.core.leads.cleaning import clean_leads
from lead_assets.core.leads.features import build_features
from lead_assets.core.inbox.parsing import MAX_COUNT, parse_lead_file
from lead_assets.core.schema import CITY, CITY_TIER, CREATED_DATE, LABEL, LEAD_ID, PLATFORM, REFERRED, SOURCE_ROW
from lead_assets_tests.factories import raw_leads as make_raw

DAY1, DAY2 = "2021-07-05", "2021-07-06"
DAYS = [DAY1, DAY2]
SOURCES = ["source_file", "source_sha256", "source_row"]
INTERACTION = schema.reference().interaction_columns[0]


@pytest.fixture(scope="module")
def raw_typed(tmp_path_factory) -> pd.DataFrame:
    """6 leads on DAY1 and 4 on DAY2, typed by the real ingest code."""
    path = tmp_path_factory.mktemp("quality") / "leads.csv"
    pd.concat([make_raw(6, DAY1), make_raw(4, DAY2, seed=1)]).to_csv(path, index=False)
    parsed = parse_lead_file(UPath(path), name="leads.csv", sha256="0" * 64,
                             first_day=date(2021, 7, 1), today=date(2026, 11, 24))
    assert len(parsed.accepted) == 10 and not len(parsed.rejected)
    return parsed.accepted


@pytest.fixture
def raw(raw_typed) -> pd.DataFrame:
    return raw_typed.copy()


@pytest.fixture
def cleaned(raw_typed) -> pd.DataFrame:
    return clean_leads(raw_typed.drop(columns=SOURCES))


@pytest.fixture
def features(cleaned) -> pd.DataFrame:
    return build_features(cleaned)


def scored_from(features: pd.DataFrame) -> pd.DataFrame:
    """A hand-made scored_leads frame with the columns scoring writes."""
    probability = np.linspace(0.05, 0.95, len(features))
    score = np.round(probability * 100, 1)
    bucket = np.select([probability >= 0.8, probability >= 0.6, probability >= 0.3], ["hot", "warm", "cold"], "junk")
    return pd.DataFrame({LEAD_ID: features[LEAD_ID], CREATED_DATE: features[CREATED_DATE],
                         "probability": probability, "score": score, "bucket": bucket,
                         "reasons": "city_tier+; referred_lead-", "model_version": "7"})


def on_day(frame: pd.DataFrame, day: str) -> pd.Index:
    return frame.index[frame[CREATED_DATE].dt.strftime("%Y-%m-%d") == day]


def failed(result) -> set[str]:
    return {o.rule for o in result.failures}


# ---------------------------------------------------------------------------------------------
# Passing cases


def test_what_the_pipeline_writes_passes_every_expectation(raw, cleaned, features):
    results = [quality.check_raw_leads(raw, DAYS), quality.check_cleaned_leads(cleaned, raw, DAYS),
               quality.check_lead_features(features, DAYS), quality.check_scored_leads(scored_from(features), DAYS)]
    for result in results:
        assert result.passed, result.describe()
        assert all(result.for_day(d).passed for d in DAYS)
        assert not any(o.skipped for o in result.outcomes)
    assert results[0].rows_by_day == {DAY1: 6, DAY2: 4}
    assert results[0].stats["lead_id_duplicate_rate"] == 0.0
    assert results[0].evaluated == len(quality.raw_rules()) + 2  # + count values, count dtypes


def test_days_without_leads_pass(raw, cleaned, features):
    empty_raw, empty_cleaned = raw.iloc[0:0], cleaned.iloc[0:0]
    assert quality.check_raw_leads(empty_raw, [DAY1]).passed
    assert quality.check_cleaned_leads(empty_cleaned, empty_raw, [DAY1]).passed
    assert quality.check_lead_features(features.iloc[0:0], [DAY1]).passed
    result = quality.check_raw_leads(raw[raw[CREATED_DATE] < DAY2], DAYS)
    assert result.passed and result.for_day(DAY2).rows == 0


def test_optional_columns_may_be_absent_and_unknown_labels_may_be_empty(raw):
    raw[LABEL] = pd.array([pd.NA] * len(raw), dtype="Int8")
    raw[REFERRED] = np.nan  # cleaning fills it with 0
    assert quality.check_raw_leads(raw, DAYS).passed
    result = quality.check_raw_leads(raw.drop(columns=[LABEL, INTERACTION]), DAYS)
    assert result.passed
    assert {o.rule for o in result.outcomes if o.skipped} == {"label_is_0_or_1"}


# ---------------------------------------------------------------------------------------------
# raw_leads: one failing case per expectation


def _set(column, value, day=DAY2):
    def mutate(frame):
        frame.loc[on_day(frame, day)[0], column] = value
        return frame
    return mutate


def _as_strings(column):
    def mutate(frame):
        frame[column] = frame[column].astype(str)
        return frame
    return mutate


def _copy_lead_id(frame):
    frame.loc[on_day(frame, DAY2)[0], LEAD_ID] = frame.loc[on_day(frame, DAY1)[0], LEAD_ID]
    return frame


RAW_CASES = {
    "required_columns_present": (lambda f: f.drop(columns=[CITY]), {"required_columns_present"}),
    "lead_id_not_null": (_set(LEAD_ID, None), {"lead_id_not_null"}),
    "lead_id_unique": (_copy_lead_id, {"lead_id_unique"}),
    "created_date_parsed": (_set(CREATED_DATE, pd.NaT), {"created_date_parsed"}),
    "created_date_is_datetime": (_as_strings(CREATED_DATE),
                                 {"created_date_is_datetime", "created_date_in_partition_not_future"}),
    "created_date_in_partition": (_set(CREATED_DATE, pd.Timestamp("2021-07-07 00:00:01")),
                                  {"created_date_in_partition_not_future"}),
    "created_date_before_partition": (_set(CREATED_DATE, pd.Timestamp("2021-07-04 23:59:59")),
                                      {"created_date_in_partition_not_future"}),
    "count_negative": (_set(schema.LEADS_DROPPED, -1.0), {"counts_non_negative"}),
    "count_absurd": (_set(schema.LEADS_DROPPED, MAX_COUNT + 1), {"counts_non_negative"}),
    "interaction_negative": (_set(INTERACTION, -2.0), {"counts_non_negative"}),
    "counts_are_numbers": (_as_strings(schema.LEADS_DROPPED), {"counts_are_numbers"}),
    "referred_lead_is_0_or_1": (_set(REFERRED, 2.0), {"referred_lead_is_0_or_1"}),
    "label_is_0_or_1": (_set(LABEL, 3), {"label_is_0_or_1"}),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_raw_expectation_fails_on_its_defect(raw, case):
    mutate, rules = RAW_CASES[case]
    result = quality.check_raw_leads(mutate(raw), DAYS)
    assert failed(result) == rules, result.describe()
    assert not result.passed and not result.for_day(DAY2).passed


def test_created_date_in_the_future_fails_even_inside_the_day(raw):
    today = pd.Timestamp(DAY2)
    raw.loc[on_day(raw, DAY2)[0], CREATED_DATE] = today + pd.Timedelta(hours=13)
    raw.loc[on_day(raw, DAY2)[1:], CREATED_DATE] = today + pd.Timedelta(hours=11)
    assert quality.check_raw_leads(raw, DAYS, now=today + pd.Timedelta(hours=14)).passed
    late = quality.check_raw_leads(raw, DAYS, now=today + pd.Timedelta(hours=12))
    assert failed(late) == {"created_date_in_partition_not_future"}
    assert late.outcome("created_date_in_partition_not_future").unexpected_count == 1


def test_a_bad_row_fails_only_its_own_day_with_ids_and_counts(raw):
    bad = on_day(raw, DAY2)[1]
    raw.loc[bad, REFERRED] = 5.0
    result = quality.check_raw_leads(raw, DAYS)
    first, second = result.for_day(DAY1), result.for_day(DAY2)
    assert first.passed and not second.passed
    (row,) = second.failure_rows()
    assert (row["rule"], row["expectation"], row["column"]) == (
        "referred_lead_is_0_or_1", "expect_column_values_to_be_in_set", REFERRED)
    assert (row["unexpected_this_day"], row["unexpected_in_run"], row["unattributed_rows"]) == (1, 1, 0)
    (sample,) = second.sample_rows()
    assert sample[LEAD_ID] == raw.loc[bad, LEAD_ID] and sample[SOURCE_ROW] == raw.loc[bad, SOURCE_ROW]
    assert sample[REFERRED] == 5.0 and sample["day"] == DAY2
    assert "referred_lead_is_0_or_1 (1 rows)" in second.describe()


def test_a_bad_count_names_its_column_and_its_lead(raw):
    bad = on_day(raw, DAY1)[2]
    raw.loc[bad, INTERACTION] = -3.0
    result = quality.check_raw_leads(raw, DAYS)
    assert result.for_day(DAY2).passed
    (sample,) = result.for_day(DAY1).sample_rows()
    assert sample == {"rule": "counts_non_negative", "day": DAY1, LEAD_ID: raw.loc[bad, LEAD_ID],
                      SOURCE_ROW: raw.loc[bad, SOURCE_ROW], "column": INTERACTION, "value": -3.0}


def test_rows_outside_the_run_fail_every_day_and_are_shown_on_each(raw):
    moved = on_day(raw, DAY2)[0]
    raw.loc[moved, CREATED_DATE] = pd.Timestamp("2021-08-01 10:00")
    result = quality.check_raw_leads(raw, DAYS)
    outcome = result.outcome("created_date_in_partition_not_future")
    assert outcome.unattributed == 1 and not outcome.unexpected_by_day
    for day in DAYS:
        verdict = result.for_day(day)
        assert not verdict.passed
        assert [s[LEAD_ID] for s in verdict.sample_rows()] == [raw.loc[moved, LEAD_ID]]


def test_duplicate_rate_is_reported_per_run_and_day(raw):
    result = quality.check_raw_leads(_copy_lead_id(raw), DAYS)
    assert result.stats["lead_id_duplicate_rows"] == 2
    assert result.stats["lead_id_duplicate_rate"] == pytest.approx(2 / 10)
    assert result.for_day(DAY1).stats == {"lead_id_duplicate_rows": 1, "lead_id_duplicate_rate": pytest.approx(1 / 6)}
    assert result.for_day(DAY2).stats["lead_id_duplicate_rate"] == pytest.approx(1 / 4)


def test_a_missing_column_says_so(raw):
    result = quality.check_raw_leads(raw.drop(columns=[REFERRED]), DAYS)
    assert failed(result) == {"required_columns_present", "referred_lead_is_0_or_1"}
    assert REFERRED in result.outcome("required_columns_present").detail
    assert "missing" in result.outcome("referred_lead_is_0_or_1").detail


# ---------------------------------------------------------------------------------------------
# cleaned_leads


@pytest.mark.parametrize("column", list(schema.feature_columns()))
def test_cleaned_model_columns_must_not_be_null(raw, cleaned, column):
    cleaned[column] = cleaned[column].astype(object)
    cleaned.loc[on_day(cleaned, DAY1)[0], column] = None
    result = quality.check_cleaned_leads(cleaned, raw, DAYS)
    assert failed(result) == {f"{column}_not_null"}
    assert not result.for_day(DAY1).passed and result.for_day(DAY2).passed


def test_city_tier_must_be_1_2_or_3(raw, cleaned):
    cleaned.loc[on_day(cleaned, DAY2)[0], CITY_TIER] = 4
    assert failed(quality.check_cleaned_leads(cleaned, raw, DAYS)) == {"city_tier_in_1_2_3"}


@pytest.mark.parametrize("column", list(schema.LEVEL_COLUMNS))
def test_levels_must_be_significant_or_others(raw, cleaned, column):
    assert set(cleaned[column]) >= {schema.OTHERS}  # the factory's rare levels were mapped
    cleaned.loc[on_day(cleaned, DAY2)[0], column] = "Level999"
    result = quality.check_cleaned_leads(cleaned, raw, DAYS)
    assert failed(result) == {f"{column}_known_level"}
    assert result.for_day(DAY2).sample_rows()[0][column] == "Level999"


def test_a_significant_level_passes(raw, cleaned):
    cleaned[PLATFORM] = sorted(schema.reference().significant_levels[PLATFORM])[0]
    assert quality.check_cleaned_leads(cleaned, raw, DAYS).passed


def test_every_raw_row_must_reach_cleaned_leads_on_its_day(raw, cleaned):
    result = quality.check_cleaned_leads(cleaned.drop(index=on_day(cleaned, DAY2)[0]), raw, DAYS)
    assert failed(result) == {"rows_reconcile_with_raw_leads"}
    assert result.for_day(DAY1).passed and not result.for_day(DAY2).passed
    assert result.for_day(DAY2).stats == {"raw_rows": 4, "cleaned_rows": 3}
    (sample,) = result.for_day(DAY2).sample_rows()
    assert (sample["day"], sample["raw_rows"], sample["cleaned_rows"]) == (DAY2, 4, 3)


def test_extra_or_undated_cleaned_rows_do_not_reconcile(raw, cleaned):
    extra = pd.concat([cleaned, cleaned.iloc[[0]]], ignore_index=True)
    assert not quality.check_cleaned_leads(extra, raw, DAYS).for_day(DAY1).passed
    outside = cleaned.copy()
    outside.loc[0, CREATED_DATE] = pd.Timestamp("2021-09-01")
    result = quality.check_cleaned_leads(outside, raw, DAYS)
    assert not result.for_day(DAY1).passed and not result.for_day(DAY2).passed  # an unplaced row fails all


# ---------------------------------------------------------------------------------------------
# lead_features


def test_features_columns_must_be_the_model_input_in_order(features):
    columns = list(features.columns)
    swapped = columns[:]
    swapped[2], swapped[3] = swapped[3], swapped[2]
    cases = {
        "reordered": features[swapped],
        "extra column": features.assign(extra=1.0),
        "missing column": features.drop(columns=[schema.REFERRED]),
        "label not last": features[[*columns[:-2], columns[-1], columns[-2]]],
    }
    for name, frame in cases.items():
        result = quality.check_lead_features(frame, DAYS)
        assert "columns_are_model_input_in_order" in failed(result), name
        assert not result.for_day(DAY1).passed and not result.for_day(DAY2).passed, name
    detail = quality.check_lead_features(features[swapped], DAYS).outcome("columns_are_model_input_in_order").detail
    assert f"expected {columns[2]!r}, found {columns[3]!r}" in detail


@pytest.mark.parametrize(("column", "dtype"), [(CITY_TIER, "int64"), (schema.REFERRED, "float32"),
                                               (schema.CITY_NAME, "string"), ("platform_level", "category")])
def test_features_dtypes_must_be_the_model_dtypes(features, column, dtype):
    features[column] = features[column].astype(dtype)
    result = quality.check_lead_features(features, DAYS)
    assert failed(result) == {"feature_dtypes"}
    outcome = result.outcome("feature_dtypes")
    assert outcome.unexpected_count == 1 and column in outcome.detail
    (sample,) = result.for_day(DAY1).sample_rows()
    assert (sample["column"], sample["dtype"]) == (column, str(features[column].dtype))


# ---------------------------------------------------------------------------------------------
# scored_leads


def _scored_set(column, value):
    def mutate(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[on_day(frame, DAY2)[0], column] = value
        return frame
    return mutate


SCORED_CASES = {
    "duplicate lead": (lambda f: f.assign(**{LEAD_ID: [f[LEAD_ID].iloc[0]] * 2 + list(f[LEAD_ID].iloc[2:])}),
                       {"lead_id_unique"}),
    "score above 100": (_scored_set("score", 100.5), {"score_in_0_100"}),
    "score below 0": (_scored_set("score", -0.1), {"score_in_0_100"}),
    "score missing": (_scored_set("score", None), {"score_not_null"}),
    "unknown bucket": (_scored_set("bucket", "lukewarm"), {"bucket_known"}),
    "no bucket": (_scored_set("bucket", None), {"bucket_not_null"}),
    "empty model_version": (_scored_set("model_version", ""), {"model_version_not_empty"}),
    "blank model_version": (_scored_set("model_version", "  "), {"model_version_not_empty"}),
    "null model_version": (_scored_set("model_version", None), {"model_version_not_null"}),
    "no model_version column": (lambda f: f.drop(columns=["model_version"]),
                                {"scored_columns_present", "model_version_not_null", "model_version_not_empty"}),
}


@pytest.mark.parametrize("case", list(SCORED_CASES))
def test_scored_expectation_fails_on_its_defect(features, case):
    mutate, rules = SCORED_CASES[case]
    result = quality.check_scored_leads(mutate(scored_from(features)), DAYS)
    assert failed(result) == rules, result.describe()


def test_scored_edges_pass(features):
    scored = scored_from(features)
    scored.loc[0, "score"], scored.loc[1, "score"] = 0.0, 100.0
    scored["bucket"] = ["hot", "warm", "cold", "junk"] * 2 + ["hot", "junk"]
    assert quality.check_scored_leads(scored, DAYS).passed


# ---------------------------------------------------------------------------------------------
# Great Expectations itself: imported lazily, quiet, built once


def test_importing_the_code_location_does_not_import_great_expectations():
    code = ("import sys, lead_assets.core.leads.quality, lead_assets.definitions; "
            "print('great_expectations' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_progress_bars_and_one_context_and_suite_per_process(raw, capfd):
    quality.check_raw_leads(raw, DAYS)
    context, suites = quality._gx()["context"], len(quality._SUITES)
    capfd.readouterr()
    quality.check_raw_leads(raw, DAYS)
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in err + out and "%|" not in err
    assert quality._gx()["context"] is context and len(quality._SUITES) == suites

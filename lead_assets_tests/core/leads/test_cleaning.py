"""The cleaning rules against the case study's own expected outputs (compared as row multisets)."""

import pandas as pd
import pytest

from lead_assets.core import schema
from lead_assets.core.leads.cleaning import clean_leads, fill_nulls, map_city_tier, map_rare_levels, sum_interactions


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """Row content as sorted tuples, numbers normalised so 2 == 2.0 and NaN == NaN."""
    def norm(v):
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
            return None
        try:
            return round(float(v), 6)
        except (TypeError, ValueError):
            return str(v)
    return sorted((tuple(norm(v) for v in row) for row in frame[columns].itertuples(index=False)),
                  key=lambda r: tuple("" if x is None else str(x) for x in r))


@pytest.fixture
def sample(codepro):
    return pd.read_csv(codepro / "leads_sample_100.csv")


def _expected(codepro, name):
    return pd.read_csv(codepro / "expected" / f"{name}_test_case.csv")


def test_fill_nulls_matches_case_study(codepro, sample):
    expected = _expected(codepro, "loaded_data")
    assert _rows(fill_nulls(sample), list(expected.columns)) == _rows(expected, list(expected.columns))


def test_city_tier_matches_case_study(codepro, sample):
    expected = _expected(codepro, "city_tier_mapped")
    got = map_city_tier(fill_nulls(sample))
    assert schema.CITY not in got.columns
    assert _rows(got, list(expected.columns)) == _rows(expected, list(expected.columns))


def test_rare_levels_match_case_study(codepro, sample):
    expected = _expected(codepro, "categorical_variables_mapped")
    got = map_rare_levels(map_city_tier(fill_nulls(sample)))
    assert _rows(got, list(expected.columns)) == _rows(expected, list(expected.columns))


def test_interaction_groups_match_case_study(codepro, sample):
    expected = _expected(codepro, "interactions_mapped")
    got = sum_interactions(map_rare_levels(map_city_tier(fill_nulls(sample))))
    assert _rows(got, list(expected.columns)) == _rows(expected, list(expected.columns))


def _tiny() -> pd.DataFrame:
    ref = schema.reference()
    frame = pd.DataFrame({
        schema.CREATED_DATE: pd.to_datetime(["2021-07-01 10:00:00"] * 4),
        schema.CITY: ["Mumbai ", "indore", "ghazipur", None],
        schema.PLATFORM: ["Level0", "Level99", None, "Level3"],
        schema.MEDIUM: ["Level0", "Level1", "Level2", None],
        schema.SOURCE: ["Level2", "Level3", "Level0", "Level7"],
        schema.LEADS_DROPPED: [1.0, None, 3.0, 2.0],
        schema.REFERRED: [None, 1.0, 0.0, 0.0],
    })
    for column in ref.interaction_columns:
        frame[column] = float("nan")
    frame["call_us_button_clicked"] = [1.0, None, 2.0, None]
    frame["chat_clicked"] = [1.0, None, None, None]
    frame["syllabus"] = [None, 4.0, None, None]
    return frame


def test_clean_leads_applies_every_rule():
    cleaned = clean_leads(_tiny())
    assert cleaned[schema.CITY_TIER].tolist() == [1, 2, 3, 3]
    assert cleaned[schema.PLATFORM].tolist() == ["Level0", "others", "others", "Level3"]
    assert cleaned[schema.MEDIUM].tolist() == ["Level0", "others", "Level2", "others"]
    assert cleaned["assistance_interaction"].tolist() == [2, 0, 2, 0]
    assert cleaned["syllabus_interaction"].tolist() == [0, 4, 0, 0]
    assert cleaned[schema.LEADS_DROPPED].tolist() == [1.0, 0.0, 3.0, 2.0]
    assert not any(c in cleaned.columns for c in schema.reference().interaction_columns)
    model_columns = list(schema.feature_columns())
    assert cleaned[model_columns].notna().all().all()


def test_original_levels_are_kept_for_the_model():
    cleaned = clean_leads(_tiny())
    assert cleaned["platform_level"].tolist() == ["Level0", "Level99", "missing", "Level3"]
    assert cleaned["city"].tolist() == ["mumbai", "indore", "ghazipur", "missing"]


def test_reference_data_comes_from_package_files():
    ref = schema.reference()
    assert ref.city_tiers["pune"] == 1 and ref.city_tiers["surat"] == 2
    assert len(ref.interaction_groups) == 37
    assert ref.group_columns == ("assistance_interaction", "career_interaction", "payment_interaction",
                                 "social_interaction", "syllabus_interaction")
    assert len(ref.significant_levels[schema.MEDIUM]) == 18

"""Insights tables against answers computed by hand."""

import pandas as pd
import pytest

from lead_assets.core.leads import insights


@pytest.fixture
def cleaned():
    return pd.DataFrame({
        "lead_id": list("abcdefgh"),
        "first_utm_source_c": ["Level2"] * 4 + ["Level0"] * 3 + ["others"],
        "first_utm_medium_c": ["Level0"] * 8,
        "first_platform_c": ["Level3"] * 8,
        "city_tier": [1, 1, 2, 3, 3, 3, 3, 1],
        "app_complete_flag": pd.array([1, 1, 1, 0, 0, 0, 1, pd.NA], dtype="Int8"),
    })


@pytest.fixture
def scored():
    return pd.DataFrame({
        "lead_id": list("abcdefgh"),
        "probability": [0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.6, 0.5],
        "bucket": ["hot", "hot", "warm", "junk", "junk", "junk", "cold", "cold"],
    })


def test_conversion_by_source(cleaned):
    table = insights.conversion_by(cleaned[cleaned.app_complete_flag.notna()], "first_utm_source_c")
    rows = table.set_index("level")
    assert rows.loc["Level2", "leads"] == 4 and rows.loc["Level2", "conversion_rate"] == pytest.approx(0.75)
    assert rows.loc["Level0", "conversion_rate"] == pytest.approx(1 / 3)
    assert rows.loc["Level2", "lift"] == pytest.approx(0.75 / (4 / 7))
    assert "others" not in rows.index  # unlabelled leads do not count


def test_conversion_by_bucket_and_gains(cleaned, scored):
    tables = insights.build_insights(cleaned, scored)
    bucket = tables["conversion_by_bucket"].set_index("bucket")
    assert bucket.loc["hot", "conversion_rate"] == 1.0 and bucket.loc["junk", "conversion_rate"] == 0.0
    assert bucket.loc["cold", "leads"] == 1  # lead h has no label
    gains = tables["cumulative_gains"]
    assert gains["converters_reached"].iloc[-1] == pytest.approx(1.0)
    # top 3 of 7 labelled leads by probability are a, b, c: 3 of the 4 converters
    assert gains.loc[gains.leads_called == 3, "converters_reached"].iloc[0] == pytest.approx(0.75)


def test_plots_are_pngs_and_markdown_has_every_table(cleaned, scored):
    tables = insights.build_insights(cleaned, scored)
    plots = insights.render_plots(tables)
    assert set(plots) == set(tables)
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    text = insights.to_markdown(tables)
    assert all(name.replace("_", " ") in text for name in tables)
